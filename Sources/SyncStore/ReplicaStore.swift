import Foundation
import GRDB
import Logging
import SyncCore
import SyncIdentity

/// One replica: a plain SQLite file in WAL mode with `synchronous=FULL` (read back at open),
/// written by one connection, stamped with the replica `application_id`.
///
/// Domain tables hold current values as ordinary rows (`sqlite3 replica.db 'select * from plan'`
/// shows the truth). Beside them, `sync_*` tables hold per-field clocks and merge state
/// (`sync_field`), row lives (`sync_row`) and every change ever made or received (`sync_change`),
/// which is both the history and the source of what other replicas have not yet seen.
///
/// ```swift
/// let schema = ReplicaSchema(version: 1, tables: [
///     TableSchema("plan", deletable: false, columns: [ColumnSchema("title", .text, .lastWriterWins)]),
/// ], migrations: [])
/// let store = try ReplicaStore.create(at: "replica.db", schema: schema, replicaID: id, name: "laptop",
///                                     wallClock: SystemWallClock())
/// try store.write(author: "ann") { try $0.create("plan", id: "p1", values: ["title": .text("Pathway plan")]) }
/// let title = try store.read { try $0.row("plan", id: "p1")?["title"] }
/// let unseen = try store.changes(notIn: peerVector)   // what a peer lacks, to send it
/// ```
public final class ReplicaStore: Sendable {
    /// The replica file.
    public let path: String
    /// This replica's identity: the origin of its own changes. It changes only when a copy that
    /// diverged from what the hub holds is re-identified (`fork(into:credential:divergentFrom:)`).
    public var replicaID: ReplicaID { identity.value }
    let identity: IdentityCell
    /// The schema this store was opened with (its tables, columns and merge policies).
    public let schema: ReplicaSchema
    let queue: DatabaseQueue
    /// Set when opened `.readOnly`: the connection (and lock) `queue` belongs to.
    let reader: ReadOnlyConnection?
    let wallClock: any WallClock
    let maxClockSkewMillis: UInt64
    /// Logs ids and counts only, never field values.
    let logger: Logger
    /// `<path>.identity`: the device key and secret, outside the SQLite file.
    public let identityPath: String
    /// What the identity file holds; nil when there is none (the replica cannot sign).
    let device: DeviceCell
    /// Origins whose heads verify with the pinned hub key, beside the hub's own (the catalogue publisher).
    package let hubKeyedOrigins: Set<ReplicaID>

    /// The logger a store uses when its opener passes none; its level and handler are whatever the
    /// process bootstrapped.
    public static func defaultLogger() -> Logger { Logger(label: "caresync.store") }

    private init(path: String, queue: DatabaseQueue, reader: ReadOnlyConnection?, replicaID: ReplicaID, schema: ReplicaSchema,
                 wallClock: any WallClock, maxClockSkewMillis: UInt64, logger: Logger, device: ReplicaIdentity?, hubKeyedOrigins: Set<ReplicaID>) {
        self.logger = logger
        self.identityPath = IdentityFile.path(forStore: path)
        self.device = DeviceCell(device)
        self.hubKeyedOrigins = hubKeyedOrigins
        self.path = path
        self.queue = queue
        self.identity = IdentityCell(replicaID)
        self.reader = reader
        self.schema = schema
        self.wallClock = wallClock
        self.maxClockSkewMillis = maxClockSkewMillis
    }

