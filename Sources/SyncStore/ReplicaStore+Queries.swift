import Foundation
import GRDB
import SyncCore

/// A field whose concurrent writes a person must settle.
public struct FieldConflict: Sendable {
    /// Why the field needs a person.
    public enum Kind: String, Sendable {
        /// Concurrent different values of a multi-value field (or two terminal statuses).
        case concurrentValues = "concurrent_values"
        /// A differing write to an immutable field: kept aside, never adopted.
        case quarantined
    }

    /// The field's table.
    public let table: String
    /// The row's id.
    public let row: String
    /// The field.
    public let column: String
    /// Concurrent values, or a quarantined write.
    public let kind: Kind
    /// The competing writes, oldest first; for a quarantine, the accepted write first.
    public let candidates: [FieldWrite]
}

/// One entry of a record's history: who changed what, from which replica, when it happened and
/// when this replica recorded it.
public struct HistoryEntry: Sendable {
    /// The change (row edit) the entry is part of.
    public let change: ChangeID
    /// The field written; nil for the entry of an edit that created, deleted or re-created the row.
    public let column: String?
    /// Who made the change.
    public let author: String
    /// When it was made, as its replica's hybrid clock read.
    public let timestamp: HybridTimestamp
    /// When this replica recorded it, by this replica's wall clock.
    public let recordedAtMillis: Int64
    /// What it did to the field; `.assign(.null)` for a row-life entry (column nil), whose
    /// ``causalLength`` says what it did to the row (`CausalLength.isAlive`: created or re-created).
    public let operation: FieldOperation
    /// The row's life the change was made in (or, for a row-life entry, set).
    public let causalLength: UInt64
}

/// A replica's own account of itself.
public struct ReplicaStatus: Sendable {
    /// The replica's identity.
    public let replicaID: ReplicaID
    /// Its display name.
    public let name: String
    /// The schema version the file is at.
    public let schemaVersion: Int
    /// Changes this replica made (its counter).
    public let localChanges: UInt64
    /// Changes in the log, from every origin.
    public let totalChanges: Int
    /// Changes parked for tables or columns a newer schema knows (applied after an upgrade).
    public let parkedChanges: Int
    /// Fields in open conflict.
    public let openConflicts: Int
    /// For each origin, the counter up to which this replica holds every change.
    public let knownVector: VersionVector
    /// Rows per domain table.
    public let rowCounts: [(table: String, rows: Int)]
    /// What this replica knows of its peers.
    public let peers: [PeerStatus]
    /// The replica's hybrid clock: after every timestamp it has made or seen.
    public let lastTimestamp: HybridTimestamp
}

/// What this replica knows about what a peer has seen, and so what it would send the peer.
public struct PeerStatus: Sendable {
    /// The peer.
    public let replicaID: ReplicaID
    /// What the peer has seen, as it last told this replica.
    public let knownVector: VersionVector
    /// Changes this replica holds that the peer has not seen (saturating).
    public let changesNotSeen: UInt64
    /// When this replica last learned it.
    public let updatedAtMillis: Int64
}

extension ReplicaStore {
    /// Every change this replica holds that a peer with knowledge `seen` lacks, ordered by origin
    /// and counter (so a receiver's contiguous counters advance without gaps).
    ///
    /// - Parameters:
    ///   - seen: The peer's knowledge: for each origin, the counter up to which it holds every change.
    ///   - limit: At most this many changes.
    /// - Returns: The changes, as they travel.
    /// - Throws: ``StoreError`` `.corrupt` for an unreadable log entry (with its offset), `.database`.
    public func changes(notIn seen: VersionVector, limit: Int = .max) throws -> [Change] {
        try readDatabase { db in
            let names = NameLookup(db)
            let origins = try Row.fetchAll(db, sql: "SELECT id, replica_id FROM sync_origin ORDER BY replica_id")
            var result: [Change] = []
            for origin in origins {
                guard let replica = ReplicaID(hex: origin[1]) else { throw StoreError(.corrupt, "bad origin replica id", table: "sync_origin") }
                let rows = try Row.fetchAll(db, sql: """
                    \(ReplicaStore.changeSelect)
                    WHERE c.origin = ? AND c.counter > ? ORDER BY c.counter LIMIT ?
                    """, arguments: [origin[0] as Int64, Int64(bitPattern: seen[replica]), min(limit - result.count, Int(Int32.max))])
                for row in rows { result.append(try Self.change(from: row, replica: replica, name: names.name)) }
                if result.count >= limit { break }
            }
            return result
        }
    }

