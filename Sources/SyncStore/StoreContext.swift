import Foundation
import GRDB
import SyncCore

/// The store's working state inside one write transaction: the database connection, the schema,
/// and caches of dictionary ids. Local edits and remote batches both go through `apply(_:)`, so a
/// change has one meaning whichever way it arrives.
///
/// Lives only for the duration of one transaction; never escapes the `write` closure.
final class StoreContext {
    let db: Database
    let schema: ReplicaSchema
    let recordedAt: Int64
    private var nameIDs: [String: Int64] = [:]
    private var originIDs: [ReplicaID: Int64] = [:]
    private var rowRefs: [RowKey: RowRef] = [:]
    private(set) var touchedOrigins: Set<Int64> = []
    private(set) var summary = ApplySummary()

    struct RowKey: Hashable {
        let table: String
        let key: String
    }

    struct RowRef {
        let id: Int64
        var causalLength: UInt64
        var exists: Bool { causalLength % 2 == 1 }
    }

    init(db: Database, schema: ReplicaSchema, recordedAt: Int64) {
        self.db = db
        self.schema = schema
        self.recordedAt = recordedAt
    }

    // MARK: dictionaries

    func nameID(_ name: String) throws -> Int64 {
        if let id = nameIDs[name] { return id }
        let select = try db.cachedStatement(sql: "SELECT id FROM sync_name WHERE name = ?")
        let id: Int64
        if let found = try Int64.fetchOne(select, arguments: [name]) {
            id = found
        } else {
            try db.cachedStatement(sql: "INSERT INTO sync_name (name) VALUES (?)").execute(arguments: [name])
            id = db.lastInsertedRowID
        }
        nameIDs[name] = id
        return id
    }

    func originID(_ replica: ReplicaID) throws -> Int64 {
        if let id = originIDs[replica] { return id }
        let select = try db.cachedStatement(sql: "SELECT id FROM sync_origin WHERE replica_id = ?")
        let id: Int64
        if let found = try Int64.fetchOne(select, arguments: [replica.hex]) {
            id = found
        } else {
            try db.cachedStatement(sql: "INSERT INTO sync_origin (replica_id, contiguous) VALUES (?, 0)")
                .execute(arguments: [replica.hex])
            id = db.lastInsertedRowID
        }
        originIDs[replica] = id
        return id
    }

    /// The row's reference, created (with causal length 0: never existed) when first seen.
    func rowRef(table: String, key: String) throws -> RowRef {
        let rowKey = RowKey(table: table, key: key)
        if let ref = rowRefs[rowKey] { return ref }
        let tableID = try nameID(table)
        let select = try db.cachedStatement(sql: "SELECT id, causal_length FROM sync_row WHERE table_name = ? AND key = ?")
        var ref: RowRef
        if let row = try Row.fetchOne(select, arguments: [tableID, key]) {
            ref = RowRef(id: row[0], causalLength: UInt64(row[1] as Int64))
        } else {
            try db.cachedStatement(sql: "INSERT INTO sync_row (table_name, key, causal_length) VALUES (?, ?, 0)")
                .execute(arguments: [tableID, key])
            ref = RowRef(id: db.lastInsertedRowID, causalLength: 0)
        }
        rowRefs[rowKey] = ref
        return ref
    }

    /// The row's reference if the row has ever been seen; no insert.
    func existingRowRef(table: String, key: String) throws -> RowRef? {
        let rowKey = RowKey(table: table, key: key)
        if let ref = rowRefs[rowKey] { return ref }
        let select = try db.cachedStatement(sql: """
            SELECT r.id, r.causal_length FROM sync_row r JOIN sync_name n ON n.id = r.table_name
            WHERE n.name = ? AND r.key = ?
            """)
        guard let row = try Row.fetchOne(select, arguments: [table, key]) else { return nil }
        let ref = RowRef(id: row[0], causalLength: UInt64(row[1] as Int64))
        rowRefs[rowKey] = ref
        return ref
    }

    // MARK: applying changes