    /// Creates a new replica file: the store's tables and the schema's, in WAL mode with
    /// `synchronous=FULL`, stamped as a replica, and its identity file (`<path>.identity`, mode
    /// 0600) with a new device key. Fails if anything exists at `path` or at the identity file's
    /// path, even an empty file.
    ///
    /// ```swift
    /// let store = try ReplicaStore.create(at: "replica.db", schema: schema, replicaID: .random(using: &random),
    ///                                     name: "ann's laptop", wallClock: SystemWallClock(), random: &random)
    /// ```
    ///
    /// - Parameters:
    ///   - path: Where to create the file.
    ///   - schema: The domain tables and their fields' merge policies.
    ///   - replicaID: The new replica's identity: the origin of its changes. Never reuse one.
    ///   - name: A display name for the replica (shown in status; not synced).
    ///   - wallClock: The clock local edits are timestamped with and batches are checked against.
    ///   - random: The source of the device key's 32 bytes.
    ///   - maxClockSkewMillis: How far ahead of `wallClock` a received change may be timestamped
    ///     before its batch is refused.
    ///   - hubKeyedOrigins: Origins other than the hub's whose heads verify with the hub key (the
    ///     domain's hub-published records).
    ///   - logger: Where the store logs (ids and counts only).
    /// - Returns: The open store.
    /// - Throws: ``StoreError`` `.alreadyExists` if anything is at `path` or its identity file's path;
    ///   `.notDurable` if the file cannot have WAL with `synchronous=FULL`; `.identityUnreadable` if the
    ///   identity file cannot be written; `.database` for SQLite's failures.
    public static func create(at path: String, schema: ReplicaSchema, replicaID: ReplicaID, name: String,
                              wallClock: any WallClock, random: inout some RandomNumberGenerator,
                              maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis,
                              hubKeyedOrigins: Set<ReplicaID> = [], logger: Logger = defaultLogger()) throws -> ReplicaStore {
        try create(at: path, schema: schema, replicaID: replicaID, name: name, wallClock: wallClock,
                   maxClockSkewMillis: maxClockSkewMillis, logger: logger, options: StoreConnectionOptions(),
                   deviceKey: SigningKey(random: &random), hubKeyedOrigins: hubKeyedOrigins)
    }

