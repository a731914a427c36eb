import ArgumentParser
import CareRecords
import Foundation
import SyncClient
import SyncCore
import SyncEngine

struct ApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve", abstract: "Approve (or reject/return) a submitted plan, binding the decision to its content hash.",
        discussion: "Example: caresync approve <plan id> --as morgan\nThe plan's author cannot approve it. A later change of content makes the approval invalid (shown by `show plan`).")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Plan id.") var plan: String
    @Option(help: "approved, rejected or returned.") var decision = "approved"

    func run() throws {
        let replica = try options.open()
        let id = try Output.run { try replica.approve(plan: plan, decision: decision, author: options.worker) }
        if options.json { Output.json(["approval_id": id, "plan_id": plan, "decision": decision]) } else {
            Output.line("plan \(plan) \(decision) (approval \(id))")
        }
    }
}

struct PlanVersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan-version", abstract: "Start a new draft version of a plan (copies content, goals and actions).",
        discussion: "Example: caresync plan-version <plan id>")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Plan id.") var plan: String

    func run() throws {
        let replica = try options.open()
        let id = try Output.run { try replica.newVersion(plan: plan, author: options.worker) }
        if options.json { Output.json(["id": id, "supersedes_id": plan]) } else { Output.line(id) }
    }
}

struct CatalogueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalogue", abstract: "List the entitlement catalogue (versioned, published by the hub).",
        discussion: "Example: caresync catalogue --json")

    @OptionGroup var options: ReplicaOptions

    func run() throws {
        let replica = try options.open(.readOnly)
        let items = try Output.run { try replica.list("entitlement_item") }
        if options.json { Output.json(items.map(Output.record)); return }
        Output.table(["ITEM", "V", "NAME", "CAP", "PERIOD", "AGES", "IN FORCE"], items.map { item in
            let cap: String = switch item["cap_kind"]?.textValue {
            case "count", "count_per_period": "\(item["cap_count"]?.integerValue ?? 0)"
            case "amount", "amount_per_period": "£\((item["cap_amount_pence"]?.integerValue ?? 0) / 100)"
            default: "–"
            }
            return [item["item_code"]?.textValue ?? "", String(item["version"]?.integerValue ?? 0), item["name"]?.textValue ?? "", cap,
                    item["period"]?.textValue ?? "", "\(item["min_age_incl"]?.integerValue ?? 0)–\(item["max_age_excl"]?.integerValue ?? 0)",
                    "\(item["effective_from"]?.textValue ?? "") … \(item["effective_to"]?.textValue ?? "")"]
        })
    }
}

