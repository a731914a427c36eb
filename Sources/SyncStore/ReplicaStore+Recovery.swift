import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// What comparing a page of the hub's copies of this replica's own changes with the local log
/// found.
package struct OwnOriginCheck: Equatable, Sendable {
    /// Changes the log holds with the same content.
    package var identical = 0
    /// Changes the log lacked (lost with a restored backup), now applied.
    package var recovered = 0
    /// The first counter whose local change differs from the hub's: this file split from what the
    /// hub holds (a copy, or a restored backup written to) and must be re-identified.
    package var firstDivergent: UInt64?

    /// Nothing found yet.
    package init() {}
}

extension ReplicaStore {
    /// Compares the hub's copies of this replica's own changes (ascending, contiguous) with the log,
    /// in one transaction: changes the log lacks are applied (a restored backup lost them), and the
    /// hub-held counter rises over every change found consistent. Stops at the first change whose
    /// content differs, applying nothing from there on.
    package func recoverOwnChanges(_ changes: [Change], hub: ReplicaID) throws -> OwnOriginCheck {
        let own = replicaID
        for change in changes {
            // What no replica could store as written is refused whole, as for any batch.
            if let violation = ChangeLimits.rangeViolation(of: change) ?? ChangeLimits.contentViolation(of: change) {
                throw StoreError(.corrupt, "recovered changes refused, nothing applied: change \(change.id) has \(violation)",
                                 table: change.table, row: change.row, change: change.id)
            }
        }
        var check = OwnOriginCheck()
        var consistent: UInt64?
        try writeContext { context in
            let origin = try context.originID(own)
            for change in changes {
                guard change.id.replica == own else {
                    throw StoreError(.corrupt, "recovered change \(change.id) is not of this replica's origin", change: change.id)
                }
                if let held = try context.storedChange(origin: origin, counter: Int64(bitPattern: change.id.counter), replica: own) {
                    guard held.isSameVersion(as: change) else {
                        check.firstDivergent = change.id.counter
                        break
                    }
                    check.identical += 1
                } else {
                    try context.apply(change)
                    check.recovered += 1
                }
                consistent = change.id.counter
            }
            try context.extendChains(of: changes)
            if let consistent {
                try Self.mergePeerKnowledge(context, hub, VersionVector([own: consistent]))
            }
            // A later local edit must be stamped after the recovered ones it is made on top of.
            let newest = changes.prefix(check.identical + check.recovered).map(\.timestamp).max() ?? .zero
            try context.db.execute(sql: "UPDATE sync_state SET hlc = max(hlc, ?) WHERE id = 1",
                                   arguments: [Int64(bitPattern: newest.rawValue)])
        }
        if check.recovered > 0 || check.firstDivergent != nil {
            logger.notice("own changes checked against the hub", metadata: [
                "identical": "\(check.identical)", "recovered": "\(check.recovered)",
                "divergent_from": "\(check.firstDivergent.map(String.init) ?? "-")",
            ])
        }
        return check
    }

    /// Gives this replica a new identity, in one transaction. Its own changes from `divergentFrom` on
    /// were written on this copy after it split from what the hub holds of its origin: they are
    /// re-issued under `newReplica` (counters from 1; the same edits, authors and timestamps; ids in
    /// their `supersedes` remapped), the merged state is rebuilt from the log, and `credential`
    /// becomes the device secret. The hub's versions of the old origin from `divergentFrom` on are
    /// then received like any other replica's changes. Returns how many changes were re-issued.
    @discardableResult
    ///
    /// The identity file is rewritten for `newReplica` with `deviceKey` (nil keeps the current key,
    /// until the caller makes a new one as Protocol/identity.md asks) and `credential`, after the
    /// transaction commits. The re-issued changes are chained and checkpointed anew.
    package func fork(into newReplica: ReplicaID, credential: [UInt8], divergentFrom: UInt64, deviceKey: SigningKey? = nil) throws -> Int {
        let old = replicaID
        precondition(newReplica != old, "a fork needs a new identity")
        let reissued = try Self.guarded {
            try queue.write { db -> Int in
                let renaming = MergeTransaction(db: db, schema: schema, recordedAt: Int64(wallClock.nowMillis()))
                let oldOrigin = try renaming.originID(old)
                let newOrigin = try renaming.originID(newReplica)
                let count = try Self.reissue(db, from: oldOrigin, to: newOrigin, old: old, new: newReplica,
                                             divergentFrom: Int64(bitPattern: divergentFrom))
                try db.execute(sql: "UPDATE sync_origin SET contiguous = min(contiguous, ?) WHERE id = ?",
                               arguments: [Int64(bitPattern: divergentFrom) - 1, oldOrigin])
                try db.execute(sql: "UPDATE sync_state SET replica_id = ?, counter = ? WHERE id = 1", arguments: [newReplica.hex, count])
                let inDatabase = device.value == nil ? Data(credential) : nil
                try db.execute(sql: "UPDATE sync_hub SET credential = ?, forked_from = ?", arguments: [inDatabase, old.hex])
                try StoreTables.chainLog(db, origin: newOrigin, replica: newReplica, own: true)
                try db.execute(sql: "DELETE FROM sync_head WHERE origin = ? AND counter >= ?", arguments: [oldOrigin, Int64(bitPattern: divergentFrom)])
                try Self.rebuildFromLog(db, schema: schema, recordedAt: renaming.recordedAt, origins: [oldOrigin, newOrigin])
                return count
            }
        }
        identity.value = newReplica
        try replaceIdentity(replica: newReplica, key: deviceKey, secret: credential)
        logger.notice("replica re-identified after diverging from the hub", metadata: [
            "from": "\(old.short)", "to": "\(newReplica.short)", "reissued": "\(reissued)",
        ])
        return reissued
    }

