import GRDB
import SyncCore

/// `hub_purge`: the purges the hub owes each replica (Protocol/scope.md, "Purge"). A row is owed
/// while `acked_at` is NULL; an acknowledged row keeps `acked_at`, so the operator sees when each
/// replica purged what it was told to. Scopes are young people's ids: the operator view shows
/// counts only.
enum HubPurgeSchema {
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE hub_purge (
              replica_id TEXT NOT NULL, scope TEXT NOT NULL, owed_at INTEGER NOT NULL, acked_at INTEGER,
              PRIMARY KEY (replica_id, scope));
            """)
    }
}

extension SQLiteHubStore {
    /// The scopes owed to `replica` and not acknowledged (``HubStore/purgesOwed(replica:limit:)``).
    /// SQLite compares TEXT with memcmp, so `ORDER BY scope` is ascending by UTF-8 bytes.
    public func purgesOwed(replica: ReplicaID, limit: Int) throws -> [String] {
        guard limit > 0 else { return [] }
        return try ReplicaStore.guarded {
            try reads.read { db in
                guard try Self.hasPurgeTable(db) else { return [] }
                return try String.fetchAll(db.cachedStatement(sql: """
                    SELECT scope FROM hub_purge WHERE replica_id = ? AND acked_at IS NULL ORDER BY scope LIMIT ?
                    """), arguments: [replica.hex, limit])
            }
        }
    }

    /// Marks the purges of `scopes` owed to `replica` acknowledged, durably
    /// (``HubStore/acknowledgePurges(_:replica:nowMillis:)``); a scope not owed is left alone.
    public func acknowledgePurges(_ scopes: [String], replica: ReplicaID, nowMillis: UInt64) throws {
        guard !scopes.isEmpty else { return }
        try durableWrite { db in
            var events: [AuditEvent] = []
            for scope in scopes {
                try db.cachedStatement(sql: "UPDATE hub_purge SET acked_at = ? WHERE replica_id = ? AND scope = ? AND acked_at IS NULL")
                    .execute(arguments: [Int64(clamping: nowMillis), replica.hex, scope])
                if db.changesCount > 0 {
                    events.append(AuditEvent(kind: .purge, device: replica, scope: scope, occurredAtMillis: nowMillis, receivedAtMillis: nowMillis,
                                             detail: "ACKNOWLEDGED"))
                }
            }
            try recordAudit(events, in: db)
        }
    }

    /// Owes a purge of `scope` to each of `replicas`, inside the caller's write transaction (a
    /// scope out: Protocol/scope.md, "The feed"). A purge owed already keeps its time; one
    /// acknowledged before is owed again from `nowMillis`.
    package func owePurge(_ scope: String, replicas: [ReplicaID], nowMillis: UInt64, in db: Database) throws {
        let now = Int64(clamping: nowMillis)
        for replica in replicas {
            try db.execute(sql: """
                INSERT INTO hub_purge (replica_id, scope, owed_at, acked_at) VALUES (?, ?, ?, NULL)
                ON CONFLICT (replica_id, scope) DO UPDATE SET owed_at = excluded.owed_at, acked_at = NULL WHERE acked_at IS NOT NULL
                """, arguments: [replica.hex, scope, now])
        }
    }

    /// Owes a purge of `scope` to each of `replicas` in a durable transaction of its own: for tools
    /// and tests that owe one outside a scope out.
    package func owePurge(_ scope: String, replicas: [ReplicaID], nowMillis: UInt64) throws {
        try durableWrite { db in try owePurge(scope, replicas: replicas, nowMillis: nowMillis, in: db) }
    }

    /// Cancels the purges of `scope` owed to `replicas` and not yet acknowledged, inside the
    /// caller's write transaction (a scope in: the bundle is sent again). Acknowledged ones stay,
    /// as the record that those replicas purged.
    package func cancelPurge(_ scope: String, replicas: [ReplicaID], in db: Database) throws {
        for replica in replicas {
            try db.execute(sql: "DELETE FROM hub_purge WHERE replica_id = ? AND scope = ? AND acked_at IS NULL",
                           arguments: [replica.hex, scope])
        }
    }

    /// Cancels purges of `scope` in a durable transaction of its own (as the owing overload).
    package func cancelPurge(_ scope: String, replicas: [ReplicaID]) throws {
        try durableWrite { db in try cancelPurge(scope, replicas: replicas, in: db) }
    }

    /// Purges owed to `replica` (not acknowledged), or acknowledged by it: for the operator view.
    static func purgeCount(_ db: Database, replica: ReplicaID, acknowledged: Bool) throws -> UInt64 {
        guard try hasPurgeTable(db) else { return 0 }
        let sql = "SELECT count(*) FROM hub_purge WHERE replica_id = ? AND acked_at IS \(acknowledged ? "NOT NULL" : "NULL")"
        return UInt64(max(0, try Int64.fetchOne(db, sql: sql, arguments: [replica.hex]) ?? 0))
    }
}

extension SQLiteHubStore {
    /// A hub file made before purges, opened read-only (so not migrated), has no `hub_purge`: it owes none.
    static func hasPurgeTable(_ db: Database) throws -> Bool { try db.tableExists("hub_purge") }
}
