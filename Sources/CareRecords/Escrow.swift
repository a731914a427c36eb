import SyncCore

/// Escrow rights over a capped entitlement: a bounded counter (Protocol/entitlements.md).
///
/// Every balance is folded from the append-only ledger, never stored. The hub and each replica
/// fold the same entries with the same code: the hub to keep `committed + outstanding ≤ cap`
/// for every (young person, item, period) and to decide grants; a replica to know the rights it
/// holds and may commit offline.
public enum Escrow {
    /// The origin the hub's entitlement decisions (grants, refusals, flags) are made under. Only
    /// the hub key signs it, so a replica cannot write rights for itself.
    public static let origin = ReplicaID(high: 0, low: 0xE5C2_0)
    /// How long a grant's lease lasts: a month, the longest offline stretch the design plans for
    /// (DOMAIN.md: design 14 days, tested at 30+).
    public static let leaseMillis: UInt64 = 31 * 86_400_000

    /// One ledger entry as the fold reads it.
    public struct Line: Sendable, Equatable {
        /// The entry's id.
        public let id: String
        /// Its kind (nil for a kind this build does not know, which moves nothing).
        public let kind: LedgerKind?
        /// The item and period it counts against.
        public let item: String
        /// The cap period.
        public let period: String
        /// Its amount in the item's unit (pence or a count), never negative.
        public let amount: Int64
        /// The grant it moves (a commit, release, return or burn under a grant).
        public let grant: String?
        /// For a grant, the replica that holds it (hex).
        public let holder: String?
        /// For a grant, when its lease ends (Unix ms, hub time).
        public let expiresAtMillis: Int64?
        /// The award or rights request a grant answers.
        public let request: String?
        /// The award it belongs to.
        public let award: String?
        /// The origin that wrote the entry; nil when unknown.
        public let origin: ReplicaID?
    }

    /// One grant of rights, folded.
    public struct Grant: Sendable, Equatable {
        /// The grant entry's id.
        public let id: String
        /// The replica that holds it (hex).
        public let holder: String
        /// What was granted.
        public let granted: Int64
        /// When its lease ends (Unix ms).
        public let expiresAtMillis: Int64
        /// The request it answers.
        public let request: String?
        /// What is used by commits and reservations, less releases into it.
        public internal(set) var used: Int64 = 0
        /// What the holder gave back.
        public internal(set) var returned: Int64 = 0
        /// Whether the hub wrote it off (the holder was declared lost).
        public internal(set) var burned = false

        /// Rights still outstanding: granted, less used and given back; never negative.
        public var remaining: Int64 { max(0, granted - used - returned) }
        /// Used beyond what was granted (by commits the grant did not cover).
        public var overdrawn: Int64 { max(0, used + returned - granted) }
    }

    /// One (young person, item, period) account, folded.
    public struct Account: Sendable, Equatable {
        /// The item code.
        public let item: String
        /// The cap period.
        public let period: String
        /// Committed spend: commits, less releases and refunds, plus adjustments.
        public internal(set) var committed: Int64 = 0
        /// Every grant of the hub's, by id.
        public internal(set) var grants: [String: Grant] = [:]
        /// Commits no grant of its writer covers (no grant, another's grant, or beyond it).
        public internal(set) var uncovered: [String] = []
        /// Grants not written by the hub's origin: not counted.
        public internal(set) var forged: [String] = []

        /// Rights granted and neither used, given back nor lapsed by a return: outstanding.
        public var outstanding: Int64 { grants.values.reduce(0) { $0 &+ $1.remaining } }
    }

    /// What `origin` wrote to a written-once field; nil when it wrote nothing there.
    ///
    /// A grant is read only from the escrow origin's own writes: a written-once field keeps its
    /// earliest write first, so another origin's write to a grant row stamped before the hub's
    /// (any replica sets its own clock) would otherwise give the grant another holder or amount.
    public static func value(of state: FieldState?, by origin: ReplicaID) -> FieldValue? {
        guard case let .immutable(register)? = state else { return nil }
        return register.writes.first { $0.id.replica == origin }?.value
    }