    /// Moves the old origin's changes from `divergentFrom` on to the new origin, renumbered from 1.
    private static func reissue(_ db: Database, from oldOrigin: Int64, to newOrigin: Int64, old: ReplicaID, new: ReplicaID,
                                divergentFrom: Int64) throws -> Int {
        let counters = try Int64.fetchAll(db, sql: "SELECT counter FROM sync_change WHERE origin = ? AND counter >= ? ORDER BY counter",
                                          arguments: [oldOrigin, divergentFrom])
        var renumbered: [UInt64: UInt64] = [:]
        for (index, counter) in counters.enumerated() { renumbered[UInt64(bitPattern: counter)] = UInt64(index + 1) }
        func remap(_ id: ChangeID) -> ChangeID {
            guard id.replica == old, let counter = renumbered[id.counter] else { return id }
            return ChangeID(replica: new, counter: counter)
        }
        for counter in counters {
            let blob = try Data.fetchOne(db, sql: "SELECT fields FROM sync_change WHERE origin = ? AND counter = ?",
                                         arguments: [oldOrigin, counter])
            var fields = try LogFields.decodeRaw(Array(blob ?? Data()))
            for index in fields.indices { fields[index].supersedes = fields[index].supersedes.map(remap).sorted() }
            try db.execute(sql: "UPDATE sync_change SET origin = ?, counter = ?, fields = ? WHERE origin = ? AND counter = ?",
                           arguments: [newOrigin, Int64(renumbered[UInt64(bitPattern: counter)]!), Data(LogFields.encode(fields)),
                                       oldOrigin, counter])
        }
        return counters.count
    }

    /// Rebuilds every merged value from the change log: domain rows, field states and row lives are
    /// cleared, then every change the log holds is merged again. The merge is a join of the changes,
    /// so the result does not depend on their order; it is what a replica holding exactly this log
    /// would show.
    static func rebuildFromLog(_ db: Database, schema: ReplicaSchema, recordedAt: Int64, origins: [Int64]) throws {
        for table in schema.tables { try db.execute(sql: "DELETE FROM \(table.name)") }
        try db.execute(sql: "DELETE FROM sync_field")
        try db.execute(sql: "UPDATE sync_row SET causal_length = 0, clocks = NULL")
        let origins = try Row.fetchAll(db, sql: "SELECT id, replica_id FROM sync_origin ORDER BY id")
        for origin in origins {
            guard let replica = ReplicaID(hex: origin[1]) else { throw StoreError(.corrupt, "bad origin replica id", table: "sync_origin") }
            var after: Int64 = 0
            while true {
                // A fresh context per page: its caches and write buffers stay bounded.
                let context = MergeTransaction(db: db, schema: schema, recordedAt: recordedAt)
                let rows = try Row.fetchAll(db, sql: """
                    \(ReplicaStore.changeSelect)
                    WHERE c.origin = ? AND c.counter > ? AND c.known = 1 ORDER BY c.counter LIMIT 5000
                    """, arguments: [origin[0] as Int64, after])
                for row in rows { try context.apply(try context.change(from: row, replica: replica), recorded: true) }
                try context.flushAll()
                guard let last = rows.last else { break }
                after = last[0]
            }
        }
        let context = MergeTransaction(db: db, schema: schema, recordedAt: recordedAt)
        for origin in origins { context.touch(origin: origin[0]) }
        try context.advanceContiguous()
    }

    /// The hub lost changes of this replica's own origin that it had acknowledged (it was restored
    /// from a backup): lower what this replica believes the hub holds, so they are pushed again.
    public func forgetHubKnowledge(_ hub: ReplicaID, ownAbove counter: UInt64) throws {
        try writeContext { context in
            var known = try Self.peerVector(context.db, hub) ?? VersionVector()
            guard known[replicaID] > counter else { return }
            var counters = known.counters
            counters[replicaID] = counter
            known = VersionVector(counters)
            try Self.storePeerVector(context, hub, known)
        }
    }

    /// The hub's store was restored from a backup (a new incarnation): what this replica knows the
    /// hub holds becomes `kept` (the hub's own_durable of this replica), so everything else is
    /// pushed again; the hub keeps what it still has, by id.
    package func forgetHubKnowledge(_ hub: ReplicaID, keeping kept: VersionVector) throws {
        try writeContext { context in try Self.storePeerVector(context, hub, kept) }
    }
}

extension ReplicaStore {
    /// Writes a consistent copy of the replica file to `path` (SQLite's online backup), as a user's
    /// backup tool would. A replica restored from it recovers at its next sync what it lost.
    public func backup(to path: String) throws {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.alreadyExists, "a file already exists at \(path); choose another path", path: path)
        }
        try Self.guarded {
            let target = try DatabaseQueue(path: path)
            try queue.backup(to: target)
            try target.close()
        }
    }
}

extension ReplicaStore {
    /// Closes the file. Needed before the file is replaced on disk (a restore): SQLite removes the
    /// `-wal` file by name when its last connection closes, which must not be the new file's.
    public func close() throws {
        try Self.guarded { try queue.close() }
    }
}
