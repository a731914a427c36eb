import Foundation
import GRDB
import SyncCore

/// The hub log (`hub_log`): appends, group commit, and pages served from the stored bytes.
///
/// Each change is kept as its canonical encoding, exactly the bytes a replica decodes, beside the
/// columns later filtering needs without decoding a value: origin, counter, table, row key and
/// scope (the young person the row belongs to, for team-scoped pulls). A pull or recovery hands
/// those bytes out as they are: the hub relays and orders, replicas merge.
extension SQLiteHubStore {
    /// A batch holding a change id the hub has with other bytes: the push's savepoint is rolled
    /// back, then the evidence is kept.
    struct Equivocations: Error {
        let found: [(change: ChangeID, bytes: [UInt8])]
    }

    /// Stores one push, durable on return (``HubStore/append(_:from:receivedAtMillis:)``).
    ///
    /// - Throws: ``StoreError`` `.limitExceeded` for a counter outside 1…2^63-1, `.database`. An
    ///   equivocation is not thrown: it is ``HubAppendResult/equivocations``.
    public func append(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append([HubPush(changes: changes, replica: replica, receivedAtMillis: receivedAtMillis)])[0].get()
    }

    /// Group commit: every push in one write transaction, so one WAL sync makes all of them
    /// durable, each in a savepoint of its own, so one push's failure (an equivocation, a change
    /// the store refuses) is rolled back alone and the others are still stored. Results are in the
    /// order of `pushes`, and none is returned before the commit has synced.
    public func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>] {
        guard !pushes.isEmpty else { return [] }
        do {
            return try durableWrite { db in
                try pushes.map { push in try appendIsolated(db, push) }
            }
        } catch {
            // The transaction or its commit failed: nothing of any push is durable, so none may
            // be acknowledged.
            return pushes.map { _ in .failure(error) }
        }
    }

    /// One push in its own savepoint: stored whole, refused whole as an equivocation (with the
    /// evidence kept), or rolled back alone with its error. Throws only when the enclosing
    /// transaction itself is gone, which fails every push of the group.
    private func appendIsolated(_ db: Database, _ push: HubPush) throws -> Result<HubAppendResult, any Error> {
        let stored = isolated(db) { try appendOne(db, push) }
        guard case let .failure(error) = stored, let refused = error as? Equivocations else { return try survived(db, stored) }
        let kept = isolated(db) {
            try keepEvidence(db, refused, from: push.replica, receivedAtMillis: push.receivedAtMillis)
            return HubAppendResult(durable: VersionVector(), head: try Self.head(db), stored: 0, duplicates: 0,
                                   equivocations: refused.found.map(\.change))
        }
        return try survived(db, kept)
    }

    /// Runs `body` in a savepoint; its error, if any, as a result (the savepoint rolled back).
    private func isolated<T>(_ db: Database, _ body: () throws -> T) -> Result<T, any Error> {
        var value: T?
        do {
            try db.inSavepoint {
                value = try body()
                return .commit
            }
        } catch {
            return .failure(error)
        }
        guard let value else { return .failure(StoreError(.database, "a hub savepoint ended without a result")) }
        return .success(value)
    }

    /// A failed push's result, unless SQLite rolled back the whole transaction with it (an I/O
    /// error, a full disk): then the pushes before it are gone too, and the group must fail.
    private func survived<T>(_ db: Database, _ result: Result<T, any Error>) throws -> Result<T, any Error> {
        guard case let .failure(error) = result, !(error is Equivocations) else { return result }
        guard db.isInsideTransaction else { throw error }
        return .failure(Self.storeError(error))
    }

    /// The error as the store reports it (a GRDB error becomes a `StoreError`).
    private static func storeError(_ error: any Error) -> any Error {
        do {
            try ReplicaStore.guarded { () throws -> Void in throw error }
        } catch {
            return error
        }
        return error
    }

    private func appendOne(_ db: Database, _ push: HubPush) throws -> HubAppendResult {
        var origins: [ReplicaID: Int64] = [:]
        var stored = 0
        var equivocations: [(change: ChangeID, bytes: [UInt8])] = []
        let insert = try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO hub_log (origin, counter, table_name, row_key, scope, bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        let held = try db.cachedStatement(sql: "SELECT bytes FROM hub_log WHERE origin = ? AND counter = ?")
        let receivedAt = Int64(clamping: push.receivedAtMillis)
        for change in push.changes {
            // Counters are stored signed and counted from 1: anything else would wrap or never
            // become contiguous. A session refuses such a change before it gets here; the store
            // does not rely on that.
            guard (1...UInt64(Int64.max)).contains(change.id.counter) else {
                throw StoreError(.limitExceeded, "change counter \(change.id.counter) of origin \(change.id.replica.short) is outside 1…2^63-1; push refused",
                                 table: change.table, row: change.row, change: change.id)
            }
            let origin = try originID(db, change.id.replica, &origins)
            let bytes = change.canonicalBytes
            let counter = Int64(change.id.counter)
            try insert.execute(arguments: [origin, counter, change.table, change.row, change.scope, Data(bytes), receivedAt])
            if db.changesCount > 0 {
                stored += 1
            } else if let existing = try Data.fetchOne(held, arguments: [origin, counter]), !existing.elementsEqual(bytes) {
                // The same id with other content: a restored or copied replica reused its
                // counters. Acknowledging it would tell the sender the hub holds its write.
                equivocations.append((change.id, bytes))
            }
        }
        if !equivocations.isEmpty { throw Equivocations(found: equivocations) }
        var durable: [ReplicaID: UInt64] = [:]
        for (replicaID, origin) in origins {
            durable[replicaID] = try advance(db, origin)
        }
        if stored > 0 {
            try db.cachedStatement(sql: "UPDATE hub_replica SET changes_stored = changes_stored + ? WHERE replica_id = ?")
                .execute(arguments: [stored, push.replica.hex])
        }
        return HubAppendResult(durable: VersionVector(durable), head: try Self.head(db), stored: stored,
                               duplicates: push.changes.count - stored)
    }

    private func keepEvidence(_ db: Database, _ refused: Equivocations, from replica: ReplicaID, receivedAtMillis: UInt64) throws {
        // Bounded: a replica pushing ever new versions of held ids would otherwise fill the
        // disk with evidence. Beyond the cap the push is still refused, and `last_error`
        // still shows it; the first versions kept are enough for the operator to act.
        let kept = try Int.fetchOne(db, sql: "SELECT count(*) FROM hub_equivocation WHERE from_replica = ?",
                                    arguments: [replica.hex]) ?? 0
        for (change, bytes) in refused.found.prefix(max(0, Self.maxEvidencePerReplica - kept)) {
            try db.execute(sql: """
                INSERT OR IGNORE INTO hub_equivocation (origin, counter, bytes, digest, from_replica, received_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [change.replica.hex, Int64(bitPattern: change.counter), Data(bytes), Self.hash(bytes), replica.hex,
                                  Int64(clamping: receivedAtMillis)])
        }
    }

    private func originID(_ db: Database, _ replica: ReplicaID, _ cache: inout [ReplicaID: Int64]) throws -> Int64 {
        if let id = cache[replica] { return id }
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO hub_origin (replica_id, contiguous) VALUES (?, 0)").execute(arguments: [replica.hex])
        guard let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM hub_origin WHERE replica_id = ?"), arguments: [replica.hex])
        else { throw StoreError(.corrupt, "hub origin \(replica.short) vanished while it was being stored") }
        cache[replica] = id
        return id
    }

    /// Moves the origin's contiguous counter over the changes now stored and returns it.
    private func advance(_ db: Database, _ origin: Int64) throws -> UInt64 {
        let held = try Int64.fetchOne(db.cachedStatement(sql: "SELECT contiguous FROM hub_origin WHERE id = ?"), arguments: [origin]) ?? 0
        let next = try db.cachedStatement(sql: "SELECT counter FROM hub_log WHERE origin = ? AND counter > ? ORDER BY counter LIMIT 1000")
        let contiguous = try Contiguous.advance(from: held, origin: origin, counters: next)
        try db.cachedStatement(sql: "UPDATE hub_origin SET contiguous = ? WHERE id = ?").execute(arguments: [contiguous, origin])
        return UInt64(contiguous)
    }

    static func head(_ db: Database) throws -> UInt64 {
        UInt64(try Int64.fetchOne(db.cachedStatement(sql: "SELECT max(seq) FROM hub_log")) ?? 0)
    }

    /// The highest hub sequence (``HubStore/head()``).
    public func head() throws -> UInt64 {
        try ReplicaStore.guarded { try reads.read { db in try Self.head(db) } }
    }

    /// A pull's page from the stored bytes (``HubStore/changes(after:excludingOrigin:byteBudget:maxCount:)``).
    public func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int,
                        maxCount: Int) throws -> HubPage {
        try ReplicaStore.guarded {
            try reads.read { db in
                let excluded = try Int64.fetchOne(db, sql: "SELECT id FROM hub_origin WHERE replica_id = ?", arguments: [excludedOrigin.hex]) ?? -1
                let rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT seq, origin, bytes FROM hub_log WHERE seq > ? ORDER BY seq"),
                                               arguments: [Int64(clamping: cursor)])
                var page = PageBuilder(byteBudget: byteBudget, maxCount: maxCount)
                var next = cursor
                var more = false
                while let row = try rows.next() {
                    let seq = UInt64(clamping: row[0] as Int64)
                    // Another copy's own changes are skipped without reading their bytes.
                    if (row[1] as Int64) == excluded { next = seq; continue }
                    guard try page.add(row, column: 2) else {
                        more = true
                        break
                    }
                    next = seq
                }
                return HubPage(encoded: page.encoded, nextCursor: next, more: more, bytes: page.bytes)
            }
        }
    }

    /// One origin's contiguous durable counter (``HubStore/ownDurable(_:)``).
    public func ownDurable(_ origin: ReplicaID) throws -> UInt64 {
        try ReplicaStore.guarded {
            try reads.read { db in
                let contiguous = try Int64.fetchOne(db, sql: "SELECT contiguous FROM hub_origin WHERE replica_id = ?", arguments: [origin.hex])
                return UInt64(max(0, contiguous ?? 0))
            }
        }
    }

    /// A recovery's page of one origin's changes (``HubStore/changes(ofOrigin:after:byteBudget:maxCount:)``).
    public func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage {
        try ReplicaStore.guarded {
            try reads.read { db in
                guard after < UInt64(Int64.max),
                      let originID = try Int64.fetchOne(db, sql: "SELECT id FROM hub_origin WHERE replica_id = ?", arguments: [origin.hex])
                else { return HubOriginPage(encoded: [], nextCounter: after, more: false, bytes: 0) }
                let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                    SELECT counter, bytes FROM hub_log WHERE origin = ? AND counter > ? ORDER BY counter
                    """), arguments: [originID, Int64(after)])
                var page = PageBuilder(byteBudget: byteBudget, maxCount: maxCount)
                var next = after
                var more = false
                while let row = try rows.next() {
                    let counter = UInt64(clamping: row[0] as Int64)
                    // Contiguous only: what the hub holds after a gap is not yet part of the origin's log.
                    guard counter == next + 1 else { break }
                    guard try page.add(row, column: 1) else {
                        more = true
                        break
                    }
                    next = counter
                }
                return HubOriginPage(encoded: page.encoded, nextCounter: next, more: more, bytes: page.bytes)
            }
        }
    }
}