    /// Records and merges one change. Returns false if it was already known (idempotence by id).
    @discardableResult
    func apply(_ change: Change) throws -> Bool {
        let origin = try originID(change.id.replica)
        let exists = try db.cachedStatement(sql: "SELECT 1 FROM sync_change WHERE origin = ? AND counter = ?")
        if try Int64.fetchOne(exists, arguments: [origin, Int64(bitPattern: change.id.counter)]) != nil {
            summary.duplicates += 1
            return false
        }
        let table = schema.table(change.table)
        let column = change.isRowLife ? nil : table?.column(change.column)
        let known = table != nil && (change.isRowLife || column != nil)
        var ref = try rowRef(table: change.table, key: change.row)
        try record(change, origin: origin, row: ref.id, known: known)
        touchedOrigins.insert(origin)
        guard known, let table else {
            // Kept, not dropped: a replica with a newer schema wrote it. `replayKept` applies it
            // once this replica's schema learns the table or column.
            summary.kept += 1
            return true
        }
        if let column {
            try applyField(change, table: table, column: column, ref: ref)
        } else if change.write.causalLength > ref.causalLength {
            let existed = ref.exists
            ref.causalLength = change.write.causalLength
            rowRefs[RowKey(table: change.table, key: change.row)] = ref
            try db.cachedStatement(sql: "UPDATE sync_row SET causal_length = ? WHERE id = ?")
                .execute(arguments: [Int64(ref.causalLength), ref.id])
            if ref.exists && !existed {
                try materialize(table: table, key: change.row, ref: ref)
            } else if !ref.exists && existed {
                try db.execute(sql: "DELETE FROM \(table.name) WHERE id = ?", arguments: [change.row])
            }
        }
        summary.applied += 1
        return true
    }

