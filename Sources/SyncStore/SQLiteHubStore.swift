import Crypto
import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The hub's embedded store: one SQLite file (WAL, `synchronous=FULL` read back at open, one
/// writer connection and one reader connection), stamped with the hub `application_id`.
///
/// `hub_log` is the hub log: every change once, in arrival order; its sequence is the pull
/// cursor, so a sync costs what its changes cost, not the size of the database. Changes are kept
/// as their canonical encoding and served as those bytes (`SQLiteHubStore+Log.swift`).
///
/// Reads (pulls, recoveries, head, authentication, summaries) go to a second connection: in WAL
/// mode it reads the last commit without waiting for the writer, so a pull never queues behind a
/// group commit's fsync.
public final class SQLiteHubStore: HubStore {
    /// The hub database file.
    public let path: String
    /// The hub's own id, drawn when the file was created.
    public let hubID: ReplicaID
    /// The one writer connection; reached through `queue`, which refuses once the store is closed.
    let connection: DatabaseQueue
    /// The reader connection (`query_only`); the same as `connection` when opened read-only.
    /// Reached through `reads`, which refuses once the store is closed.
    let readConnection: DatabaseQueue
    let closed = CloseFlag()
    /// `PRAGMA synchronous` for commits an acknowledgement depends on (FULL but in tests).
    let synchronous: StoreConnectionOptions.Synchronous

    /// Set when opened read-only: the connection (and lock) `queue` belongs to.
    let reader: ReadOnlyConnection?

    /// The hub's Ed25519 public key (32 bytes): it signs device certificates, the hub's own origin
    /// log and attestations. The private key stays in `<hub.db>.identity` (Protocol/identity.md).
    public let hubKey: [UInt8]
    /// The private half; nil when opened read-only (nothing is signed then).
    let signingKey: SigningKey?
    /// Origins whose runs verify under the hub key: the hub's own and those given at open.
    let hubKeyed: Set<ReplicaID>
    /// Team-scoped replication's rules; nil when every replica pulls everything.
    let scopeRules: (any ScopeRules)?
    /// The hub's incarnation (16 bytes, sent in the welcome): new when the store was created, and
    /// again when it was found restored from an older copy (Protocol/identity.md, "Incarnation").
    public let incarnation: [UInt8]
    /// Whether this open found the store restored from an older copy and gave it a new incarnation
    /// (the hub says so in its start-up log).
    public let renewedIncarnation: Bool

    /// Opens the hub database at `path` for writing, creating it if nothing is there. An existing
    /// file is identified first and refused unchanged unless it is a hub database; a file made by
    /// an earlier version is migrated.
    ///
    /// ```swift
    /// var random = SystemRandomNumberGenerator()
    /// let hub = try SQLiteHubStore(path: "hub.db", wallClock: SystemWallClock(), random: &random)
    /// defer { try? hub.close() }
    /// let token = try hub.issueEnrolmentToken(team: "north", replica: nil, expiresAtMillis: later, random: &random)
    /// ```
    ///
    /// - Parameters:
    ///   - path: The hub database file.
    ///   - wallClock: Stamps the creation time of a new file; nothing else reads it (every
    ///     operation that needs the time takes `nowMillis`).
    ///   - random: Draws a new hub's id, its key and its incarnation.
    /// - Throws: ``StoreError`` `.notAHub` for a file that is not a hub database (left as it was),
    ///   `.schemaTooNew`, `.notDurable` if WAL with `synchronous=FULL` cannot be had, `.database`.
    ///   - hubKeyedOrigins: Origins besides the hub's own whose logs only the hub key signs (the
    ///     entitlement catalogue's publisher): their runs verify under the hub key, never a device's.
    ///   - scopeRules: Team-scoped replication (Protocol/scope.md): which teams may hold each
    ///     scope, decided from the hub's own merged view. Nil: every replica pulls everything.
    public convenience init(path: String, wallClock: any WallClock, random: inout some RandomNumberGenerator,
                            hubKeyedOrigins: Set<ReplicaID> = [], scopeRules: (any ScopeRules)? = nil) throws {
        try self.init(path: path, wallClock: wallClock, random: &random, options: StoreConnectionOptions(), hubKeyedOrigins: hubKeyedOrigins,
                      scopeRules: scopeRules)
    }

