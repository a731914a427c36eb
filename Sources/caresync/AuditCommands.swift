import ArgumentParser
import SyncCore
import SyncStore

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "The hub's audit trail: every stored change and refused push, chained by hash, the head signed by the hub key.",
        discussion: """
            Examples:
              caresync audit verify --db hub.db
              caresync audit list --db hub.db --after 1000 --limit 50 --json
            Events name ids only (worker, replica, record and young-person ids), kinds, times and short codes, \
            never a record's contents. A hub made before the trail existed starts it empty at its first open.
            """,
        subcommands: [AuditVerifyCommand.self, AuditListCommand.self])
}

struct AuditVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check the audit trail: every event against the hash chain, and the head the hub key signed.",
        discussion: """
            Example: caresync audit verify --db hub.db --json
            Exit 0 when intact; exit 6 with the first broken event and why (CHANGED, REMOVED, TAIL_REMOVED, \
            HEAD_MISMATCH, HEAD_SIGNATURE_INVALID, UNREADABLE) when an event was changed, removed or reordered, \
            the last events were removed, or the head was forged. Keep the printed count and head hash elsewhere: \
            a trail put back to an earlier state as a whole is only seen against them. Reads the file, never writes it.
            """)

    @OptionGroup var hub: HubOptions
    @Flag(help: "Print machine-readable JSON.") var json = false

    func run() throws {
        let store = try hub.openReadOnly()
        let verification = try Output.run { try store.verifyAudit() }
        let head = verification.headHash.hexString
        if json {
            struct Verified: Encodable {
                let intact: Bool, verifiedEvents: UInt64, headSha256: String
                let brokenAt: OrNull<UInt64>, reason: OrNull<String>, message: OrNull<String>
            }
            try Output.json(Verified(intact: verification.isIntact, verifiedEvents: verification.verifiedEvents, headSha256: head,
                                     brokenAt: OrNull(verification.broken?.seq), reason: OrNull(verification.broken?.reason.name),
                                     message: OrNull(verification.broken?.message)))
        }
        guard let broken = verification.broken else {
            if !json { Output.line("audit trail intact: \(verification.verifiedEvents) event(s), head \(head)") }
            return
        }
        throw Output.fail("the audit trail is broken at event \(broken.seq): \(broken.message) (\(verification.verifiedEvents) event(s) verified before it)",
                          code: broken.reason.name, exit: .auditBroken)
    }
}

struct AuditListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List audit events: sequence, kind, worker, device, record and young-person ids, times, code.",
        discussion: """
            Example: caresync audit list --db hub.db --after 1000 --limit 50
            Pages with --after: the last line names the next one. Reads the file, never writes it.
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: ArgumentHelp("Only events after this sequence.", valueName: "seq")) var after: UInt64 = 0
    @Option(help: ArgumentHelp("At most this many events (1 to 10000).", valueName: "n")) var limit = 100
    @Flag(help: "Print machine-readable JSON.") var json = false

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 10000") }
    }

    func run() throws {
        let store = try hub.openReadOnly()
        let records = try Output.run { try store.auditEvents(after: after, limit: limit) }
        // What a peer sent (worker ids, record ids) is shown escaped: no control character reaches the terminal.
        let shown = OperatorText.escaped
        if json {
            struct Event: Encodable {
                let seq: UInt64, kind: String, actor: String, device: OrNull<String>, table: String, row: String, scope: String
                let change: OrNull<String>, occurredAt: String, receivedAt: String, detail: String
            }
            try Output.json(records.map { record in
                let event = record.event
                return Event(seq: record.seq, kind: event.kind.name, actor: shown(event.actor), device: OrNull(event.device?.hex),
                             table: shown(event.table), row: shown(event.row), scope: shown(event.scope), change: OrNull(event.change?.description),
                             occurredAt: Output.iso(event.occurredAtMillis), receivedAt: Output.iso(event.receivedAtMillis), detail: shown(event.detail))
            })
            return
        }
        func dash(_ text: String) -> String { text.isEmpty ? "–" : shown(text) }
        Output.table(["SEQ", "KIND", "ACTOR", "DEVICE", "TABLE", "ROW", "SCOPE", "OCCURRED", "RECEIVED", "DETAIL"], records.map { record in
            let event = record.event
            return [String(record.seq), event.kind.name, dash(event.actor), event.device?.short ?? "–", dash(event.table), dash(event.row),
                    dash(event.scope), Output.iso(event.occurredAtMillis), Output.iso(event.receivedAtMillis), dash(event.detail)]
        })
        let next = records.count == limit ? records.last.map { "; next page: --after \($0.seq)" } ?? "" : ""
        Output.line("\(records.count) event(s) after \(after)\(next)")
    }
}
