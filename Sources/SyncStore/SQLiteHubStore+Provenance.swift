import Foundation
import GRDB
import SyncCore

/// A change id the hub holds with other bytes, with the signed heads that prove it: the hub's
/// head covering the held version, and the push's head covering the other.
struct HeldElsewise {
    let change: ChangeID
    let bytes: [UInt8]
    let heldHead: SignedHead?
    let refusedHead: SignedHead?
}

/// The changes of one origin in one push, with the heads that fall inside them.
struct HubRun {
    let origin: ReplicaID
    var changes: [Change]
    var heads: [SignedHead] = []

    var first: UInt64 { changes[0].id.counter }
    var last: UInt64 { changes[changes.count - 1].id.counter }
}

/// The statements one push uses for every change, prepared once.
struct LogStatements {
    let insert: Statement
    let held: Statement
    let chainAt: Statement
    let fill: Statement
    let insertHead: Statement
    let heldHead: Statement

    init(_ db: Database) throws {
        insert = try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO hub_log (origin, counter, table_name, row_key, scope, bytes, received_at, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        held = try db.cachedStatement(sql: "SELECT bytes, chain IS NULL FROM hub_log WHERE origin = ? AND counter = ?")
        chainAt = try db.cachedStatement(sql: "SELECT chain FROM hub_log WHERE origin = ? AND counter = ?")
        // A protocol-2 row kept after a gap joins the log when it is chained: it is given a new
        // sequence then, so pulls (which skip unchained rows) hand it out after all.
        fill = try db.cachedStatement(sql: """
            UPDATE hub_log SET chain = ?, seq = (SELECT max(seq) + 1 FROM hub_log) WHERE origin = ? AND counter = ? AND chain IS NULL
            """)
        insertHead = try db.cachedStatement(sql: "INSERT OR IGNORE INTO hub_head (origin, counter, signer, signature) VALUES (?, ?, ?, ?)")
        heldHead = try db.cachedStatement(sql: """
            SELECT h.counter, h.signer, h.signature, l.chain FROM hub_head h JOIN hub_log l ON l.origin = h.origin AND l.counter = h.counter
            WHERE h.origin = ? AND h.counter >= ? ORDER BY h.counter LIMIT 1
            """)
    }
}

/// Which keys verify an origin's heads.
struct RunKey {
    /// The origin's device key (the hub key for a hub-keyed origin); nil if none is registered.
    let device: [UInt8]?
    /// Hub attestations are accepted up to this counter.
    let attestedThrough: UInt64
}

extension SQLiteHubStore {
    /// Splits a push into runs, one per origin in the order they first appear, and gives each the
    /// heads inside it. A run's counters must ascend by one, and every head must fall inside a run.
    static func runs(of changes: [Change], heads: [SignedHead]) throws -> [HubRun] {
        var runs: [HubRun] = []
        var index: [ReplicaID: Int] = [:]
        for change in changes {
            // Counters are stored signed and counted from 1: anything else would wrap or never
            // become contiguous. A session refuses such a change before it gets here; the store
            // does not rely on that.
            guard (1...UInt64(Int64.max)).contains(change.id.counter) else {
                throw StoreError(.limitExceeded, "change counter \(change.id.counter) of origin \(change.id.replica.short) is outside 1…2^63-1; push refused",
                                 table: change.table, row: change.row, change: change.id)
            }
            if let at = index[change.id.replica] {
                guard change.id.counter == runs[at].last + 1 else {
                    throw StoreError(.signatureInvalid, "the run of origin \(change.id.replica.short) goes from counter \(runs[at].last) to \(change.id.counter): its chain cannot verify; push refused",
                                     change: change.id)
                }
                runs[at].changes.append(change)
            } else {
                index[change.id.replica] = runs.count
                runs.append(HubRun(origin: change.id.replica, changes: [change]))
            }
        }
        for head in heads {
            guard let at = index[head.origin], (runs[at].first...runs[at].last).contains(head.counter) else {
                throw StoreError(.signatureInvalid, "a head of origin \(head.origin.short) at counter \(head.counter) is outside the push's runs; push refused")
            }
            runs[at].heads.append(head)
        }
        return runs
    }