/// Collects stored encodings into one page: within a byte budget and a count, and always at least
/// one change, so a small budget still makes progress (Protocol/session.md, "Answering a pull").
/// Nothing is decoded: the bytes were produced by `Change.canonicalBytes` when stored, and the
/// replica that receives them decodes them strictly.
struct PageBuilder {
    let byteBudget: Int
    let maxCount: Int
    private(set) var encoded: [[UInt8]] = []
    private(set) var bytes = 0

    init(byteBudget: Int, maxCount: Int) {
        self.byteBudget = byteBudget
        self.maxCount = maxCount
    }

    /// Adds the stored change in `column` of `row`; false (and nothing added) when the page is full.
    mutating func add(_ row: Row, column: Int) throws -> Bool {
        try row.withUnsafeData(atIndex: column) { data in
            let size = data?.count ?? 0
            if !encoded.isEmpty && (bytes + size > byteBudget || encoded.count >= maxCount) { return false }
            encoded.append(data.map { [UInt8]($0) } ?? [])
            bytes += size
            return true
        }
    }
}

/// The hub log before it kept relay columns (`hub_change` of hub-v1/v2): each change once, in
/// arrival order, as the per-field (v1) encoding of its day.
enum LegacyHubLog {
    /// The row edit a stored v1 encoding (table, row, column, then the field write) becomes:
    /// `ChangeV1.rowEdit`, the mapping replicas migrate with, so both hold the same bytes per id.
    static func change(from bytes: [UInt8]) throws(ByteDecodingError) -> Change {
        var reader = ByteReader(bytes)
        let table = try reader.string()
        let row = try reader.string()
        let column = try reader.string()
        let write = try FieldWrite.decode(from: &reader)
        try reader.expectEnd()
        return ChangeV1.rowEdit(table: table, row: row, column: column, write: write)
    }