    /// The columns `change(from:replica:name:)` reads, with their joins; a query adds its WHERE clause.
    static let changeSelect = """
        SELECT c.counter, c.hlc, r.key, t.name, ifnull(c.scope, r.scope), c.causal_length, a.name, c.life, c.fields
        FROM sync_change c JOIN sync_row r ON r.id = c.row JOIN sync_name t ON t.id = r.table_name
        JOIN sync_name a ON a.id = c.author
        """

    /// A change from a row of `changeSelect`; `name` resolves column name ids.
    static func change(from row: Row, replica: ReplicaID, name: (Int64) throws -> String) throws -> Change {
        let id = ChangeID(replica: replica, counter: UInt64(bitPattern: row[0]))
        let fields = try LogFields.decode(Array(row[8] as Data? ?? Data()), name: name)
        return Change(id: id, timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: row[1])), author: row[6], table: row[3],
                      row: row[2], scope: row[4], causalLength: UInt64(clamping: row[5] as Int64),
                      setsLife: (row[7] as Int64) != 0, fields: fields)
    }

    /// For each origin, the counter up to which this replica has every change.
    public func versionVector() throws -> VersionVector {
        try readDatabase { db in
            var counters: [ReplicaID: UInt64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT replica_id, contiguous FROM sync_origin WHERE contiguous > 0") {
                if let replica = ReplicaID(hex: row[0]) { counters[replica] = UInt64(row[1] as Int64) }
            }
            return VersionVector(counters)
        }
    }

    /// Remembers what a peer has seen (from the vector it sent), so exports to it skip those changes.
    public func recordPeerKnowledge(_ peer: ReplicaID, _ vector: VersionVector) throws {
        guard peer != replicaID else { return }
        try writeContext { context in try Self.mergePeerKnowledge(context, peer, vector) }
    }

    static func mergePeerKnowledge(_ context: MergeTransaction, _ peer: ReplicaID, _ vector: VersionVector) throws {
        var known = try peerVector(context.db, peer) ?? VersionVector()
        known.merge(vector)
        try storePeerVector(context, peer, known)
    }

    static func storePeerVector(_ context: MergeTransaction, _ peer: ReplicaID, _ vector: VersionVector) throws {
        var writer = ByteWriter()
        vector.encode(into: &writer)
        try context.db.execute(sql: """
            INSERT INTO sync_peer (replica_id, vector, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (replica_id) DO UPDATE SET vector = excluded.vector, updated_at = excluded.updated_at
            """, arguments: [peer.hex, Data(writer.bytes), context.recordedAt])
    }

    /// What this replica last learned a peer has seen; empty if the peer is unknown.
    public func peerKnowledge(_ peer: ReplicaID) throws -> VersionVector {
        try readDatabase { db in try Self.peerVector(db, peer) ?? VersionVector() }
    }

    static func peerVector(_ db: Database, _ peer: ReplicaID) throws -> VersionVector? {
        guard let blob = try Data.fetchOne(db, sql: "SELECT vector FROM sync_peer WHERE replica_id = ?", arguments: [peer.hex]) else {
            return nil
        }
        var reader = ByteReader(Array(blob))
        do {
            let vector = try VersionVector.decode(from: &reader)
            try reader.expectEnd()
            return vector
        } catch {
            throw StoreError.unreadable("stored knowledge of peer \(peer.short)", table: "sync_peer", column: "vector", error)
        }
    }

    /// Every field with an open conflict or quarantined write (`FieldResolution.isOpenConflict`),
    /// ordered by table, row and column.
    ///
    /// - Throws: ``StoreError`` `.corrupt` for unreadable merge state (with table, column, row and
    ///   offset), `.database`.
    public func conflicts() throws -> [FieldConflict] {
        try readDatabase { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT t.name, r.key, c.name, f.state FROM sync_field f JOIN sync_row r ON r.id = f.row
                JOIN sync_name t ON t.id = r.table_name JOIN sync_name c ON c.id = f.column_name
                WHERE f.conflict = 1 ORDER BY t.name, r.key, c.name
                """)
            return try rows.compactMap { row -> FieldConflict? in
                let table: String = row[0]
                let column: String = row[2]
                guard let schema = schema.table(table)?.column(column), let blob = row[3] as Data? else { return nil }
                let state: FieldState
                do { state = try FieldState.decode(Array(blob), policy: schema.policy) } catch {
                    throw StoreError.unreadableState(table: table, column: column, row: row[1], error)
                }
                let resolution = state.resolution(policy: schema.policy)
                if resolution.inConflict {
                    return FieldConflict(table: table, row: row[1], column: column, kind: .concurrentValues,
                                         candidates: resolution.candidates)
                }
                guard !resolution.quarantined.isEmpty, case let .immutable(register) = state else { return nil }
                return FieldConflict(table: table, row: row[1], column: column, kind: .quarantined, candidates: register.writes)
            }
        }
    }

    /// Every change to a row (or one of its fields), oldest first by hybrid timestamp: one entry
    /// per field an edit wrote (and one, with no column, for an edit that created, deleted or
    /// re-created the row), read from the row edits themselves.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - key: The row's id.
    ///   - column: Only this field's entries (and no row-life entries), or nil for all.
    /// - Returns: The entries, oldest first.
    /// - Throws: ``StoreError`` `.corrupt` for a log entry that does not decode (an unknown
    ///   operation is refused, never shown as another), with its offset; `.database`.
    public func history(table: String, row key: String, column: String? = nil) throws -> [HistoryEntry] {
        try readDatabase { db in
            let names = NameLookup(db)
            let rows = try Row.fetchAll(db, sql: """
                SELECT o.replica_id, c.counter, c.fields, a.name, c.hlc, c.recorded_at, c.life, c.causal_length
                FROM sync_change c JOIN sync_row r ON r.id = c.row JOIN sync_name t ON t.id = r.table_name
                JOIN sync_origin o ON o.id = c.origin JOIN sync_name a ON a.id = c.author
                WHERE t.name = ? AND r.key = ? ORDER BY c.hlc, o.replica_id, c.counter
                """, arguments: [table, key])
            var entries: [HistoryEntry] = []
            for row in rows {
                guard let replica = ReplicaID(hex: row[0]) else { throw StoreError(.corrupt, "bad origin replica id", table: "sync_origin") }
                let id = ChangeID(replica: replica, counter: UInt64(bitPattern: row[1]))
                let timestamp = HybridTimestamp(rawValue: UInt64(bitPattern: row[4]))
                let causalLength = UInt64(clamping: row[7] as Int64)
                func entry(_ columnName: String?, _ operation: FieldOperation) -> HistoryEntry {
                    HistoryEntry(change: id, column: columnName, author: row[3], timestamp: timestamp, recordedAtMillis: row[5],
                                 operation: operation, causalLength: causalLength)
                }
                if (row[6] as Int64) != 0 && column == nil { entries.append(entry(nil, .assign(.null))) }
                for field in try LogFields.decode(Array(row[2] as Data? ?? Data()), name: names.name)
                where column == nil || field.column == column {
                    entries.append(entry(field.column, field.operation))
                }
            }
            return entries
        }
    }

    /// The replica's account of itself: identity, counts, conflicts, knowledge and peers.
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func status() throws -> ReplicaStatus {
        let vector = try versionVector()
        return try readDatabase { db in
            let state = try Row.fetchOne(db, sql: "SELECT display_name, schema_version, counter, hlc FROM sync_state")!
            var counts: [(String, Int)] = []
            for table in schema.tables {
                counts.append((table.name, try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table.name)") ?? 0))
            }
            var peers: [PeerStatus] = []
            for row in try Row.fetchAll(db, sql: "SELECT replica_id, updated_at FROM sync_peer ORDER BY replica_id") {
                guard let peer = ReplicaID(hex: row[0]) else { continue }
                let known = try Self.peerVector(db, peer) ?? VersionVector()
                // Saturated: a peer's vector (from a bundle) may hold counters near 2^64.
                let missing = vector.counters.reduce(UInt64(0)) { sum, entry in
                    let (next, overflow) = sum.addingReportingOverflow(entry.value > known[entry.key] ? entry.value - known[entry.key] : 0)
                    return overflow ? .max : next
                }
                peers.append(PeerStatus(replicaID: peer, knownVector: known, changesNotSeen: missing, updatedAtMillis: row[1]))
            }
            return ReplicaStatus(
                replicaID: replicaID, name: state[0], schemaVersion: state[1], localChanges: UInt64(clamping: state[2] as Int64),
                totalChanges: try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_change") ?? 0,
                parkedChanges: try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_change WHERE known = 0") ?? 0,
                openConflicts: try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_field WHERE conflict = 1") ?? 0,
                knownVector: vector, rowCounts: counts, peers: peers,
                lastTimestamp: HybridTimestamp(rawValue: UInt64(bitPattern: state[3])))
        }
    }

    /// Bytes of merge metadata per tracked field, measured with SQLite's dbstat virtual table when
    /// available: page bytes of `sync_row` (each row's reference and its last-writer-wins versions)
    /// and `sync_field` (the fields with merge state), with their indexes, divided by the tracked
    /// fields (a version in a row's record, or a field with merge state).
    public func metadataBytesPerField() throws -> (fields: Int, bytes: Int)? {
        try readDatabase { db in
            // Since row edits a last-writer-wins field has no `sync_field` row: its version is an
            // entry of its row's `clocks` record, so both are counted.
            var fields = try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_field") ?? 0
            let clocks = try Data.fetchCursor(db, sql: "SELECT clocks FROM sync_row WHERE clocks IS NOT NULL")
            while let blob = try clocks.next() { fields += try RowClocks(stored: blob).entries.count }
            guard fields > 0 else { return nil }
            do {
                let bytes = try Int.fetchOne(db, sql: """
                    SELECT sum(pgsize) FROM dbstat
                    WHERE name IN ('sync_row', 'sqlite_autoindex_sync_row_1', 'sync_field', 'sync_field_open_conflict')
                    """) ?? 0
                return (fields, bytes)
            } catch {
                return nil
            }
        }
    }
}

extension MergeTransaction {
    /// Applies kept changes whose table and columns the schema now knows (after an upgrade).
    func replayKept() throws {
        let rows = try Row.fetchAll(db, sql: """
            SELECT c.counter, c.hlc, r.key, t.name, ifnull(c.scope, r.scope), c.causal_length, a.name, c.life, c.fields, o.replica_id
            FROM sync_change c JOIN sync_origin o ON o.id = c.origin JOIN sync_row r ON r.id = c.row
            JOIN sync_name t ON t.id = r.table_name JOIN sync_name a ON a.id = c.author WHERE c.known = 0 ORDER BY c.hlc
            """)
        for row in rows {
            guard let replica = ReplicaID(hex: row[9]) else { continue }
            let change = try change(from: row, replica: replica)
            guard let table = schema.table(change.table), change.fields.allSatisfy({ table.column($0.column) != nil }) else { continue }
            try db.execute(sql: "DELETE FROM sync_change WHERE origin = ? AND counter = ?",
                           arguments: [try originID(replica), Int64(bitPattern: change.id.counter)])
            try apply(change)
        }
    }
}

/// Resolves name ids (`sync_name`), caching what it has looked up: on a read connection, and for
/// a write transaction's `MergeTransaction`.
final class NameLookup {
    private let db: Database
    private var names: [Int64: String] = [:]

    init(_ db: Database) { self.db = db }

    func name(_ id: Int64) throws -> String {
        if let name = names[id] { return name }
        guard let name = try String.fetchOne(db.cachedStatement(sql: "SELECT name FROM sync_name WHERE id = ?"), arguments: [id]) else {
            throw StoreError(.corrupt, "name \(id) is missing from the dictionary", table: "sync_name")
        }
        names[id] = name
        return name
    }

    /// Records a name already known (just looked up or inserted by id), so it is never read back.
    func remember(_ id: Int64, _ name: String) { names[id] = name }
}