    /// For tests and tools: without `deviceKey`, the key is derived from the replica id, so it is
    /// no secret (anyone can compute it). Production callers use the public `create`, which draws it.
    package static func create(at path: String, schema: ReplicaSchema, replicaID: ReplicaID, name: String,
                               wallClock: any WallClock, maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis,
                               logger: Logger = defaultLogger(), options: StoreConnectionOptions = StoreConnectionOptions(),
                               deviceKey: SigningKey? = nil, hubKeyedOrigins: Set<ReplicaID> = []) throws -> ReplicaStore {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.alreadyExists, "a file already exists at \(path); choose another path", path: path)
        }
        var derived = DerivedKeySeed(replicaID)
        let identity = ReplicaIdentity(replica: replicaID, deviceKey: deviceKey ?? SigningKey(random: &derived))
        // The identity file first: if the database cannot be made, the file is removed again.
        try IdentityFile.create(identity, at: IdentityFile.path(forStore: path))
        let queue: DatabaseQueue
        do {
            queue = try guarded { try StoreFile.openDurableQueue(path: path, label: "caresync.replica", options: options) }
            try migrate(queue, schema: schema)
            try guarded {
                try queue.write { db in
                    try db.execute(sql: """
                        INSERT INTO sync_state (id, replica_id, display_name, counter, hlc, schema_version, created_at)
                        VALUES (1, ?, ?, 0, 0, ?, ?)
                        """, arguments: [replicaID.hex, name, schema.version, Int64(wallClock.nowMillis())])
                }
            }
        } catch {
            _ = unlink(IdentityFile.path(forStore: path))
            throw error
        }
        logger.debug("replica created", metadata: ["replica": "\(replicaID.short)", "schema": "\(schema.version)"])
        return ReplicaStore(path: path, queue: queue, reader: nil, replicaID: replicaID, schema: schema, wallClock: wallClock,
                            maxClockSkewMillis: maxClockSkewMillis, logger: logger, device: identity, hubKeyedOrigins: hubKeyedOrigins)
    }

    /// Opens an existing replica. For writing, runs any migrations its schema has not yet had and
    /// applies parked changes that the upgraded schema now understands; `.readOnly` changes nothing
    /// in the file (and refuses a replica that needs an upgrade first).
    ///
    /// The file is identified before anything writes to it: a file that is not a replica (another
    /// application's SQLite database, an empty file, a hub database) is refused and left as it was.
    ///
    /// ```swift
    /// let store = try ReplicaStore.open(at: "replica.db", schema: schema, wallClock: SystemWallClock(), access: .readOnly)
    /// let status = try store.status()
    /// ```
    ///
    /// - Parameters:
    ///   - path: The replica file.
    ///   - schema: The domain tables; a newer version than the file's migrates it (read-write only).
    ///   - wallClock: The clock local edits are timestamped with and batches are checked against.
    ///   - maxClockSkewMillis: How far ahead of `wallClock` a received change may be timestamped
    ///     before its batch is refused.
    ///   - access: `.readOnly` opens the file so that nothing can change it.
    ///   - hubKeyedOrigins: Origins other than the hub's whose heads verify with the hub key.
    ///   - upgradeKey: A new device key for a replica made before identity files: used only when
    ///     this open upgrades it (read-write) and it has none, so that it can register a key with
    ///     its hub. A replica whose identity file went missing later gets none.
    ///   - logger: Where the store logs (ids and counts only).
    /// - Returns: The open store. Without an identity file it reads and writes locally but cannot sign.
    /// - Throws: ``StoreError`` `.notAReplica` for a missing file or one that is not a replica
    ///   (left as it was); `.schemaTooNew` for a file of a newer program; `.schemaTooOld` for a
    ///   read-only open of a file that needs migrating; `.identityMismatch` when the identity file
    ///   is another replica's; `.identityUnreadable`; `.notDurable`; `.database`.
    public static func open(at path: String, schema: ReplicaSchema, wallClock: any WallClock,
                            maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis,
                            access: StoreAccess = .readWrite, hubKeyedOrigins: Set<ReplicaID> = [], upgradeKey: SigningKey? = nil,
                            logger: Logger = defaultLogger()) throws -> ReplicaStore {
        try open(at: path, schema: schema, wallClock: wallClock, maxClockSkewMillis: maxClockSkewMillis, access: access,
                 logger: logger, options: StoreConnectionOptions(), hubKeyedOrigins: hubKeyedOrigins, upgradeKey: upgradeKey)
    }

    package static func open(at path: String, schema: ReplicaSchema, wallClock: any WallClock,
                             maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis,
                             access: StoreAccess = .readWrite, logger: Logger = defaultLogger(),
                             options: StoreConnectionOptions, hubKeyedOrigins: Set<ReplicaID> = [],
                             upgradeKey: SigningKey? = nil) throws -> ReplicaStore {
        _ = try StoreFile.expect(.replica, at: path, options: options)
        let reader = access == .readOnly ? try guarded { try ReadOnlyConnection(path: path, options: options) } : nil
        let queue = try reader?.queue ?? guarded { try StoreFile.openDurableQueue(path: path, label: "caresync.replica", options: options) }
        if reader != nil { try guarded { try StoreFile.verify(queue, path: path, expected: .full, readOnly: true) } }
        let (replicaHex, stored) = try guarded {
            try queue.read { db -> (String?, Int) in
                let row = try Row.fetchOne(db, sql: "SELECT replica_id, schema_version FROM sync_state WHERE id = 1")
                return (row?[0], row?[1] ?? 0)
            }
        }
        guard let replicaHex, let replicaID = ReplicaID(hex: replicaHex) else {
            throw StoreError(.notAReplica, "\(path) is a CareSync replica without its identity row; it may be damaged", path: path)
        }
        guard stored <= schema.version else {
            throw StoreError(.schemaTooNew, "\(path) has replica schema v\(stored), newer than this program's v\(schema.version)", path: path)
        }
        if reader != nil {
            // Stamping an unstamped file is the one migration a read may skip: it changes no table.
            let migrator = migrator(schema)
            let needed = Set(migrator.migrations).subtracting([StoreFile.stampMigration])
            guard stored == schema.version, try guarded({ try queue.read { needed.isSubset(of: try migrator.appliedIdentifiers($0)) } }) else {
                throw StoreError(.schemaTooOld, """
                    \(path) has replica schema v\(stored), which needs an upgrade to v\(schema.version) before it can be read; \
                    opening it for writing once upgrades it
                    """, path: path)
            }
        }
        let chained = try guarded { try queue.read { try migrator(schema).appliedIdentifiers($0).contains(identityMigration) } }
        let upgrading = reader == nil && !chained
        if reader == nil { try migrate(queue, schema: schema) }
        let device = try openIdentity(path: path, replicaID: replicaID, queue: reader == nil ? queue : nil,
                                      upgradeKey: upgrading ? upgradeKey : nil)
        let store = ReplicaStore(path: path, queue: queue, reader: reader, replicaID: replicaID, schema: schema,
                                 wallClock: wallClock, maxClockSkewMillis: maxClockSkewMillis, logger: logger, device: device,
                                 hubKeyedOrigins: hubKeyedOrigins)
        if reader == nil && stored < schema.version { try store.upgradeSchemaVersion() }
        return store
    }

    private static func migrator(_ schema: ReplicaSchema) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("sync-v1") { db in try StoreTables.create(db) }
        migrator.registerMigration("sync-v2-hub-link") { db in try StoreTables.createHubLink(db) }
        migrator.registerMigration("sync-v3-fork") { db in
            // The identity this replica had before a fork, while the hub's changes of it are still owed.
            try db.execute(sql: "ALTER TABLE sync_hub ADD COLUMN forked_from TEXT")
        }
        migrator.registerMigration(StoreFile.stampMigration) { db in try StoreFile.stamp(db, .replica) }
        migrator.registerMigration("sync-v4-row-edits") { db in try StoreTables.migrateToRowEdits(db) }
        migrator.registerMigration(identityMigration) { db in try StoreTables.migrateToIdentity(db) }
        migrator.registerMigration(purgeMigration) { db in try migrateToPurge(db) }
        migrator.registerMigration(heldMigration) { db in try migrateToHeld(db) }
        for migration in schema.migrations {
            migrator.registerMigration(migration.identifier) { db in try db.execute(sql: migration.sql) }
        }
        return migrator
    }

    private static func migrate(_ queue: DatabaseQueue, schema: ReplicaSchema) throws {
        try guarded { try migrator(schema).migrate(queue) }
    }

    /// What this store's connection reports for `synchronous` and `journal_mode` (for tests).
    package func connectionPragmas() throws -> (synchronous: Int, journalMode: String) { try StoreFile.pragmas(queue) }

    private func upgradeSchemaVersion() throws {
        try writeContext { context in
            try context.db.execute(sql: "UPDATE sync_state SET schema_version = ?", arguments: [schema.version])
            try context.replayKept()
        }
    }

    // MARK: transactions

    /// Runs `body` in one immediate write transaction with a fresh context.
    func writeContext<T>(_ body: (MergeTransaction) throws -> T) throws -> T {
        try Self.guarded {
            try queue.write { db in
                let context = MergeTransaction(db: db, schema: schema, recordedAt: Int64(wallClock.nowMillis()))
                let result = try body(context)
                try context.flushAll()
                try context.advanceContiguous()
                return result
            }
        }
    }

    func readDatabase<T>(_ body: (Database) throws -> T) throws -> T {
        try Self.guarded { try queue.read(body) }
    }

    /// Makes local edits in one transaction: every change gets its counter in this transaction, so
    /// a crash either keeps an edit and its log entry or neither. If `body` throws, nothing of it
    /// is written.
    ///
    /// ```swift
    /// try store.write(author: "ann") { edits in
    ///     try edits.create("plan", id: "p1", values: ["title": .text("Pathway plan"), "status": .text("draft")])
    ///     try edits.update("plan", id: "p1", values: ["status": .text("approved")])
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - author: Who makes the edits (recorded with each change).
    ///   - body: Makes the edits through the ``LocalTransaction``; it must not escape.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (a ``StoreError`` for a refused edit), or ``StoreError``
    ///   `.database` if the transaction fails.
    public func write<T>(author: String, _ body: (inout LocalTransaction) throws -> T) throws -> T {
        try writeContext { context in
            let state = try Row.fetchOne(context.db, sql: "SELECT counter, hlc, since_checkpoint FROM sync_state WHERE id = 1")!
            // Never reuse a counter the log already holds: a restored replica may have received its
            // own later changes back (from the hub or in a bundle) while its counter stayed behind.
            // Nor one it purged since (`sync_purged`): the hub holds that change, and a purge takes
            // such recovered changes out of the log while the counter is still behind them.
            let ownMax = try Int64.fetchOne(context.db, sql: """
                SELECT max(counter) FROM (
                  SELECT counter FROM sync_change WHERE origin = (SELECT id FROM sync_origin WHERE replica_id = ?1)
                  UNION ALL SELECT counter FROM sync_purged WHERE origin = (SELECT id FROM sync_origin WHERE replica_id = ?1))
                """, arguments: [replicaID.hex]) ?? 0
            let counter = UInt64(clamping: max(state[0] as Int64, ownMax))
            var transaction = LocalTransaction(
                context: context, replicaID: replicaID, author: author, counter: counter,
                clock: HybridClock(last: HybridTimestamp(rawValue: UInt64(bitPattern: state[1])), maxClockSkewMillis: maxClockSkewMillis),
                wallMillis: UInt64(context.recordedAt), chain: try context.heldChain(replicaID, counter: counter),
                sinceCheckpoint: Int(state[2] as Int64), previousScope: try context.heldScope(replicaID, counter: counter))
            let result = try body(&transaction)
            try context.db.execute(sql: "UPDATE sync_state SET counter = ?, hlc = ?, since_checkpoint = ? WHERE id = 1", arguments: [
                Int64(transaction.counter), Int64(bitPattern: transaction.clock.last.rawValue), transaction.sinceCheckpoint,
            ])
            return result
        }
    }

    /// Reads domain rows and merged fields, in one read transaction.
    ///
    /// - Parameter body: Reads through the ``ReadView``; it must not escape.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or ``StoreError`` `.database`.
    public func read<T>(_ body: (ReadView) throws -> T) throws -> T {
        try readDatabase { db in try body(ReadView(db: db, schema: schema)) }
    }

    /// Applies a batch of changes from other replicas in one transaction, unverified: for tests,
    /// local tools and the domain's own seed changes. Synced changes go through
    /// ``apply(_:provenance:)``. Chains are kept wherever the origin's log below is held.
    /// Idempotent by change id: re-applying a batch changes nothing. A timestamp too far ahead of
    /// this machine's clock refuses the whole batch before anything is written.
    ///
    /// - Parameter changes: The batch, in any order.
    /// - Returns: What was applied, already known, parked for a newer schema, and the conflicts
    ///   opened and closed.
    /// - Throws: ``StoreError`` `.clockSkew` (with the change's id), `.corrupt` for a change no
    ///   honest replica makes, `.equivocation` for a known id with other content; nothing of the
    ///   batch is applied.
    package func apply(_ changes: [Change]) throws -> ApplySummary { try apply(changes, provenance: nil) { _ in } }

    /// Applies a batch of changes from other replicas in one transaction, after verifying them
    /// against `provenance` (Protocol/identity.md, "Verifying a run of changes"): each origin's run
    /// must continue the log held here and end at a head signed by its key (a held certificate's,
    /// one that came with the batch and verifies under the pinned hub key, the hub key itself for
    /// the hub-keyed origins, or this replica's own). The changes' chains, the heads and the
    /// certificates are kept in the same transaction. Idempotent by change id.
    ///
    /// - Parameters:
    ///   - changes: The batch: each origin's changes consecutive and ascending.
    ///   - provenance: The batch's heads and certificates.
    /// - Returns: What was applied, already known, parked for a newer schema, and the conflicts.
    /// - Throws: `IdentityError` (SyncIdentity) when the batch does not verify, ``StoreError``
    ///   `.clockSkew`, `.corrupt`, `.database`; nothing of the batch is applied.
    public func apply(_ changes: [Change], provenance: Provenance) throws -> ApplySummary {
        try apply(changes, provenance: provenance) { _ in }
    }

    /// Applies a batch (verified when `provenance` is given) and runs `also` in the same
    /// transaction (e.g. advancing a pull cursor).
    func apply(_ changes: [Change], provenance: Provenance?, also: (MergeTransaction) throws -> Void) throws -> ApplySummary {
        let now = wallClock.nowMillis()
        var newest = HybridTimestamp.zero
        for change in changes {
            do {
                try HybridClock.check(change.timestamp, wallMillis: now, maxClockSkewMillis: maxClockSkewMillis)
            } catch {
                throw StoreError(.clockSkew, "batch refused, nothing applied: change \(change.id) \(error)", table: change.table,
                                 row: change.row, change: change.id, cause: error)
            }
            // Counters and causal lengths past 2^63 - 1 cannot be stored (a row would need 2^63
            // deletes: only a broken or hostile peer sends one); a U+0000 in a string would not read back.
            if let violation = ChangeLimits.rangeViolation(of: change) ?? ChangeLimits.contentViolation(of: change) {
                throw StoreError(.corrupt, "batch refused, nothing applied: change \(change.id) has \(violation)", table: change.table,
                                 row: change.row, change: change.id)
            }
            newest = max(newest, change.timestamp)
        }
        let summary = try writeContext { context -> ApplySummary in
            let chains: [[UInt8]?]
            try context.prefetch(changes)
            if let provenance {
                let verified = try verify(changes, provenance: provenance, in: context)
                chains = verified.chains
                try keep(verified, in: context)
            } else {
                chains = try context.chainsWhereKnown(changes)
            }
            for (index, change) in changes.enumerated() { try context.apply(change, chain: chains[index]) }
            try context.extendChains(of: changes)
            try also(context)
            // Later local timestamps must exceed everything seen, so a local edit made after a
            // sync beats what it was made on top of.
            try context.db.execute(sql: "UPDATE sync_state SET hlc = max(hlc, ?) WHERE id = 1",
                                   arguments: [Int64(bitPattern: newest.rawValue)])
            return context.summary
        }
        logger.debug("batch applied", metadata: [
            "applied": "\(summary.applied)", "duplicates": "\(summary.duplicates)", "parked": "\(summary.parked)",
            "verified": "\(provenance != nil)",
        ])
        return summary
    }

    /// Maps database failures to content-free store errors.
    static func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch let error as DatabaseError {
            // The message names only the extended result code and SQLite's own message (which
            // never contains bound values); the error itself, without its arguments, is the cause.
            throw StoreError.database(error)
        }
    }
}

