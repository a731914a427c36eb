import ArgumentParser
import CareRecords
import Foundation
import SyncClient
import SyncCore
import SyncEngine
import SyncStore

struct ApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve", abstract: "Approve (or reject/return) a submitted plan, binding the decision to its content hash.",
        discussion: "Example: caresync approve <plan id> --as morgan\nThe plan's author cannot approve it. A later change of content makes the approval invalid (shown by `show plan`).")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Plan id.") var plan: String
    @Option(help: "approved, rejected or returned.") var decision = ApprovalDecision.approved.rawValue

    func run() throws {
        let replica = try options.open()
        guard let decided = ApprovalDecision(rawValue: decision) else {
            throw Output.fail("decision must be approved, rejected or returned", code: CareError.Code.badValue.name, exit: .refused)
        }
        let id = try Output.run { try replica.approve(plan: plan, decision: decided, author: options.worker) }
        struct Approved: Encodable { let approvalID: String, planID: String, decision: String }
        if options.json { try Output.json(Approved(approvalID: id, planID: plan, decision: decision)) } else {
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
        if options.json { try Output.json(["id": id, "supersedes_id": plan]) } else { Output.line(id) }
    }
}

struct CatalogueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalogue", abstract: "List the entitlement catalogue (versioned, published by the hub).",
        discussion: "Example: caresync catalogue --json")

    @OptionGroup var options: ReplicaOptions

    func run() throws {
        let replica = try options.open(.readOnly)
        let rows = try Output.run { try replica.list(EntitlementItem.kindName) }
        if options.json { try Output.json(rows.map(Output.record)); return }
        let items = try Output.run { try rows.map(EntitlementItem.init(row:)) }
        Output.table(["ITEM", "V", "NAME", "CAP", "PERIOD", "AGES", "IN FORCE"], items.map { item in
            [item.code, String(item.version), item.name, item.capDescription, item.period,
             "\(item.ages.minimum ?? 0)–\(item.ages.limit ?? 0)",
             "\(item.inForce.from?.description ?? "") … \(item.inForce.to?.description ?? "")"]
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
            date of birth is in conflict), and the item's required fields. A capped item commits at \
            once when the rights held here cover it; otherwise it waits ("£100.00 available locally; \
            £50.00 needs the hub") for rights at the next sync (`caresync award commit` then).
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: ArgumentHelp("Fields as field=value.", valueName: "field=value")) var fields: [String] = []

    func run() throws {
        let replica = try options.open()
        let outcome = try Output.run { try replica.request(award: try Assignments.parse(fields), author: options.worker) }
        try AwardOutcomeJSON.print(outcome, json: options.json)
    }
}

struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts", abstract: "List open conflicts with every candidate, its author, replica and time.",
        discussion: "Example: caresync conflicts --json\nResolve one with `caresync resolve <kind> <id> <field> --pick N`.")

    @OptionGroup var options: ReplicaOptions

    struct ConflictJSON: Encodable {
        let kind: String, recordKind: String, recordID: String, field: String, assignedRole: String, candidates: [CandidateJSON]
    }

    func run() throws {
        let replica = try options.open(.readOnly)
        let conflicts = try Output.run { try replica.conflicts() }
        try options.recordViews(of: conflicts.map { ($0.recordKind, $0.recordID) }, via: .conflicts, readIn: replica)
        if options.json {
            try Output.json(conflicts.map {
                ConflictJSON(kind: $0.kind.rawValue, recordKind: $0.recordKind, recordID: $0.recordID, field: $0.field,
                             assignedRole: $0.assignedRole, candidates: $0.candidates.map(CandidateJSON.init))
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
        struct Resolved: Encodable { let id: String, field: String, resolved = true }
        if options.json { try Output.json(Resolved(id: id, field: field)) } else { Output.line("resolved \(kind).\(field) on \(id)") }
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Show who changed a record, on which signing device, when it happened and when it was recorded.",
        discussion: "Example: caresync history goal <id> --field statement")

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument var id: String
    @Option(help: "Only this field.") var field: String?

    func run() throws {
        let replica = try options.open(.readOnly)
        let entries = try Output.run { try replica.history(kind, id: id, field: field) }
        try options.recordViews(of: [(CareSchema.kind(kind)?.name ?? kind, id)], via: .history, readIn: replica)
        func describe(_ operation: FieldOperation) -> (String, FieldValue) {
            switch operation {
            case let .assign(value): ("set", value)
            case let .add(value): ("add", value)
            case let .remove(value): ("remove", value)
            case let .increment(delta): ("increment", .integer(delta))
            }
        }
        func created(_ entry: HistoryEntry) -> Bool { CausalLength.isAlive(entry.causalLength) }
        if options.json {
            struct Entry: Encodable {
                let change: String, field: OrNull<String>, author: String, replica: String, signedBy: String, hlc: String, happenedAt: String
                let recordedAt: String, operation: String, value: JSONField
            }
            try Output.json(entries.map { entry in
                let (verb, value) = describe(entry.operation)
                return Entry(change: "\(entry.change.replica.hex):\(entry.change.counter)", field: OrNull(entry.column),
                             author: entry.author, replica: entry.change.replica.hex,
                             signedBy: "\(entry.author) on replica \(entry.change.replica.short)", hlc: entry.timestamp.description,
                             happenedAt: Output.iso(entry.timestamp), recordedAt: Output.iso(UInt64(max(0, entry.recordedAtMillis))),
                             operation: entry.column == nil ? (created(entry) ? "create" : "delete") : verb,
                             value: JSONField(entry.column == nil ? .null : value))
            })
            return
        }
        // The author is a claim of the device that signed the change (its origin): shown together.
        Output.table(["HAPPENED (HLC)", "RECORDED HERE", "AUTHOR ON SIGNING DEVICE", "FIELD", "CHANGE"], entries.map { entry in
            let (verb, value) = describe(entry.operation)
            let change = entry.column == nil ? (created(entry) ? "created" : "deleted") : "\(verb) \(Output.cell(value, width: 40))"
            return [Output.iso(entry.timestamp), Output.iso(UInt64(max(0, entry.recordedAtMillis))),
                    "\(entry.author) on replica \(entry.change.replica.short)", entry.column ?? "(record)", change]
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
        let identityPrivate = try Output.run { try replica.store.identityIsPrivate() }
        let databasePrivate = try Output.run { try IdentityFile.isPrivate(options.path) }
        let warnings = FilePrivacy.warnings(identity: replica.store.identityPath, identityPrivate: identityPrivate,
                                            database: options.path, databasePrivate: databasePrivate)
        if options.json {
            struct Peer: Encodable { let replicaID: String, changesNotSeen: UInt64, updatedAt: String }
            struct Status: Encodable {
                let replicaID: String, name: String, schemaVersion: Int, localChanges: UInt64, totalChanges: Int
                let keptUnknownChanges: Int, openConflicts: Int, records: [String: Int], peers: [Peer]
                let identityFile: String, identityPresent: Bool, identityPrivate: OrNull<Bool>, databasePrivate: Bool, warnings: [String]
            }
            try Output.json(Status(
                replicaID: status.replicaID.hex, name: status.name, schemaVersion: status.schemaVersion,
                localChanges: status.localChanges, totalChanges: status.totalChanges,
                keptUnknownChanges: status.parkedChanges, openConflicts: status.openConflicts,
                records: Dictionary(uniqueKeysWithValues: status.rowCounts.map { ($0.table, $0.rows) }),
                peers: status.peers.map { Peer(replicaID: $0.replicaID.hex, changesNotSeen: $0.changesNotSeen,
                                               updatedAt: Output.iso(UInt64(max(0, $0.updatedAtMillis)))) },
                identityFile: replica.store.identityPath, identityPresent: identityPrivate != nil, identityPrivate: OrNull(identityPrivate),
                databasePrivate: databasePrivate, warnings: warnings))
            return
        }
        Output.line("replica        \(status.replicaID.hex) (\(status.name))")
        Output.line("schema         v\(status.schemaVersion)")
        Output.line("changes        \(status.localChanges) made here, \(status.totalChanges) held in all")
        Output.line("conflicts      \(status.openConflicts) open field conflict(s)")
        if status.parkedChanges > 0 { Output.line("kept           \(status.parkedChanges) change(s) for fields a newer schema knows") }
        Output.line("records        " + status.rowCounts.filter { $0.rows > 0 }.map { "\($0.table) \($0.rows)" }.joined(separator: ", "))
        for peer in status.peers {
            Output.line("peer           \(peer.replicaID.short): \(peer.changesNotSeen) change(s) not yet seen (as of \(Output.iso(UInt64(max(0, peer.updatedAtMillis)))))")
        }
        Output.line("identity       \(replica.store.identityPath)\(identityPrivate == nil ? " (missing)" : "")")
        for warning in warnings { Output.line("warning: \(warning)") }
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
        _ = try DeviceKeyCheck.require(replica.store, for: "export")
        var peerID: ReplicaID?
        if let peer {
            guard let id = ReplicaID(hex: peer) else { throw ValidationError("--for needs a 32-hex-digit replica id") }
            peerID = id
        }
        let summary = try await Output.runAwaiting { try await BundleExchange.export(from: replica.store, for: peerID, to: file) }
        if options.json {
            struct Exported: Encodable { let file: String, changes: Int, bytes: Int, incremental: Bool }
            try Output.json(Exported(file: file, changes: summary.changes, bytes: summary.bytes, incremental: summary.incremental))
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
            struct Imported: Encodable {
                let sender: String, received: Int, applied: Int, duplicates: Int, keptUnknown: Int, conflictsOpened: Int, conflictsClosed: Int
            }
            try Output.json(Imported(sender: summary.sender.hex, received: summary.received, applied: result.applied,
                                     duplicates: result.duplicates, keptUnknown: result.parked, conflictsOpened: result.conflictsOpened,
                                     conflictsClosed: result.conflictsClosed))
        } else {
            Output.line("from \(summary.sender.short): \(summary.received) change(s), \(result.applied) applied, \(result.duplicates) already known, \(result.conflictsOpened) conflict(s) opened, \(result.conflictsClosed) closed\(result.parked > 0 ? ", \(result.parked) kept for a newer schema" : "")")
        }
    }
}

/// One conflict candidate as JSON; `change` and `record_id` are left out when there is none.
struct CandidateJSON: Encodable {
    let value: JSONField, author: String, replica: String, hlc: String, at: String
    let change: String?, recordID: String?

    init(_ candidate: ConflictCandidate) {
        value = JSONField(candidate.value)
        author = candidate.author
        replica = candidate.replica.hex
        hlc = candidate.timestamp.description
        at = Output.iso(candidate.timestamp)
        change = candidate.change.map { "\($0.replica.hex):\($0.counter)" }
        recordID = candidate.recordID
    }
}

/// The warnings `status` gives about files that hold secrets or records (Protocol/identity.md:
/// readable by their owner only).
enum FilePrivacy {
    static func warnings(identity: String, identityPrivate: Bool?, database: String, databasePrivate: Bool) -> [String] {
        var warnings: [String] = []
        switch identityPrivate {
        case nil: warnings.append("the identity file \(identity) is missing: this replica cannot sign, so it cannot sync or export")
        case false?: warnings.append(readable(identity, "the device key"))
        case true?: break
        }
        if !databasePrivate { warnings.append(readable(database, "the records")) }
        return warnings
    }

    /// The warning for a file that group or others can read.
    static func readable(_ path: String, _ what: String) -> String {
        "\(path) can be read by group or others, and it holds \(what): run `chmod 600 \(path)`"
    }
}
