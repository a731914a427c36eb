import ArgumentParser
import CareRecords
import Foundation
import SyncCore
import SyncStore

struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine",
        abstract: "Review writes another team's replica made to your team's young people: held by the hub, never merged until accepted.",
        discussion: """
            A replica that edits a young person its team no longer holds (transferred while it was \
            offline) or a restricted record it is not named on has its write quarantined by the hub. \
            The hub holds it for review by the replicas of the team that holds the young person now; \
            they receive it at their next sync, kept apart from the records.

            Examples:
              caresync quarantine list
              caresync quarantine show 3
              caresync quarantine accept 3 --as morgan      # made again as morgan's own edit
              caresync quarantine dismiss 4 --as morgan --reason 'duplicate of the visit already recorded'
            Decisions reach the hub at the next `caresync sync`. A dismissal's reason stays on this replica.
            """,
        subcommands: [QuarantineListCommand.self, QuarantineShowCommand.self, QuarantineAcceptCommand.self, QuarantineDismissCommand.self])
}

/// A held write as the quarantine commands print it.
struct HeldJSON: Encodable {
    let id: Int64, state: String, table: String, row: String, youngPerson: String, fromReplica: String, author: String, origin: String,
        reason: String, received: String, decidedBy: OrNull<String>, decided: OrNull<String>, acceptedAs: OrNull<String>

    init(_ held: StoredHeldItem) {
        let change = held.item.change
        id = held.id
        state = held.state.rawValue
        table = change.table
        row = change.row
        youngPerson = change.scope
        fromReplica = held.item.fromReplica.hex
        author = change.author
        origin = "\(change.id.replica.hex):\(change.id.counter)"
        reason = held.item.reason.name
        received = Output.iso(held.item.receivedAtMillis)
        decidedBy = OrNull(held.worker.isEmpty ? nil : held.worker)
        decided = OrNull(held.decidedAtMillis.map { Output.iso($0) })
        acceptedAs = OrNull(held.acceptedAs.map { "\($0.replica.hex):\($0.counter)" })
    }
}

struct QuarantineListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the writes held here for review: id, record, from which replica, why, when received, state.",
        discussion: "Example: caresync quarantine list --json")

    @OptionGroup var options: ReplicaOptions

    func run() throws {
        let replica = try options.open(.readOnly)
        let held = try Output.run { try replica.store.heldItems() }
        if options.json { try Output.json(held.map(HeldJSON.init)); return }
        Output.table(["ID", "TABLE", "ROW", "FROM REPLICA", "REASON", "RECEIVED", "STATE"], held.map { held in
            [String(held.id), held.item.change.table, held.item.change.row, held.item.fromReplica.short, held.item.reason.name,
             Output.iso(held.item.receivedAtMillis), held.state.rawValue]
        })
        Output.line("\(held.count) held write(s)")
    }
}

struct QuarantineShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one held write: its record, author, origin and every field it edits, decoded.",
        discussion: "Example: caresync quarantine show 3 --json")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The held write's id, as `caresync quarantine list` shows it.") var id: Int64

    struct FieldJSON: Encodable { let field: String, policy: String, operation: String, value: JSONField }
    struct Shown: Encodable { let held: HeldJSON, kind: String, createsRecord: Bool, deletesRecord: Bool, fields: [FieldJSON] }

    func run() throws {
        let replica = try options.open(.readOnly)
        let held = try Output.run { try replica.store.heldItem(id: id) }
        let change = held.item.change
        let kind = CareSchema.kind(change.table)
        let fields = change.fields.map { edit in
            let operation = switch edit.operation {
            case .assign: "assign"
            case .add: "add"
            case .remove: "remove"
            case .increment: "increment"
            }
            return FieldJSON(field: edit.column, policy: kind?.fields.first { $0.name == edit.column }?.policy.name ?? "?", operation: operation,
                             value: JSONField(edit.value))
        }
        let creates = change.setsLife && CausalLength.isAlive(change.causalLength)
        if options.json {
            try Output.json(Shown(held: HeldJSON(held), kind: change.table, createsRecord: creates, deletesRecord: change.deletesRow, fields: fields))
            return
        }
        Output.line("held write \(held.id): \(change.table) \(change.row) of young person \(change.scope)")
        Output.line("  by \(change.author) on replica \(change.id.replica.short) at \(Output.iso(change.timestamp)); pushed by \(held.item.fromReplica.short), "
                    + "received \(Output.iso(held.item.receivedAtMillis)); \(held.item.reason.name); \(held.state.rawValue)"
                    + (creates ? "; creates the record" : change.deletesRow ? "; deletes the record" : ""))
        Output.table(["FIELD", "POLICY", "OPERATION", "VALUE"], fields.map { [$0.field, $0.policy, $0.operation, Output.cell($0.value.value, width: 60)] })
    }
}

