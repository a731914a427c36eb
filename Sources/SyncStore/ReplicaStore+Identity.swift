import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The replica's identity file as read at open (and as replaced since), shared by every reader of a `ReplicaStore`.
final class DeviceCell: @unchecked Sendable {
    // Safety: `current` is read and written only under `lock`.
    private let lock = NSLock()
    private var current: ReplicaIdentity?

    init(_ identity: ReplicaIdentity?) { current = identity }

    var value: ReplicaIdentity? {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}

/// SplitMix64 over a replica id: the device key of a store made by tests and tools without one
/// (the package `create`). Anyone can compute it: never used where a key must be secret.
struct DerivedKeySeed: RandomNumberGenerator {
    private var state: UInt64

    init(_ replica: ReplicaID) { state = replica.high ^ (replica.low &* 0x9E37_79B9_7F4A_7C15) }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

extension ReplicaStore {
    /// The migration that adds chains, heads, certificates and the pinned hub key.
    static let identityMigration = "sync-v5-identity"

    /// Reads the identity file beside `path` and, read-write, moves a device secret still in
    /// `sync_hub.credential` into it (then clears the column). `upgradeKey` makes the file for a
    /// replica this open has just upgraded that has none.
    static func openIdentity(path: String, replicaID: ReplicaID, queue: DatabaseQueue?, upgradeKey: SigningKey?) throws -> ReplicaIdentity? {
        let identityPath = IdentityFile.path(forStore: path)
        var identity: ReplicaIdentity?
        do {
            identity = try IdentityFile.readReplica(at: identityPath, expecting: replicaID)
        } catch let error as StoreError where error.code == .identityMissing {
            identity = nil
        }
        guard let queue else { return identity }
        let credential = try guarded { try queue.read { try Data.fetchOne($0, sql: "SELECT credential FROM sync_hub") }.map(Array.init) }
        if identity == nil, let upgradeKey {
            let made = ReplicaIdentity(replica: replicaID, deviceKey: upgradeKey, deviceSecret: credential)
            try IdentityFile.create(made, at: identityPath)
            identity = made
        } else if let held = identity, let credential, held.deviceSecret != credential {
            let moved = ReplicaIdentity(replica: replicaID, deviceKey: held.deviceKey, deviceSecret: credential)
            try IdentityFile.replace(moved, at: identityPath)
            identity = moved
        }
        if identity != nil, credential != nil {
            // The file holds it now (fsynced): the copy in the database goes.
            try guarded { try queue.write { try $0.execute(sql: "UPDATE sync_hub SET credential = NULL") } }
        }
        return identity
    }

    /// The device key from the identity file; nil when the replica has none (it cannot sign).
    public var signingKey: SigningKey? { device.value?.deviceKey }

    /// The device secret the hub issued, from the identity file; nil before enrolment or without a file.
    public var deviceSecret: [UInt8]? { device.value?.deviceSecret }

    /// Replaces the device secret in the identity file (atomically, fsynced).
    /// - Throws: ``StoreError`` `.identityMissing` without an identity file; `.identityUnreadable`.
    public func setDeviceSecret(_ secret: [UInt8]?) throws {
        let held = try requireIdentity()
        let changed = ReplicaIdentity(replica: held.replica, deviceKey: held.deviceKey, deviceSecret: secret)
        try IdentityFile.replace(changed, at: identityPath)
        device.value = changed
    }

    /// Gives the identity file a new replica id and key (a fork), keeping it 0600.
    func replaceIdentity(replica: ReplicaID, key: SigningKey?, secret: [UInt8]?) throws {
        guard let held = device.value else { return }
        let changed = ReplicaIdentity(replica: replica, deviceKey: key ?? held.deviceKey, deviceSecret: secret)
        try IdentityFile.replace(changed, at: identityPath)
        device.value = changed
    }

    private func requireIdentity() throws -> ReplicaIdentity {
        guard let held = device.value else {
            throw StoreError(.identityMissing, "\(identityPath) is missing: this replica cannot sign; it syncs again by enrolling as a new identity",
                             path: identityPath)
        }
        return held
    }

    /// Whether the identity file (nil: there is none) is readable by its owner only.
    public func identityIsPrivate() throws -> Bool? {
        guard FileManager.default.fileExists(atPath: identityPath) else { return nil }
        return try IdentityFile.isPrivate(identityPath)
    }

    // MARK: the hub's key, incarnation and certificates

