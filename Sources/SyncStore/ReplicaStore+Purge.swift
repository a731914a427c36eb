import Foundation
import GRDB
import SyncCore

/// What a purge removed: counts only, never ids or values.
public struct PurgeSummary: Equatable, Sendable {
    /// Row references removed (`sync_row`): the bundle's rows, deleted ones included. Each live one
    /// had a domain row, removed with it.
    public var rows = 0
    /// Changes removed from the log (`sync_change`), parked ones included.
    public var changes = 0
    /// Field states removed (`sync_field`), open conflicts and quarantined writes included.
    public var fields = 0
    /// Writes held for review removed (`sync_held`), decided ones included.
    public var held = 0

    /// Nothing removed.
    public init() {}

    /// Whether the purge found nothing of the scope.
    public var isEmpty: Bool { rows == 0 && changes == 0 && fields == 0 && held == 0 }
}

/// Purging a young person's bundle (issue 10, "Scope changes"): the hub tells a replica that its
/// team is no longer involved, and the replica removes every trace of the bundle from the file,
/// its free pages and its WAL.
///
/// What stays, and why (no value, row id, timestamp or author of the bundle is among it):
/// - `sync_purged`: per purged change, its origin, counter and chain hash (`chain(c)`,
///   Protocol/identity.md). The chain of an origin's log runs through every change, whichever
///   young person it is about, so a replica that dropped the chain of its purged changes could not
///   verify the origin's next run (it starts at `chain(c)` of the last change held) nor chain its
///   own next edit. `heldChain` reads these when the change itself is gone; the contiguous counter
///   steps over them, so the replica does not ask again for what it purged on purpose. A chain
///   hash is a SHA-256 commitment to the whole change (its row id, timestamp and values with
///   everything before it): it confirms only an exact guess of all of it.
/// - `sync_head`: signed heads are an origin's signature over (origin, counter, chain): nothing of
///   a change's content. They stay as evidence should the origin ever sign other bytes under the
///   same counter (`heldHeads` reads a purged counter's chain from `sync_purged`).
/// - `sync_origin`, `sync_peer`, `sync_state`: replica ids and counters.
/// - `sync_name`: table and column names; an author name stays only while a change still held
///   names it.
extension ReplicaStore {
    /// The migration that adds `sync_purged` and the owed-reclaim flag.
    static let purgeMigration = "sync-v6-purge"