    private func record(_ change: Change, origin: Int64, row: Int64, known: Bool) throws {
        let write = change.write
        var supersedes: Data?
        if !write.supersedes.isEmpty {
            var writer = ByteWriter()
            writer.varint(UInt64(write.supersedes.count))
            for id in write.supersedes { id.encode(into: &writer) }
            supersedes = Data(writer.bytes)
        }
        let columnID: Int64? = change.isRowLife ? nil : try nameID(change.column)
        let insert = try db.cachedStatement(sql: """
            INSERT INTO sync_change (origin, counter, hlc, row, column_name, causal_length, author, op, value,
                                     supersedes, recorded_at, known)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insert.setUncheckedArguments([
            origin, Int64(bitPattern: write.id.counter), Int64(bitPattern: write.timestamp.rawValue), row, columnID,
            Int64(write.causalLength), try nameID(write.author), Int64(write.operation.code),
            write.value.databaseValue, supersedes, recordedAt, known ? 1 : 0,
        ])
        try insert.execute()
    }

    private func applyField(_ change: Change, table: TableSchema, column: ColumnSchema, ref: RowRef) throws {
        let columnID = try nameID(column.name)
        let select = try db.cachedStatement(sql: """
            SELECT causal_length, hlc, origin, counter, state, conflict FROM sync_field WHERE row = ? AND column_name = ?
            """)
        let stored = try Row.fetchOne(select, arguments: [ref.id, columnID])
        let write = change.write
        let origin = try originID(write.id.replica)
        if !column.policy.keepsState {
            // Last writer wins needs only the winning version; the value lives in the domain row
            // (and in the change log, from which a re-created row is rebuilt).
            if let stored {
                let current = WriteVersion(
                    causalLength: UInt64(stored[0] as Int64), timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: stored[1])),
                    id: ChangeID(replica: try replica(forOrigin: stored[2]), counter: UInt64(bitPattern: stored[3])))
                guard LastWriterWinsRegister.wins(write.version, over: current) else { return }
            }
            try saveField(ref: ref.id, column: columnID, write: write, origin: origin, state: nil, conflict: false)
            if ref.exists { try setDomainValue(table: table, column: column, key: change.row, value: write.value) }
            return
        }
        var state = FieldState.empty(for: column.policy)
        if let stored, let blob = stored[4] as Data? {
            state = try decodeState(Array(blob), column: column)
        }
        let next = state.applying(write, policy: column.policy)
        guard next != state else { return }
        let resolution = next.resolution(policy: column.policy)
        let wasInConflict = stored.map { ($0[5] as Int64) != 0 } ?? false
        let inConflict = resolution.inConflict || !resolution.quarantined.isEmpty
        if inConflict && !wasInConflict { summary.conflictsOpened += 1 }
        if !inConflict && wasInConflict { summary.conflictsClosed += 1 }
        try saveField(ref: ref.id, column: columnID, write: write, origin: origin, state: Data(next.encoded()), conflict: inConflict)
        if ref.exists { try setDomainValue(table: table, column: column, key: change.row, value: resolution.value) }
    }

    func decodeState(_ bytes: [UInt8], column: ColumnSchema) throws -> FieldState {
        do {
            return try FieldState.decode(bytes, policy: column.policy)
        } catch {
            throw StoreError(.corrupt, "stored merge state of column \(column.name) is unreadable: \(error)")
        }
    }

    private func saveField(ref: Int64, column: Int64, write: FieldWrite, origin: Int64, state: Data?, conflict: Bool) throws {
        let upsert = try db.cachedStatement(sql: """
            INSERT INTO sync_field (row, column_name, causal_length, hlc, origin, counter, conflict, state)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (row, column_name) DO UPDATE SET causal_length = excluded.causal_length, hlc = excluded.hlc,
              origin = excluded.origin, counter = excluded.counter, conflict = excluded.conflict, state = excluded.state
            """)
        upsert.setUncheckedArguments([
            ref, column, Int64(write.causalLength), Int64(bitPattern: write.timestamp.rawValue), origin,
            Int64(bitPattern: write.id.counter), conflict ? 1 : 0, state,
        ])
        try upsert.execute()
    }

    private func setDomainValue(table: TableSchema, column: ColumnSchema, key: String, value: FieldValue) throws {
        let update = try db.cachedStatement(sql: "UPDATE \(table.name) SET \(column.name) = ? WHERE id = ?")
        update.setUncheckedArguments([value.databaseValue, key])
        try update.execute()
    }

    private var replicaByOrigin: [Int64: ReplicaID] = [:]

    func replica(forOrigin origin: Int64) throws -> ReplicaID {
        if let replica = replicaByOrigin[origin] { return replica }
        guard let hex = try String.fetchOne(db.cachedStatement(sql: "SELECT replica_id FROM sync_origin WHERE id = ?"),
                                            arguments: [origin]),
              let replica = ReplicaID(hex: hex)
        else { throw StoreError(.corrupt, "origin \(origin) has no replica id") }
        replicaByOrigin[origin] = replica
        return replica
    }

    /// (Re)builds a domain row from its merged field states, when a row comes into existence after
    /// some of its fields arrived, or is re-created after a delete.
    private func materialize(table: TableSchema, key: String, ref: RowRef) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO \(table.name) (id) VALUES (?)", arguments: [key])
        let fields = try Row.fetchAll(db, sql: """
            SELECT n.name, f.state, c.value FROM sync_field f JOIN sync_name n ON n.id = f.column_name
            LEFT JOIN sync_change c ON c.origin = f.origin AND c.counter = f.counter
            WHERE f.row = ?
            """, arguments: [ref.id])
        for field in fields {
            guard let column = table.column(field[0]) else { continue }
            let value: FieldValue
            if let blob = field[1] as Data? {
                value = try decodeState(Array(blob), column: column).resolution(policy: column.policy).value
            } else {
                value = FieldValue(databaseValue: field[2])
            }
            try setDomainValue(table: table, column: column, key: key, value: value)
        }
    }

    /// Advances each touched origin's contiguous counter over the changes now present.
    func advanceContiguous() throws {
        for origin in touchedOrigins {
            var contiguous = try Int64.fetchOne(db, sql: "SELECT contiguous FROM sync_origin WHERE id = ?", arguments: [origin]) ?? 0
            let next = try db.cachedStatement(sql: "SELECT counter FROM sync_change WHERE origin = ? AND counter > ? ORDER BY counter LIMIT 1000")
            scan: while true {
                let counters = try Int64.fetchAll(next, arguments: [origin, contiguous])
                for counter in counters {
                    guard counter == contiguous + 1 else { break scan }
                    contiguous = counter
                }
                if counters.count < 1000 { break }
            }
            try db.execute(sql: "UPDATE sync_origin SET contiguous = ? WHERE id = ?", arguments: [contiguous, origin])
        }
    }
}

/// What applying a batch did.
public struct ApplySummary: Equatable, Sendable {
    /// Changes recorded and merged.
    public var applied = 0
    /// Changes already known (same change id): nothing done.
    public var duplicates = 0
    /// Changes to tables or columns this replica's schema does not know: recorded, applied later.
    public var kept = 0
    public var conflictsOpened = 0
    public var conflictsClosed = 0

    public init() {}
}

extension FieldValue {
    var databaseValue: DatabaseValue {
        switch self {
        case .null: .null
        case let .integer(value): value.databaseValue
        case let .real(value): value.databaseValue
        case let .text(value): value.databaseValue
        case let .blob(bytes): Data(bytes).databaseValue
        }
    }

    init(databaseValue: DatabaseValue) {
        switch databaseValue.storage {
        case .null: self = .null
        case let .int64(value): self = .integer(value)
        case let .double(value): self = .real(value)
        case let .string(value): self = .text(value)
        case let .blob(data): self = .blob(Array(data))
        }
    }
}
