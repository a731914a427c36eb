import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The hub's identity tables (Protocol/identity.md): chains beside the log, every head received,
/// device keys and certificates, revoked keys, and the hub's key and incarnation.
enum HubIdentitySchema {
    /// hub-v4-identity: the tables, and `hub_log.chain` computed for the rows already held, per
    /// origin in counter order from their stored canonical bytes. A row after a gap in its
    /// origin's counters (a protocol-2 hub stored those) keeps no chain until the gap is filled.
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE hub_log ADD COLUMN chain BLOB;
            CREATE TABLE hub_head (
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, signer INTEGER NOT NULL, signature BLOB NOT NULL,
              PRIMARY KEY (origin, counter)) WITHOUT ROWID;
            ALTER TABLE hub_origin ADD COLUMN attested_through INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE hub_replica ADD COLUMN public_key BLOB;
            ALTER TABLE hub_replica ADD COLUMN attested_through INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE hub_replica ADD COLUMN certificate BLOB;
            CREATE UNIQUE INDEX hub_replica_key ON hub_replica (public_key) WHERE public_key IS NOT NULL;
            CREATE TABLE hub_revoked_key (public_key BLOB PRIMARY KEY, replica_id TEXT NOT NULL, revoked_at INTEGER NOT NULL) WITHOUT ROWID;
            ALTER TABLE hub_state ADD COLUMN hub_key BLOB;
            ALTER TABLE hub_state ADD COLUMN incarnation BLOB;
            ALTER TABLE hub_equivocation ADD COLUMN held_head BLOB;
            ALTER TABLE hub_equivocation ADD COLUMN refused_head BLOB;
            """)
        let update = try db.makeStatement(sql: "UPDATE hub_log SET chain = ? WHERE seq = ?")
        for (origin, replica) in try Row.fetchAll(db, sql: "SELECT id, replica_id FROM hub_origin").map({ ($0[0] as Int64, $0[1] as String) }) {
            guard let replica = ReplicaID(hex: replica) else {
                throw StoreError(.corrupt, "hub origin \(origin) has an unreadable id", table: "hub_origin")
            }
            var chain = OriginChain.genesis(of: replica)
            var expected: Int64 = 1
            let rows = try Row.fetchCursor(db, sql: "SELECT seq, counter, bytes FROM hub_log WHERE origin = ? ORDER BY counter", arguments: [origin])
            while let row = try rows.next(), (row[1] as Int64) == expected {
                chain = OriginChain.next(after: chain, canonicalBytes: Array(row[2] as Data))
                try update.execute(arguments: [Data(chain), row[0] as Int64])
                expected += 1
            }
        }
    }

    /// The first open under protocol 3 keys the store: the hub key is recorded, an incarnation
    /// drawn, and the changes nobody signed (a protocol-2 hub's) are attested by the hub key, at
    /// every change of each origin's contiguous prefix (a pull may then end after any of them), with
    /// `attested_through` set to that prefix. Later opens check that the identity file holds the
    /// store's key. Returns the incarnation.
    static func keyed(_ db: Database, key: SigningKey, hubKeyed: Set<ReplicaID>, incarnation drawn: [UInt8], path: String) throws -> [UInt8] {
        guard let state = try Row.fetchOne(db, sql: "SELECT hub_key, incarnation FROM hub_state") else {
            throw StoreError(.corrupt, "the hub state row is missing", path: path, table: "hub_state")
        }
        if let held = state[0] as Data? {
            guard Array(held) == key.publicKey else {
                throw StoreError(.identityMismatch, "the hub identity file holds another key than this hub database's",
                                 path: IdentityFile.path(forStore: path))
            }
            guard let incarnation = state[1] as Data?, incarnation.count == SQLiteHubStore.incarnationSize else {
                throw StoreError(.corrupt, "the hub incarnation is unreadable", path: path, table: "hub_state")
            }
            return Array(incarnation)
        }
        try attest(db, key: key, hubKeyed: hubKeyed)
        try db.execute(sql: "UPDATE hub_state SET hub_key = ?, incarnation = ?", arguments: [Data(key.publicKey), Data(drawn)])
        return drawn
    }

    private static func attest(_ db: Database, key: SigningKey, hubKeyed: Set<ReplicaID>) throws {
        let insert = try db.makeStatement(sql: "INSERT OR IGNORE INTO hub_head (origin, counter, signer, signature) VALUES (?, ?, ?, ?)")
        for row in try Row.fetchAll(db, sql: "SELECT id, replica_id, contiguous FROM hub_origin WHERE contiguous > 0") {
            let origin: Int64 = row[0]
            let contiguous: Int64 = row[2]
            guard let replica = ReplicaID(hex: row[1]) else { continue }
            // The hub key is the key of a hub-keyed origin: its heads are its own, not attestations.
            let signer: HeadSigner = hubKeyed.contains(replica) ? .origin : .hubAttestation
            let chains = try Row.fetchCursor(db, sql: "SELECT counter, chain FROM hub_log WHERE origin = ? AND counter <= ? ORDER BY counter",
                                             arguments: [origin, contiguous])
            while let chainRow = try chains.next() {
                let counter = UInt64(chainRow[0] as Int64)
                let chain = Array(chainRow[1] as Data)
                let head = key.head(origin: replica, counter: counter, chain: chain, signer: signer)
                try insert.execute(arguments: [origin, counter, Int64(signer.rawValue), Data(head.signature)])
            }
            try db.execute(sql: "UPDATE hub_origin SET attested_through = ? WHERE id = ?", arguments: [contiguous, origin])
            try db.execute(sql: "UPDATE hub_replica SET attested_through = ? WHERE replica_id = ?", arguments: [contiguous, replica.hex])
        }
    }
}

extension SQLiteHubStore {
    /// Bytes of an incarnation.
    public static let incarnationSize = 16

    /// Compares the store with its lineage file and records the lineage now: a store behind its
    /// file (restored from an older copy) takes a new incarnation, durably, before any session.
    static func continueLineage(_ queue: DatabaseQueue, path: String, incarnation: [UInt8],
                                random: inout some RandomNumberGenerator) throws -> (incarnation: [UInt8], renewed: Bool) {
        let head = try ReplicaStore.guarded { try queue.read { db in try Self.head(db) } }
        var current = incarnation
        var renewed = false
        if let recorded = HubLineage.read(database: path), !recorded.continued(by: incarnation, head: head) {
            var drawn: [UInt8] = []
            for _ in 0..<2 { withUnsafeBytes(of: random.next()) { drawn.append(contentsOf: $0) } }
            try ReplicaStore.guarded {
                try queue.write { db in try db.execute(sql: "UPDATE hub_state SET incarnation = ?", arguments: [Data(drawn)]) }
            }
            current = drawn
            renewed = true
        }
        try HubLineage(incarnation: current, head: head).write(database: path)
        return (current, renewed)
    }

    /// The certificate the hub issued for `replica`'s device key, or nil (not enrolled, or a
    /// protocol-2 replica whose key is not registered yet). The session puts it in the welcome.
    public func certificate(for replica: ReplicaID) throws -> DeviceCertificate? {
        try ReplicaStore.guarded {
            try reads.read { db in
                guard let data = try Data.fetchOne(db.cachedStatement(sql: "SELECT certificate FROM hub_replica WHERE replica_id = ?"),
                                                   arguments: [replica.hex])
                else { return nil }
                do {
                    return try DeviceCertificate(encoded: Array(data))
                } catch {
                    throw StoreError.unreadable("the certificate of replica \(replica.short)", table: "hub_replica", column: "certificate", error)
                }
            }
        }
    }

    /// Whether `key` can be registered to `replica`: an Ed25519 public key, never revoked, and no
    /// other replica's.
    static func keyAvailable(_ db: Database, _ key: [UInt8], for replica: ReplicaID) throws -> Bool {
        guard key.count == DeviceCertificate.publicKeySize else { return false }
        let revoked = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM hub_revoked_key WHERE public_key = ?)", arguments: [Data(key)]) ?? true
        let owner = try String.fetchOne(db, sql: "SELECT replica_id FROM hub_replica WHERE public_key = ?", arguments: [Data(key)])
        return !revoked && (owner == nil || owner == replica.hex)
    }

    /// Registers `key` as `replica`'s device key and issues its certificate, signed by the hub key.
    /// The replica's row exists; its team and `attested_through` go into the certificate.
    func register(_ db: Database, _ key: [UInt8], for replica: ReplicaID, nowMillis: UInt64) throws {
        guard let signingKey else { throw StoreError(.database, "a read-only hub store cannot issue certificates", path: path) }
        guard let row = try Row.fetchOne(db, sql: "SELECT team, attested_through FROM hub_replica WHERE replica_id = ?", arguments: [replica.hex])
        else { throw StoreError(.corrupt, "replica \(replica.short) vanished while it was being registered", table: "hub_replica") }
        let team: String = row[0]
        let attested = UInt64(max(0, row[1] as Int64))
        let certificate = signingKey.certificate(replica: replica, publicKey: key, team: team, issuedAtMillis: nowMillis,
                                                 attestedThrough: attested)
        try db.execute(sql: "UPDATE hub_replica SET public_key = ?, certificate = ? WHERE replica_id = ?",
                       arguments: [Data(key), Data(certificate.encoded), replica.hex])
    }

    /// A protocol-2 replica shows its device secret with a key for the first time: the key is
    /// registered, once (a later hello with another key is refused).
    func registerOnFirstUse(replica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64) throws -> Bool {
        try durableWrite { db in
            let registered = try Row.fetchOne(db, sql: "SELECT public_key FROM hub_replica WHERE replica_id = ?", arguments: [replica.hex])
            guard let registered, (registered[0] as Data?) == nil, try Self.keyAvailable(db, deviceKey, for: replica) else { return false }
            try register(db, deviceKey, for: replica, nowMillis: nowMillis)
            return true
        }
    }
}