    /// Pins the hub's public key (at enrolment). Pinning the key already pinned does nothing.
    /// - Throws: ``StoreError`` `.identityMismatch` when another key is pinned (the welcome's key changed).
    public func pinHubKey(_ key: [UInt8]) throws {
        try writeContext { context in
            if let pinned = try Data.fetchOne(context.db, sql: "SELECT hub_key FROM sync_hub"), Array(pinned) != key {
                throw StoreError(.identityMismatch, "the hub's key is not the one pinned at enrolment", table: "sync_hub", column: "hub_key")
            }
            // A link with no address yet (the address is set before a sync, and kept by a later one).
            try context.db.execute(sql: "INSERT INTO sync_hub (id, address, hub_key) VALUES (1, '', ?) ON CONFLICT (id) DO UPDATE SET hub_key = excluded.hub_key",
                                   arguments: [Data(key)])
        }
    }

    /// The hub key pinned at enrolment, if any.
    public func pinnedHubKey() throws -> [UInt8]? {
        try readDatabase { db in try Data.fetchOne(db, sql: "SELECT hub_key FROM sync_hub").map(Array.init) }
    }

    /// The hub incarnation last recorded, if any.
    public func incarnation() throws -> [UInt8]? {
        try readDatabase { db in try Data.fetchOne(db, sql: "SELECT incarnation FROM sync_hub").map(Array.init) }
    }

    /// Records the hub's incarnation (from a welcome).
    public func setIncarnation(_ incarnation: [UInt8]) throws {
        try writeContext { context in
            try context.db.execute(sql: """
                INSERT INTO sync_hub (id, address, incarnation) VALUES (1, '', ?) ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation
                """, arguments: [Data(incarnation)])
        }
    }

    /// Keeps a device certificate (this replica's own from a welcome, or another's that verified).
    public func saveCertificate(_ certificate: DeviceCertificate) throws {
        try writeContext { context in try Self.keep(certificate, in: context.db) }
    }

    private static func keep(_ certificate: DeviceCertificate, in db: Database) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO sync_device (replica_id, certificate) VALUES (?, ?)")
            .execute(arguments: [certificate.replica.hex, Data(certificate.encoded)])
    }

    /// The held certificate of `replica`, if any.
    public func certificate(for replica: ReplicaID) throws -> DeviceCertificate? {
        try readDatabase { db in try Self.certificate(for: replica, in: db) }
    }

    static func certificate(for replica: ReplicaID, in db: Database) throws -> DeviceCertificate? {
        guard let blob = try Data.fetchOne(db.cachedStatement(sql: "SELECT certificate FROM sync_device WHERE replica_id = ?"),
                                           arguments: [replica.hex]) else { return nil }
        do {
            return try DeviceCertificate(encoded: Array(blob))
        } catch {
            throw StoreError.unreadable("the certificate of replica \(replica.short)", table: "sync_device", column: "certificate", error)
        }
    }

    // MARK: heads

    /// Signed heads of this replica's own log for a run `range`: one at every checkpoint in it and
    /// one at its end (Protocol/identity.md, "Checkpoints"), signed with the identity file's key.
    /// - Throws: ``StoreError`` `.identityMissing` without a key; `.corrupt` when the run is not
    ///   held whole with its chain.
    public func ownHeads(in range: ClosedRange<UInt64>) throws -> [SignedHead] {
        let key = try requireIdentity().deviceKey
        let own = replicaID
        return try readDatabase { db in
            guard let origin = try Int64.fetchOne(db, sql: "SELECT id FROM sync_origin WHERE replica_id = ?", arguments: [own.hex]) else {
                throw StoreError(.corrupt, "this replica holds none of its own changes \(range.lowerBound)…\(range.upperBound)", table: "sync_change")
            }
            let rows = try Row.fetchAll(db, sql: """
                SELECT counter, chain FROM sync_change
                WHERE origin = ? AND counter BETWEEN ? AND ? AND (checkpoint = 1 OR counter = ?) ORDER BY counter
                """, arguments: [origin, Int64(bitPattern: range.lowerBound), Int64(bitPattern: range.upperBound), Int64(bitPattern: range.upperBound)])
            guard rows.last.map({ UInt64(bitPattern: $0[0]) }) == range.upperBound else {
                throw StoreError(.corrupt, "own change \(range.upperBound) is not held", table: "sync_change",
                                 change: ChangeID(replica: own, counter: range.upperBound))
            }
            return try rows.map { row in
                let counter = UInt64(bitPattern: row[0])
                guard let chain = row[1] as Data?, chain.count == SignedHead.chainSize else {
                    throw StoreError(.corrupt, "own change \(counter) has no chain: the log below it is not held whole", table: "sync_change",
                                     column: "chain", change: ChangeID(replica: own, counter: counter))
                }
                return key.head(origin: own, counter: counter, chain: Array(chain))
            }
        }
    }