/// The replica's identity, shared by every reader of a `ReplicaStore`.
final class IdentityCell: @unchecked Sendable {
    // Safety: `current` is read and written only under `lock`.
    private let lock = NSLock()
    private var current: ReplicaID

    init(_ replica: ReplicaID) { current = replica }

    var value: ReplicaID {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}

/// The store's own tables. Column and table names are dictionary ids (`sync_name`), replicas are
/// origin ids (`sync_origin`) and rows are row refs (`sync_row`), so per-field metadata stays small.
///
/// `sync_change.known` is 1 when this replica's schema knows the change's table and every column
/// it writes, and 0 while the change is parked for a newer schema (`ApplySummary.parked`). The
/// Swift API says "parked"; the column keeps its name, since renaming it would be a migration
/// (and a file an older program could no longer read) for a name only.
enum StoreTables {
    /// The replica's link to its hub: address, the device secret issued at enrolment, the pull
    /// cursor (advanced in the same transaction as the batch it follows), and the last outcome.
    static func createHubLink(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE sync_hub (
              id INTEGER PRIMARY KEY CHECK (id = 1), address TEXT NOT NULL, hub_id TEXT, credential BLOB,
              pull_cursor INTEGER NOT NULL DEFAULT 0, last_sync_at INTEGER, last_error TEXT);
            """)
    }

    /// From one log row per field write to one per row edit, and from one clock row per field to
    /// the versions of a row's last-writer-wins fields in one record beside the row. Each v1
    /// change becomes the row edit `ChangeV1.rowEdit` makes of it (same id): the hub migrates its
    /// copies the same way, so both keep one content per id. Nothing is dropped.
    static func migrateToRowEdits(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE sync_row ADD COLUMN scope TEXT NOT NULL DEFAULT '';
            ALTER TABLE sync_row ADD COLUMN clocks BLOB;
            CREATE TABLE sync_change_v4 (
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, hlc INTEGER NOT NULL, row INTEGER NOT NULL,
              causal_length INTEGER NOT NULL, life INTEGER NOT NULL, author INTEGER NOT NULL, fields BLOB NOT NULL,
              recorded_at INTEGER NOT NULL, known INTEGER NOT NULL, scope TEXT,
              PRIMARY KEY (origin, counter)) WITHOUT ROWID;
            """)
        let insert = try db.makeStatement(sql: """
            INSERT INTO sync_change_v4 (origin, counter, hlc, row, causal_length, life, author, fields, recorded_at, known)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let old = try Row.fetchCursor(db, sql: """
            SELECT origin, counter, hlc, row, column_name, causal_length, author, op, value, supersedes, recorded_at, known
            FROM sync_change ORDER BY origin, counter
            """)
        while let row = try old.next() {
            let life = (row[4] as Int64?) == nil
            var fields: [LogFields.Raw] = []
            if let column = row[4] as Int64? {
                let value = FieldValue(databaseValue: row[8])
                guard let code = UInt8(exactly: row[7] as Int64), let operation = FieldOperation(code: code, operand: value) else {
                    throw StoreError(.corrupt, "v1 change \(row[1] as Int64) of origin \(row[0] as Int64) has an unknown operation \(row[7] as Int64)",
                                     table: "sync_change", column: "op")
                }
                var supersedes: [ChangeID] = []
                if let blob = row[9] as Data? {
                    var reader = ByteReader(Array(blob))
                    do {
                        for _ in 0..<(try reader.count(minimumItemSize: 17)) { supersedes.append(try ChangeID.decode(from: &reader)) }
                    } catch {
                        throw StoreError.unreadable("a v1 change's supersedes", table: "sync_change", column: "supersedes", error)
                    }
                }
                fields = [LogFields.Raw(column: column, operation: operation, supersedes: supersedes.sorted())]
            }
            try insert.execute(arguments: [row[0], row[1], row[2], row[3], max(row[5] as Int64, 1), life ? 1 : 0, row[6],
                                           Data(LogFields.encode(fields)), row[10], row[11]])
        }
        // Last-writer-wins clocks (no merge state) move into their row's record.
        let update = try db.makeStatement(sql: "UPDATE sync_row SET clocks = ? WHERE id = ?")
        let clocks = try Row.fetchCursor(db, sql: """
            SELECT row, column_name, causal_length, hlc, origin, counter FROM sync_field WHERE state IS NULL ORDER BY row, column_name
            """)
        var current: (row: Int64, clocks: RowClocks)?
        func save() throws {
            if let current { try update.execute(arguments: [Data(current.clocks.encoded()), current.row]) }
        }
        while let field = try clocks.next() {
            let row: Int64 = field[0]
            if current?.row != row {
                try save()
                current = (row, RowClocks())
            }
            current!.clocks[field[1]] = RowClocks.Clock(
                causalLength: UInt64(clamping: field[2] as Int64), timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: field[3])),
                origin: field[4], counter: UInt64(bitPattern: field[5]))
        }
        try save()
        try db.execute(sql: """
            DELETE FROM sync_field WHERE state IS NULL;
            DROP TABLE sync_change;
            ALTER TABLE sync_change_v4 RENAME TO sync_change;
            CREATE INDEX sync_change_by_row ON sync_change (row);
            CREATE INDEX sync_change_kept ON sync_change (known) WHERE known = 0;
            """)
    }

    static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE sync_state (
              id INTEGER PRIMARY KEY CHECK (id = 1), replica_id TEXT NOT NULL, display_name TEXT NOT NULL,
              counter INTEGER NOT NULL, hlc INTEGER NOT NULL, schema_version INTEGER NOT NULL, created_at INTEGER NOT NULL);
            CREATE TABLE sync_name (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
            CREATE TABLE sync_origin (id INTEGER PRIMARY KEY, replica_id TEXT NOT NULL UNIQUE, contiguous INTEGER NOT NULL);
            CREATE TABLE sync_row (
              id INTEGER PRIMARY KEY, table_name INTEGER NOT NULL, key TEXT NOT NULL, causal_length INTEGER NOT NULL,
              UNIQUE (table_name, key));
            CREATE TABLE sync_field (
              row INTEGER NOT NULL, column_name INTEGER NOT NULL, causal_length INTEGER NOT NULL, hlc INTEGER NOT NULL,
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, conflict INTEGER NOT NULL, state BLOB,
              PRIMARY KEY (row, column_name)) WITHOUT ROWID;
            CREATE INDEX sync_field_open_conflict ON sync_field (conflict) WHERE conflict = 1;
            CREATE TABLE sync_change (
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, hlc INTEGER NOT NULL, row INTEGER NOT NULL,
              column_name INTEGER, causal_length INTEGER NOT NULL, author INTEGER NOT NULL, op INTEGER NOT NULL,
              value, supersedes BLOB, recorded_at INTEGER NOT NULL, known INTEGER NOT NULL,
              PRIMARY KEY (origin, counter)) WITHOUT ROWID;
            CREATE INDEX sync_change_by_row ON sync_change (row);
            CREATE INDEX sync_change_kept ON sync_change (known) WHERE known = 0;
            CREATE TABLE sync_peer (replica_id TEXT PRIMARY KEY, vector BLOB NOT NULL, updated_at INTEGER NOT NULL);
            """)
    }
}