    /// The keys of `origin`: the hub key for the hub-keyed origins, otherwise the registry's
    /// (a revoked device's key still verifies what it signed before, relayed by others).
    func runKey(_ db: Database, _ origin: ReplicaID, originRow: Int64) throws -> RunKey {
        if hubKeyed.contains(origin) { return RunKey(device: hubKey, attestedThrough: .max) }
        let attested = try Int64.fetchOne(db.cachedStatement(sql: "SELECT attested_through FROM hub_origin WHERE id = ?"), arguments: [originRow]) ?? 0
        let key = try Data.fetchOne(db.cachedStatement(sql: "SELECT public_key FROM hub_replica WHERE replica_id = ?"), arguments: [origin.hex])
        return RunKey(device: key.map(Array.init), attestedThrough: UInt64(max(0, attested)))
    }

    /// Verifies one run against its heads, then stores it: its rows with their chains, and every
    /// head. Returns how many changes were new, and the held ids it carries with other bytes
    /// (stored nothing then: the caller refuses the push).
    func write(_ db: Database, _ run: HubRun, origin: Int64, _ log: LogStatements, receivedAt: Int64) throws -> (stored: Int, equivocations: [HeldElsewise]) {
        let key = try runKey(db, run.origin, originRow: origin)
        guard key.device != nil || key.attestedThrough > 0 else {
            throw StoreError(.unknownDevice, "no device key is registered for origin \(run.origin.short); push refused",
                             change: ChangeID(replica: run.origin, counter: run.first))
        }
        var chain: [UInt8]
        if run.first == 1 {
            chain = HubChain.genesis(run.origin)
        } else if let previous = try Data.fetchOne(log.chainAt, arguments: [origin, Int64(run.first - 1)]) {
            chain = Array(previous)
        } else {
            throw StoreError(.chainGap, "the run of origin \(run.origin.short) starts at counter \(run.first), above what the hub holds + 1; push refused",
                             change: ChangeID(replica: run.origin, counter: run.first))
        }
        var encoded: [[UInt8]] = []
        var chains: [[UInt8]] = []
        encoded.reserveCapacity(run.changes.count)
        chains.reserveCapacity(run.changes.count)
        for change in run.changes {
            let bytes = change.canonicalBytes
            chain = HubChain.next(chain, bytes)
            encoded.append(bytes)
            chains.append(chain)
        }
        try verify(run, chains: chains, key: key)
        var stored = 0
        var equivocations: [HeldElsewise] = []
        for (offset, change) in run.changes.enumerated() {
            let counter = Int64(change.id.counter)
            try log.insert.execute(arguments: [origin, counter, change.table, change.row, change.scope, Data(encoded[offset]), receivedAt,
                                               Data(chains[offset])])
            if db.changesCount > 0 {
                stored += 1
                continue
            }
            guard let held = try Row.fetchOne(log.held, arguments: [origin, counter]) else { continue }
            if !(held[0] as Data).elementsEqual(encoded[offset]) {
                // The same id with other content, under a head the origin signed: proof that it
                // signed two histories (a restored or copied replica reused its counters).
                equivocations.append(HeldElsewise(change: change.id, bytes: encoded[offset],
                                                  heldHead: try heldHead(log, run.origin, origin: origin, from: counter),
                                                  refusedHead: run.heads.filter { $0.counter >= change.id.counter }.min { $0.counter < $1.counter }))
            } else if held[1] as Bool {
                try log.fill.execute(arguments: [Data(chains[offset]), origin, counter])
            }
        }
        guard equivocations.isEmpty else { return (0, equivocations) }
        for head in run.heads {
            try log.insertHead.execute(arguments: [origin, Int64(head.counter), Int64(head.signer.rawValue), Data(head.signature)])
        }
        return (stored, [])
    }

