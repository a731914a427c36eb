import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// A change id the hub holds with other bytes, with the signed heads that prove it: the hub's
/// head covering the held version, and the push's head covering the other.
struct HeldElsewise {
    let change: ChangeID
    let bytes: [UInt8]
    let heldHead: SignedHead?
    let refusedHead: SignedHead?
}

/// The statements one push uses for every change, prepared once.
struct LogStatements {
    let insert: Statement
    let fill: Statement
    let insertHead: Statement

    init(_ db: Database) throws {
        insert = try db.cachedStatement(sql: """
            INSERT INTO hub_log (origin, counter, table_name, row_key, scope, bytes, received_at, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        // A protocol-2 row kept after a gap joins the log when it is chained: it is given a new
        // sequence then, so pulls (which skip unchained rows) hand it out after all.
        fill = try db.cachedStatement(sql: """
            UPDATE hub_log SET chain = ?, seq = (SELECT max(seq) + 1 FROM hub_log) WHERE origin = ? AND counter = ? AND chain IS NULL
            """)
        insertHead = try db.cachedStatement(sql: "INSERT OR IGNORE INTO hub_head (origin, counter, signer, signature) VALUES (?, ?, ?, ?)")
    }
}

/// What the hub holds, as ``RunVerifier`` reads it: chained rows of `hub_log`, the heads of
/// `hub_head`, and the keys of the registry (the hub key for hub-keyed origins; a revoked device's
/// key still verifies what it signed before, relayed by others).
final class HubLedger: ChainLedger {
    let db: Database
    let store: SQLiteHubStore
    /// Per origin, the highest counter held: a push's new changes lie above it, and are known new
    /// without a lookup each (the hot path: one query per origin, not per change).
    private var highest: [ReplicaID: UInt64] = [:]

    init(db: Database, store: SQLiteHubStore) {
        self.db = db
        self.store = store
    }

    private func highestHeld(_ origin: ReplicaID) throws -> UInt64 {
        if let known = highest[origin] { return known }
        let found = try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT max(l.counter) FROM hub_log l JOIN hub_origin o ON o.id = l.origin WHERE o.replica_id = ?
            """), arguments: [origin.hex]) ?? 0
        highest[origin] = UInt64(max(0, found))
        return UInt64(max(0, found))
    }

    func heldChain(origin: ReplicaID, counter: UInt64) throws -> [UInt8]? {
        guard counter <= UInt64(Int64.max) else { return nil }
        return try Data.fetchOne(db.cachedStatement(sql: """
            SELECT l.chain FROM hub_log l JOIN hub_origin o ON o.id = l.origin WHERE o.replica_id = ? AND l.counter = ?
            """), arguments: [origin.hex, Int64(counter)]).map(Array.init)
    }

    func heldBytes(origin: ReplicaID, counter: UInt64) throws -> [UInt8]? {
        guard counter <= UInt64(Int64.max), counter <= (try highestHeld(origin)) else { return nil }
        return try Data.fetchOne(db.cachedStatement(sql: """
            SELECT l.bytes FROM hub_log l JOIN hub_origin o ON o.id = l.origin WHERE o.replica_id = ? AND l.counter = ?
            """), arguments: [origin.hex, Int64(counter)]).map(Array.init)
    }

    func heldHead(origin: ReplicaID, covering counter: UInt64) throws -> SignedHead? {
        guard counter <= UInt64(Int64.max), let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT h.counter, h.signer, h.signature, l.chain FROM hub_head h JOIN hub_origin o ON o.id = h.origin
            JOIN hub_log l ON l.origin = h.origin AND l.counter = h.counter
            WHERE o.replica_id = ? AND h.counter >= ? ORDER BY h.counter LIMIT 1
            """), arguments: [origin.hex, Int64(counter)]) else { return nil }
        return SQLiteHubStore.head(origin, row, counter: 0, signer: 1, signature: 2, chain: 3)
    }

    func key(for origin: ReplicaID) throws -> OriginKey? {
        if store.hubKeyed.contains(origin) { return OriginKey(publicKey: store.hubKey, attestedThrough: .max, isHubKey: true) }
        let attested = try Int64.fetchOne(db.cachedStatement(sql: "SELECT attested_through FROM hub_origin WHERE replica_id = ?"),
                                          arguments: [origin.hex]) ?? 0
        let key = try Data.fetchOne(db.cachedStatement(sql: "SELECT public_key FROM hub_replica WHERE replica_id = ?"), arguments: [origin.hex])
        // A protocol-2 origin that never registered a key: only the hub's attestations verify.
        guard key != nil || attested > 0 else { return nil }
        return OriginKey(publicKey: key.map(Array.init) ?? [], attestedThrough: UInt64(attested))
    }
}

extension SQLiteHubStore {
    /// Verifies a push (Protocol/identity.md, "Verifying a run of changes") against what the hub
    /// holds, then stores it: new rows with their chains, chains of held protocol-2 rows that
    /// were waiting for theirs, and every head. Returns how many changes were new to the store, and the changes new to the log (with protocol-2 rows now chained), for routing.
    func verifiedWrite(_ db: Database, _ push: HubPush, receivedAt: Int64, origins: inout [ReplicaID: Int64]) throws -> (stored: Int, routed: [StoredChange]) {
        for change in push.changes {
            // Counters are stored signed and counted from 1: anything else would wrap or never
            // become contiguous. A session refuses such a change before it gets here; the store
            // does not rely on that.
            guard (1...UInt64(Int64.max)).contains(change.id.counter) else {
                throw StoreError(.limitExceeded, "change counter \(change.id.counter) of origin \(change.id.replica.short) is outside 1…2^63-1; push refused",
                                 table: change.table, row: change.row, change: change.id)
            }
        }
        let encoded = push.changes.map(\.canonicalBytes)
        let verified: VerifiedChanges
        do {
            verified = try RunVerifier(hubKey: hubKey).verify(push.changes, canonicalBytes: encoded, provenance: push.provenance,
                                                             ledger: HubLedger(db: db, store: self))
        } catch let error as IdentityError {
            throw try Self.refusal(error, encoded: encoded, changes: push.changes)
        }
        if scopeRules != nil { try Self.requireBoundaryHeads(push) }
        let log = try LogStatements(db)
        var stored = 0
        var routed: [StoredChange] = []
        for (index, change) in push.changes.enumerated() {
            let origin = try originID(db, change.id.replica, &origins)
            let counter = Int64(change.id.counter)
            let chain = Data(verified.chains[index])
            if verified.isNew[index] {
                try log.insert.execute(arguments: [origin, counter, change.table, change.row, change.scope, Data(encoded[index]), receivedAt, chain])
                stored += 1
                routed.append(StoredChange(seq: db.lastInsertedRowID, change: change, isNew: true))
            } else {
                try log.fill.execute(arguments: [chain, origin, counter])
                if db.changesCount > 0, let seq = try Int64.fetchOne(db.cachedStatement(sql: "SELECT seq FROM hub_log WHERE origin = ? AND counter = ?"),
                                                                     arguments: [origin, counter]) {
                    // A protocol-2 row now chained: new to the feeds, not to the store.
                    routed.append(StoredChange(seq: seq, change: change, isNew: false))
                }
            }
        }
        for head in verified.heads {
            let origin = try originID(db, head.origin, &origins)
            try log.insertHead.execute(arguments: [origin, Int64(head.counter), Int64(head.signer.rawValue), Data(head.signature)])
        }
        return (stored, routed)
    }

    /// Protocol/scope.md, "Boundary heads": within a push, a change followed by one of its
    /// origin with another scope must carry a head, so every run of one scope ends at one.
    static func requireBoundaryHeads(_ push: HubPush) throws {
        var headed: Set<ChangeID> = []
        for head in push.provenance.heads { headed.insert(ChangeID(replica: head.origin, counter: head.counter)) }
        var previous: [ReplicaID: Change] = [:]
        for change in push.changes {
            if let before = previous[change.id.replica], before.id.counter + 1 == change.id.counter,
               Checkpoints.isBoundary(previousScope: before.scope, nextScope: change.scope),
               !headed.contains(before.id) {
                throw StoreError(.unsignedChanges, "change \(before.id) of origin \(before.id.replica.short) is followed by another scope's with no head between them; push refused",
                                 change: before.id)
            }
            previous[change.id.replica] = change
        }
    }

    /// A verification failure as the store reports it: an equivocation becomes its evidence (the
    /// caller keeps it), anything else a ``StoreError`` of the same code name, caused by it.
    private static func refusal(_ error: IdentityError, encoded: [[UInt8]], changes: [Change]) throws -> any Error {
        if error.code == .equivocation, let evidence = error.evidence, let index = changes.firstIndex(where: { $0.id == evidence.change }) {
            return Equivocations(found: [HeldElsewise(change: evidence.change, bytes: encoded[index], heldHead: evidence.heldHead,
                                                      refusedHead: evidence.receivedHead)])
        }
        let code: StoreError.Code = switch error.code {
        case .chainGap: .chainGap
        case .unsignedChanges: .unsignedChanges
        case .unknownDevice: .unknownDevice
        default: .signatureInvalid
        }
        let change = error.origin.map { ChangeID(replica: $0, counter: error.counter ?? 0) }
        return StoreError(code, error.message + "; push refused", change: change, cause: error)
    }

    /// A stored head from its columns; nil for one that cannot be (a corrupt row is not relayed).
    static func head(_ origin: ReplicaID, _ row: Row, counter: Int, signer: Int, signature: Int, chain: Int) -> SignedHead? {
        guard let signerValue = row[signer] as Int64?, let kind = HeadSigner(rawValue: UInt8(clamping: signerValue)),
              let signatureData = row[signature] as Data?, signatureData.count == SignedHead.signatureSize,
              let chainData = row[chain] as Data?, chainData.count == SignedHead.chainSize
        else { return nil }
        return SignedHead(origin: origin, counter: UInt64(max(1, row[counter] as Int64)), chain: Array(chainData), signer: kind,
                          signature: Array(signatureData))
    }

    /// A head kept as evidence; nil for none (or bytes that are not one).
    static func decodedHead(_ data: Data?) -> SignedHead? {
        guard let data else { return nil }
        var reader = ByteReader(Array(data))
        guard let head = try? SignedHead.decode(from: &reader), reader.isAtEnd else { return nil }
        return head
    }

    static func encoded(_ head: SignedHead) -> [UInt8] {
        var writer = ByteWriter(capacity: 128)
        head.encode(into: &writer)
        return writer.bytes
    }

    /// Appends changes of the hub's own origins (the hub's id, or a hub-keyed origin such as the
    /// entitlement catalogue's publisher), chained and signed by the hub key: a head at every
    /// checkpoint and at each run's end. Durable on return.
    ///
    /// - Parameters:
    ///   - changes: The changes, each origin's counters following what the hub holds of it.
    ///   - receivedAtMillis: Stored with each change.
    /// - Returns: What was stored.
    /// - Throws: ``StoreError`` `.unknownDevice` for a change of an origin the hub key does not
    ///   sign, `.chainGap` for a run that does not follow what is held, `.database`.
    public func publish(_ changes: [Change], receivedAtMillis: UInt64) throws -> HubAppendResult {
        guard let signingKey else { throw StoreError(.database, "a read-only hub store cannot publish", path: path) }
        var runs: [ReplicaID: [Change]] = [:]
        for change in changes { runs[change.id.replica, default: []].append(change) }
        let heads = try ReplicaStore.guarded {
            try reads.read { db in
                try runs.flatMap { origin, run -> [SignedHead] in
                    guard hubKeyed.contains(origin) else {
                        throw StoreError(.unknownDevice, "origin \(origin.short) is not signed by the hub key", change: run[0].id)
                    }
                    return try signedHeads(HubLedger(db: db, store: self), origin, run, key: signingKey)
                }
            }
        }
        let provenance = Provenance(sorting: heads)
        return try append([HubPush(changes: changes, replica: hubID, provenance: provenance, receivedAtMillis: receivedAtMillis)])[0].get()
    }

    /// Heads for a run of a hub-keyed origin, at its checkpoints (Protocol/identity.md,
    /// "Checkpoints") and its end. The checkpoint count restarts with the run: a head more than the
    /// origin's exact checkpoints is harmless, a missing one is not.
    func signedHeads(_ ledger: HubLedger, _ origin: ReplicaID, _ run: [Change], key: SigningKey) throws -> [SignedHead] {
        let first = run[0].id.counter
        guard var chain = first == 1 ? OriginChain.genesis(of: origin) : try ledger.heldChain(origin: origin, counter: first - 1) else {
            throw StoreError(.chainGap, "the hub holds no chain for origin \(origin.short) at counter \(first - 1)", change: run[0].id)
        }
        var heads: [SignedHead] = []
        var since = 0
        let encoded = run.map(\.canonicalBytes)
        for (offset, change) in run.enumerated() {
            chain = OriginChain.next(after: chain, canonicalBytes: encoded[offset])
            since += encoded[offset].count
            let isLast = offset == run.count - 1
            if isLast || Checkpoints.previousIsCheckpoint(bytesSinceCheckpoint: since, nextChangeSize: encoded[offset + 1].count) {
                heads.append(key.head(origin: origin, counter: change.id.counter, chain: chain))
                since = 0
            }
        }
        return heads
    }
}
