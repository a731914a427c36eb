import ArgumentParser
import CareRecords
import Foundation
import SyncCore
import SyncStore

/// What an award request or commit did, as `--json` prints it.
struct AwardOutcomeJSON: Encodable {
    let id: String, status: String, committed: Int64, waiting: Int64, availableHere: Int64, unit: String, note: String?

    init(_ outcome: AwardOutcome) {
        (id, status, committed, waiting, availableHere) = (outcome.award, outcome.status, outcome.committed, outcome.waiting, outcome.availableHere)
        unit = outcome.counted ? "count" : "pence"
        note = outcome.note
    }

    static func print(_ outcome: AwardOutcome, json: Bool) throws {
        if json { try Output.json(AwardOutcomeJSON(outcome)); return }
        Output.line("\(outcome.award) \(outcome.status)" + (outcome.note.map { ": " + $0 } ?? ""))
    }
}

struct AwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "award", abstract: "Commit, release or refund an entitlement award (request one with `request-award`).",
        discussion: """
            Example: caresync award commit <award id> --partial
            A capped award commits only within the spend rights this replica holds (granted by the hub, \
            under a lease); beyond them it waits as a request, and the hub grants the rights at a sync \
            if the cap allows, or refuses it (CAP_REACHED). See `caresync rights`.
            """,
        subcommands: [AwardCommitCommand.self, AwardReleaseCommand.self, AwardRefundCommand.self])
}

