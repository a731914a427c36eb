import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The store's working state inside one write transaction: the database connection, the schema,
/// and caches of dictionary ids. Local edits and remote batches both go through `apply(_:)`, so a
/// change has one meaning whichever way it arrives.
///
/// Storage per row edit: one log row (`sync_change`, the edit's field operations in one blob), the
/// row's reference with the versions of its last-writer-wins fields in one compact record
/// (`sync_row.clocks`), the domain row, and for fields with larger merge state (MVR candidates,
/// set tags, counter parts) a `sync_field` row each.
///
/// Lives only for the duration of one transaction; never escapes the `write` closure.
final class MergeTransaction {
    let db: Database
    let schema: ReplicaSchema
    let recordedAt: Int64
    private var nameIDs: [String: Int64] = [:]
    /// Names by id, for reading the log (and what `nameID` met, so it is never read back).
    private let names: NameLookup
    private var originIDs: [ReplicaID: Int64] = [:]
    private var rowRefs: [RowKey: RowRef] = [:]
    /// Every row reference this transaction has met, by id.
    private var rowsByID: [Int64: RowRef] = [:]
    /// Row references to write on flush.
    private var dirtyRows: [RowRef] = []
    private var nextRowID: Int64?

    struct ChangeKey: Hashable {
        let origin: Int64
        let counter: Int64
    }

    struct FieldKey: Hashable {
        let row: Int64
        let column: Int64
    }

    /// The merge state of a field that keeps one (every policy but last-writer-wins), as stored in
    /// `sync_field`.
    struct StoredField {
        var state: Data?
        var conflict: Bool
    }

    // Write buffers: log entries and field states are written in multi-row statements when the
    // transaction ends or before SQL reads them (`flushAll`); reads of fields go through the overlay.
    private var pendingChanges: [FieldValue] = []
    private var pendingChangeCount = 0
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

    /// A row's reference: its life, the partition it belongs to (from the first change seen of
    /// it, never changed), the versions of its
    /// last-writer-wins fields, and its domain-row write waiting for the flush. One object per row
    /// per transaction, changed in place.
    final class RowRef {
        let id: Int64
        let table: String
        let key: String
        var causalLength: UInt64
        var scope: String
        var clocks: RowClocks
        /// Not yet in `sync_row`: inserted on flush.
        var fresh: Bool
        var dirty = false
        /// The domain-row write waiting for the flush.
        var domain: PendingRow?
        var exists: Bool { CausalLength.isAlive(causalLength) }

        init(id: Int64, table: String, key: String, causalLength: UInt64, scope: String, clocks: RowClocks, fresh: Bool) {
            self.id = id
            self.table = table
            self.key = key
            self.causalLength = causalLength
            self.scope = scope
            self.clocks = clocks
            self.fresh = fresh
        }
    }

    init(db: Database, schema: ReplicaSchema, recordedAt: Int64) {
        self.db = db
        self.schema = schema
        self.recordedAt = recordedAt
        names = NameLookup(db)
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
        names.remember(id, name)
        return id
    }