    package init(path: String, wallClock: any WallClock, random: inout some RandomNumberGenerator,
                 options: StoreConnectionOptions, hubKeyedOrigins: Set<ReplicaID> = [], scopeRules: (any ScopeRules)? = nil) throws {
        self.path = path
        self.scopeRules = scopeRules
        _ = try StoreFile.expect(.hub, at: path, options: options, allowMissing: true)
        let queue = try ReplicaStore.guarded { try StoreFile.openDurableQueue(path: path, label: "caresync.hub", options: options) }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("hub-v1") { db in
            try db.execute(sql: """
                CREATE TABLE hub_state (id INTEGER PRIMARY KEY CHECK (id = 1), hub_id TEXT NOT NULL, created_at INTEGER NOT NULL);
                CREATE TABLE hub_origin (id INTEGER PRIMARY KEY, replica_id TEXT NOT NULL UNIQUE, contiguous INTEGER NOT NULL);
                CREATE TABLE hub_change (
                  seq INTEGER PRIMARY KEY, origin INTEGER NOT NULL, counter INTEGER NOT NULL, bytes BLOB NOT NULL,
                  received_at INTEGER NOT NULL, UNIQUE (origin, counter));
                CREATE TABLE hub_token (
                  hash TEXT PRIMARY KEY, team TEXT NOT NULL, expires_at INTEGER NOT NULL, used_by TEXT, used_at INTEGER);
                CREATE TABLE hub_replica (
                  replica_id TEXT PRIMARY KEY, team TEXT NOT NULL, secret_hash TEXT NOT NULL, revoked_at INTEGER,
                  first_seen INTEGER, last_seen INTEGER, pull_cursor INTEGER NOT NULL DEFAULT 0, pending INTEGER,
                  oldest_unsynced_ms INTEGER, open_conflicts INTEGER, schema_version INTEGER, app_version TEXT,
                  last_error TEXT, changes_stored INTEGER NOT NULL DEFAULT 0);
                """)
        }
        migrator.registerMigration("hub-v2-recovery") { db in
            // Evidence of refused second versions of a change id, and where forked replicas came from.
            try db.execute(sql: """
                CREATE TABLE hub_equivocation (
                  id INTEGER PRIMARY KEY, origin TEXT NOT NULL, counter INTEGER NOT NULL, bytes BLOB NOT NULL, digest TEXT NOT NULL,
                  from_replica TEXT NOT NULL, received_at INTEGER NOT NULL, UNIQUE (origin, counter, digest));
                ALTER TABLE hub_replica ADD COLUMN forked_from TEXT;
                """)
        }
        // An enrolment token may be bound by the operator to one replica id (re-enrolment), and is
        // spent for good once the replica it enrolled has shown it holds the issued secret.
        migrator.registerMigration("hub-v2-enrolment") { db in
            try db.execute(sql: """
                ALTER TABLE hub_token ADD COLUMN replica_id TEXT;
                ALTER TABLE hub_token ADD COLUMN spent_at INTEGER;
                """)
        }
        migrator.registerMigration(StoreFile.stampMigration) { db in try StoreFile.stamp(db, .hub) }
        // The hub relays bytes: each change's canonical encoding beside the columns filtering
        // needs without decoding a value. Rows of `hub_change` move over with their sequences.
        migrator.registerMigration("hub-v3-relay") { db in
            try db.execute(sql: """
                CREATE TABLE hub_log (
                  seq INTEGER PRIMARY KEY, origin INTEGER NOT NULL, counter INTEGER NOT NULL, table_name TEXT NOT NULL,
                  row_key TEXT NOT NULL, scope TEXT NOT NULL, bytes BLOB NOT NULL, received_at INTEGER NOT NULL,
                  UNIQUE (origin, counter));
                """)
            try LegacyHubLog.migrate(db)
        }
        migrator.registerMigration("hub-v4-identity") { db in try HubIdentitySchema.migrate(db) }
        migrator.registerMigration("hub-v5-purge") { db in try HubPurgeSchema.migrate(db) }
        migrator.registerMigration("hub-v6-scope") { db in
            try HubScopeSchema.migrate(db)
            try db.execute(sql: "ALTER TABLE hub_replica ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("hub-v7-audit") { db in try HubAuditSchema.migrate(db) }
        migrator.registerMigration("hub-v8-review") { db in try HubReviewSchema.migrate(db) }
        migrator.registerMigration("hub-v9-decisions") { db in try HubDecisionSchema.migrate(db) }
        try ReplicaStore.guarded { try migrator.migrate(queue) }
        let generated = ReplicaID.random(using: &random)
        let (stored, keyed) = try ReplicaStore.guarded {
            try queue.write { db -> (String, Bool) in
                if let existing = try Row.fetchOne(db, sql: "SELECT hub_id, hub_key IS NOT NULL FROM hub_state") { return (existing[0], existing[1]) }
                try db.execute(sql: "INSERT INTO hub_state (id, hub_id, created_at) VALUES (1, ?, ?)",
                               arguments: [generated.hex, Int64(clamping: wallClock.nowMillis())])
                return (generated.hex, false)
            }
        }
        guard let id = ReplicaID(hex: stored) else { throw StoreError(.corrupt, "hub id is unreadable", path: path, table: "hub_state") }
        // The key file is made before the database names its key: a crash between the two leaves
        // a file whose key the next open adopts, never a database whose key is lost.
        let key: SigningKey
        let identityPath = IdentityFile.path(forStore: path)
        if FileManager.default.fileExists(atPath: identityPath) {
            key = try IdentityFile.readHub(at: identityPath, expecting: id).hubKey
        } else if keyed {
            // Without its key the hub can neither sign nor be recognised by its replicas, which
            // pinned it: a new key would be another hub.
            throw StoreError(.identityMissing, "the hub identity file \(identityPath) is missing; restore it beside the database", path: identityPath)
        } else {
            key = SigningKey(random: &random)
            try IdentityFile.create(HubIdentity(hub: id, hubKey: key), at: identityPath)
        }
        var drawn: [UInt8] = []
        for _ in 0..<2 { withUnsafeBytes(of: random.next()) { drawn.append(contentsOf: $0) } }
        let hubKeyed = hubKeyedOrigins.union([id])
        let incarnation = try ReplicaStore.guarded {
            try queue.inDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = \(options.synchronous.rawValue)")
                return try Self.transaction(db) { db in
                    try HubIdentitySchema.keyed(db, key: key, hubKeyed: hubKeyed, incarnation: drawn, path: path)
                }
            }
        }
        connection = queue
        readConnection = try ReplicaStore.guarded { try Self.openReads(path: path, options: options) }
        synchronous = options.synchronous
        reader = nil
        hubID = id
        self.hubKeyed = hubKeyed
        signingKey = key
        hubKey = key.publicKey
        var current = incarnation
        let scopes = try Self.scopeState(queue, scoped: scopeRules != nil)
        if scopes.renew {
            // Cursors were hub sequences, and are feed positions now (or the other way round): a
            // new incarnation makes every replica pull again from 0 (Protocol/scope.md).
            var renewed: [UInt8] = []
            for _ in 0..<2 { withUnsafeBytes(of: random.next()) { renewed.append(contentsOf: $0) } }
            try ReplicaStore.guarded {
                try queue.write { db in try db.execute(sql: "UPDATE hub_state SET incarnation = ?", arguments: [Data(renewed)]) }
            }
            current = renewed
        }
        let lineage = try Self.continueLineage(connection, path: path, incarnation: current, random: &random)
        self.incarnation = lineage.incarnation
        renewedIncarnation = lineage.renewed
        if scopes.rebuild { try rebuildScopes(nowMillis: Int64(clamping: wallClock.nowMillis())) }
    }

    /// Opens an existing hub database read-only (for the operator's views): nothing is created,
    /// migrated or written, and no side file is left behind.
    public convenience init(readingAt path: String, scopeRules: (any ScopeRules)? = nil) throws {
        try self.init(readingAt: path, options: StoreConnectionOptions(), scopeRules: scopeRules)
    }

    package init(readingAt path: String, options: StoreConnectionOptions, scopeRules: (any ScopeRules)? = nil) throws {
        self.path = path
        _ = try StoreFile.expect(.hub, at: path, options: options)
        let reader = try ReplicaStore.guarded { try ReadOnlyConnection(path: path, options: options) }
        try ReplicaStore.guarded { try StoreFile.verify(reader.queue, path: path, expected: .full, readOnly: true) }
        let stored = try ReplicaStore.guarded { try reader.queue.read { db in try String.fetchOne(db, sql: "SELECT hub_id FROM hub_state") } }
        guard let stored, let id = ReplicaID(hex: stored) else {
            throw StoreError(.corrupt, "hub id is unreadable", path: path, table: "hub_state")
        }
        let identity = try ReplicaStore.guarded {
            try reader.queue.read { db in try Row.fetchOne(db, sql: "SELECT hub_key, incarnation FROM hub_state") }
        }
        guard let identity, let key = identity[0] as Data?, let incarnation = identity[1] as Data? else {
            throw StoreError(.schemaTooOld, "the hub database has no hub key yet; open it for writing once", path: path, table: "hub_state")
        }
        self.reader = reader
        connection = reader.queue
        readConnection = reader.queue
        synchronous = options.synchronous
        hubID = id
        hubKey = Array(key)
        signingKey = nil
        hubKeyed = [id]
        // Only to read the scope view's columns with their policies (`scopeView`): a read-only
        // store decides nothing.
        self.scopeRules = scopeRules
        self.incarnation = Array(incarnation)
        renewedIncarnation = false
    }

    /// The writer connection, unless the store was closed: GRDB's queue must not be used after its
    /// `close()`, so every call asks here first and a late one is refused with an error.
    var queue: DatabaseQueue {
        get throws(StoreError) {
            guard !closed.isSet else { throw StoreError(.database, "the hub store is closed", path: path) }
            return connection
        }
    }

    /// The reader connection, unless the store was closed.
    var reads: DatabaseQueue {
        get throws(StoreError) {
            guard !closed.isSet else { throw StoreError(.database, "the hub store is closed", path: path) }
            return readConnection
        }
    }

    /// Closes both connections (SQLite checkpoints the WAL); later calls fail with a storage
    /// error, and a second close does nothing. Callers stop using the store first: the hub closes
    /// it after its last session ended.
    public func close() throws {
        guard closed.set() else { return }
        // The lineage as it is at shutdown: a copy of this file taken earlier and put back will be
        // found behind it. Read before the connections close, written after, so a failure to
        // write it still leaves the store closed.
        let head = reader == nil ? Result { try ReplicaStore.guarded { try connection.read { db in try Self.head(db) } } } : nil
        try ReplicaStore.guarded {
            if readConnection !== connection { try readConnection.close() }
            try connection.close()
        }
        if let head { try HubLineage(incarnation: incarnation, head: try head.get()).write(database: path) }
    }

    /// The reader connection. `query_only`, so nothing can write through it; its `synchronous`
    /// matters only if it is the last connection to close and checkpoints the WAL.
    private static func openReads(path: String, options: StoreConnectionOptions) throws -> DatabaseQueue {
        let synchronous = options.synchronous.rawValue
        let configuration = StoreFile.configuration(label: "caresync.hub.read") { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            try db.execute(sql: "PRAGMA query_only = 1")
        }
        return try DatabaseQueue(path: StoreFile.uri(path, options: options), configuration: configuration)
    }

    /// A write an acknowledgement or an answer depends on (pushes, enrolment, forks, revocation):
    /// one transaction committed at the configured `synchronous` (FULL: the WAL is synced before
    /// this returns). Set before every such commit, so nothing `unsyncedWrite` did, or failed to
    /// undo, can leave an acknowledged commit unsynced.
    func durableWrite<T>(_ body: (Database) throws -> T) throws -> T {
        try ReplicaStore.guarded {
            try queue.inDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
                return try Self.transaction(db, body)
            }
        }
    }