struct RequestAwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request-award", abstract: "Record an entitlement award request for a young person.",
        discussion: """
            Example: caresync request-award yp_id=<id> item_code=STUDY_VISIT requested_count=1 \
            approved_adult_id=carer-7 decision_date=2025-06-23
            Checks: the catalogue version in force on decision_date, the age limits (blocked while the \
            date of birth is in conflict), and the item's required fields.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: ArgumentHelp("Fields as field=value.", valueName: "field=value")) var fields: [String] = []

    func run() throws {
        let replica = try options.open()
        let id = try Output.run { try replica.requestAward(fields: try Assignments.parse(fields), author: options.worker) }
        if options.json { Output.json(["id": id, "status": "requested"]) } else { Output.line(id) }
    }
}

struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts", abstract: "List open conflicts with every candidate, its author, replica and time.",
        discussion: "Example: caresync conflicts --json\nResolve one with `caresync resolve <kind> <id> <field> --pick N`.")

    @OptionGroup var options: ReplicaOptions

    static func candidateJSON(_ candidate: ConflictCandidate) -> [String: Any] {
        var object: [String: Any] = [
            "value": Output.jsonValue(candidate.value), "author": candidate.author, "replica": candidate.replica.hex,
            "hlc": candidate.timestamp.description, "at": Output.iso(candidate.timestamp),
        ]
        if let change = candidate.change { object["change"] = "\(change.replica.hex):\(change.counter)" }
        if let record = candidate.recordID { object["record_id"] = record }
        return object
    }

    func run() throws {
        let replica = try options.open(.readOnly)
        let conflicts = try Output.run { try replica.conflicts() }
        if options.json {
            Output.json(conflicts.map {
                ["kind": $0.kind.rawValue, "record_kind": $0.recordKind, "record_id": $0.recordID, "field": $0.field,
                 "assigned_role": $0.assignedRole, "candidates": $0.candidates.map(Self.candidateJSON)] as [String: Any]
            })
            return
        }
        if conflicts.isEmpty { Output.line("no open conflicts"); return }
        for conflict in conflicts {
            Output.line("\(conflict.recordKind) \(conflict.recordID) \(conflict.field): \(conflict.kind.rawValue) → \(conflict.assignedRole)")
            for (index, candidate) in conflict.candidates.enumerated() {
                Output.line("  \(index + 1). \(Output.cell(candidate.value, width: 60))")
                Output.line("     by \(candidate.author) on replica \(candidate.replica.short) at \(Output.iso(candidate.timestamp))\(candidate.recordID.map { " (allocation \($0))" } ?? "")")
            }
        }
        Output.line("\(conflicts.count) open conflict(s)")
    }
}

struct ResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve", abstract: "Resolve a conflict with a chosen candidate or a new value.",
        discussion: """
            Examples:
              caresync resolve goal <id> statement --pick 2
              caresync resolve goal <id> statement --value 'Move to own studio by Oct via Andium Gateway'
            The write supersedes every candidate, so all replicas converge on it once it is exchanged.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument var id: String
    @Argument var field: String
    @Option(help: "Choose candidate N (1-based, as listed by `caresync conflicts`).") var pick: Int?
    @Option(parsing: .unconditional, help: "Resolve with this new value (it may start with a dash; an empty value clears the field).")
    var value: String?

    func validate() throws {
        if (pick == nil) == (value == nil) { throw ValidationError("give exactly one of --pick N or --value TEXT") }
    }

    func run() throws {
        let replica = try options.open()
        try Output.run { try replica.resolve(kind, id: id, field: field, value: value, pick: pick, author: options.worker) }
        if options.json { Output.json(["id": id, "field": field, "resolved": true]) } else { Output.line("resolved \(kind).\(field) on \(id)") }
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Show who changed a record, from which replica, when it happened and when it was recorded.",
        discussion: "Example: caresync history goal <id> --field statement")

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument var id: String
    @Option(help: "Only this field.") var field: String?

    func run() throws {
        let replica = try options.open(.readOnly)
        let entries = try Output.run { try replica.history(kind, id: id, field: field) }
        func describe(_ operation: FieldOperation) -> (String, FieldValue) {
            switch operation {
            case let .assign(value): ("set", value)
            case let .add(value): ("add", value)
            case let .remove(value): ("remove", value)
            case let .increment(delta): ("increment", .integer(delta))
            }
        }
        if options.json {
            Output.json(entries.map { entry in
                let (verb, value) = describe(entry.operation)
                return ["change": "\(entry.change.replica.hex):\(entry.change.counter)", "field": entry.column ?? NSNull(),
                        "author": entry.author, "replica": entry.change.replica.hex, "hlc": entry.timestamp.description,
                        "happened_at": Output.iso(entry.timestamp), "recorded_at": Output.iso(UInt64(max(0, entry.recordedAtMillis))),
                        "operation": entry.column == nil ? (entry.causalLength % 2 == 1 ? "create" : "delete") : verb,
                        "value": entry.column == nil ? NSNull() : Output.jsonValue(value)] as [String: Any]
            })
            return
        }
        Output.table(["HAPPENED (HLC)", "RECORDED HERE", "REPLICA", "AUTHOR", "FIELD", "CHANGE"], entries.map { entry in
            let (verb, value) = describe(entry.operation)
            let change = entry.column == nil ? (entry.causalLength % 2 == 1 ? "created" : "deleted") : "\(verb) \(Output.cell(value, width: 40))"
            return [Output.iso(entry.timestamp), Output.iso(UInt64(max(0, entry.recordedAtMillis))), entry.change.replica.short,
                    entry.author, entry.column ?? "(record)", change]
        })
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show this replica's state: changes, conflicts, what each known peer has not seen.",
        discussion: "Example: caresync status --json")

    @OptionGroup var options: ReplicaOptions

    func run() throws {
        let replica = try options.open(.readOnly)
        let status = try Output.run { try replica.store.status() }
        if options.json {
            Output.json([
                "replica_id": status.replicaID.hex, "name": status.name, "schema_version": status.schemaVersion,
                "local_changes": status.localChanges, "total_changes": status.totalChanges,
                "kept_unknown_changes": status.keptUnknownChanges, "open_conflicts": status.openConflicts,
                "records": Dictionary(uniqueKeysWithValues: status.rowCounts.map { ($0.table, $0.rows) }),
                "peers": status.peers.map { ["replica_id": $0.replicaID.hex, "changes_not_seen": $0.changesNotSeen,
                                              "updated_at": Output.iso(UInt64(max(0, $0.updatedAtMillis)))] as [String: Any] },
            ])
            return
        }
        Output.line("replica        \(status.replicaID.hex) (\(status.name))")
        Output.line("schema         v\(status.schemaVersion)")
        Output.line("changes        \(status.localChanges) made here, \(status.totalChanges) held in all")
        Output.line("conflicts      \(status.openConflicts) open field conflict(s)")
        if status.keptUnknownChanges > 0 { Output.line("kept           \(status.keptUnknownChanges) change(s) for fields a newer schema knows") }
        Output.line("records        " + status.rowCounts.filter { $0.rows > 0 }.map { "\($0.table) \($0.rows)" }.joined(separator: ", "))
        for peer in status.peers {
            Output.line("peer           \(peer.replicaID.short): \(peer.changesNotSeen) change(s) not yet seen (as of \(Output.iso(UInt64(max(0, peer.updatedAtMillis)))))")
        }
    }
}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write the changes a peer has not seen to a bundle file.",
        discussion: """
            Example: caresync export to-sam.bundle --for <sam's replica id>
            Without --for (or for a peer this replica has never heard from) every change is written; \
            importing is idempotent, so that is always safe. The file is checksummed.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Bundle file to write.") var file: String
    @Option(name: .customLong("for"), help: ArgumentHelp("Replica id of the receiving peer.", valueName: "replica-id")) var peer: String?

    func run() async throws {
        let replica = try options.open(.readOnly)
        var peerID: ReplicaID?
        if let peer {
            guard let id = ReplicaID(hex: peer) else { throw ValidationError("--for needs a 32-hex-digit replica id") }
            peerID = id
        }
        let summary = try await Output.runAwaiting { try await BundleExchange.export(from: replica.store, for: peerID, to: file) }
        if options.json {
            Output.json(["file": file, "changes": summary.changes, "bytes": summary.bytes, "incremental": summary.incremental])
        } else {
            Output.line("wrote \(summary.changes) change(s), \(summary.bytes) bytes, to \(file)\(summary.incremental ? " (only what the peer lacks)" : "")")
        }
    }
}

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Verify and apply a bundle file from another replica (all or nothing).",
        discussion: "Example: caresync import from-alex.bundle\nA corrupt or truncated file is refused whole; re-importing a bundle changes nothing.")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Bundle file to read.") var file: String

    func run() async throws {
        let replica = try options.open()
        let summary = try await Output.runAwaiting { try await BundleExchange.importBundle(into: replica.store, from: file) }
        let result = summary.result
        if options.json {
            Output.json(["sender": summary.sender.hex, "received": summary.received, "applied": result.applied,
                         "duplicates": result.duplicates, "kept_unknown": result.kept, "conflicts_opened": result.conflictsOpened,
                         "conflicts_closed": result.conflictsClosed])
        } else {
            Output.line("from \(summary.sender.short): \(summary.received) change(s), \(result.applied) applied, \(result.duplicates) already known, \(result.conflictsOpened) conflict(s) opened, \(result.conflictsClosed) closed\(result.kept > 0 ? ", \(result.kept) kept for a newer schema" : "")")
        }
    }
}