    func name(_ id: Int64) throws -> String { try names.name(id) }

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
        replicaByOrigin[id] = replica
        return id
    }

    /// The row's reference, created (with causal length 0: never existed) when first seen. A new
    /// row is written to `sync_row` on flush, with its clocks: one insert per new row.
    func rowRef(table: String, key: String, scope: String) throws -> RowRef {
        if let ref = try existingRowRef(table: table, key: key) { return ref }
        if nextRowID == nil {
            nextRowID = (try Int64.fetchOne(db.cachedStatement(sql: "SELECT max(id) FROM sync_row")) ?? 0) + 1
        }
        let id = nextRowID!
        nextRowID = id + 1
        _ = try nameID(table)
        let ref = RowRef(id: id, table: table, key: key, causalLength: 0, scope: scope, clocks: RowClocks(), fresh: true)
        rowRefs[RowKey(table: table, key: key)] = ref
        rowsByID[id] = ref
        markDirty(ref)
        return ref
    }

    /// The row's reference if the row has ever been seen; no insert.
    func existingRowRef(table: String, key: String) throws -> RowRef? {
        let rowKey = RowKey(table: table, key: key)
        if let ref = rowRefs[rowKey] { return ref }
        let tableID = try nameID(table)
        let select = try db.cachedStatement(sql: "SELECT id, causal_length, scope, clocks FROM sync_row WHERE table_name = ? AND key = ?")
        guard let found = try BulkStatement.queryOne(select, in: db, values: [.integer(tableID), .text(key)], { row in
            (id: row.int64(0), causalLength: row.int64(1), scope: row.text(2), clocks: row.blob(3))
        }) else { return nil }
        let ref = RowRef(id: found.id, table: table, key: key, causalLength: UInt64(clamping: found.causalLength), scope: found.scope,
                         clocks: try RowClocks(stored: found.clocks), fresh: false)
        rowRefs[rowKey] = ref
        rowsByID[ref.id] = ref
        return ref
    }

    private func markDirty(_ ref: RowRef) {
        if !ref.dirty {
            ref.dirty = true
            dirtyRows.append(ref)
        }
    }

    // MARK: applying changes

    /// Records and merges one row edit. Returns false if it was already known (idempotence by
    /// change id).
    ///
    /// `recorded` merges a change the log already holds without recording it again: how the state
    /// is rebuilt from the log. `knownToWin` (local edits only) says the edit is timestamped after
    /// every version seen, so each last-writer-wins field is decided by causal length alone
    /// (`WriteVersion.localWrite(causalLength:beats:)`), without looking up the stored version's
    /// replica.
    @discardableResult
    ///
    /// `chain` is `chain(counter)` of the change's origin log (Protocol/identity.md), kept beside it
    /// when known.
    func apply(_ change: Change, recorded: Bool = false, knownToWin: Bool = false, chain: [UInt8]? = nil) throws -> Bool {
        let origin = try originID(change.id.replica)
        let table = schema.table(change.table)
        let known = table.map { table in change.fields.allSatisfy { table.column($0.column) != nil } } ?? false
        let ref = try rowRef(table: change.table, key: change.row, scope: change.scope)
        if !recorded {
            guard try record(change, origin: origin, row: ref, known: known, isNew: knownToWin, chain: chain) else {
                summary.duplicates += 1
                return false
            }
            touchedOrigins.insert(origin)
        }
        guard let table else {
            // Parked, not dropped: a replica with a newer schema wrote it. `replayKept` applies it
            // once this replica's schema learns the table.
            summary.parked += 1
            return true
        }
        if !known { summary.parked += 1 }
        if change.setsLife && change.causalLength > ref.causalLength {
            let existed = ref.exists
            ref.causalLength = change.causalLength
            markDirty(ref)
            if ref.exists && !existed {
                try materialize(table: table, ref: ref)
            } else if !ref.exists && existed {
                ref.domain = nil
                try db.cachedStatement(sql: "DELETE FROM \(table.name) WHERE id = ?").execute(arguments: [change.row])
            }
        }
        for field in change.fields {
            // A column this replica's schema does not know yet waits in the log (`known = 0`).
            guard let column = table.column(field.column) else { continue }
            try applyField(change.write(of: field), table: table, column: column, ref: ref, knownToWin: knownToWin)
        }
        if known { summary.applied += 1 }
        return true
    }

    /// Queues the change for the log; false if its id is already there (or queued).
    private func record(_ change: Change, origin: Int64, row ref: RowRef, known: Bool, isNew: Bool, chain: [UInt8]?) throws -> Bool {
        let key = ChangeKey(origin: origin, counter: Int64(bitPattern: change.id.counter))
        if !isNew {
            if recordedChanges.contains(key) {
                // The same id twice in one transaction (a batch or bundle repeating it): the second
                // must be the same version. Rare, so the log is flushed to compare with what it holds.
                if let held = try storedChange(origin: origin, counter: key.counter, replica: change.id.replica), !held.isSameVersion(as: change) {
                    throw StoreError(.equivocation, "change \(change.id) appears twice with different content; nothing applied",
                                     table: change.table, row: change.row, change: change.id)
                }
                return false
            }
            if try isStored(key) {
                // The same id must mean the same change. Another version is an equivocation: its
                // origin was restored from a backup or copied and reused a counter.
                if let held = try storedChange(origin: origin, counter: key.counter, replica: change.id.replica), !held.isSameVersion(as: change) {
                    throw StoreError(.equivocation, """
                        change \(change.id) is already held here with other content; nothing applied (its replica was restored \
                        from a backup or copied; syncing that replica with the hub recovers it)
                        """, table: change.table, row: change.row, change: change.id)
                }
                return false
            }
        }
        recordedChanges.insert(key)
        pendingChanges.append(contentsOf: [
            .integer(origin), .integer(key.counter), .integer(Int64(bitPattern: change.timestamp.rawValue)), .integer(ref.id),
            .integer(Int64(change.causalLength)), .integer(change.setsLife ? 1 : 0), .integer(try nameID(change.author)),
            .blob(try LogFields.encode(change.fields, nameID: nameID)), .integer(recordedAt), .integer(known ? 1 : 0),
            // The row's scope is written once, in `sync_row`; a change that names another (a broken
            // or hostile peer's) keeps its own here, so it is relayed as its origin wrote it.
            change.scope == ref.scope ? .null : .text(change.scope),
            chain.map { .blob($0) } ?? .null,
        ])
        pendingChangeCount += 1
        return true
    }

    /// The change the log holds under an id, as it travels.
    func storedChange(origin: Int64, counter: Int64, replica: ReplicaID) throws -> Change? {
        // The log joins the row references: both must be written first.
        try flushRows()
        try flushChanges()
        let select = try db.cachedStatement(sql: """
            \(ReplicaStore.changeSelect)
            WHERE c.origin = ? AND c.counter = ?
            """)
        guard let row = try Row.fetchOne(select, arguments: [origin, counter]) else { return nil }
        return try change(from: row, replica: replica)
    }

    /// A change from a row of `ReplicaStore.changeSelect`.
    func change(from row: Row, replica: ReplicaID) throws -> Change {
        try ReplicaStore.change(from: row, replica: replica, name: name)
    }

    /// Whether the log already holds a change, answered from one range query per origin and batch.
    private func isStored(_ key: ChangeKey) throws -> Bool {
        if let range = prefetchedRanges[key.origin], range.contains(key.counter) { return prefetchedChanges.contains(key) }
        return try BulkStatement.queryOne(db.cachedStatement(sql: "SELECT 1 FROM sync_change WHERE origin = ? AND counter = ?"), in: db,
                                          values: [.integer(key.origin), .integer(key.counter)]) { _ in true } ?? false
    }

    /// Whether the log holds change `counter` of `replica` (from the prefetch when it covers it).
    func holds(_ replica: ReplicaID, counter: UInt64) throws -> Bool {
        let key = ChangeKey(origin: try originID(replica), counter: Int64(bitPattern: counter))
        if recordedChanges.contains(key) { return true }
        return try isStored(key)
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

    private static let changeColumns = 12

    /// Own changes that became checkpoints (Protocol/identity.md, "Checkpoints"), flagged on flush.
    private var pendingCheckpoints: [ChangeKey] = []

    /// Flags change `counter` of `replica` (this replica's own) as a checkpoint.
    func markCheckpoint(_ replica: ReplicaID, counter: UInt64) throws {
        pendingCheckpoints.append(ChangeKey(origin: try originID(replica), counter: Int64(bitPattern: counter)))
    }

    /// Writes queued log entries with multi-row INSERTs: one statement per few hundred changes
    /// instead of one per change.
    func flushChanges() throws {
        guard pendingChangeCount > 0 else { return }
        let columns = Self.changeColumns
        let chunk = 400
        for start in stride(from: 0, to: pendingChangeCount, by: chunk) {
            let count = min(chunk, pendingChangeCount - start)
            let statement = try db.cachedStatement(sql: """
                INSERT INTO sync_change (origin, counter, hlc, row, causal_length, life, author, fields, recorded_at, known, scope, chain)
                VALUES \(marks(rows: count, columns: columns))
                """)
            try BulkStatement.execute(statement, in: db, values: Array(pendingChanges[(start * columns)..<((start + count) * columns)]))
        }
        pendingChanges.removeAll(keepingCapacity: true)
        pendingChangeCount = 0
        let flag = try db.cachedStatement(sql: "UPDATE sync_change SET checkpoint = 1 WHERE origin = ? AND counter = ?")
        for key in pendingCheckpoints { try flag.execute(arguments: [key.origin, key.counter]) }
        pendingCheckpoints.removeAll()
    }

    private var markCache: [Int: String] = [:]

    /// `(?, ?, …), (?, ?, …)` for a multi-row statement.
    func marks(rows: Int, columns: Int) -> String {
        let key = rows << 8 | columns
        if let cached = markCache[key] { return cached }
        let row = "(" + Array(repeating: "?", count: columns).joined(separator: ", ") + ")"
        let marks = Array(repeating: row, count: rows).joined(separator: ", ")
        markCache[key] = marks
        return marks
    }

    /// Flushes every buffer (row references, domain rows, log entries, field states) before SQL
    /// reads them.
    func flushAll() throws {
        try flushRows()
        try flushDomain()
        try flushChanges()
        try flushFields()
    }

    /// Writes new row references (multi-row INSERT) and changed ones (one UPDATE each).
    func flushRows() throws {
        guard !dirtyRows.isEmpty else { return }
        var inserts: [FieldValue] = []
        var insertCount = 0
        func flushInserts() throws {
            guard insertCount > 0 else { return }
            let statement = try db.cachedStatement(sql: """
                INSERT INTO sync_row (id, table_name, key, causal_length, scope, clocks) VALUES \(marks(rows: insertCount, columns: 6))
                """)
            try BulkStatement.execute(statement, in: db, values: inserts)
            inserts.removeAll(keepingCapacity: true)
            insertCount = 0
        }
        let update = try db.cachedStatement(sql: "UPDATE sync_row SET causal_length = ?, scope = ?, clocks = ? WHERE id = ?")
        for ref in dirtyRows {
            ref.dirty = false
            let clocks: FieldValue = ref.clocks.isEmpty ? .null : .blob(ref.clocks.encoded())
            if ref.fresh {
                inserts += [.integer(ref.id), .integer(try nameID(ref.table)), .text(ref.key), .integer(Int64(ref.causalLength)),
                            .text(ref.scope), clocks]
                insertCount += 1
                if insertCount == 150 { try flushInserts() }
                ref.fresh = false
            } else {
                try BulkStatement.execute(update, in: db, values: [.integer(Int64(ref.causalLength)), .text(ref.scope), clocks, .integer(ref.id)])
            }
        }
        try flushInserts()
        dirtyRows.removeAll(keepingCapacity: true)
    }

    /// The stored merge state of a field that keeps one: from this transaction's overlay, else
    /// from `sync_field`.
    func loadField(_ row: Int64, _ column: String) throws -> StoredField? {
        let key = FieldKey(row: row, column: try nameID(column))
        if let overlaid = fieldOverlay[key] { return overlaid }
        // A row first seen in this transaction has no stored fields yet.
        if rowsByID[row]?.fresh ?? false { return nil }
        let select = try db.cachedStatement(sql: "SELECT state, conflict FROM sync_field WHERE row = ? AND column_name = ?")
        return try BulkStatement.queryOne(select, in: db, values: [.integer(row), .integer(key.column)]) { stored in
            StoredField(state: stored.blob(0).map { Data($0) }, conflict: stored.int64(1) != 0)
        }
    }

    func storedState(_ stored: StoredField, _ column: ColumnSchema, of ref: RowRef) throws -> FieldState? {
        guard let blob = stored.state else { return nil }
        return try decodeState(Array(blob), column: column, of: ref)
    }

    private func applyField(_ write: FieldWrite, table: TableSchema, column: ColumnSchema, ref: RowRef, knownToWin: Bool) throws {
        let columnID = try nameID(column.name)
        if !column.policy.keepsState {
            // Last writer wins needs only the winning version, kept in the row's clocks; the value
            // lives in the domain row (and in the change log, from which a re-created row is rebuilt).
            let origin = try originID(write.id.replica)
            if let stored = ref.clocks[columnID] {
                if knownToWin {
                    guard WriteVersion.localWrite(causalLength: write.causalLength, beats: stored.causalLength) else { return }
                } else {
                    let current = WriteVersion(causalLength: stored.causalLength, timestamp: stored.timestamp,
                                               id: ChangeID(replica: try replica(forOrigin: stored.origin), counter: stored.counter))
                    guard LastWriterWinsRegister.wins(write.version, over: current) else { return }
                }
            }
            ref.clocks[columnID] = RowClocks.Clock(causalLength: write.causalLength, timestamp: write.timestamp, origin: origin,
                                                   counter: write.id.counter)
            markDirty(ref)
            if ref.exists { setDomainValue(ref, column: column.name, value: write.value) }
            return
        }
        let stored = try loadField(ref.id, column.name)
        let state = try stored.flatMap { try storedState($0, column, of: ref) } ?? FieldState.empty(for: column.policy)
        let next = state.applying(write, policy: column.policy)
        guard next != state else { return }
        let resolution = next.resolution(policy: column.policy)
        let wasInConflict = stored?.conflict ?? false
        let inConflict = resolution.isOpenConflict
        if inConflict && !wasInConflict { summary.conflictsOpened += 1 }
        if !inConflict && wasInConflict { summary.conflictsClosed += 1 }
        saveField(row: ref.id, column: columnID, write: write, state: Data(next.encoded()), conflict: inConflict)
        if ref.exists { setDomainValue(ref, column: column.name, value: resolution.value) }
    }

    func decodeState(_ bytes: [UInt8], column: ColumnSchema, of ref: RowRef) throws -> FieldState {
        do {
            return try FieldState.decode(bytes, policy: column.policy)
        } catch {
            throw StoreError.unreadableState(table: ref.table, column: column.name, row: ref.key, error)
        }
    }

    private var lastWrites: [FieldKey: FieldWrite] = [:]

    /// Rows new in this transaction that have a field with merge state.
    private var freshStateful: Set<Int64> = []

    private func saveField(row: Int64, column: Int64, write: FieldWrite, state: Data, conflict: Bool) {
        if rowsByID[row]?.fresh ?? false { freshStateful.insert(row) }
        let key = FieldKey(row: row, column: column)
        if dirtyFieldSet.insert(key).inserted { dirtyFields.append(key) }
        fieldOverlay[key] = StoredField(state: state, conflict: conflict)
        lastWrites[key] = write
    }

    /// Writes changed field states with multi-row upserts. `sync_field` keeps, beside the state,
    /// the version of the last write merged into it (when the field last changed).
    func flushFields() throws {
        guard !dirtyFields.isEmpty else { return }
        let chunk = 500
        for start in stride(from: 0, to: dirtyFields.count, by: chunk) {
            let keys = dirtyFields[start..<min(start + chunk, dirtyFields.count)]
            let statement = try db.cachedStatement(sql: """
                INSERT INTO sync_field (row, column_name, causal_length, hlc, origin, counter, conflict, state)
                VALUES \(marks(rows: keys.count, columns: 8))
                ON CONFLICT (row, column_name) DO UPDATE SET causal_length = excluded.causal_length, hlc = excluded.hlc,
                  origin = excluded.origin, counter = excluded.counter, conflict = excluded.conflict, state = excluded.state
                """)
            var arguments: [FieldValue] = []
            arguments.reserveCapacity(keys.count * 8)
            for key in keys {
                let field = fieldOverlay[key]!
                let write = lastWrites[key]!
                arguments += [.integer(key.row), .integer(key.column), .integer(Int64(write.causalLength)),
                              .integer(Int64(bitPattern: write.timestamp.rawValue)), .integer(try originID(write.id.replica)),
                              .integer(Int64(bitPattern: write.id.counter)), .integer(field.conflict ? 1 : 0),
                              field.state.map { .blob(Array($0)) } ?? .null]
            }
            try BulkStatement.execute(statement, in: db, values: arguments)
        }
        dirtyFields.removeAll(keepingCapacity: true)
        dirtyFieldSet.removeAll(keepingCapacity: true)
    }

    // MARK: domain rows

    /// Domain-row writes are buffered per row and flushed before any read of domain tables and
    /// before commit: a five-field edit is one UPDATE, not five, and rows made in one transaction
    /// are inserted a few hundred per statement.
    struct PendingRow {
        var insert: Bool
        /// Few columns per row: an array beats a dictionary.
        var values: [(column: String, value: FieldValue)] = []

        mutating func set(_ column: String, _ value: FieldValue) {
            if let index = values.firstIndex(where: { $0.column == column }) {
                values[index].value = value
            } else {
                values.append((column, value))
            }
        }
    }

    private var pendingDomain: [RowRef] = []

    private func setDomainValue(_ ref: RowRef, column: String, value: FieldValue) {
        if ref.domain == nil {
            ref.domain = PendingRow(insert: false)
            pendingDomain.append(ref)
        }
        ref.domain!.set(column, value)
    }

    func flushDomain() throws {
        guard !pendingDomain.isEmpty else { return }
        // Consecutive inserts into one table with the same columns share a multi-row statement.
        var batch: [FieldValue] = []
        var batchRows = 0
        var batchShape: (table: String, columns: [String])?
        func flushBatch() throws {
            guard let shape = batchShape, batchRows > 0 else { return }
            let statement = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO \(shape.table) (\((["id"] + shape.columns).joined(separator: ", ")))
                VALUES \(marks(rows: batchRows, columns: shape.columns.count + 1))
                """)
            try BulkStatement.execute(statement, in: db, values: batch)
            batch.removeAll(keepingCapacity: true)
            batchRows = 0
        }
        for ref in pendingDomain {
            guard var row = ref.domain else { continue }
            ref.domain = nil
            row.values.sort { $0.column < $1.column }
            let columns = row.values.map(\.column)
            if row.insert {
                if let shape = batchShape, shape.table != ref.table || shape.columns != columns || batchRows >= 100 {
                    try flushBatch()
                }
                batchShape = (ref.table, columns)
                batch.append(.text(ref.key))
                for (_, value) in row.values { batch.append(value) }
                batchRows += 1
            } else if !columns.isEmpty {
                let statement = try db.cachedStatement(
                    sql: "UPDATE \(ref.table) SET \(columns.map { "\($0) = ?" }.joined(separator: ", ")) WHERE id = ?")
                try BulkStatement.execute(statement, in: db, values: row.values.map(\.value) + [.text(ref.key)])
            }
        }
        try flushBatch()
        pendingDomain.removeAll(keepingCapacity: true)
    }

    private var replicaByOrigin: [Int64: ReplicaID] = [:]

    func replica(forOrigin origin: Int64) throws -> ReplicaID {
        if let replica = replicaByOrigin[origin] { return replica }
        guard let hex = try String.fetchOne(db.cachedStatement(sql: "SELECT replica_id FROM sync_origin WHERE id = ?"),
                                            arguments: [origin]),
              let replica = ReplicaID(hex: hex)
        else { throw StoreError(.corrupt, "origin \(origin) has no replica id", table: "sync_origin") }
        replicaByOrigin[origin] = replica
        return replica
    }

    /// (Re)builds a domain row from its merged field states, when a row comes into existence after
    /// some of its fields arrived, or is re-created after a delete. The row is written on flush.
    func materialize(table: TableSchema, ref: RowRef) throws {
        if ref.domain == nil { pendingDomain.append(ref) }
        ref.domain = PendingRow(insert: true)
        // A row first seen in this transaction has no fields yet unless some arrived before the
        // edit that made it (out of order, in this transaction).
        guard !ref.fresh || !ref.clocks.isEmpty || freshStateful.contains(ref.id) else { return }
        try flushRows()
        try flushChanges()
        try flushFields()
        // Last-writer-wins fields: the winning edit's value, from the log.
        let select = try db.cachedStatement(sql: "SELECT fields FROM sync_change WHERE origin = ? AND counter = ?")
        for (columnID, clock) in ref.clocks.entries {
            guard let column = table.column(try name(columnID)), !column.policy.keepsState else { continue }
            guard let blob = try Data.fetchOne(select, arguments: [clock.origin, Int64(bitPattern: clock.counter)]) else { continue }
            let fields = try LogFields.decode(Array(blob), name: name)
            if let field = fields.first(where: { $0.column == column.name }) { setDomainValue(ref, column: column.name, value: field.value) }
        }
        let fields = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT n.name, f.state FROM sync_field f JOIN sync_name n ON n.id = f.column_name WHERE f.row = ?
            """), arguments: [ref.id])
        for field in fields {
            guard let column = table.column(field[0]), let blob = field[1] as Data? else { continue }
            let value = try decodeState(Array(blob), column: column, of: ref).resolution(policy: column.policy).value
            setDomainValue(ref, column: column.name, value: value)
        }
    }

    /// Marks an origin whose contiguous counter must be recomputed at commit.
    func touch(origin: Int64) { touchedOrigins.insert(origin) }

    /// Advances each touched origin's contiguous counter over the changes now present, and over
    /// purged ones (`sync_purged`): what was purged on purpose is not asked for again.
    func advanceContiguous() throws {
        for origin in touchedOrigins {
            let held = try Int64.fetchOne(db, sql: "SELECT contiguous FROM sync_origin WHERE id = ?", arguments: [origin]) ?? 0
            let next = try db.cachedStatement(sql: """
                SELECT counter FROM sync_change WHERE origin = ?1 AND counter > ?2
                UNION SELECT counter FROM sync_purged WHERE origin = ?1 AND counter > ?2 ORDER BY counter LIMIT 1000
                """)
            let contiguous = try Contiguous.advance(from: held, origin: origin, counters: next)
            try db.execute(sql: "UPDATE sync_origin SET contiguous = ? WHERE id = ?", arguments: [contiguous, origin])
        }
    }
}