    /// Bookkeeping no acknowledgement depends on (operator-view times, versions, health, cursors):
    /// one transaction committed without a WAL sync of its own.
    ///
    /// Why that is safe: after a power cut SQLite replays WAL frames only up to the last intact
    /// commit, in order. An unsynced commit can be lost, or kept, but the next `durableWrite`
    /// syncs the WAL up to and including itself, so an acknowledged push never depends on an
    /// unsynced write and is never lost with one. What a cut can lose is a `last_seen`, a health
    /// report or a pull cursor the operator view shows; the replica reports them again.
    func unsyncedWrite(_ body: (Database) throws -> Void) throws {
        try ReplicaStore.guarded {
            try queue.inDatabase { db in
                // `synchronous` cannot change inside a transaction, so it is set around it.
                try db.execute(sql: "PRAGMA synchronous = \(StoreConnectionOptions.Synchronous.normal.rawValue)")
                let outcome = Result { try Self.transaction(db, body) }
                try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
                try outcome.get()
            }
        }
    }

    static func transaction<T>(_ db: Database, _ body: (Database) throws -> T) throws -> T {
        var result: T?
        try db.inTransaction(.immediate) {
            result = try body(db)
            return .commit
        }
        guard let result else { throw StoreError(.database, "a hub transaction ended without a result") }
        return result
    }

