import Foundation
import GRDB
import SyncCore

/// hub-v8-review: the review state of each quarantined write (Protocol/scope.md, "Quarantine
/// review"). `reason` is a code (`OUT_OF_SCOPE`, `RESTRICTED`, `UNSCOPED`), `state` is `held`,
/// `accepted` or `dismissed`, and a resolved item names the replica that decided and when. No
/// reviewer's text reaches the hub: a dismissal's reason stays on the replica that decided.
enum HubReviewSchema {
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE hub_quarantine ADD COLUMN reason TEXT NOT NULL DEFAULT 'OUT_OF_SCOPE';
            ALTER TABLE hub_quarantine ADD COLUMN state TEXT NOT NULL DEFAULT 'held';
            ALTER TABLE hub_quarantine ADD COLUMN resolved_by TEXT;
            ALTER TABLE hub_quarantine ADD COLUMN resolved_at INTEGER;
            UPDATE hub_quarantine SET reason = 'UNSCOPED' WHERE scope = '';
            CREATE INDEX hub_quarantine_by_scope ON hub_quarantine (scope, state);
            """)
    }

    /// The stored state of an item resolved by `verdict`.
    static func state(_ verdict: HeldVerdict) -> String {
        switch verdict {
        case .accept: "accepted"
        case .dismiss: "dismissed"
        }
    }
}

/// A page of the writes held for one replica's review.
public struct HeldPage: Equatable, Sendable {
    /// The items, ascending by change id.
    public let items: [HeldItem]
    /// Whether the budget or count cut the page short.
    public let more: Bool

    /// A page of `items`; `more` when more follow.
    public init(items: [HeldItem], more: Bool) {
        self.items = items
        self.more = more
    }
}

/// The operator's view of the quarantine: counts only, by reason and state, and per sending
/// replica (its hex id and team). Never a table, row, scope, value or reviewer's text.
public struct QuarantineSummary: Equatable, Sendable {
    /// Items of one reason in one state.
    public struct Count: Equatable, Sendable {
        /// `OUT_OF_SCOPE`, `RESTRICTED` or `UNSCOPED`.
        public let reason: String
        /// `held`, `accepted` or `dismissed`.
        public let state: String
        /// How many.
        public let count: UInt64

        /// `count` items of `reason` in `state`.
        public init(reason: String, state: String, count: UInt64) {
            self.reason = reason
            self.state = state
            self.count = count
        }
    }

    /// The items one replica pushed, by state.
    public struct Sender: Equatable, Sendable {
        /// The replica that pushed them (hex id).
        public let replica: String
        /// Its team, as the registry holds it.
        public let team: String
        /// Still held for review.
        public let held: UInt64
        /// Accepted by a reviewer of the owning team.
        public let accepted: UInt64
        /// Dismissed by a reviewer of the owning team.
        public let dismissed: UInt64

        /// The counts of one sending replica.
        public init(replica: String, team: String, held: UInt64, accepted: UInt64, dismissed: UInt64) {
            self.replica = replica
            self.team = team
            self.held = held
            self.accepted = accepted
            self.dismissed = dismissed
        }
    }

    /// Counts by reason and state, in that order.
    public let counts: [Count]
    /// Counts per sending replica, by its id.
    public let senders: [Sender]
}

extension SQLiteHubStore {
    /// The writes held for `replica`'s review (``HubStore/heldItems(for:after:byteBudget:maxCount:)``):
    /// held items of a scope its team is in the audience of, and of a restricted scope only when
    /// it is on the restriction. Items of the empty scope are held for no one (every team is its
    /// audience: it would be a channel to all of them).
    public func heldItems(for replica: ReplicaID, after: ChangeID?, byteBudget: Int, maxCount: Int) throws -> HeldPage {
        try ReplicaStore.guarded {
            try reads.read { db in
                guard scopeRules != nil, try Self.hasReviewColumns(db), let team = try Self.team(db, of: replica) else {
                    return HeldPage(items: [], more: false)
                }
                let rows = try Row.fetchCursor(db, sql: """
                    SELECT q.from_replica, q.reason, q.received_at, l.bytes, l.seq FROM hub_quarantine q
                    JOIN hub_log l ON l.seq = q.seq JOIN hub_origin o ON o.id = l.origin
                    JOIN hub_audience a ON a.scope = q.scope AND a.team = ?
                    WHERE q.state = 'held' AND q.scope != '' AND (o.replica_id, l.counter) > (?, ?)
                    AND (NOT EXISTS (SELECT 1 FROM hub_restricted r WHERE r.scope = q.scope)
                         OR EXISTS (SELECT 1 FROM hub_acl c WHERE c.scope = q.scope AND c.replica_id = ?))
                    ORDER BY o.replica_id, l.counter
                    """, arguments: [team, after?.replica.hex ?? "", Int64(clamping: after?.counter ?? 0), replica.hex])
                var items: [HeldItem] = []
                var bytes = 0
                while let row = try rows.next() {
                    let change = try Self.storedChange(row[3], seq: row[4])
                    let item = HeldItem(fromReplica: ReplicaID(hex: row[0]) ?? change.id.replica,
                                        reason: HeldReason(name: row[1]) ?? .outOfScope,
                                        receivedAtMillis: UInt64(max(0, row[2] as Int64)), change: change)
                    let size = 34 + ChangeLimits.encodedSize(change)
                    guard items.count < maxCount, items.isEmpty || bytes + size <= byteBudget else {
                        return HeldPage(items: items, more: true)
                    }
                    items.append(item)
                    bytes += size
                }
                return HeldPage(items: items, more: false)
            }
        }
    }

    /// Records `replica`'s decisions on held writes (``HubStore/resolveHeld(_:replica:nowMillis:)``),
    /// durably, with an audit event for each one recorded (`QUARANTINE_RESOLVED`) or refused
    /// (`REJECTED_WRITE`, `REVIEW_REFUSED`).
    public func resolveHeld(_ decisions: [HeldDecision], replica: ReplicaID, nowMillis: UInt64) throws -> [HeldOutcome] {
        guard !decisions.isEmpty else { return [] }
        return try ReplicaStore.guarded {
            try durableWrite { db in
                guard scopeRules != nil, try Self.hasReviewColumns(db) else {
                    return decisions.map { HeldOutcome(change: $0.change, code: .refused) }
                }
                let team = try Self.team(db, of: replica)
                var outcomes: [HeldOutcome] = []
                var events: [AuditEvent] = []
                for decision in decisions {
                    let row = try Row.fetchOne(db.cachedStatement(sql: """
                        SELECT q.seq, q.scope, q.state, l.table_name, l.row_key FROM hub_quarantine q
                        JOIN hub_log l ON l.seq = q.seq JOIN hub_origin o ON o.id = l.origin
                        WHERE o.replica_id = ? AND l.counter = ?
                        """), arguments: [decision.change.replica.hex, Int64(clamping: decision.change.counter)])
                    let verdict = HubReviewSchema.state(decision.verdict).uppercased()
                    guard let row, let team, try Self.holdsForReview(db, scope: row[1], team: team, replica: replica) else {
                        // Not held for this replica: unknown, of the empty scope, or outside its
                        // team's audience or the scope's restriction. Its ids are audited, nothing else.
                        outcomes.append(HeldOutcome(change: decision.change, code: .refused))
                        events.append(AuditEvent(kind: .rejectedWrite, device: replica, change: decision.change, occurredAtMillis: nowMillis,
                                                 receivedAtMillis: nowMillis, detail: "REVIEW_REFUSED \(verdict)"))
                        continue
                    }
                    guard (row[2] as String) == "held" else {
                        outcomes.append(HeldOutcome(change: decision.change, code: .resolvedAlready))
                        continue
                    }
                    try db.cachedStatement(sql: "UPDATE hub_quarantine SET state = ?, resolved_by = ?, resolved_at = ? WHERE seq = ?")
                        .execute(arguments: [HubReviewSchema.state(decision.verdict), replica.hex, Int64(clamping: nowMillis), row[0] as Int64])
                    outcomes.append(HeldOutcome(change: decision.change, code: .recorded))
                    events.append(AuditEvent(kind: .quarantineResolved, device: replica, table: row[3], row: row[4], scope: row[1],
                                             change: decision.change, occurredAtMillis: nowMillis, receivedAtMillis: nowMillis, detail: verdict))
                }
                try recordAudit(events, in: db)
                return outcomes
            }
        }
    }

    /// Whether an item of `scope` is held for `replica` of `team`: its team is in the scope's
    /// audience and, for a restricted scope, it is on the restriction.
    private static func holdsForReview(_ db: Database, scope: String, team: String, replica: ReplicaID) throws -> Bool {
        guard !scope.isEmpty, try audience(db, of: scope).contains(team) else { return false }
        return try restriction(db, of: scope).map { $0.contains(replica.hex) } ?? true
    }

    /// The operator's counts of the quarantine (``QuarantineSummary``); empty for a hub file
    /// from before review.
    public func quarantineSummary() throws -> QuarantineSummary {
        try ReplicaStore.guarded {
            try reads.read { db in
                guard try Self.hasReviewColumns(db) else { return QuarantineSummary(counts: [], senders: []) }
                let counts = try Row.fetchAll(db, sql: """
                    SELECT reason, state, count(*) FROM hub_quarantine GROUP BY reason, state ORDER BY reason, state
                    """).map { QuarantineSummary.Count(reason: $0[0], state: $0[1], count: UInt64(max(0, $0[2] as Int64))) }
                let senders = try Row.fetchAll(db, sql: """
                    SELECT from_replica, team, sum(state = 'held'), sum(state = 'accepted'), sum(state = 'dismissed')
                    FROM hub_quarantine GROUP BY from_replica, team ORDER BY from_replica, team
                    """).map { row in
                    QuarantineSummary.Sender(replica: row[0], team: row[1], held: UInt64(max(0, row[2] as Int64)),
                                             accepted: UInt64(max(0, row[3] as Int64)), dismissed: UInt64(max(0, row[4] as Int64)))
                }
                return QuarantineSummary(counts: counts, senders: senders)
            }
        }
    }

    /// The change stored at hub sequence `seq` (`hub_log.bytes`), decoded.
    static func storedChange(_ bytes: Data, seq: Int64) throws -> Change {
        do {
            return try Change(canonicalBytes: Array(bytes))
        } catch {
            throw StoreError.unreadable("hub change at sequence \(seq)", table: "hub_log", column: "bytes", error)
        }
    }

    static func hasReviewColumns(_ db: Database) throws -> Bool {
        try db.tableExists("hub_quarantine") && db.columns(in: "hub_quarantine").contains { $0.name == "state" }
    }
}