/// An origin's contiguous counter: the highest `c` such that changes 1…`c` are all held.
enum Contiguous {
    /// Moves `held` up over the counters that follow it without a gap; `counters` selects an origin's
    /// counters above a value, ascending, 1,000 at a time.
    static func advance(from held: Int64, origin: Int64, counters: Statement) throws -> Int64 {
        var contiguous = held
        scan: while true {
            let page = try Int64.fetchAll(counters, arguments: [origin, contiguous])
            for counter in page {
                guard counter == contiguous + 1 else { break scan }
                contiguous = counter
            }
            if page.count < 1000 { break }
        }
        return contiguous
    }
}

/// The versions of a row's last-writer-wins fields, in one compact record beside the row
/// (`sync_row.clocks`): for each written column, by name id, the causal length, hybrid timestamp,
/// origin id and counter of the write that wins, as varints, columns of one version together. A column never written has no entry
/// and reads as never written, so adding a column costs nothing per existing row.
struct RowClocks {
    struct Clock: Equatable {
        var causalLength: UInt64
        var timestamp: HybridTimestamp
        var origin: Int64
        var counter: UInt64
    }

    /// Sorted by column id.
    private(set) var entries: [(column: Int64, clock: Clock)] = []

    init() {}

    init(stored: Data?) throws { try self.init(stored: stored.map { Array($0) }) }