    static func migrateToPurge(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE sync_purged (
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, chain BLOB,
              PRIMARY KEY (origin, counter)) WITHOUT ROWID;
            ALTER TABLE sync_state ADD COLUMN reclaim_owed INTEGER NOT NULL DEFAULT 0;
            """)
    }

    /// Removes every trace of the bundle of `scope` (one young person) in one durable transaction,
    /// then reclaims the space so that none of its bytes remain in the file, its free pages or its
    /// WAL:
    ///
    /// 1. with `PRAGMA secure_delete` on (deleted cells and freed pages are zeroed), one
    ///    transaction removes the bundle's domain rows, row references, field states (open
    ///    conflicts and quarantined writes too), every change of its rows (parked ones too) and any
    ///    change whose own scope names it (a peer's change naming this scope on another scope's
    ///    row: that row is rebuilt from the log without it), and author names no change held names
    ///    any more; it keeps what verification needs (see the extension's notes) and marks a
    ///    reclaim owed;
    /// 2. `VACUUM` rewrites the file (old values of earlier updates sit in freed cell space that
    ///    `secure_delete` never saw), with its temporary copy in memory, not in a temporary file;
    /// 3. `wal_checkpoint(TRUNCATE)` moves the rewritten pages into the file and truncates the WAL
    ///    (fsynced), which held every earlier page image; the flag is cleared and the WAL truncated
    ///    again.
    ///
    /// A crash after step 1 leaves the reclaim owed: the next purge (of any scope, even one with
    /// nothing left) finishes it. `synchronous=FULL` and WAL are read back at the end.
    ///
    /// Idempotent: a scope with nothing held (never held, or purged already) changes nothing and
    /// returns an empty summary.
    ///
    /// Refused, with nothing removed, while the bundle holds changes the hub does not hold yet
    /// (``pendingChanges(scope:)``): they are pushed first, so that the hub can quarantine them.
    ///
    /// - Parameter scope: The young person's id (the rows' `scope`). An empty scope (rows of no
    ///   young person) is a precondition failure.
    /// - Returns: What was removed (counts only).
    /// - Throws: ``StoreError`` `.unsyncedChanges` (nothing removed); `.database` (also when another
    ///   connection's reads keep the WAL from being truncated: the reclaim stays owed); `.notDurable`
    ///   if the connection no longer reads back WAL with `synchronous=FULL`.
    public func purge(scope: String) throws -> PurgeSummary {
        precondition(!scope.isEmpty, "rows without a young person are no bundle to purge")
        let summary = try withSecureDelete {
            try writeContext { context -> PurgeSummary in
                let bundle = try Self.bundleChanges(context.db, scope: scope)
                let pending = bundle.pending(try pushedOrigins(context.db))
                guard pending == 0 else {
                    throw StoreError(.unsyncedChanges, """
                        scope \(scope) holds \(pending) of \(bundle.changes.count) changes the hub does not hold yet; \
                        push them before purging it; nothing purged
                        """, table: "sync_change")
                }
                return try Self.remove(scope: scope, bundle: bundle, in: context)
            }
        }
        if try reclaimOwed() { try reclaim() }
        if !summary.isEmpty {
            logger.notice("bundle purged", metadata: [
                "rows": "\(summary.rows)", "changes": "\(summary.changes)", "fields": "\(summary.fields)",
            ])
        }
        return summary
    }

    /// The changes of `scope`'s bundle that the hub does not hold yet, as far as this replica
    /// knows: of every origin this replica pushes (its own, and other replicas' it relays; not the
    /// hub's nor the hub-keyed ones), those above what the hub is known to hold (what `health`
    /// counts as pending). ``purge(scope:)`` refuses while this is not 0.
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func pendingChanges(scope: String) throws -> Int {
        try readDatabase { db in try Self.bundleChanges(db, scope: scope).pending(try pushedOrigins(db)) }
    }

    /// What ``purge(scope:)`` would remove now: the bundle's row references, changes (with those
    /// naming the scope on other rows) and field states.
    ///
    /// - Throws: ``StoreError`` `.database`.
    package func bundleSize(scope: String) throws -> PurgeSummary {
        try readDatabase { db in
            var size = PurgeSummary()
            size.rows = try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_row WHERE scope = ?", arguments: [scope]) ?? 0
            size.changes = try Self.bundleChanges(db, scope: scope).changes.count
            size.fields = try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_field WHERE row IN (SELECT id FROM sync_row WHERE scope = ?)",
                                           arguments: [scope]) ?? 0
            size.held = try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_held WHERE scope = ?", arguments: [scope]) ?? 0
            return size
        }
    }

    /// Whether a purge's reclaim (VACUUM and WAL truncation) has not finished yet.
    package func reclaimOwed() throws -> Bool {
        try readDatabase { db in try Int.fetchOne(db, sql: "SELECT reclaim_owed FROM sync_state WHERE id = 1") == 1 }
    }

    // MARK: the bundle

    /// One change of a bundle: its log key, chain, author and whether it is on one of the bundle's
    /// rows (false: a change naming the scope on another scope's row).
    struct BundleChange {
        let origin: Int64
        let counter: Int64
        let chain: Data?
        let author: Int64
        let onBundleRow: Bool
    }

    struct BundleLog {
        var changes: [BundleChange] = []

        /// How many are above `pushed`'s counter for their origin (origins not in it are never pushed).
        func pending(_ pushed: [Int64: UInt64]) -> Int {
            changes.count { change in pushed[change.origin].map { UInt64(bitPattern: change.counter) > $0 } ?? false }
        }
    }

    /// For each origin this replica pushes (by origin id), the counter up to which the hub holds it.
    private func pushedOrigins(_ db: Database) throws -> [Int64: UInt64] {
        let hub = try String.fetchOne(db, sql: "SELECT hub_id FROM sync_hub").flatMap(ReplicaID.init(hex:))
        let known = try hub.flatMap { try Self.peerVector(db, $0) } ?? VersionVector()
        var pushed: [Int64: UInt64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, replica_id FROM sync_origin") {
            guard let replica = ReplicaID(hex: row[1]), replica != hub, !hubKeyedOrigins.contains(replica) else { continue }
            pushed[row[0]] = known[replica]
        }
        return pushed
    }

    /// The log entries of the bundle: every change of its rows, and every change naming it on another row.
    static func bundleChanges(_ db: Database, scope: String) throws -> BundleLog {
        let rows = try Row.fetchAll(db, sql: """
            SELECT c.origin, c.counter, c.chain, c.author, r.scope = ?1 FROM sync_change c JOIN sync_row r ON r.id = c.row
            WHERE r.scope = ?1 OR c.scope = ?1
            """, arguments: [scope])
        return BundleLog(changes: rows.map { BundleChange(origin: $0[0], counter: $0[1], chain: $0[2], author: $0[3], onBundleRow: $0[4]) })
    }

    /// Step 1: removes the bundle, keeping the chains of its changes, in the purge's transaction.
    private static func remove(scope: String, bundle: BundleLog, in context: MergeTransaction) throws -> PurgeSummary {
        let db = context.db
        let keep = try db.makeStatement(sql: "INSERT OR REPLACE INTO sync_purged (origin, counter, chain) VALUES (?, ?, ?)")
        for change in bundle.changes { try keep.execute(arguments: [change.origin, change.counter, change.chain]) }
        for table in context.schema.tables {
            try db.execute(sql: """
                DELETE FROM \(table.name) WHERE id IN (
                  SELECT r.key FROM sync_row r JOIN sync_name t ON t.id = r.table_name WHERE r.scope = ? AND t.name = ?)
                """, arguments: [scope, table.name])
        }
        var summary = PurgeSummary()
        try db.execute(sql: "DELETE FROM sync_field WHERE row IN (SELECT id FROM sync_row WHERE scope = ?)", arguments: [scope])
        summary.fields = db.changesCount
        try db.execute(sql: "DELETE FROM sync_change WHERE row IN (SELECT id FROM sync_row WHERE scope = ?1) OR scope = ?1", arguments: [scope])
        summary.changes = db.changesCount
        try db.execute(sql: "DELETE FROM sync_row WHERE scope = ?", arguments: [scope])
        summary.rows = db.changesCount
        // Writes held for the team's review (another team's edits, which may hold safeguarding
        // information) leave with the bundle, a dismissal's reason with them.
        try db.execute(sql: "DELETE FROM sync_held WHERE scope = ?", arguments: [scope])
        summary.held = db.changesCount
        if bundle.changes.contains(where: { !$0.onBundleRow }) {
            // Another scope's row lost changes its merged values may hold: merged again without them.
            try ReplicaStore.rebuildFromLog(db, schema: context.schema, recordedAt: context.recordedAt, origins: [])
        }
        try forgetAuthors(Set(bundle.changes.map(\.author)), in: context)
        if !summary.isEmpty { try db.execute(sql: "UPDATE sync_state SET reclaim_owed = 1 WHERE id = 1") }
        return summary
    }

    /// Removes from the dictionary the names of `authors` that nothing held refers to any more: no
    /// change names them as author, and they are no table or column name (of a row reference, a
    /// field state, the schema, or a parked change, whose columns the schema may not know).
    private static func forgetAuthors(_ authors: Set<Int64>, in context: MergeTransaction) throws {
        guard !authors.isEmpty else { return }
        let db = context.db
        var inUse = Set(try Int64.fetchAll(db, sql: """
            SELECT author FROM sync_change UNION SELECT table_name FROM sync_row UNION SELECT column_name FROM sync_field
            """))
        let schemaNames = context.schema.tables.flatMap { [$0.name] + $0.columns.map(\.name) }
        for name in schemaNames { if let id = try Int64.fetchOne(db, sql: "SELECT id FROM sync_name WHERE name = ?", arguments: [name]) { inUse.insert(id) } }
        for blob in try Data.fetchAll(db, sql: "SELECT fields FROM sync_change WHERE known = 0") {
            for field in try LogFields.decodeRaw(Array(blob)) { inUse.insert(field.column) }
        }
        let delete = try db.makeStatement(sql: "DELETE FROM sync_name WHERE id = ?")
        for author in authors.subtracting(inUse) { try delete.execute(arguments: [author]) }
    }

    /// What this store's connection reports for `PRAGMA <name>`, after setting it to `value` if
    /// given (for tests: e.g. `secure_delete` off, as SQLite builds without SQLITE_SECURE_DELETE have it).
    package func connectionPragma(_ name: String, set value: Int? = nil) throws -> String? {
        precondition(SQLName.isValid(name), "a pragma name")
        return try Self.guarded {
            try queue.inDatabase { db in
                if let value { try db.execute(sql: "PRAGMA \(name) = \(value)") }
                return try String.fetchOne(db, sql: "PRAGMA \(name)")
            }
        }
    }

    // MARK: reclaiming

    /// Runs `body` with `PRAGMA secure_delete` on, then sets it back as it was.
    func withSecureDelete<T>(_ body: () throws -> T) throws -> T {
        let previous = try Self.guarded {
            try queue.inDatabase { db -> Int in
                let previous = try Int.fetchOne(db, sql: "PRAGMA secure_delete") ?? 0
                try db.execute(sql: "PRAGMA secure_delete = ON")
                return previous
            }
        }
        func restore() throws { try Self.guarded { try queue.inDatabase { try $0.execute(sql: "PRAGMA secure_delete = \(previous)") } } }
        let result: T
        do {
            result = try body()
        } catch {
            try restore()
            throw error
        }
        try restore()
        return result
    }

    /// Steps 2 and 3 of ``purge(scope:)``.
    private func reclaim() throws {
        try Self.guarded {
            try queue.writeWithoutTransaction { db in
                let previous = try Int.fetchOne(db, sql: "PRAGMA temp_store") ?? 0
                // VACUUM builds the new file in a temporary database: in memory, no bytes of it reach a disk.
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
                do {
                    try db.execute(sql: "VACUUM")
                } catch {
                    try db.execute(sql: "PRAGMA temp_store = \(previous)")
                    throw error
                }
                try db.execute(sql: "PRAGMA temp_store = \(previous)")
                try truncateWAL(db)
                // The one page this rewrites holds only `sync_state`; truncated again below.
                try db.execute(sql: "UPDATE sync_state SET reclaim_owed = 0 WHERE id = 1")
                try truncateWAL(db)
            }
        }
        try StoreFile.verify(queue, path: path, expected: .full)
    }

    /// Checkpoints every WAL frame into the file and truncates the WAL to 0 bytes, fsynced: SQLite
    /// does not sync the truncation itself, and the WAL's old frames must not come back after a
    /// power cut.
    private func truncateWAL(_ db: Database) throws {
        guard let result = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)"), result[0] as Int == 0 else {
            throw StoreError(.database, """
                \(path): the WAL could not be checkpointed and truncated (another connection is reading the file); \
                the purge's reclaim stays owed and runs at the next purge
                """, path: path)
        }
        if let failed = syncFile(path + "-wal") {
            throw StoreError(.database, "\(path)-wal: fsync after truncating failed (errno \(failed))", path: path)
        }
    }
}

/// fsyncs the file at `path`: nil when done (or when there is no file), else the errno.
private func syncFile(_ path: String) -> Int32? {
    let descriptor = open(path, O_RDWR)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    return fsync(descriptor) == 0 ? nil : errno
}