    /// Runs `body` while holding the writer connection, as a long commit would (for tests: reads
    /// must not wait for it).
    package func holdingWriter<T>(_ body: () throws -> T) throws -> T {
        try ReplicaStore.guarded { try queue.inDatabase { _ in try body() } }
    }

    /// What this store's connection reports for `synchronous` and `journal_mode` (for tests).
    package func connectionPragmas() throws -> (synchronous: Int, journalMode: String) { try StoreFile.pragmas(queue) }

    /// How many identities one replica may fork into. A fork needs an authenticated session of the
    /// replica; the cap bounds what a stolen secret can mint.
    public static let maxForks = 16

    /// How many refused versions (evidence of equivocations) the hub keeps per submitting replica.
    public static let maxEvidencePerReplica = 256

    /// Registers a fork of `replica` with the new identity's device key
    /// (``HubStore/fork(_:into:deviceKey:nowMillis:random:)``), durably; its certificate is then
    /// ``certificate(for:)`` of `newReplica`.
    public func fork(_ replica: ReplicaID, into newReplica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
                     random: inout some RandomNumberGenerator) throws -> ForkResult {
        var secret: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: random.next()) { secret.append(contentsOf: $0) } }
        return try ReplicaStore.guarded {
            try durableWrite { db in
                guard let team = try String.fetchOne(db, sql: "SELECT team FROM hub_replica WHERE replica_id = ? AND revoked_at IS NULL",
                                                     arguments: [replica.hex])
                else { return .unknownReplica }
                let taken = try Int.fetchOne(db, sql: """
                    SELECT (SELECT count(*) FROM hub_replica WHERE replica_id = ?1) + (SELECT count(*) FROM hub_origin WHERE replica_id = ?1)
                    """, arguments: [newReplica.hex]) ?? 0
                // The hub's own id names the hub in every welcome: a replica under it would be
                // mistaken for the hub.
                guard taken == 0, newReplica != hubID, !hubKeyed.contains(newReplica) else { return .idTaken }
                guard try Self.keyAvailable(db, deviceKey, for: newReplica) else { return .idTaken }
                guard try Self.forksInLineage(db, of: replica) < Self.maxForks else { return .tooManyForks }
                try db.execute(sql: """
                    INSERT INTO hub_replica (replica_id, team, secret_hash, forked_from) VALUES (?, ?, ?, ?)
                    """, arguments: [newReplica.hex, team, Self.hash(secret), replica.hex])
                try register(db, deviceKey, for: newReplica, nowMillis: nowMillis)
                try ensureTeam(db, team)
                return .forked(secret: secret)
            }
        }
    }

    /// Replicas forked, directly or through other forks, from the enrolled replica `replica`
    /// descends from. Counted over the whole lineage: a session goes on as the replica it forked
    /// into, which could fork again, so a count per replica would bound nothing.
    private static func forksInLineage(_ db: Database, of replica: ReplicaID) throws -> Int {
        // Each fork registers an id unknown to the hub, so the lineage is a tree (no cycles) of at
        // most `maxForks + 1` replicas: both walks are bounded.
        let root = try String.fetchOne(db, sql: """
            WITH RECURSIVE up(id, parent) AS (
              SELECT replica_id, forked_from FROM hub_replica WHERE replica_id = ?
              UNION SELECT r.replica_id, r.forked_from FROM hub_replica r JOIN up ON r.replica_id = up.parent)
            SELECT id FROM up WHERE parent IS NULL OR parent NOT IN (SELECT replica_id FROM hub_replica) LIMIT 1
            """, arguments: [replica.hex]) ?? replica.hex
        return try Int.fetchOne(db, sql: """
            WITH RECURSIVE down(id) AS (
              SELECT ? UNION SELECT r.replica_id FROM hub_replica r JOIN down ON r.forked_from = down.id)
            SELECT count(*) - 1 FROM down
            """, arguments: [root]) ?? 0
    }

    /// Every refused second version of a change id (``HubStore/equivocations()``).
    public func equivocations() throws -> [EquivocationRecord] {
        try ReplicaStore.guarded {
            try reads.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT e.origin, e.counter, e.digest, length(e.bytes), e.from_replica, e.received_at, c.bytes, e.held_head, e.refused_head
                    FROM hub_equivocation e LEFT JOIN hub_origin o ON o.replica_id = e.origin
                    LEFT JOIN hub_log c ON c.origin = o.id AND c.counter = e.counter ORDER BY e.id
                    """).compactMap { row in
                    guard let origin = ReplicaID(hex: row[0]), let from = ReplicaID(hex: row[4]) else { return nil }
                    let held = (row[6] as Data?).map { Self.hash(Array($0)) } ?? ""
                    var record = EquivocationRecord(change: ChangeID(replica: origin, counter: UInt64(max(0, row[1] as Int64))), from: from,
                                                    receivedAtMillis: UInt64(max(0, row[5] as Int64)), heldDigest: held,
                                                    refusedDigest: row[2], refusedBytes: row[3])
                    record.heldHead = Self.decodedHead(row[7] as Data?)
                    record.refusedHead = Self.decodedHead(row[8] as Data?)
                    return record
                }
            }
        }
    }

    static func hash(_ bytes: [UInt8]) -> String { Array(SHA256.hash(data: bytes)).hexString }

    /// Issues an enrolment token, storing only its hash (``HubStore/issueEnrolmentToken(team:replica:expiresAtMillis:random:)``).
    public func issueEnrolmentToken(team: String, replica: ReplicaID?, expiresAtMillis: UInt64,
                                    random: inout some RandomNumberGenerator) throws -> String {
        var bytes: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: random.next()) { bytes.append(contentsOf: $0) } }
        let token = "cse1-" + bytes.hexString
        try ReplicaStore.guarded {
            try durableWrite { db in
                try db.execute(sql: "INSERT INTO hub_token (hash, team, expires_at, replica_id) VALUES (?, ?, ?, ?)",
                               arguments: [Self.hash(Array(token.utf8)), team, Int64(clamping: expiresAtMillis), replica?.hex])
            }
        }
        return token
    }

    /// A token binds one replica id once. It is redeemable again only by that replica id, and only
    /// until the replica shows it received the secret (a request after the welcome, or a hello with
    /// the secret): if the welcome carrying the secret was lost, the replica would otherwise be
    /// locked out. An existing replica id is never re-bound, except by a token the operator bound to
    /// it (`issueEnrolmentToken(team:replica:…)` with that id), which is how a device that lost its secret is re-enrolled; a
    /// revoked replica id never is.
    ///
    /// The token also authorises `deviceKey`, once: it is registered as the replica's device key and
    /// a certificate issued for it (``certificate(for:)``). A key that was ever revoked, or is
    /// another replica's, is refused (`.alreadyUsed`, which the session answers as any refused token).
    public func redeemEnrolmentToken(_ token: String, replica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
                                     random: inout some RandomNumberGenerator) throws -> EnrolmentResult {
        var secret: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: random.next()) { secret.append(contentsOf: $0) } }
        return try ReplicaStore.guarded {
            try durableWrite { db in
                let hash = Self.hash(Array(token.utf8))
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT team, expires_at, used_by, replica_id, spent_at FROM hub_token WHERE hash = ?
                    """, arguments: [hash]) else { return .unknownToken }
                if UInt64(max(0, row[1] as Int64)) < nowMillis { return .expired }
                let team: String = row[0]
                let boundTo: String? = row[3]
                if let boundTo, boundTo != replica.hex { return .alreadyUsed }
                // The hub's own id and the hub-keyed origins are signed by the hub key alone.
                guard replica != hubID, !hubKeyed.contains(replica), try Self.keyAvailable(db, deviceKey, for: replica) else { return .alreadyUsed }
                let existing = try Row.fetchOne(db, sql: "SELECT revoked_at FROM hub_replica WHERE replica_id = ?", arguments: [replica.hex])
                let now = Int64(clamping: nowMillis)
                if let usedBy = row[2] as String? {
                    // The lost-welcome retry: same replica, secret never shown, not revoked since.
                    guard usedBy == replica.hex, (row[4] as Int64?) == nil, let existing, (existing[0] as Int64?) == nil else {
                        return .alreadyUsed
                    }
                    try db.execute(sql: "UPDATE hub_replica SET secret_hash = ? WHERE replica_id = ?", arguments: [Self.hash(secret), replica.hex])
                    try register(db, deviceKey, for: replica, nowMillis: nowMillis)
                    return .enrolled(team: team, secret: secret)
                }
                if let existing {
                    // Revocation is final (Protocol/identity.md, "Revocation"): a revoked replica id
                    // is never enrolled again, whatever the token; its device comes back as a new
                    // identity. (Peers hold the revoked id's certificate: another key under that
                    // origin would never verify for them.)
                    guard boundTo == replica.hex, (existing[0] as Int64?) == nil else { return .alreadyUsed }
                    // The operator's re-enrolment of a replica that lost its secret: a new secret (the
                    // old one stops working) and the token's team; older tokens of this replica are spent.
                    try db.execute(sql: "UPDATE hub_replica SET team = ?, secret_hash = ?, revoked_at = NULL WHERE replica_id = ?",
                                   arguments: [team, Self.hash(secret), replica.hex])
                    try db.execute(sql: "UPDATE hub_token SET spent_at = ? WHERE used_by = ? AND spent_at IS NULL",
                                   arguments: [now, replica.hex])
                } else {
                    try db.execute(sql: "INSERT INTO hub_replica (replica_id, team, secret_hash, first_seen) VALUES (?, ?, ?, ?)",
                                   arguments: [replica.hex, team, Self.hash(secret), now])
                }
                try db.execute(sql: "UPDATE hub_token SET used_by = ?, used_at = ? WHERE hash = ?", arguments: [replica.hex, now, hash])
                try register(db, deviceKey, for: replica, nowMillis: nowMillis)
                try ensureTeam(db, team)
                return .enrolled(team: team, secret: secret)
            }
        }
    }

    /// Spends the tokens a replica redeemed (``HubStore/spendEnrolmentTokens(of:nowMillis:)``).
    public func spendEnrolmentTokens(of replica: ReplicaID, nowMillis: UInt64) throws {
        try ReplicaStore.guarded {
            // Read first: almost every hello finds nothing to spend, and a read takes no write lock.
            let unspent = try reads.read { db in
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM hub_token WHERE used_by = ? AND spent_at IS NULL)",
                                  arguments: [replica.hex]) ?? false
            }
            guard unspent else { return }
            try durableWrite { db in
                try db.execute(sql: "UPDATE hub_token SET spent_at = ? WHERE used_by = ? AND spent_at IS NULL",
                               arguments: [Int64(clamping: nowMillis), replica.hex])
            }
        }
    }

    /// Checks a device secret against its stored hash, and the device key against the registered
    /// one (``HubStore/authenticate(replica:secret:deviceKey:nowMillis:)``). A replica enrolled
    /// under protocol 2 has no key yet: the first key it shows with its secret is registered.
    public func authenticate(replica: ReplicaID, secret: [UInt8], deviceKey: [UInt8], nowMillis: UInt64) throws -> AuthenticationResult {
        try ReplicaStore.guarded {
            let found = try reads.read { db -> (AuthenticationResult, registered: Data?) in
                guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT team, secret_hash, revoked_at, public_key FROM hub_replica WHERE replica_id = ?"),
                                                 arguments: [replica.hex]),
                      (row[1] as String) == Self.hash(secret)
                else { return (.unknown, nil) }
                if (row[2] as Int64?) != nil { return (.revoked, nil) }
                return (.accepted(team: row[0]), row[3] as Data?)
            }
            guard case .accepted = found.0 else { return found.0 }
            if let registered = found.registered { return Array(registered) == deviceKey ? found.0 : .unknown }
            return try registerOnFirstUse(replica: replica, deviceKey: deviceKey, nowMillis: nowMillis) ? found.0 : .unknown
        }
    }

    /// Revokes a replica's credential, durably; true if it was not revoked before.
    public func revoke(replica: ReplicaID, nowMillis: UInt64) throws -> Bool {
        try ReplicaStore.guarded {
            try durableWrite { db in
                let now = Int64(clamping: nowMillis)
                try db.execute(sql: "UPDATE hub_replica SET revoked_at = ? WHERE replica_id = ? AND revoked_at IS NULL",
                               arguments: [now, replica.hex])
                let revoked = db.changesCount > 0
                // The key is refused for good, whatever the operator does with the replica id later.
                try db.execute(sql: """
                    INSERT OR IGNORE INTO hub_revoked_key (public_key, replica_id, revoked_at)
                    SELECT public_key, replica_id, ? FROM hub_replica WHERE replica_id = ? AND public_key IS NOT NULL
                    """, arguments: [now, replica.hex])
                // Final until the operator re-enrols: the replica's old token cannot undo it.
                try db.execute(sql: "UPDATE hub_token SET spent_at = ? WHERE used_by = ? AND spent_at IS NULL", arguments: [now, replica.hex])
                return revoked
            }
        }
    }

    /// Which of these replicas are revoked (``HubStore/revokedReplicas(among:)``).
    public func revokedReplicas(among replicas: [ReplicaID]) throws -> Set<ReplicaID> {
        guard !replicas.isEmpty else { return [] }
        return try ReplicaStore.guarded {
            try reads.read { db in
                var revoked: Set<ReplicaID> = []
                // Chunks keep each statement under SQLite's bound-parameter limit.
                for start in stride(from: 0, to: replicas.count, by: 500) {
                    let chunk = replicas[start..<min(start + 500, replicas.count)]
                    let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                    let rows = try String.fetchAll(db, sql: "SELECT replica_id FROM hub_replica WHERE revoked_at IS NOT NULL AND replica_id IN (\(marks))",
                                                   arguments: StatementArguments(chunk.map(\.hex)))
                    revoked.formUnion(rows.compactMap(ReplicaID.init(hex:)))
                }
                return revoked
            }
        }
    }

    /// Operator-view bookkeeping, committed without a sync of its own (``HubStore/recordSession(_:replica:nowMillis:)``).
    public func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws {
        try ReplicaStore.guarded {
            try unsyncedWrite { db in
                // Every number here came from the peer: SQLite integers are signed 64-bit, so
                // values from 2^63 are stored saturated (Protocol/messages.md, heartbeat).
                let now = Int64(clamping: nowMillis)
                switch event {
                case let .hello(app, schema):
                    let app = OperatorText.sanitised(app, maxBytes: 64)
                    try db.cachedStatement(sql: """
                        UPDATE hub_replica SET app_version = ?, schema_version = ?, last_seen = ?, first_seen = coalesce(first_seen, ?)
                        WHERE replica_id = ?
                        """).execute(arguments: [app, Int64(clamping: schema), now, now, replica.hex])
                case let .pulled(cursor):
                    try db.cachedStatement(sql: "UPDATE hub_replica SET pull_cursor = max(pull_cursor, ?), last_seen = ? WHERE replica_id = ?")
                        .execute(arguments: [Int64(clamping: cursor), now, replica.hex])
                case let .health(pending, oldest, conflicts, schema):
                    try db.cachedStatement(sql: """
                        UPDATE hub_replica SET pending = ?, oldest_unsynced_ms = ?, open_conflicts = ?, schema_version = ?, last_seen = ?
                        WHERE replica_id = ?
                        """).execute(arguments: [Int64(clamping: pending), Int64(clamping: oldest), Int64(clamping: conflicts),
                                         Int64(clamping: schema), now, replica.hex])
                case let .error(code):
                    try db.cachedStatement(sql: "UPDATE hub_replica SET last_error = ?, last_seen = ? WHERE replica_id = ?")
                        .execute(arguments: [OperatorText.sanitised(code, maxBytes: 64), now, replica.hex])
                }
            }
        }
    }

    /// One row per known replica for the operator view (``HubStore/replicaSummaries()``).
    public func replicaSummaries() throws -> [ReplicaSummary] {
        try ReplicaStore.guarded {
            try reads.read { db in
                let scoped = try Self.feedsBuilt(db)
                return try Row.fetchAll(db, sql: "SELECT * FROM hub_replica ORDER BY team, replica_id").compactMap { row in
                    guard let replica = ReplicaID(hex: row["replica_id"]) else { return nil }
                    let cursor: Int64 = row["pull_cursor"]
                    // Lag: changes after this replica's cursor that came from other replicas, in its
                    // team's feed when the hub scopes (the cursor is a feed position then).
                    let lag = try Int64.fetchOne(db, sql: scoped ? """
                        SELECT count(*) FROM hub_feed f JOIN hub_team t ON t.id = f.team JOIN hub_log l ON l.seq = f.seq
                        WHERE t.team = ? AND f.fseq > ? AND l.origin NOT IN (SELECT id FROM hub_origin WHERE replica_id = ?)
                        """ : """
                        SELECT count(*) FROM hub_log WHERE ? IS NOT NULL AND seq > ? AND origin NOT IN (SELECT id FROM hub_origin WHERE replica_id = ?)
                        """, arguments: [row["team"] as String, cursor, replica.hex]) ?? 0
                    func optional(_ name: String) -> UInt64? { (row[name] as Int64?).map { UInt64(max(0, $0)) } }
                    return ReplicaSummary(
                        replica: replica, team: row["team"], firstSeenMillis: optional("first_seen"), lastSeenMillis: optional("last_seen"),
                        lagChanges: UInt64(lag), pendingChanges: optional("pending"), oldestUnsyncedAgeMillis: optional("oldest_unsynced_ms"),
                        openConflicts: optional("open_conflicts"), schemaVersion: optional("schema_version"), appVersion: row["app_version"],
                        lastError: row["last_error"], revoked: (row["revoked_at"] as Int64?) != nil,
                        changesStored: UInt64(clamping: row["changes_stored"] as Int64),
                        forkedFrom: (row["forked_from"] as String?).flatMap(ReplicaID.init(hex:)),
                        equivocations: UInt64(try Int64.fetchOne(db, sql: "SELECT count(*) FROM hub_equivocation WHERE from_replica = ?",
                                                                 arguments: [replica.hex]) ?? 0),
                        purgesOwed: try Self.purgeCount(db, replica: replica, acknowledged: false),
                        purgesAcknowledged: try Self.purgeCount(db, replica: replica, acknowledged: true),
                        quarantined: scoped ? UInt64(clamping: row["quarantined"] as Int64) : 0)
                }
            }
        }
    }
}

/// Set once, by `SQLiteHubStore.close()`.
// Safety: `value` is read and written only while holding `lock`.
final class CloseFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { lock.withLock { value } }

    /// Sets the flag; true if it was not set before.
    func set() -> Bool {
        lock.withLock {
            defer { value = true }
            return !value
        }
    }
}