    /// Groups of columns sharing one version (an edit's fields usually do) are stored once: a
    /// count of groups, then per group the version (causal length, hybrid timestamp, origin id,
    /// counter) and its columns (a count and the column ids, ascending).
    init(stored: [UInt8]?) throws {
        guard let stored, !stored.isEmpty else { return }
        var reader = ByteReader(stored)
        do {
            for _ in 0..<(try reader.count(minimumItemSize: 6)) {
                let clock = Clock(causalLength: try reader.varint(), timestamp: HybridTimestamp(rawValue: try reader.varint()),
                                  origin: Int64(clamping: try reader.varint()), counter: try reader.varint())
                for _ in 0..<(try reader.count(minimumItemSize: 1)) { entries.append((Int64(clamping: try reader.varint()), clock)) }
            }
            try reader.expectEnd()
        } catch {
            throw StoreError.unreadable("a row's field versions", table: "sync_row", column: "clocks", error)
        }
        entries.sort { $0.column < $1.column }
    }

    var isEmpty: Bool { entries.isEmpty }

    subscript(column: Int64) -> Clock? {
        get { entries.first { $0.column == column }?.clock }
        set {
            let index = entries.firstIndex { $0.column >= column } ?? entries.endIndex
            if index < entries.endIndex, entries[index].column == column {
                if let newValue { entries[index].clock = newValue } else { entries.remove(at: index) }
            } else if let newValue {
                entries.insert((column, newValue), at: index)
            }
        }
    }

