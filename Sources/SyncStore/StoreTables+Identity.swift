import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The migration of Protocol/identity.md: each change's chain hash and (own changes) checkpoint
/// flag beside it, the heads and certificates a replica keeps to verify and relay, and the hub's
/// pinned key and incarnation. The device secret leaves `sync_hub.credential` for the identity
/// file when the store opens (a migration runs inside a transaction and writes no other file).
extension StoreTables {
    static func migrateToIdentity(_ db: Database) throws {
        try db.execute(sql: """
            ALTER TABLE sync_change ADD COLUMN chain BLOB;
            ALTER TABLE sync_change ADD COLUMN checkpoint INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE sync_state ADD COLUMN since_checkpoint INTEGER NOT NULL DEFAULT 0;
            CREATE TABLE sync_head (
              origin INTEGER NOT NULL, counter INTEGER NOT NULL, signer INTEGER NOT NULL, signature BLOB NOT NULL,
              PRIMARY KEY (origin, counter)) WITHOUT ROWID;
            CREATE TABLE sync_device (replica_id TEXT PRIMARY KEY, certificate BLOB NOT NULL);
            ALTER TABLE sync_hub ADD COLUMN hub_key BLOB;
            ALTER TABLE sync_hub ADD COLUMN incarnation BLOB;
            """)
        let own = try String.fetchOne(db, sql: "SELECT replica_id FROM sync_state WHERE id = 1")
        for origin in try Row.fetchAll(db, sql: "SELECT id, replica_id FROM sync_origin ORDER BY id") {
            guard let replica = ReplicaID(hex: origin[1]) else { throw StoreError(.corrupt, "bad origin replica id", table: "sync_origin") }
            try chainLog(db, origin: origin[0], replica: replica, own: origin[1] == own)
        }
    }

    /// Computes `chain(c)` for the contiguous prefix of `origin`'s held log, from each change's
    /// canonical bytes as it travels (rebuilt from its row, as a push does), and for this
    /// replica's own log its checkpoints and scope boundaries (Protocol/scope.md, "Boundary heads")
    /// and the bytes since the last checkpoint.
    static func chainLog(_ db: Database, origin: Int64, replica: ReplicaID, own: Bool) throws {
        let names = NameLookup(db)
        let update = try db.makeStatement(sql: "UPDATE sync_change SET chain = ?, checkpoint = ? WHERE origin = ? AND counter = ?")
        var chain = OriginChain.genesis(of: replica)
        var since = 0
        var previous: (counter: Int64, chain: [UInt8], scope: String)?
        var expected: Int64 = 1
        func write(_ entry: (counter: Int64, chain: [UInt8], scope: String), checkpoint: Bool) throws {
            try update.execute(arguments: [Data(entry.chain), checkpoint ? 1 : 0, origin, entry.counter])
        }
        let rows = try Row.fetchCursor(db, sql: "\(ReplicaStore.changeSelect) WHERE c.origin = ? ORDER BY c.counter", arguments: [origin])
        while let row = try rows.next() {
            let counter: Int64 = row[0]
            guard counter == expected else { break }
            let change = try ReplicaStore.change(from: row, replica: replica, name: names.name)
            let bytes = change.canonicalBytes
            let checkpoint = own && Checkpoints.previousNeedsHead(bytesSinceCheckpoint: since, nextChangeSize: bytes.count,
                                                                  previousScope: previous?.scope, nextScope: change.scope)
            since = Checkpoints.bytesSinceCheckpoint(after: since, nextChangeSize: bytes.count)
            if let previous { try write(previous, checkpoint: checkpoint) }
            chain = OriginChain.next(after: chain, canonicalBytes: bytes)
            previous = (counter, chain, change.scope)
            expected += 1
        }
        if let previous { try write(previous, checkpoint: false) }
        if own { try db.execute(sql: "UPDATE sync_state SET since_checkpoint = ? WHERE id = 1", arguments: [since]) }
    }
}

