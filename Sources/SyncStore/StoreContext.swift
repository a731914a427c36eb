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
    /// Rows first seen in this transaction: they have no stored fields yet.
    private var freshRows: Set<Int64> = []

    struct ChangeKey: Hashable {
        let origin: Int64
        let counter: Int64
    }

    struct FieldKey: Hashable {
        let row: Int64
        let column: Int64
    }

    /// A field's clock as stored in `sync_field`.
    struct StoredField {
        var causalLength: Int64
        var hlc: Int64
        var origin: Int64
        var counter: Int64
        var state: Data?
        var conflict: Bool
    }

    // Write buffers: log entries and field clocks are written in multi-row statements when the
    // transaction ends or before SQL reads them (`flushAll`); reads of fields go through the overlay.
    private var pendingChanges: [[FieldValue]] = []
    private var recordedChanges: Set<ChangeKey> = []
    private var prefetchedChanges: Set<ChangeKey> = []
    private var prefetchedRanges: [Int64: ClosedRange<Int64>] = [:]
    private var fieldOverlay: [FieldKey: StoredField] = [:]
    private var dirtyFields: [FieldKey] = []
    private var dirtyFieldSet: Set<FieldKey> = []
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
        // Most rows met here are new (creations, first changes of a row): try the insert first,
        // and look the row up only when it already existed. One statement instead of two.
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO sync_row (table_name, key, causal_length) VALUES (?, ?, 0)")
        try BulkStatement.execute(insert, in: db, values: [.integer(tableID), .text(key)])
        var ref: RowRef
        if db.changesCount > 0 {
            ref = RowRef(id: db.lastInsertedRowID, causalLength: 0)
            freshRows.insert(ref.id)
        } else {
            let select = try db.cachedStatement(sql: "SELECT id, causal_length FROM sync_row WHERE table_name = ? AND key = ?")
            guard let row = try Row.fetchOne(select, arguments: [tableID, key]) else {
                throw StoreError(.corrupt, "row reference for \(table) \(key) vanished")
            }
            ref = RowRef(id: row[0], causalLength: UInt64(clamping: row[1] as Int64))
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
        let ref = RowRef(id: row[0], causalLength: UInt64(clamping: row[1] as Int64))
        rowRefs[rowKey] = ref
        return ref
    }

    // MARK: applying changes

    /// Records and merges one change from another replica. Returns false if it was already known
    /// (idempotence by change id).
    ///
    /// `recorded` merges a change the log already holds without recording it again: how the state
    /// is rebuilt from the log.
    @discardableResult
    func apply(_ change: Change, recorded: Bool = false) throws -> Bool {
        let origin = try originID(change.id.replica)
        let table = schema.table(change.table)
        let column = change.isRowLife ? nil : table?.column(change.column)
        let known = table != nil && (change.isRowLife || column != nil)
        var ref = try rowRef(table: change.table, key: change.row)
        if !recorded {
            guard try record(change, origin: origin, row: ref.id, known: known) else {
                summary.duplicates += 1
                return false
            }
            touchedOrigins.insert(origin)
        }
        guard known, let table else {
            // Kept, not dropped: a replica with a newer schema wrote it. `replayKept` applies it
            // once this replica's schema learns the table or column.
            summary.kept += 1
            return true
        }
        if let column {
            try applyField(change.write, table: table, column: column, ref: ref, key: change.row, stored: try loadField(ref.id, column.name),
                           knownToWin: false)
        } else if change.write.causalLength > ref.causalLength {
            let existed = ref.exists
            ref.causalLength = change.write.causalLength
            rowRefs[RowKey(table: change.table, key: change.row)] = ref
            try db.cachedStatement(sql: "UPDATE sync_row SET causal_length = ? WHERE id = ?")
                .execute(arguments: [Int64(ref.causalLength), ref.id])
            if ref.exists && !existed {
                try materialize(table: table, key: change.row, ref: ref)
            } else if !ref.exists && existed {
                let key = RowKey(table: table.name, key: change.row)
                if pending.removeValue(forKey: key) != nil { pendingOrder.removeAll { $0 == key } }
                try db.cachedStatement(sql: "DELETE FROM \(table.name) WHERE id = ?").execute(arguments: [change.row])
            }
        }
        summary.applied += 1
        return true
    }

    /// Makes and merges a local write: its supersedes are everything the author can see, and a
    /// last-writer-wins write is known to win (the local clock is past every timestamp seen, and
    /// the write is in the row's current life), so no stored version needs reading.
    func applyLocal(table: TableSchema, key: String, column: ColumnSchema, operation: FieldOperation, causalLength: UInt64,
                    id: ChangeID, timestamp: HybridTimestamp, author: String) throws {
        let ref = try rowRef(table: table.name, key: key)
        let stored = column.policy.keepsState ? try loadField(ref.id, column.name) : nil
        var supersedes: [ChangeID] = []
        if let stored, let state = try storedState(stored, column) {
            supersedes = state.supersededByLocalWrite(operation, policy: column.policy)
        }
        let write = FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author, operation: operation,
                               supersedes: supersedes)
        let change = Change(table: table.name, row: key, column: column.name, write: write)
        try Self.checkLimits(change)
        let origin = try originID(id.replica)
        _ = try record(change, origin: origin, row: ref.id, known: true, isNew: true)
        touchedOrigins.insert(origin)
        try applyField(write, table: table, column: column, ref: ref, key: key, stored: stored, knownToWin: true)
    }

    /// Queues the change for the log; false if its id is already there (or queued).
    private func record(_ change: Change, origin: Int64, row: Int64, known: Bool, isNew: Bool = false) throws -> Bool {
        let write = change.write
        let key = ChangeKey(origin: origin, counter: Int64(bitPattern: write.id.counter))
        if !isNew {
            if recordedChanges.contains(key) {
                // The same id twice in one transaction (a batch or bundle repeating it): the second
                // must be the same version. Rare, so the log is flushed to compare with what it holds.
                try flushChanges()
                if let held = try storedChange(origin: origin, counter: key.counter, replica: write.id.replica), !held.isSameVersion(as: change) {
                    throw StoreError(.equivocation, "change \(write.id) appears twice with different content; nothing applied")
                }
                return false
            }
            if try isStored(key) {
                // The same id must mean the same change. Another version is an equivocation: its
                // origin was restored from a backup or copied and reused a counter.
                if let held = try storedChange(origin: origin, counter: key.counter, replica: write.id.replica), !held.isSameVersion(as: change) {
                    throw StoreError(.equivocation, """
                        change \(write.id) is already held here with other content; nothing applied (its replica was restored \
                        from a backup or copied; syncing that replica with the hub recovers it)
                        """)
                }
                return false
            }
        }
        recordedChanges.insert(key)
        var supersedes: FieldValue = .null
        if !write.supersedes.isEmpty {
            var writer = ByteWriter()
            writer.varint(UInt64(write.supersedes.count))
            for id in write.supersedes { id.encode(into: &writer) }
            supersedes = .blob(writer.bytes)
        }
        let columnID: FieldValue = change.isRowLife ? .null : .integer(try nameID(change.column))
        pendingChanges.append([
            .integer(origin), .integer(key.counter), .integer(Int64(bitPattern: write.timestamp.rawValue)), .integer(row), columnID,
            .integer(Int64(write.causalLength)), .integer(try nameID(write.author)), .integer(Int64(write.operation.code)),
            write.value, supersedes, .integer(recordedAt), .integer(known ? 1 : 0),
        ])
        return true
    }

    /// The change the log holds under an id, as it travels.
    func storedChange(origin: Int64, counter: Int64, replica: ReplicaID) throws -> Change? {
        let select = try db.cachedStatement(sql: """
            \(ReplicaStore.changeSelect)
            WHERE c.origin = ? AND c.counter = ?
            """)
        guard let row = try Row.fetchOne(select, arguments: [origin, counter]) else { return nil }
        return try ReplicaStore.change(from: row, replica: replica)
    }

    /// Whether the log already holds a change, answered from one range query per origin and batch.
    private func isStored(_ key: ChangeKey) throws -> Bool {
        if let range = prefetchedRanges[key.origin], range.contains(key.counter) { return prefetchedChanges.contains(key) }
        return try Int64.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM sync_change WHERE origin = ? AND counter = ?"),
                                  arguments: [key.origin, key.counter]) != nil
    }

    /// Loads which of a batch's change ids the log already holds, with one query per origin.
    func prefetch(_ changes: [Change]) throws {
        var ranges: [ReplicaID: ClosedRange<UInt64>] = [:]
        for change in changes {
            let counter = change.id.counter
            ranges[change.id.replica] = ranges[change.id.replica].map { min($0.lowerBound, counter)...max($0.upperBound, counter) }
                ?? counter...counter
        }
        for (replica, range) in ranges {
            let origin = try originID(replica)
            let low = Int64(bitPattern: range.lowerBound)
            let high = Int64(bitPattern: range.upperBound)
            for counter in try Int64.fetchAll(db.cachedStatement(sql: "SELECT counter FROM sync_change WHERE origin = ? AND counter BETWEEN ? AND ?"),
                                              arguments: [origin, low, high]) {
                prefetchedChanges.insert(ChangeKey(origin: origin, counter: counter))
            }
            prefetchedRanges[origin] = low...high
        }
    }

    /// Writes queued log entries with multi-row INSERTs: one statement per few hundred changes
    /// instead of one per change.
    func flushChanges() throws {
        guard !pendingChanges.isEmpty else { return }
        let columns = 12
        let chunk = 400
        for start in stride(from: 0, to: pendingChanges.count, by: chunk) {
            let rows = pendingChanges[start..<min(start + chunk, pendingChanges.count)]
            let marks = Array(repeating: "(" + Array(repeating: "?", count: columns).joined(separator: ", ") + ")", count: rows.count)
                .joined(separator: ", ")
            let statement = try db.cachedStatement(sql: """
                INSERT INTO sync_change (origin, counter, hlc, row, column_name, causal_length, author, op, value, supersedes,
                                         recorded_at, known) VALUES \(marks)
                """)
            try BulkStatement.execute(statement, in: db, values: rows.flatMap { $0 })
        }
        pendingChanges.removeAll(keepingCapacity: true)
    }

    /// Flushes every buffer (domain rows, log entries, field clocks) before SQL reads them.
    func flushAll() throws {
        try flushDomain()
        try flushChanges()
        try flushFields()
    }

    /// The stored clock of a field: from this transaction's overlay, else from `sync_field`.
    func loadField(_ row: Int64, _ column: String) throws -> StoredField? {
        let key = FieldKey(row: row, column: try nameID(column))
        if let overlaid = fieldOverlay[key] { return overlaid }
        // A row first seen in this transaction has no stored fields yet.
        if freshRows.contains(row) { return nil }
        let select = try db.cachedStatement(sql: """
            SELECT causal_length, hlc, origin, counter, state, conflict FROM sync_field WHERE row = ? AND column_name = ?
            """)
        guard let stored = try Row.fetchOne(select, arguments: [row, key.column]) else { return nil }
        return StoredField(causalLength: stored[0], hlc: stored[1], origin: stored[2], counter: stored[3], state: stored[4],
                           conflict: (stored[5] as Int64) != 0)
    }

    private func storedState(_ stored: StoredField, _ column: ColumnSchema) throws -> FieldState? {
        guard let blob = stored.state else { return nil }
        return try decodeState(Array(blob), column: column)
    }

    private func applyField(_ write: FieldWrite, table: TableSchema, column: ColumnSchema, ref: RowRef, key: String, stored: StoredField?,
                            knownToWin: Bool) throws {
        let columnID = try nameID(column.name)
        let origin = try originID(write.id.replica)
        if !column.policy.keepsState {
            // Last writer wins needs only the winning version; the value lives in the domain row
            // (and in the change log, from which a re-created row is rebuilt).
            if !knownToWin, let stored {
                let current = WriteVersion(
                    causalLength: UInt64(clamping: stored.causalLength), timestamp: HybridTimestamp(rawValue: UInt64(bitPattern: stored.hlc)),
                    id: ChangeID(replica: try replica(forOrigin: stored.origin), counter: UInt64(bitPattern: stored.counter)))
                guard LastWriterWinsRegister.wins(write.version, over: current) else { return }
            }
            try saveField(ref: ref.id, column: columnID, write: write, origin: origin, state: nil, conflict: false)
            if ref.exists { setDomainValue(table: table, column: column, key: key, value: write.value) }
            return
        }
        let state = try stored.flatMap { try storedState($0, column) } ?? FieldState.empty(for: column.policy)
        let next = state.applying(write, policy: column.policy)
        guard next != state else { return }
        let resolution = next.resolution(policy: column.policy)
        let wasInConflict = stored?.conflict ?? false
        let inConflict = resolution.inConflict || !resolution.quarantined.isEmpty
        if inConflict && !wasInConflict { summary.conflictsOpened += 1 }
        if !inConflict && wasInConflict { summary.conflictsClosed += 1 }
        try saveField(ref: ref.id, column: columnID, write: write, origin: origin, state: Data(next.encoded()), conflict: inConflict)
        if ref.exists { setDomainValue(table: table, column: column, key: key, value: resolution.value) }
    }

    func decodeState(_ bytes: [UInt8], column: ColumnSchema) throws -> FieldState {
        do {
            return try FieldState.decode(bytes, policy: column.policy)
        } catch {
            throw StoreError(.corrupt, "stored merge state of column \(column.name) is unreadable: \(error)")
        }
    }

    private func saveField(ref: Int64, column: Int64, write: FieldWrite, origin: Int64, state: Data?, conflict: Bool) throws {
        freshRows.remove(ref)
        let key = FieldKey(row: ref, column: column)
        if fieldOverlay[key] == nil || !dirtyFieldSet.contains(key) {
            dirtyFields.append(key)
            dirtyFieldSet.insert(key)
        }
        fieldOverlay[key] = StoredField(causalLength: Int64(write.causalLength), hlc: Int64(bitPattern: write.timestamp.rawValue),
                                        origin: origin, counter: Int64(bitPattern: write.id.counter), state: state, conflict: conflict)
    }

    /// Writes changed field clocks with multi-row upserts.
    func flushFields() throws {
        guard !dirtyFields.isEmpty else { return }
        let chunk = 500
        for start in stride(from: 0, to: dirtyFields.count, by: chunk) {
            let keys = dirtyFields[start..<min(start + chunk, dirtyFields.count)]
            let marks = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?)", count: keys.count).joined(separator: ", ")
            let statement = try db.cachedStatement(sql: """
                INSERT INTO sync_field (row, column_name, causal_length, hlc, origin, counter, conflict, state) VALUES \(marks)
                ON CONFLICT (row, column_name) DO UPDATE SET causal_length = excluded.causal_length, hlc = excluded.hlc,
                  origin = excluded.origin, counter = excluded.counter, conflict = excluded.conflict, state = excluded.state
                """)
            var arguments: [FieldValue] = []
            arguments.reserveCapacity(keys.count * 8)
            for key in keys {
                let field = fieldOverlay[key]!
                arguments += [.integer(key.row), .integer(key.column), .integer(field.causalLength), .integer(field.hlc),
                              .integer(field.origin), .integer(field.counter), .integer(field.conflict ? 1 : 0),
                              field.state.map { .blob(Array($0)) } ?? .null]
            }
            try BulkStatement.execute(statement, in: db, values: arguments)
        }
        dirtyFields.removeAll(keepingCapacity: true)
        dirtyFieldSet.removeAll(keepingCapacity: true)
    }

    // MARK: domain rows

    /// Domain-row writes are buffered per row and flushed as one statement per row (before any
    /// read of domain tables, and before commit): a five-field edit is one UPDATE, not five.
    struct PendingRow {
        var insert: Bool
        var values: [String: FieldValue]
    }

    private var pending: [RowKey: PendingRow] = [:]
    private var pendingOrder: [RowKey] = []

    private func setDomainValue(table: TableSchema, column: ColumnSchema, key: String, value: FieldValue) {
        let rowKey = RowKey(table: table.name, key: key)
        if pending[rowKey] == nil {
            pending[rowKey] = PendingRow(insert: false, values: [:])
            pendingOrder.append(rowKey)
        }
        pending[rowKey]!.values[column.name] = value
    }

    func flushDomain() throws {
        guard !pendingOrder.isEmpty else { return }
        for rowKey in pendingOrder {
            guard let row = pending[rowKey] else { continue }
            let columns = row.values.keys.sorted()
            let arguments = columns.map { row.values[$0]! }
            if row.insert {
                let marks = Array(repeating: "?", count: columns.count + 1).joined(separator: ", ")
                let statement = try db.cachedStatement(
                    sql: "INSERT OR REPLACE INTO \(rowKey.table) (\((["id"] + columns).joined(separator: ", "))) VALUES (\(marks))")
                try BulkStatement.execute(statement, in: db, values: [.text(rowKey.key)] + arguments)
            } else if !columns.isEmpty {
                let statement = try db.cachedStatement(
                    sql: "UPDATE \(rowKey.table) SET \(columns.map { "\($0) = ?" }.joined(separator: ", ")) WHERE id = ?")
                try BulkStatement.execute(statement, in: db, values: arguments + [.text(rowKey.key)])
            }
        }
        pending.removeAll(keepingCapacity: true)
        pendingOrder.removeAll(keepingCapacity: true)
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
    /// some of its fields arrived, or is re-created after a delete. The row is written on flush.
    func materialize(table: TableSchema, key: String, ref: RowRef) throws {
        let rowKey = RowKey(table: table.name, key: key)
        if pending[rowKey] == nil { pendingOrder.append(rowKey) }
        pending[rowKey] = PendingRow(insert: true, values: [:])
        guard !freshRows.contains(ref.id) else { return }
        try flushChanges()
        try flushFields()
        let fields = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT n.name, f.state, c.value FROM sync_field f JOIN sync_name n ON n.id = f.column_name
            LEFT JOIN sync_change c ON c.origin = f.origin AND c.counter = f.counter
            WHERE f.row = ?
            """), arguments: [ref.id])
        for field in fields {
            guard let column = table.column(field[0]) else { continue }
            let value: FieldValue
            if let blob = field[1] as Data? {
                value = try decodeState(Array(blob), column: column).resolution(policy: column.policy).value
            } else {
                value = FieldValue(databaseValue: field[2])
            }
            setDomainValue(table: table, column: column, key: key, value: value)
        }
    }

    /// Marks an origin whose contiguous counter must be recomputed at commit.
    func touch(origin: Int64) { touchedOrigins.insert(origin) }

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

extension StatementArguments {
    /// Arguments from values already converted. GRDB's generic initialiser over a sequence of
    /// `DatabaseValue` projects each element through a key path, which is not specialised across
    /// modules and cost more than the SQL itself in profiles; the existential form avoids it.
    init(databaseValues: [DatabaseValue]) {
        self.init(databaseValues.map { $0 as (any DatabaseValueConvertible)? })
    }
}

extension StoreContext {
    /// A local edit may not make a change that could never be synced (ChangeLimits): refused
    /// before anything of the transaction is written.
    static func checkLimits(_ change: Change) throws {
        if let violation = ChangeLimits.violation(of: change) {
            throw StoreError(.limitExceeded, "\(change.table).\(change.column.isEmpty ? "id" : change.column): \(violation); shorten it")
        }
    }
}
