import Foundation
import GRDB
import SyncCore

/// Read access to a replica: domain rows as dictionaries of typed values, and per-field merge
/// state. Valid only inside the closure it is passed to.
public struct ReadView {
    let db: Database
    /// The replica's schema.
    public let schema: ReplicaSchema

    init(db: Database, schema: ReplicaSchema) {
        self.db = db
        self.schema = schema
    }

    /// One domain row, or nil if it does not exist (never created, or deleted).
    public func row(_ table: String, id: String) throws -> [String: FieldValue]? {
        try rows(table, where: ["id": .text(id)]).first
    }

    /// Domain rows whose columns equal the given values, ordered by id.
    public func rows(_ table: String, where filters: [String: FieldValue] = [:]) throws -> [[String: FieldValue]] {
        guard let schema = schema.table(table) else { throw StoreError(.unknownTable, "unknown record kind \(table)", table: table) }
        let names = filters.keys.sorted()
        for name in names where name != "id" && schema.column(name) == nil {
            throw StoreError(.unknownColumn, "\(table) has no field \(name)", table: table, column: name)
        }
        let clause = names.isEmpty ? "" : " WHERE " + names.map { "\($0) = ?" }.joined(separator: " AND ")
        let arguments = StatementArguments(databaseValues: names.map { filters[$0]!.databaseValue })
        return try Row.fetchAll(db, sql: "SELECT * FROM \(table)\(clause) ORDER BY id", arguments: arguments).map { row in
            var values: [String: FieldValue] = [:]
            for (name, value) in row { values[name] = FieldValue(databaseValue: value) }
            return values
        }
    }

    /// Number of rows in a domain table.
    public func count(_ table: String) throws -> Int {
        guard schema.table(table) != nil else { throw StoreError(.unknownTable, "unknown record kind \(table)", table: table) }
        return try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
    }

    /// The merged state of a field that keeps one (every policy but last-writer-wins), or nil.
    public func fieldState(_ table: String, id: String, column: String) throws -> FieldState? {
        guard let columnSchema = schema.table(table)?.column(column), columnSchema.policy.keepsState else { return nil }
        let blob = try Data.fetchOne(db, sql: """
            SELECT f.state FROM sync_field f JOIN sync_row r ON r.id = f.row JOIN sync_name t ON t.id = r.table_name
            JOIN sync_name c ON c.id = f.column_name WHERE t.name = ? AND r.key = ? AND c.name = ?
            """, arguments: [table, id, column])
        guard let blob else { return nil }
        do {
            return try FieldState.decode(Array(blob), policy: columnSchema.policy)
        } catch {
            throw StoreError.unreadableState(table: table, column: column, row: id, error)
        }
    }

    /// The merged state of one column (that keeps one) of every row of a table that has it, by row
    /// key: one query where ``fieldState(_:id:column:)`` would take one per row.
    public func fieldStates(_ table: String, column: String) throws -> [String: FieldState] {
        guard let columnSchema = schema.table(table)?.column(column), columnSchema.policy.keepsState else { return [:] }
        var states: [String: FieldState] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT r.key, f.state FROM sync_field f JOIN sync_row r ON r.id = f.row JOIN sync_name t ON t.id = r.table_name
            JOIN sync_name c ON c.id = f.column_name WHERE t.name = ? AND c.name = ?
            """, arguments: [table, column]) {
            let key: String = row[0]
            do {
                states[key] = try FieldState.decode(Array(row[1] as Data? ?? Data()), policy: columnSchema.policy)
            } catch {
                throw StoreError.unreadableState(table: table, column: column, row: key, error)
            }
        }
        return states
    }

    /// What the field resolves to, including conflict candidates; nil if the row has no such field.
    public func resolution(_ table: String, id: String, column: String) throws -> FieldResolution? {
        guard let columnSchema = schema.table(table)?.column(column) else {
            throw StoreError(.unknownColumn, "\(table) has no field \(column)", table: table, column: column)
        }
        if columnSchema.policy.keepsState {
            return try fieldState(table, id: id, column: column)?.resolution(policy: columnSchema.policy)
        }
        guard let row = try row(table, id: id) else { return nil }
        return FieldResolution(value: row[column] ?? .null)
    }

    /// Open conflicts on one row.
    public func openConflicts(_ table: String, id: String) throws -> Int {
        try Int.fetchOne(db, sql: """
            SELECT count(*) FROM sync_field f JOIN sync_row r ON r.id = f.row JOIN sync_name t ON t.id = r.table_name
            WHERE f.conflict = 1 AND t.name = ? AND r.key = ?
            """, arguments: [table, id]) ?? 0
    }

    /// The hybrid timestamp of the change that created the row in its current life.
    public func createdAt(_ table: String, id: String) throws -> HybridTimestamp? {
        let raw = try Int64.fetchOne(db, sql: """
            SELECT c.hlc FROM sync_change c JOIN sync_row r ON r.id = c.row JOIN sync_name t ON t.id = r.table_name
            WHERE t.name = ? AND r.key = ? AND c.life = 1 AND c.causal_length = r.causal_length
            """, arguments: [table, id])
        return raw.map { HybridTimestamp(rawValue: UInt64(bitPattern: $0)) }
    }

    /// Every author in the change log of a row who created (or deleted) it or wrote one of
    /// `columns`, as recorded: for rules about who took part in a record's content.
    public func authors(_ table: String, id: String, columns: [String]) throws -> Set<String> {
        let placeholders = columns.isEmpty ? "NULL" : columns.map { _ in "?" }.joined(separator: ", ")
        let columnIDs = Set(try Int64.fetchAll(db, sql: "SELECT id FROM sync_name WHERE name IN (\(placeholders))",
                                               arguments: StatementArguments(columns)))
        var authors: Set<String> = []
        for row in try Row.fetchAll(db, sql: """
            SELECT a.name, c.life, c.fields FROM sync_change c JOIN sync_row r ON r.id = c.row JOIN sync_name t ON t.id = r.table_name
            JOIN sync_name a ON a.id = c.author WHERE t.name = ? AND r.key = ?
            """, arguments: [table, id]) {
            let author: String = row[0]
            if authors.contains(author) { continue }
            let fields = try LogFields.decodeRaw(Array(row[2] as Data? ?? Data()))
            if (row[1] as Int64) != 0 || fields.contains(where: { columnIDs.contains($0.column) }) { authors.insert(author) }
        }
        return authors
    }

    /// The timestamp of the write that set the field's current value.
    public func fieldTimestamp(_ table: String, id: String, column: String) throws -> HybridTimestamp? {
        guard let policy = schema.table(table)?.column(column)?.policy else { return nil }
        if policy.keepsState {
            let raw = try Int64.fetchOne(db, sql: """
                SELECT f.hlc FROM sync_field f JOIN sync_row r ON r.id = f.row JOIN sync_name t ON t.id = r.table_name
                JOIN sync_name c ON c.id = f.column_name WHERE t.name = ? AND r.key = ? AND c.name = ?
                """, arguments: [table, id, column])
            return raw.map { HybridTimestamp(rawValue: UInt64(bitPattern: $0)) }
        }
        guard let row = try Row.fetchOne(db, sql: """
            SELECT r.clocks, (SELECT id FROM sync_name WHERE name = ?) FROM sync_row r JOIN sync_name t ON t.id = r.table_name
            WHERE t.name = ? AND r.key = ?
            """, arguments: [column, table, id]), let columnID = row[1] as Int64? else { return nil }
        return try RowClocks(stored: row[0] as Data?)[columnID]?.timestamp
    }
}
