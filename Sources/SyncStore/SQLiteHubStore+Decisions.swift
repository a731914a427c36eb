import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The hub's merge checks and decisions (Protocol/entitlements.md): after a replica's push, the
/// rules look at each scope it changed, in the hub's merged view, and the hub writes what they
/// decide (escrow grants, refusals, flags) as its own signed changes, in the push's transaction.
/// The push and its consequences are durable together, or not at all.
enum HubDecisionSchema {
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE hub_contact (replica_id TEXT PRIMARY KEY, last_push_ms INTEGER NOT NULL) WITHOUT ROWID;
            UPDATE hub_scope_state SET built = 0;
            """)
    }
}

extension SQLiteHubStore {
    /// Runs the rules over each scope `routing` found checked changes in, and appends the hub's
    /// decisions, one signed run per scope. Nothing for the hub's own pushes (its decisions are
    /// not decided about again) or without a decision origin.
    func decide(_ db: Database, after routing: Routing, pusher: ReplicaID, nowMillis: UInt64) throws {
        guard let rules = scopeRules, let origin = rules.decisionOrigin, let signingKey, pusher != hubID, !hubKeyed.contains(pusher) else { return }
        let previous = try Int64.fetchOne(db.cachedStatement(sql: "SELECT last_push_ms FROM hub_contact WHERE replica_id = ?"),
                                          arguments: [pusher.hex]).map { UInt64(max(0, $0)) }
        try db.cachedStatement(sql: """
            INSERT INTO hub_contact (replica_id, last_push_ms) VALUES (?, ?)
            ON CONFLICT (replica_id) DO UPDATE SET last_push_ms = max(last_push_ms, excluded.last_push_ms)
            """).execute(arguments: [pusher.hex, Int64(clamping: nowMillis)])
        let scopes = routing.checked.keys.filter { !$0.isEmpty }.sorted()
        guard !scopes.isEmpty else { return }
        var replicas: [String: String] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT replica_id, team FROM hub_replica WHERE revoked_at IS NULL") {
            replicas[row[0]] = row[1]
        }
        let shared = try view(db, of: "")
        let team = try Self.team(db, of: pusher)
        for scope in scopes {
            let context = DecisionContext(pusher: pusher, pusherTeam: team, arrived: routing.checked[scope] ?? [], nowMillis: nowMillis,
                                          previousContactMillis: previous, replicas: replicas)
            let decisions = rules.decide(try view(db, of: scope), shared: shared, context: context)
            guard !decisions.isEmpty else { continue }
            let after = context.arrived.map(\.timestamp).max() ?? HybridTimestamp(physicalMillis: nowMillis, logical: 0)
            let changes = try decisionChanges(db, decisions, scope: scope, origin: origin, after: after)
            let heads = try signedHeads(HubLedger(db: db, store: self), origin, changes, key: signingKey)
            _ = try appendOne(db, HubPush(changes: changes, replica: hubID, provenance: Provenance(sorting: heads), receivedAtMillis: nowMillis))
        }
    }

    /// The decisions as changes of `origin`, counters following what the hub holds of it. Each is
    /// stamped just after the later of `after` (the latest change the decision answers) and the
    /// origin's previous decision, never at the hub's wall clock: a hub clock running ahead would
    /// make every replica refuse the decision (CLOCK_SKEW) for good, and replicas take the
    /// pushed changes themselves already.
    private func decisionChanges(_ db: Database, _ decisions: [HubDecision], scope: String, origin: ReplicaID,
                                 after: HybridTimestamp) throws -> [Change] {
        let held = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT o.contiguous, (SELECT l.bytes FROM hub_log l WHERE l.origin = o.id ORDER BY l.counter DESC LIMIT 1)
            FROM hub_origin o WHERE o.replica_id = ?
            """), arguments: [origin.hex])
        var counter = UInt64(max(0, (held?[0] as Int64?) ?? 0))
        let previous = (held?[1] as Data?).flatMap { try? Change(canonicalBytes: Array($0)).timestamp }
        var stamp = max(after, previous ?? after)
        func tick() -> HybridTimestamp {
            stamp = stamp.logical == UInt16.max ? HybridTimestamp(physicalMillis: stamp.physicalMillis &+ 1, logical: 0)
                : HybridTimestamp(physicalMillis: stamp.physicalMillis, logical: stamp.logical + 1)
            return stamp
        }
        return try decisions.map { decision in
            counter += 1
            let length = decision.creates ? 1 : UInt64(max(1, try Int64.fetchOne(db.cachedStatement(sql: """
                SELECT causal_length FROM hub_view_row WHERE table_name = ? AND row_key = ?
                """), arguments: [decision.table, decision.row]) ?? 1))
            return Change(id: ChangeID(replica: origin, counter: counter), timestamp: tick(),
                          author: "hub", table: decision.table, row: decision.row, scope: scope, causalLength: length,
                          setsLife: decision.creates,
                          fields: decision.values.keys.sorted().map { FieldEdit(column: $0, operation: .assign(decision.values[$0]!)) })
        }
    }
}

extension SQLiteHubStore {
    /// The hub's merged view of one scope (deciding and checked columns); the empty scope is the
    /// unscoped rows (the catalogue). For the application's hub-side reports (escrow totals).
    ///
    /// - Throws: ``StoreError`` when the store cannot be read.
    public func scopeView(_ scope: String) throws -> ScopeView {
        try ReplicaStore.guarded { try reads.read { db in try view(db, of: scope) } }
    }

    /// Every scope the hub's view holds rows of `table` in, sorted.
    ///
    /// - Throws: ``StoreError`` when the store cannot be read.
    public func scopes(holding table: String) throws -> [String] {
        try ReplicaStore.guarded {
            try reads.read { db in
                try String.fetchAll(db, sql: "SELECT DISTINCT scope FROM hub_view_row WHERE table_name = ? AND scope != '' ORDER BY scope",
                                    arguments: [table])
            }
        }
    }
}

extension SQLiteHubStore {
    /// Writes decisions the application made outside a push (an operator's: the burn of a lost
    /// replica's rights) as the hub's changes of the rules' decision origin, signed, durable on return.
    ///
    /// - Throws: ``StoreError`` `.database` without rules that decide, or when the store cannot be written.
    public func publish(decisions: [HubDecision], scope: String, nowMillis: UInt64) throws {
        guard !decisions.isEmpty else { return }
        guard let origin = scopeRules?.decisionOrigin, let signingKey else {
            throw StoreError(.database, "this hub store has no rules that decide, or is read-only", path: path)
        }
        try ReplicaStore.guarded {
            try durableWrite { db in
                let changes = try decisionChanges(db, decisions, scope: scope, origin: origin,
                                                  after: HybridTimestamp(physicalMillis: nowMillis, logical: 0))
                let heads = try signedHeads(HubLedger(db: db, store: self), origin, changes, key: signingKey)
                _ = try appendOne(db, HubPush(changes: changes, replica: hubID, provenance: Provenance(sorting: heads), receivedAtMillis: nowMillis))
            }
        }
    }
}
