import Foundation
import GRDB
import SyncCore
import SyncIdentity

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
        let found: [HeldElsewise]
    }

    /// Stores one push, durable on return (``HubStore/append(_:from:provenance:receivedAtMillis:)``).
    ///
    /// - Throws: ``StoreError`` `.limitExceeded` for a counter outside 1…2^63-1, `.signatureInvalid`,
    ///   `.chainGap`, `.unsignedChanges`, `.unknownDevice` for runs that do not verify, `.database`.
    ///   An equivocation is not thrown: it is ``HubAppendResult/equivocations``.
    public func append(_ changes: [Change], from replica: ReplicaID, provenance: Provenance, receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append([HubPush(changes: changes, replica: replica, provenance: provenance, receivedAtMillis: receivedAtMillis)])[0].get()
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
        // A refusal is audited in the group's transaction, after the push's savepoint rolled back.
        if case let .failure(error) = stored, db.isInsideTransaction { try auditRefusal(db, push, error) }
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

    func appendOne(_ db: Database, _ push: HubPush) throws -> HubAppendResult {
        var origins: [ReplicaID: Int64] = [:]
        let (stored, written) = try verifiedWrite(db, push, receivedAt: Int64(clamping: push.receivedAtMillis), origins: &origins)
        var durable: [ReplicaID: UInt64] = [:]
        for (replicaID, origin) in origins {
            durable[replicaID] = try advance(db, origin)
        }
        let routing = try route(db, written, pusher: push.replica, nowMillis: Int64(clamping: push.receivedAtMillis))
        try decide(db, after: routing, pusher: push.replica, nowMillis: push.receivedAtMillis)
        // One audit call per push: an event per change stored now (none for a duplicate), then
        // what routing did with them. The scope rules may tell a stored change's event (a view of a
        // restricted record, a conflict resolution).
        let storedEvents = written.filter(\.isNew).map { entry in
            let event = AuditEvent.stored(entry.change, from: push.replica, receivedAtMillis: push.receivedAtMillis)
            return scopeRules?.audit(event, of: entry.change) ?? event
        }
        try recordAudit(storedEvents + routing.auditEvents(pusher: push.replica, receivedAtMillis: push.receivedAtMillis), in: db)
        if stored > 0 {
            try db.cachedStatement(sql: "UPDATE hub_replica SET changes_stored = changes_stored + ?, quarantined = quarantined + ? WHERE replica_id = ?")
                .execute(arguments: [stored, routing.quarantined.count, push.replica.hex])
        }
        return HubAppendResult(durable: VersionVector(durable), head: try Self.head(db), stored: stored,
                               duplicates: push.changes.count - stored, quarantined: routing.quarantined.count)
    }

    private func keepEvidence(_ db: Database, _ refused: Equivocations, from replica: ReplicaID, receivedAtMillis: UInt64) throws {
        // Bounded: a replica pushing ever new versions of held ids would otherwise fill the
        // disk with evidence. Beyond the cap the push is still refused, and `last_error`
        // still shows it; the first versions kept are enough for the operator to act.
        let kept = try Int.fetchOne(db, sql: "SELECT count(*) FROM hub_equivocation WHERE from_replica = ?",
                                    arguments: [replica.hex]) ?? 0
        for found in refused.found.prefix(max(0, Self.maxEvidencePerReplica - kept)) {
            try db.execute(sql: """
                INSERT OR IGNORE INTO hub_equivocation (origin, counter, bytes, digest, from_replica, received_at, held_head, refused_head)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [found.change.replica.hex, Int64(bitPattern: found.change.counter), Data(found.bytes), Self.hash(found.bytes),
                                  replica.hex, Int64(clamping: receivedAtMillis), found.heldHead.map { Data(Self.encoded($0)) },
                                  found.refusedHead.map { Data(Self.encoded($0)) }])
        }
    }

    func originID(_ db: Database, _ replica: ReplicaID, _ cache: inout [ReplicaID: Int64]) throws -> Int64 {
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
        // Only chained rows count: a protocol-2 row after a gap joins the log when its predecessor does.
        let next = try db.cachedStatement(sql: """
            SELECT counter FROM hub_log WHERE origin = ? AND counter > ? AND chain IS NOT NULL ORDER BY counter LIMIT 1000
            """)
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

    /// The end of what `replica` pulls (``HubStore/head(for:)``): its team feed's with scope
    /// rules, else the hub log's.
    public func head(for replica: ReplicaID) throws -> UInt64 {
        try ReplicaStore.guarded { try reads.read { db in try feedHead(db, for: replica) ?? Self.head(db) } }
    }

    /// A pull's page from the stored bytes (``HubStore/changes(after:excludingOrigin:byteBudget:maxCount:)``).
    ///
    /// The page ends at a valid cut (Protocol/identity.md, "Checkpoints"): after a change at which
    /// every origin in the page has a head. When the budget (which counts the heads and
    /// certificates too) is reached it ends at the last valid cut, or, if there is none yet, at the
    /// next one. Unchained rows (a protocol-2 hub's, after a gap) are not part of the log yet.
    public func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int,
                        maxCount: Int) throws -> HubPage {
        try ReplicaStore.guarded {
            try reads.read { db in
                if let page = try feedPage(db, after: cursor, for: excludedOrigin, byteBudget: byteBudget, maxCount: maxCount) { return page }
                return try logPage(db, after: cursor, excludingOrigin: excludedOrigin, byteBudget: byteBudget, maxCount: maxCount)
            }
        }
    }

    /// A page of the whole hub log, in no team's feed: what an unscoped hub serves, and what
    /// checks of a scoped hub read (the simulator's "is every write in the hub's log").
    package func logPage(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage {
        try ReplicaStore.guarded {
            try reads.read { db in try logPage(db, after: cursor, excludingOrigin: excludedOrigin, byteBudget: byteBudget, maxCount: maxCount) }
        }
    }

    private func logPage(_ db: Database, after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int,
                         maxCount: Int) throws -> HubPage {
        let excluded = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM hub_origin WHERE replica_id = ?"),
                                          arguments: [excludedOrigin.hex]) ?? -1
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT l.seq, l.origin, l.counter, l.bytes, l.chain, h.signer, h.signature FROM hub_log l
            LEFT JOIN hub_head h ON h.origin = l.origin AND h.counter = l.counter
            WHERE l.seq > ? AND l.chain IS NOT NULL ORDER BY l.seq
            """), arguments: [Int64(clamping: cursor)])
        var page = CutPageBuilder(byteBudget: byteBudget, maxCount: maxCount, position: cursor)
        var origins = OriginDirectory(store: self)
        while let row = try rows.next() {
            let seq = UInt64(clamping: row[0] as Int64)
            // Another copy's own changes are skipped without reading their bytes.
            if (row[1] as Int64) == excluded {
                page.skip(to: seq)
                continue
            }
            guard try page.add(db, row, position: seq, &origins) else { break }
        }
        page.finish()
        return HubPage(encoded: page.encoded, nextCursor: page.position, more: page.more, bytes: page.bytes,
                       provenance: Provenance(heads: page.sortedHeads, certificates: try origins.certificates(db, page.origins)))
    }

    /// One origin's contiguous durable counter (``HubStore/ownDurable(_:)``).
    public func ownDurable(_ origin: ReplicaID) throws -> UInt64 {
        try ReplicaStore.guarded {
            try reads.read { db in
                let contiguous = try Int64.fetchOne(db.cachedStatement(sql: "SELECT contiguous FROM hub_origin WHERE replica_id = ?"),
                                                    arguments: [origin.hex])
                return UInt64(max(0, contiguous ?? 0))
            }
        }
    }

    /// A recovery's page of one origin's changes (``HubStore/changes(ofOrigin:after:byteBudget:maxCount:)``),
    /// ending at a head of the origin (with the heads inside it and the origin's certificate).
    public func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage {
        try ReplicaStore.guarded {
            try reads.read { db in
                guard after < UInt64(Int64.max),
                      let originID = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM hub_origin WHERE replica_id = ?"),
                                                        arguments: [origin.hex])
                else { return HubOriginPage(encoded: [], nextCounter: after, more: false, bytes: 0) }
                let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                    SELECT l.counter, l.origin, l.counter, l.bytes, l.chain, h.signer, h.signature FROM hub_log l
                    LEFT JOIN hub_head h ON h.origin = l.origin AND h.counter = l.counter
                    WHERE l.origin = ? AND l.counter > ? AND l.chain IS NOT NULL ORDER BY l.counter
                    """), arguments: [originID, Int64(after)])
                var page = CutPageBuilder(byteBudget: byteBudget, maxCount: maxCount, position: after)
                var origins = OriginDirectory(store: self)
                while let row = try rows.next() {
                    let counter = UInt64(clamping: row[0] as Int64)
                    // Contiguous only: what the hub holds after a gap is not yet part of the origin's log.
                    guard counter == page.position + 1 else { break }
                    guard try page.add(db, row, position: counter, &origins) else { break }
                }
                page.finish()
                return HubOriginPage(encoded: page.encoded, nextCounter: page.position, more: page.more, bytes: page.bytes,
                                     provenance: Provenance(heads: page.sortedHeads, certificates: try origins.certificates(db, page.origins)))
            }
        }
    }
}

/// Origin rows' replica ids and certificates, looked up once per page.
struct OriginDirectory {
    let store: SQLiteHubStore
    private var replicas: [Int64: ReplicaID] = [:]
    private var certificateSizes: [Int64: Int] = [:]

    init(store: SQLiteHubStore) { self.store = store }

    mutating func replica(_ db: Database, _ origin: Int64) throws -> ReplicaID {
        if let known = replicas[origin] { return known }
        guard let hex = try String.fetchOne(db.cachedStatement(sql: "SELECT replica_id FROM hub_origin WHERE id = ?"), arguments: [origin]),
              let replica = ReplicaID(hex: hex)
        else { throw StoreError(.corrupt, "hub origin \(origin) has an unreadable id", table: "hub_origin") }
        replicas[origin] = replica
        return replica
    }

    /// Bytes the origin's certificate adds to a page (0 for hub-keyed origins and those without one).
    mutating func certificateSize(_ db: Database, _ origin: Int64) throws -> Int {
        if let known = certificateSizes[origin] { return known }
        let replica = try replica(db, origin)
        let size = store.hubKeyed.contains(replica) ? 0 : try Int.fetchOne(db.cachedStatement(sql: """
            SELECT length(certificate) FROM hub_replica WHERE replica_id = ?
            """), arguments: [replica.hex]) ?? 0
        certificateSizes[origin] = size
        return size
    }

    /// The certificates of `origins` that have one, ascending by replica.
    func certificates(_ db: Database, _ origins: [Int64]) throws -> [DeviceCertificate] {
        try origins.compactMap { origin -> DeviceCertificate? in
            guard let replica = replicas[origin], !store.hubKeyed.contains(replica),
                  let data = try Data.fetchOne(db.cachedStatement(sql: "SELECT certificate FROM hub_replica WHERE replica_id = ?"),
                                               arguments: [replica.hex])
            else { return nil }
            return try? DeviceCertificate(encoded: Array(data))
        }.sorted { $0.replica < $1.replica }
    }
}

/// Collects stored encodings and their heads into a page that ends at a valid cut: after a
/// change at which every origin in the page has a head. Within the byte budget (changes, heads and
/// certificates) and the count, unless no cut has been reached yet: then it goes on to the next one,
/// which checkpoints keep within 16 KiB and a change (Protocol/identity.md, "Checkpoints").
struct CutPageBuilder {
    let byteBudget: Int
    let maxCount: Int
    private(set) var encoded: [[UInt8]] = []
    private(set) var bytes = 0
    private(set) var heads: [SignedHead] = []
    private(set) var origins: [Int64] = []
    /// The sequence (or counter) the page has reached: the next request's cursor.
    private(set) var position: UInt64
    private(set) var more = false
    private var size = 0
    private var unheaded: Set<Int64> = []
    private var overflowing = false
    private var cut: Cut

    private struct Cut {
        var count = 0, bytes = 0, heads = 0, origins = 0, size = 0
        var position: UInt64
    }

    init(byteBudget: Int, maxCount: Int, position: UInt64) {
        self.byteBudget = byteBudget
        self.maxCount = maxCount
        self.position = position
        cut = Cut(position: position)
    }

    /// The heads, ascending by origin then counter.
    var sortedHeads: [SignedHead] { heads.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) } }

    /// A row not for this page (the requester's own): passed over, and a cut stays one.
    mutating func skip(to position: UInt64) {
        self.position = position
        if unheaded.isEmpty { cut.position = position }
    }

    /// Adds the row (`origin, counter, bytes, chain, signer, signature` from column 1); false when
    /// the page is complete: then the row is not part of it, unless it completes a first cut that
    /// outgrew the budget (the page then ends with it; `encoded` says which).
    /// `extra`: bytes the row brings besides itself, its head and its origin's certificate (an anchor).
    mutating func add(_ db: Database, _ row: Row, position: UInt64, _ directory: inout OriginDirectory, extra: Int = 0) throws -> Bool {
        let origin: Int64 = row[1]
        let head = row.hasNull(atIndex: 5) ? nil : SQLiteHubStore.head(try directory.replica(db, origin), row, counter: 2, signer: 5, signature: 6, chain: 4)
        let newOrigin = !origins.contains(origin)
        let change = try row.withUnsafeData(atIndex: 3) { data in data.map { [UInt8]($0) } ?? [] }
        let added = change.count + (head.map { SignedHead.minimumEncodedSize + Self.varintExtra($0.counter) } ?? 0)
            + (newOrigin ? try directory.certificateSize(db, origin) : 0) + extra
        if !encoded.isEmpty && (size + added > byteBudget || encoded.count >= maxCount) {
            if cut.count > 0 {
                more = true
                return false
            }
            overflowing = true
        }
        encoded.append(change)
        bytes += change.count
        size += added
        if newOrigin { origins.append(origin) }
        if let head {
            heads.append(head)
            unheaded.remove(origin)
        } else {
            unheaded.insert(origin)
        }
        self.position = position
        if unheaded.isEmpty {
            cut = Cut(count: encoded.count, bytes: bytes, heads: heads.count, origins: origins.count, size: size, position: position)
            if overflowing {
                more = true
                return false
            }
        }
        return true
    }

    /// Ends the page at its last valid cut (what follows it waits for the next page).
    mutating func finish() {
        guard !unheaded.isEmpty else { return }
        encoded.removeLast(encoded.count - cut.count)
        heads.removeLast(heads.count - cut.heads)
        origins.removeLast(origins.count - cut.origins)
        bytes = cut.bytes
        size = cut.size
        position = cut.position
        more = true
    }

    /// Bytes a head's counter varint takes beyond one.
    static func varintExtra(_ value: UInt64) -> Int {
        var extra = 0
        var rest = value >> 7
        while rest > 0 {
            extra += 1
            rest >>= 7
        }
        return extra
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