    /// An entry's amount from every value written to its amount field (a written-once field keeps
    /// another origin's differing write beside the first, and the earlier stamped first): at its
    /// worst for the cap, the largest for spend and the smallest for what is given back, so a write
    /// to another replica's commit cannot shrink it. Never negative.
    public static func amount(_ state: FieldState?, kind: LedgerKind?) -> Int64 {
        guard case let .immutable(register)? = state else { return 0 }
        let values = register.writes.compactMap { $0.value.integerValue }.map { max(0, $0) }
        switch kind {
        case .commit?, .partialCommit?, .reserve?: return values.max() ?? 0
        default: return values.min() ?? 0
        }
    }

    /// What is committed toward one award: its commits and partial commits, less its releases.
    public static func committed(toward award: String, in lines: [Line]) -> Int64 {
        lines.filter { $0.award == award }.reduce(Int64(0)) { total, line in
            switch line.kind {
            case .commit?, .partialCommit?: total.addingSaturated(line.amount)
            case .release?: total.addingSaturated(-line.amount)
            default: total
            }
        }
    }

    /// The accounts the lines make, keyed `item|period`. Grants count only when `trusted` says
    /// their writer is the hub's origin; a commit counts against its grant only when written by
    /// the grant's holder. Saturating: entries can come from any replica.
    public static func accounts(_ lines: [Line], trusted: (Line) -> Bool) -> [String: Account] {
        var accounts: [String: Account] = [:]
        func key(_ line: Line) -> String { line.item + "|" + line.period }
        for line in lines where line.kind == .grantRights {
            var account = accounts[key(line)] ?? Account(item: line.item, period: line.period)
            if trusted(line), let holder = line.holder {
                account.grants[line.id] = Grant(id: line.id, holder: holder, granted: line.amount, expiresAtMillis: line.expiresAtMillis ?? 0,
                                                request: line.request)
            } else {
                account.forged.append(line.id)
            }
            accounts[key(line)] = account
        }
        // What each award committed, by account: a release or refund gives back at most that (one
        // naming no award, or beyond its award's commits, would make room under the cap for nothing).
        var backing: [String: Int64] = [:]
        for line in lines where line.kind == .commit || line.kind == .partialCommit {
            guard let award = line.award else { continue }
            backing[key(line) + "|" + award] = (backing[key(line) + "|" + award] ?? 0).addingSaturated(line.amount)
        }
        func backed(_ line: Line) -> Int64 {
            guard let award = line.award else { return 0 }
            let amount = min(line.amount, max(0, backing[key(line) + "|" + award] ?? 0))
            backing[key(line) + "|" + award] = (backing[key(line) + "|" + award] ?? 0) - amount
            return amount
        }
        for line in lines.sorted(by: { $0.id < $1.id }) {
            guard let kind = line.kind, kind != .grantRights, kind != .requestRights else { continue }
            var account = accounts[key(line)] ?? Account(item: line.item, period: line.period)
            let grantID = line.grant.flatMap { account.grants[$0] != nil ? $0 : nil }
            var grant = grantID.flatMap { account.grants[$0] }
            let byHolder = grant.map { line.origin == nil || line.origin?.hex == $0.holder } ?? false
            switch kind {
            case .commit, .partialCommit:
                account.committed = account.committed.addingSaturated(line.amount)
                if var covered = grant, byHolder, covered.remaining >= line.amount {
                    covered.used = covered.used.addingSaturated(line.amount)
                    grant = covered
                } else {
                    account.uncovered.append(line.id)
                }
            case .reserve:
                if var covered = grant, byHolder { covered.used = covered.used.addingSaturated(line.amount); grant = covered }
            case .release:
                let amount = backed(line)
                account.committed = account.committed.addingSaturated(-amount)
                if var into = grant, byHolder { into.used = max(0, into.used.addingSaturated(-amount)); grant = into }
            case .refund:
                account.committed = account.committed.addingSaturated(-backed(line))
            case .adjust:
                if trusted(line) { account.committed = account.committed.addingSaturated(line.amount) }
            case .returnRights, .expireRights:
                if var back = grant, byHolder { back.returned = back.returned.addingSaturated(line.amount); grant = back }
            case .burnRights:
                if var lost = grant, trusted(line) { lost.burned = true; grant = lost }
            case .grantRights, .requestRights:
                break
            }
            if let grantID, let grant { account.grants[grantID] = grant }
            accounts[key(line)] = account
        }
        return accounts
    }
}

extension Int64 {
    /// Adds without trapping: entries can come from any replica.
    func addingSaturated(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