    func encoded() -> [UInt8] {
        // Groups in the order of their first column; few entries per row, so a linear search.
        var groups: [(clock: Clock, columns: [Int64])] = []
        for (column, clock) in entries {
            if let index = groups.firstIndex(where: { $0.clock == clock }) {
                groups[index].columns.append(column)
            } else {
                groups.append((clock, [column]))
            }
        }
        var writer = ByteWriter(capacity: 2 + groups.count * 14 + entries.count)
        writer.varint(UInt64(groups.count))
        for (clock, columns) in groups {
            writer.varint(clock.causalLength)
            writer.varint(clock.timestamp.rawValue)
            writer.varint(UInt64(clock.origin))
            writer.varint(clock.counter)
            writer.varint(UInt64(columns.count))
            for column in columns { writer.varint(UInt64(column)) }
        }
        return writer.bytes
    }
}

/// A row edit's field operations as the log stores them (`sync_change.fields`): a count, then per
/// field the column's name id, the operation (as on the wire) and the superseded ids (a count and
/// the ids as on the wire).
enum LogFields {
    struct Raw {
        var column: Int64
        var operation: FieldOperation
        var supersedes: [ChangeID]
    }

    static func encode(_ fields: [FieldEdit], nameID: (String) throws -> Int64) throws -> [UInt8] {
        encode(try fields.map { Raw(column: try nameID($0.column), operation: $0.operation, supersedes: $0.supersedes) })
    }