    /// Protocol/identity.md, "Verifying a run of changes", step 4: every head matches the computed
    /// chain and verifies under its signer's key, and the run ends at one.
    private func verify(_ run: HubRun, chains: [[UInt8]], key: RunKey) throws {
        for head in run.heads {
            let at = ChangeID(replica: run.origin, counter: head.counter)
            let signer: [UInt8]?
            switch head.signer {
            case .origin:
                signer = key.device
            case .hubAttestation:
                guard head.counter <= key.attestedThrough else {
                    throw StoreError(.signatureInvalid, "a hub attestation of origin \(run.origin.short) at counter \(head.counter) is above its attested counter \(key.attestedThrough); push refused",
                                     change: at)
                }
                signer = hubKey
            }
            guard let signer else {
                throw StoreError(.unknownDevice, "no device key is registered for origin \(run.origin.short); push refused", change: at)
            }
            guard head.chain == chains[Int(head.counter - run.first)],
                  HubSigningKey.verify(head.signature, of: head.signedBytes, publicKey: signer)
            else {
                throw StoreError(.signatureInvalid, "the head of origin \(run.origin.short) at counter \(head.counter) does not verify; push refused",
                                 change: at)
            }
        }
        guard run.heads.contains(where: { $0.counter == run.last }) else {
            throw StoreError(.unsignedChanges, "the run of origin \(run.origin.short) ends at counter \(run.last) without a signed head; push refused",
                             change: ChangeID(replica: run.origin, counter: run.last))
        }
    }

    private func heldHead(_ log: LogStatements, _ replica: ReplicaID, origin: Int64, from counter: Int64) throws -> SignedHead? {
        guard let row = try Row.fetchOne(log.heldHead, arguments: [origin, counter]) else { return nil }
        return Self.head(replica, row, counter: 0, signer: 1, signature: 2, chain: 3)
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
        let heads = try ReplicaStore.guarded {
            try reads.read { db in
                try Self.runs(of: changes, heads: []).flatMap { run -> [SignedHead] in
                    guard hubKeyed.contains(run.origin) else {
                        throw StoreError(.unknownDevice, "origin \(run.origin.short) is not signed by the hub key", change: ChangeID(replica: run.origin, counter: run.first))
                    }
                    return try signedHeads(db, run, key: signingKey)
                }
            }
        }
        let result = append([HubPush(changes: changes, replica: hubID, heads: heads, receivedAtMillis: receivedAtMillis)])[0]
        return try result.get()
    }

    /// Heads for a run of a hub-keyed origin, at its checkpoints (Protocol/identity.md,
    /// "Checkpoints") and its end. The checkpoint count restarts with the run: a head more than the
    /// origin's exact checkpoints is harmless, a missing one is not.
    private func signedHeads(_ db: Database, _ run: HubRun, key: HubSigningKey) throws -> [SignedHead] {
        let origin = try Int64.fetchOne(db, sql: "SELECT id FROM hub_origin WHERE replica_id = ?", arguments: [run.origin.hex])
        var chain: [UInt8]
        if run.first == 1 {
            chain = HubChain.genesis(run.origin)
        } else if let origin, let held = try Data.fetchOne(db, sql: "SELECT chain FROM hub_log WHERE origin = ? AND counter = ?",
                                                               arguments: [origin, Int64(run.first - 1)]) {
            chain = Array(held)
        } else {
            throw StoreError(.chainGap, "the hub holds no chain for origin \(run.origin.short) at counter \(run.first - 1)",
                             change: ChangeID(replica: run.origin, counter: run.first))
        }
        var heads: [SignedHead] = []
        var sinceCheckpoint = 0
        let encoded = run.changes.map(\.canonicalBytes)
        for (offset, change) in run.changes.enumerated() {
            chain = HubChain.next(chain, encoded[offset])
            sinceCheckpoint += encoded[offset].count
            let isLast = offset == run.changes.count - 1
            if isLast || sinceCheckpoint + encoded[offset + 1].count > Self.checkpointBytes {
                let signature = key.sign(SignedHead.signedBytes(origin: run.origin, counter: change.id.counter, chain: chain, signer: .origin))
                heads.append(SignedHead(origin: run.origin, counter: change.id.counter, chain: chain, signature: signature))
                sinceCheckpoint = 0
            }
        }
        return heads
    }

    /// Bytes of changes between two checkpoints of an origin's log (Protocol/identity.md).
    public static let checkpointBytes = 16_384
}