    /// The heads held of `origin`'s log with counters in `range`, ascending.
    public func heldHeads(origin: ReplicaID, in range: ClosedRange<UInt64>) throws -> [SignedHead] {
        try readDatabase { db in try Self.heldHeads(db, origin: origin, in: range) }
    }

    static func heldHeads(_ db: Database, origin replica: ReplicaID, in range: ClosedRange<UInt64>, limit: Int = .max) throws -> [SignedHead] {
        guard let origin = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM sync_origin WHERE replica_id = ?"), arguments: [replica.hex]) else {
            return []
        }
        let rows = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT h.counter, h.signer, h.signature, coalesce(c.chain, p.chain) FROM sync_head h
            LEFT JOIN sync_change c ON c.origin = h.origin AND c.counter = h.counter
            LEFT JOIN sync_purged p ON p.origin = h.origin AND p.counter = h.counter
            WHERE h.origin = ? AND h.counter BETWEEN ? AND ? AND (c.counter IS NOT NULL OR p.counter IS NOT NULL)
            ORDER BY h.counter LIMIT ?
            """), arguments: [origin, Int64(bitPattern: range.lowerBound), Int64(bitPattern: min(range.upperBound, UInt64(Int64.max))),
                              min(limit, Int(Int32.max))])
        return try rows.map { row in
            let counter = UInt64(bitPattern: row[0])
            guard let signer = HeadSigner(rawValue: UInt8(truncatingIfNeeded: row[1] as Int64)), let signature = row[2] as Data?,
                  signature.count == SignedHead.signatureSize, let chain = row[3] as Data?, chain.count == SignedHead.chainSize else {
                throw StoreError(.corrupt, "the held head of \(replica.short) at \(counter) is unreadable", table: "sync_head",
                                 change: ChangeID(replica: replica, counter: counter))
            }
            return SignedHead(origin: replica, counter: counter, chain: Array(chain), signer: signer, signature: Array(signature))
        }
    }

    /// What to send with `changes` (a push or an export). Each origin's changes are taken in
    /// counter order as maximal runs of consecutive counters (a replica holding only part of an
    /// origin's log sends it as several runs: Protocol/scope.md); for each run `a…b`, this replica's
    /// own signed heads, or the heads held of another origin (every one inside the run) and, when
    /// `a > 1`, the held head at `a − 1` if any: an **anchor**, so a receiver that does not hold
    /// `chain(a − 1)` (a hub restored from a backup, a peer of another bundle) can still verify the
    /// run. Also the certificates of origins other than this replica's and the hub-keyed ones.
    /// - Throws: `IdentityError` `.unsignedChanges` (SyncIdentity) when another origin's run does
    ///   not end at a held head (cut it there: `BundleExchange.signedRuns`); ``StoreError``
    ///   `.identityMissing` without a key.
    public func provenance(for changes: [Change]) throws -> Provenance {
        var counters: [ReplicaID: [UInt64]] = [:]
        for change in changes { counters[change.id.replica, default: []].append(change.id.counter) }
        var heads: [SignedHead] = []
        var certificates: [DeviceCertificate] = []
        let own = replicaID
        let hub = try hubLink()?.hubID
        for (origin, held) in counters.sorted(by: { $0.key < $1.key }) {
            for run in Self.consecutiveRuns(held) {
                // Runs of one origin are at least one counter apart: the anchor at a − 1 is never inside another.
                let anchorAt = run.lowerBound - 1
                if origin == own {
                    // No anchor: a receiver holds the sender's own log below what it is sent (the hub
                    // acknowledged it; a peer's knowledge said so), and a head costs 115 bytes.
                    heads += try ownHeads(in: run)
                    continue
                }
                if anchorAt > 0 { heads += try heldHeads(origin: origin, in: anchorAt...anchorAt) }
                let inside = try heldHeads(origin: origin, in: run)
                guard inside.last?.counter == run.upperBound else {
                    throw IdentityError(.unsignedChanges, "origin \(origin.short)'s run ends at \(run.upperBound), where no head is held",
                                        origin: origin, counter: run.upperBound)
                }
                heads += inside
            }
            if origin != own, origin != hub, !hubKeyedOrigins.contains(origin), let certificate = try certificate(for: origin) {
                certificates.append(certificate)
            }
        }
        // Origins in ascending order, each one's heads ascending: the order Provenance requires.
        return Provenance(heads: heads, certificates: certificates)
    }

    /// `counters` (any order, no repeats) as maximal ranges of consecutive counters, ascending.
    package static func consecutiveRuns(_ counters: [UInt64]) -> [ClosedRange<UInt64>] {
        var runs: [ClosedRange<UInt64>] = []
        for counter in counters.sorted() {
            if let last = runs.last, counter <= last.upperBound + 1 {
                runs[runs.count - 1] = last.lowerBound...max(last.upperBound, counter)
            } else {
                runs.append(counter...counter)
            }
        }
        return runs
    }

    // MARK: verifying a batch

    /// What the store holds, for `RunVerifier`, read inside the batch's transaction.
    struct Ledger: ChainLedger {
        let context: MergeTransaction
        let own: ReplicaID
        let ownKey: [UInt8]?
        let hubKey: [UInt8]?
        let hubKeyed: Set<ReplicaID>

        func heldChain(origin: ReplicaID, counter: UInt64) throws -> [UInt8]? { try context.heldChain(origin, counter: counter) }

        func heldBytes(origin: ReplicaID, counter: UInt64) throws -> [UInt8]? {
            // New changes (the usual case) are answered from the batch's prefetch, without a read each.
            guard try context.holds(origin, counter: counter) else { return nil }
            return try context.storedChange(origin: try context.originID(origin), counter: Int64(bitPattern: counter), replica: origin)?.canonicalBytes
        }

        func heldHead(origin: ReplicaID, covering counter: UInt64) throws -> SignedHead? {
            guard let head = try ReplicaStore.heldHeads(context.db, origin: origin, in: counter...UInt64(Int64.max), limit: 1).first else {
                return nil
            }
            // It covers the change only within the same held segment: past a gap, the chain was
            // taken from an anchor, not computed from this change (Protocol/scope.md).
            let held = try Int64.fetchOne(context.db.cachedStatement(sql: "SELECT count(*) FROM sync_change WHERE origin = ? AND counter BETWEEN ? AND ?"),
                                          arguments: [try context.originID(origin), Int64(bitPattern: counter), Int64(bitPattern: head.counter)])
            return held == Int64(bitPattern: head.counter - counter + 1) ? head : nil
        }

        func key(for origin: ReplicaID) throws -> OriginKey? {
            if hubKeyed.contains(origin) { return hubKey.map { OriginKey(publicKey: $0, isHubKey: true) } }
            if origin == own, let ownKey { return OriginKey(publicKey: ownKey) }
            return try ReplicaStore.certificate(for: origin, in: context.db).map(OriginKey.init(certificate:))
        }
    }

    func verify(_ changes: [Change], provenance: Provenance, in context: MergeTransaction) throws -> VerifiedChanges {
        let row = try Row.fetchOne(context.db, sql: "SELECT hub_key, hub_id FROM sync_hub")
        let hubKey = (row?[0] as Data?).map(Array.init)
        var hubKeyed = hubKeyedOrigins
        if let hub = (row?[1] as String?).flatMap(ReplicaID.init(hex:)) { hubKeyed.insert(hub) }
        let ledger = Ledger(context: context, own: replicaID, ownKey: signingKey?.publicKey, hubKey: hubKey, hubKeyed: hubKeyed)
        return try RunVerifier(hubKey: hubKey).verify(changes, canonicalBytes: changes.map(\.canonicalBytes), provenance: provenance, ledger: ledger)
    }

    /// Keeps the heads and certificates of a verified batch, in its transaction.
    func keep(_ verified: VerifiedChanges, in context: MergeTransaction) throws {
        let insert = try context.db.cachedStatement(sql: "INSERT OR IGNORE INTO sync_head (origin, counter, signer, signature) VALUES (?, ?, ?, ?)")
        for head in verified.heads {
            try insert.execute(arguments: [try context.originID(head.origin), Int64(bitPattern: head.counter), Int64(head.signer.rawValue),
                                           Data(head.signature)])
        }
        for certificate in verified.certificates where try Self.certificate(for: certificate.replica, in: context.db) == nil {
            try Self.keep(certificate, in: context.db)
        }
    }
}