    static func encode(_ fields: [Raw]) -> [UInt8] {
        var writer = ByteWriter(capacity: 16 * fields.count + 1)
        writer.varint(UInt64(fields.count))
        for field in fields {
            writer.varint(UInt64(field.column))
            field.operation.encode(into: &writer)
            writer.varint(UInt64(field.supersedes.count))
            for id in field.supersedes { id.encode(into: &writer) }
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], name: (Int64) throws -> String) throws -> [FieldEdit] {
        try decodeRaw(bytes).map { FieldEdit(column: try name($0.column), operation: $0.operation, supersedes: $0.supersedes) }
    }

    static func decodeRaw(_ bytes: [UInt8]) throws -> [Raw] {
        var reader = ByteReader(bytes)
        var fields: [Raw] = []
        do {
            for _ in 0..<(try reader.count(minimumItemSize: 3)) {
                let column = Int64(clamping: try reader.varint())
                let operation = try FieldOperation.decode(from: &reader)
                var supersedes: [ChangeID] = []
                for _ in 0..<(try reader.count(minimumItemSize: 17)) { supersedes.append(try ChangeID.decode(from: &reader)) }
                fields.append(Raw(column: column, operation: operation, supersedes: supersedes))
            }
            try reader.expectEnd()
        } catch {
            throw StoreError.unreadable("a logged change's field edits", table: "sync_change", column: "fields", error)
        }
        return fields
    }
}

/// What applying a batch did.
public struct ApplySummary: Equatable, Sendable {
    /// Changes recorded and merged.
    public var applied = 0
    /// Changes already known (same change id): nothing done.
    public var duplicates = 0
    /// Changes to tables or columns this replica's schema does not know: recorded and parked
    /// until an upgraded schema knows them, then applied (the log's `known = 0` rows).
    public var parked = 0
    /// Fields that became open conflicts (`FieldResolution.isOpenConflict`).
    public var conflictsOpened = 0
    /// Fields whose open conflict this batch settled.
    public var conflictsClosed = 0

    /// An empty summary: nothing applied yet.
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

extension MergeTransaction {
    /// A local edit may not make a change that could never be synced (ChangeLimits): refused
    /// before anything of the transaction is written.
    static func checkLimits(_ change: Change) throws {
        if let violation = ChangeLimits.violation(of: change) {
            throw StoreError(.limitExceeded, "\(change.table): \(violation); shorten it", table: change.table, row: change.row,
                             change: change.id)
        }
    }
}