struct AwardCommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit", abstract: "Commit a waiting award within the rights held here.",
        discussion: """
            Examples:
              caresync award commit <award id>
              caresync award commit <award id> --partial
              caresync award commit <award id> --override 'eviction tomorrow; head of service phoned'
            Exit 2 (NO_RIGHTS) when the rights held here cover none of it: it still waits. --partial \
            commits what the rights cover and leaves the rest waiting. --override commits beyond the \
            rights for an emergency: kept, and flagged OVER_CAP by the hub for the head of service.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The award's id.") var award: String
    @Flag(help: "Commit as much as the rights held cover; the rest keeps waiting.") var partial = false
    @Option(help: ArgumentHelp("Commit beyond the rights held, for this emergency reason (flagged OVER_CAP at the hub).", valueName: "reason"))
    var override: String?

    func run() throws {
        let replica = try options.open()
        let outcome = try Output.run { try replica.commitAward(award, partial: partial, override: override, author: options.worker) }
        try AwardOutcomeJSON.print(outcome, json: options.json)
    }
}

struct AwardReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release", abstract: "Cancel an award: its commits are released (into the grant they used, while its lease runs).",
        discussion: "Example: caresync award release <award id> --reason 'trip cancelled'\nThe ledger keeps the commit and its release; the award becomes cancelled.")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The award's id.") var award: String
    @Option(help: "Why it is cancelled.") var reason: String

    func run() throws {
        let replica = try options.open()
        try Output.run { try replica.releaseAward(award, reason: reason, author: options.worker) }
        if options.json { try Output.json(["id": award, "status": AwardStatus.cancelled.rawValue]) } else { Output.line("\(award) cancelled") }
    }
}

struct AwardRefundCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refund", abstract: "Record money (or a count) that came back for a committed award.",
        discussion: "Example: caresync award refund <award id> --amount £120.00 --reason 'deposit returned'\nCommitted spend goes down; the hub can grant the amount again.")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The award's id.") var award: String
    @Option(help: ArgumentHelp("Pence (12000), pounds (£120.00), or a count for a counted item.", valueName: "amount")) var amount: String
    @Option(help: "Why it came back.") var reason: String

    func run() throws {
        let replica = try options.open()
        try Output.run {
            guard let code = try replica.list("award", where: ["id": award]).first?["item_code"]?.textValue else {
                throw CareError(.notFound, "no award \(award) on this replica", kind: "award", id: award)
            }
            try replica.refundAward(award, amount: try replica.amount(amount, item: code), reason: reason, author: options.worker)
        }
        if options.json { try Output.json(["id": award, "refunded": amount]) } else { Output.line("\(award) refund of \(amount) recorded") }
    }
}

struct RightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rights", abstract: "Spend rights held here (escrow): see them, ask the hub for more, give them back.",
        discussion: """
            Example: caresync rights show --json
            The hub owns each cap per young person, item and period, and grants rights to replicas \
            under a lease (31 days). An award commits offline only within rights held here. Rights \
            whose lease ended go back at the next sync by themselves.
            """,
        subcommands: [RightsShowCommand.self, RightsRequestCommand.self, RightsReturnCommand.self], defaultSubcommand: RightsShowCommand.self)
}

struct RightsShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "The rights this replica holds, and what is available locally, per young person and item.",
        discussion: "Example: caresync rights show --person <id> --json")

    @OptionGroup var options: ReplicaOptions
    @Option(help: ArgumentHelp("Only this young person.", valueName: "id")) var person: String?

    struct RightsJSON: Encodable {
        let ypID: String, item: String, period: String, unit: String, availableHere: Int64, lapsed: Int64, committed: Int64, grants: [GrantJSON]
    }
    struct GrantJSON: Encodable { let id: String, granted: Int64, remaining: Int64, expiresAt: String }

    func run() throws {
        let replica = try options.open(.readOnly)
        let rights = try Output.run { try replica.heldRights(person: person) }
        if options.json {
            try Output.json(rights.map { held in
                RightsJSON(ypID: held.person, item: held.item, period: held.period, unit: held.counted ? "count" : "pence",
                           availableHere: held.available, lapsed: held.lapsed, committed: held.committed,
                           grants: held.grants.map { GrantJSON(id: $0.id, granted: $0.granted, remaining: $0.remaining,
                                                               expiresAt: Output.iso(UInt64(max(0, $0.expiresAtMillis)))) })
            })
            return
        }
        if rights.isEmpty { Output.line("no rights held here"); return }
        Output.table(["YOUNG PERSON", "ITEM", "PERIOD", "AVAILABLE HERE", "LAPSED", "COMMITTED", "LEASE ENDS"], rights.map { held in
            [held.person, held.item, held.period, held.format(held.available), held.format(held.lapsed), held.format(held.committed),
             held.grants.map(\.expiresAtMillis).min().map { Output.iso(UInt64(max(0, $0))) } ?? "–"]
        })
    }
}

struct RightsRequestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request", abstract: "Ask the hub for rights ahead of awards (granted at the next sync if the cap allows).",
        discussion: "Examples:\n  caresync rights request --person <id> --item STUDY_VISIT --amount 1\n  caresync rights request --person <id> --item HOME_SETUP --amount £500.00")

    @OptionGroup var options: ReplicaOptions
    @Option(help: ArgumentHelp("The young person.", valueName: "id")) var person: String
    @Option(help: ArgumentHelp("The catalogue item code.", valueName: "code")) var item: String
    @Option(help: ArgumentHelp("A count, or pence (50000) or pounds (£500.00).", valueName: "amount")) var amount: String

    func run() throws {
        let replica = try options.open()
        let id = try Output.run {
            try replica.requestRights(person: person, item: item, amount: try replica.amount(amount, item: item), author: options.worker)
        }
        if options.json { try Output.json(["id": id, "kind": "request_rights"]) } else { Output.line("\(id) rights requested; granted at the next sync if the cap allows") }
    }
}

struct RightsReturnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "return", abstract: "Give rights back to the hub: lapsed ones, or with --all every grant held here.",
        discussion: "Example: caresync rights return --all\nThe hub moves returned rights to requests that wait elsewhere at the next sync.")

    @OptionGroup var options: ReplicaOptions
    @Flag(help: "Give back live grants too, not only lapsed ones.") var all = false

    func run() throws {
        let replica = try options.open()
        let count = try Output.run { try replica.returnRights(all: all, author: options.worker) }
        if options.json { try Output.json(["grants_returned": count]) } else { Output.line("\(count) grant(s) given back; the hub learns at the next sync") }
    }
}

struct FlagsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flags", abstract: "Rules broken at merge (OVER_CAP, CAP_REACHED, ELIGIBILITY_LOST…): list and resolve them.",
        discussion: """
            Example: caresync flags list --open
            The hub raises a flag when a merge breaks a rule; nothing is deleted, and the flag names \
            the role that resolves it. Codes: \(FlagCode.allCases.map(\.rawValue).joined(separator: ", ")).
            """,
        subcommands: [FlagsListCommand.self, FlagsResolveCommand.self], defaultSubcommand: FlagsListCommand.self)
}

struct FlagsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List flags: id, code, what it is about, the role it is routed to, status.",
        discussion: "Example: caresync flags list --open --json")

    @OptionGroup var options: ReplicaOptions
    @Flag(help: "Only open flags.") var open = false

    func run() throws {
        let replica = try options.open(.readOnly)
        let flags = try Output.run { try replica.flags(openOnly: open) }
        if options.json { try Output.json(flags.map(Output.record)); return }
        if flags.isEmpty { Output.line(open ? "no open flags" : "no flags"); return }
        Output.table(["FLAG", "CODE", "ABOUT", "ROUTED TO", "DETAIL", "STATUS", "RESOLVED BY"], flags.map { flag in
            func text(_ column: String) -> String { flag[column]?.textValue ?? "–" }
            return [text("id"), text("code"), text("subject_kind") + " " + text("subject_id"), text("routed_to"), text("detail"), text("status"),
                    text("resolved_by")]
        })
    }
}

struct FlagsResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve", abstract: "Resolve a flag, saying how; who resolved it is stored with it and syncs.",
        discussion: "Example: caresync flags resolve <flag id> --resolution 'exception granted by head of service' --as morgan")

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "The flag's id.") var flag: String
    @Option(help: "How it was resolved.") var resolution: String

    func run() throws {
        let replica = try options.open()
        try Output.run { try replica.resolveFlag(flag, resolution: resolution, author: options.worker) }
        if options.json { try Output.json(["id": flag, "status": "resolved"]) } else { Output.line("\(flag) resolved") }
    }
}

struct HubEscrowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow", abstract: "Escrow totals per catalogue item (counts and sums only), and rights stranded on replicas not seen lately.",
        discussion: """
            Example: caresync hub escrow --db hub.db --stranded-days 14 --json
            Per item: accounts, committed, rights outstanding, accounts over their cap. Stranded: rights \
            outstanding on replicas the hub has not seen for more than --stranded-days days (declare a \
            lost device with `caresync hub revoke`; its rights are then never granted again). No young \
            person's id, name or record appears.
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: "Days without contact after which a replica's rights count as stranded.") var strandedDays: UInt64 = 14
    @Flag(help: "Print machine-readable JSON.") var json = false

    struct ItemJSON: Encodable {
        let item: String, unit: String, accounts: Int, committed: Int64, outstanding: Int64, overCap: Int, stranded: Int64, strandedReplicas: Int
    }

    func run() throws {
        let store = try Output.run { try SQLiteHubStore(readingAt: hub.db, scopeRules: CareScopeRules()) }
        let now = SystemWallClock().nowMillis()
        let (accounts, summaries) = try Output.run { (try HubEscrow.accounts(store, nowMillis: now), try store.replicaSummaries()) }
        let cutoff = now > strandedDays * 86_400_000 ? now - strandedDays * 86_400_000 : 0
        let quiet = Set(summaries.filter { ($0.lastSeenMillis ?? 0) < cutoff }.map(\.replica.hex))
        let totals = Dictionary(grouping: accounts, by: \.account.item).keys.sorted().map { item -> ItemJSON in
            let entries = accounts.filter { $0.account.item == item }
            let grants = entries.flatMap(\.account.grants.values)
            let stranded = grants.filter { quiet.contains($0.holder) && $0.remaining > 0 }
            return ItemJSON(item: item, unit: HubEscrow.isCounted(item) ? "count" : "pence", accounts: entries.count,
                            committed: entries.reduce(0) { $0 &+ $1.account.committed }, outstanding: entries.reduce(0) { $0 &+ $1.account.outstanding },
                            overCap: entries.filter { entry in entry.cap.map { entry.account.committed > $0 } ?? false }.count,
                            stranded: stranded.reduce(0) { $0 &+ $1.remaining }, strandedReplicas: Set(stranded.map(\.holder)).count)
        }
        if json { try Output.json(totals); return }
        if totals.isEmpty { Output.line("no escrow accounts yet"); return }
        Output.table(["ITEM", "UNIT", "ACCOUNTS", "COMMITTED", "OUTSTANDING", "OVER CAP", "STRANDED", "ON REPLICAS"], totals.map { total in
            [total.item, total.unit, String(total.accounts), String(total.committed), String(total.outstanding), String(total.overCap),
             String(total.stranded), String(total.strandedReplicas)]
        })
        Output.line("stranded: rights on replicas not seen for more than \(strandedDays) day(s)")
    }
}