struct QuarantineAcceptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accept", abstract: "Accept a held write: its edit is made again as a new edit by the reviewing worker.",
        discussion: """
            Example: caresync quarantine accept 3 --as morgan
            The original author's change is never applied under their name: the new edit carries the reviewer's \
            name and this replica's signature, and reaches the team's replicas at the next sync.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The held write's id, as `caresync quarantine list` shows it.") var id: Int64

    func run() throws {
        let replica = try options.open()
        // The reviewer is the worker `--as` names (validated with the options), as for every edit.
        let reviewer = options.worker
        let made = try Output.run { try replica.acceptHeld(id: id, worker: reviewer) }
        struct Accepted: Encodable { let id: Int64, accepted = true, change: String }
        if options.json { try Output.json(Accepted(id: id, change: "\(made.replica.hex):\(made.counter)")); return }
        Output.line("accepted held write \(id) as change \(made) by \(reviewer); the hub is told at the next sync")
    }
}

struct QuarantineDismissCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dismiss", abstract: "Dismiss a held write: nothing of it is applied; the reason stays on this replica.",
        discussion: "Example: caresync quarantine dismiss 4 --as morgan --reason 'already recorded on the visit of 3 July'")

    @OptionGroup var options: ReplicaOptions
    @Option(parsing: .unconditional, help: "Why it is dismissed (kept on this replica with the decision; never sent to the hub).")
    var reason: String
    @Argument(help: "The held write's id, as `caresync quarantine list` shows it.") var id: Int64

    func validate() throws {
        if reason.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--reason: say why the write is dismissed") }
    }

    func run() throws {
        let replica = try options.open()
        try Output.run { try replica.store.dismissHeld(id: id, worker: try WorkerID.canonical(options.worker), reason: reason) }
        struct Dismissed: Encodable { let id: Int64, dismissed = true }
        if options.json { try Output.json(Dismissed(id: id)); return }
        Output.line("dismissed held write \(id); the hub is told at the next sync")
    }
}

struct HubQuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "The operator view of quarantined writes: counts by reason and state, and per sending replica.",
        discussion: """
            Example: caresync hub quarantine --db hub.db --json
            A write outside its replica's team scope is held for review by the team that holds the young \
            person (held), until a replica of that team accepts or dismisses it. Counts and pseudonymous \
            ids only: never a record, a value or a reviewer's reason.
            """)

    @OptionGroup var hub: HubOptions
    @Flag(help: "Print machine-readable JSON.") var json = false

    struct CountJSON: Encodable { let reason: String, state: String, count: UInt64 }
    struct SenderJSON: Encodable { let replicaID: String, team: String, held: UInt64, accepted: UInt64, dismissed: UInt64 }
    struct SummaryJSON: Encodable { let counts: [CountJSON], replicas: [SenderJSON] }

    func run() throws {
        let store = try hub.openReadOnly()
        let summary = try Output.run { try store.quarantineSummary() }
        if json {
            try Output.json(SummaryJSON(
                counts: summary.counts.map { CountJSON(reason: $0.reason, state: $0.state, count: $0.count) },
                replicas: summary.senders.map {
                    SenderJSON(replicaID: $0.replica, team: OperatorText.escaped($0.team), held: $0.held, accepted: $0.accepted, dismissed: $0.dismissed)
                }))
            return
        }
        Output.table(["REASON", "STATE", "COUNT"], summary.counts.map { [$0.reason, $0.state, String($0.count)] })
        Output.table(["FROM REPLICA", "TEAM", "HELD", "ACCEPTED", "DISMISSED"], summary.senders.map {
            [$0.replica, OperatorText.escaped($0.team), String($0.held), String($0.accepted), String($0.dismissed)]
        })
        let total = summary.counts.reduce(0) { $0 + $1.count }
        Output.line("\(total) quarantined write(s)")
    }
}