    /// Copies `hub_change` into `hub_log` with the same sequence numbers (every replica's pull
    /// cursor stays valid), decoding each change once for its relay columns, then drops it. Runs
    /// inside the migration's transaction: an unreadable row leaves the file as it was.
    static func migrate(_ db: Database) throws {
        let insert = try db.makeStatement(sql: """
            INSERT INTO hub_log (seq, origin, counter, table_name, row_key, scope, bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let rows = try Row.fetchCursor(db, sql: "SELECT seq, origin, counter, bytes, received_at FROM hub_change ORDER BY seq")
        while let row = try rows.next() {
            let seq: Int64 = row[0]
            let change: Change
            do {
                change = try Self.change(from: Array(row[3] as Data))
            } catch {
                throw StoreError.unreadable("hub change at sequence \(seq) (the hub file was left as it was)", table: "hub_change",
                                            column: "bytes", error)
            }
            guard Int64(bitPattern: change.id.counter) == (row[2] as Int64) else {
                throw StoreError(.corrupt, "hub change at sequence \(seq) holds counter \(change.id.counter), stored as \(row[2] as Int64); the hub file was left as it was",
                                 table: "hub_change", change: change.id)
            }
            try insert.execute(arguments: [seq, row[1] as Int64, row[2] as Int64, change.table, change.row, change.scope,
                                           Data(change.canonicalBytes), row[4] as Int64])
        }
        try db.execute(sql: "DROP TABLE hub_change")
    }
}