extension MergeTransaction {
    /// `chain(counter)` of `replica`'s log as held (`chain(0)` for counter 0), or as kept when the
    /// change was purged (`sync_purged`); nil when not held or not chained.
    func heldChain(_ replica: ReplicaID, counter: UInt64) throws -> [UInt8]? {
        if counter == 0 { return OriginChain.genesis(of: replica) }
        try flushChanges()
        let select = try db.cachedStatement(sql: """
            SELECT coalesce((SELECT chain FROM sync_change WHERE origin = ?1 AND counter = ?2),
                            (SELECT chain FROM sync_purged WHERE origin = ?1 AND counter = ?2))
            """)
        return try (Data.fetchOne(select, arguments: [try originID(replica), Int64(bitPattern: counter)])).map(Array.init)
    }

    /// The scope of change `counter` of `replica` as held (`ifnull(sync_change.scope, sync_row.scope)`); nil when not held.
    func heldScope(_ replica: ReplicaID, counter: UInt64) throws -> String? {
        guard counter > 0 else { return nil }
        try flushRows()
        try flushChanges()
        let select = try db.cachedStatement(sql: """
            SELECT ifnull(c.scope, r.scope) FROM sync_change c JOIN sync_row r ON r.id = c.row WHERE c.origin = ? AND c.counter = ?
            """)
        return try String.fetchOne(select, arguments: [try originID(replica), Int64(bitPattern: counter)])
    }

    /// Each change's chain where the log below it is held (or comes earlier in the batch): one
    /// SHA-256 per change, one lookup per run.
    func chainsWhereKnown(_ changes: [Change]) throws -> [[UInt8]?] {
        var result = [[UInt8]?](repeating: nil, count: changes.count)
        var last: [ReplicaID: (counter: UInt64, chain: [UInt8]?)] = [:]
        for index in changes.indices.sorted(by: { changes[$0].id < changes[$1].id }) {
            let id = changes[index].id
            let previous: [UInt8]?
            if let known = last[id.replica], known.counter == id.counter - 1 {
                previous = known.chain
            } else if let known = last[id.replica], known.counter == id.counter {
                result[index] = known.chain
                continue
            } else {
                previous = try heldChain(id.replica, counter: id.counter - 1)
            }
            let chain = previous.map { OriginChain.next(after: $0, canonicalBytes: changes[index].canonicalBytes) }
            result[index] = chain
            last[id.replica] = (id.counter, chain)
        }
        return result
    }

    /// Chains the held changes that follow a batch's and had none (they arrived before the gap
    /// below them was filled), so a contiguous prefix always has its chains.
    func extendChains(of changes: [Change]) throws {
        try flushAll()
        var lowest: [ReplicaID: UInt64] = [:]
        for change in changes { lowest[change.id.replica] = min(lowest[change.id.replica] ?? .max, change.id.counter) }
        let firstUnchained = try db.cachedStatement(sql: "SELECT min(counter) FROM sync_change WHERE origin = ? AND counter >= ? AND chain IS NULL")
        let update = try db.cachedStatement(sql: "UPDATE sync_change SET chain = ? WHERE origin = ? AND counter = ?")
        for (replica, low) in lowest {
            let origin = try originID(replica)
            guard let start = try Int64.fetchOne(firstUnchained, arguments: [origin, Int64(bitPattern: low)]),
                  var chain = try heldChain(replica, counter: UInt64(start - 1)) else { continue }
            let rows = try Row.fetchAll(db, sql: "\(ReplicaStore.changeSelect) WHERE c.origin = ? AND c.counter >= ? ORDER BY c.counter LIMIT 20000",
                                        arguments: [origin, start])
            var expected = start
            for row in rows {
                guard row[0] as Int64 == expected else { break }
                chain = OriginChain.next(after: chain, canonicalBytes: try change(from: row, replica: replica).canonicalBytes)
                try update.execute(arguments: [Data(chain), origin, expected])
                expected += 1
            }
        }
    }
}
