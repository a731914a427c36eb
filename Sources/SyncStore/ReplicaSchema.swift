import SyncCore

/// The SQLite type of a domain column. Values are stored as SQLite's own types, so `sqlite3`
/// shows them as they are.
public enum ColumnType: String, Sendable {
    case text = "TEXT"
    case integer = "INTEGER"
    case real = "REAL"
    case blob = "BLOB"
}

/// One replicated column of a domain table and the policy that merges it.
public struct ColumnSchema: Sendable {
    /// The column's name (a lowercase SQL identifier).
    public let name: String
    /// Its SQLite type.
    public let type: ColumnType
    /// How concurrent writes to it merge.
    public let policy: MergePolicy

    /// A column; `name` must be a lowercase identifier (a precondition).
    ///
    /// - Parameters:
    ///   - name: The column's name.
    ///   - type: Its SQLite type.
    ///   - policy: Its merge policy.
    public init(_ name: String, _ type: ColumnType, _ policy: MergePolicy) {
        precondition(SQLName.isValid(name), "column names are lowercase identifiers")
        self.name = name
        self.type = type
        self.policy = policy
    }
}

/// A replicated domain table: an `id TEXT PRIMARY KEY` column plus the listed columns.
public struct TableSchema: Sendable {
    /// The table's name (a lowercase SQL identifier).
    public let name: String
    /// Its replicated columns (beside `id`).
    public let columns: [ColumnSchema]
    /// Whether rows may be deleted. Statutory records may not: void is a status.
    public let deletable: Bool
    private let byName: [String: ColumnSchema]

    /// A table.
    ///
    /// - Parameters:
    ///   - name: The table's name.
    ///   - deletable: Whether its rows may be deleted.
    ///   - columns: Its replicated columns.
    public init(_ name: String, deletable: Bool = false, columns: [ColumnSchema]) {
        precondition(SQLName.isValid(name) && !name.hasPrefix("sync_"), "table names are lowercase identifiers, not sync_*")
        self.name = name
        self.columns = columns
        self.deletable = deletable
        self.byName = Dictionary(uniqueKeysWithValues: columns.map { ($0.name, $0) })
    }

    /// The column of that name, if the table has one.
    public func column(_ name: String) -> ColumnSchema? { byName[name] }

    /// DDL for the table as first created. Columns have no NOT NULL: fields of one row may arrive
    /// in separate changes, and the domain's checks run on local edits, not on merges.
    public var createStatement: String {
        let body = ["id TEXT PRIMARY KEY NOT NULL"] + columns.map { "\($0.name) \($0.type.rawValue)" }
        return "CREATE TABLE \(name) (\(body.joined(separator: ", ")))"
    }
}

/// A domain schema migration: an identifier (never reused) and the SQL it runs.
public struct SchemaMigration: Sendable {
    /// Names the migration in the file's migration log; never reused.
    public let identifier: String
    /// The SQL it runs (inside the migration's transaction).
    public let sql: String

    /// A migration.
    ///
    /// - Parameters:
    ///   - identifier: Its name, never reused.
    ///   - sql: The SQL it runs.
    public init(_ identifier: String, sql: String) {
        self.identifier = identifier
        self.sql = sql
    }
}

/// Everything the store needs to know about a domain: its tables with their merge policies and
/// the migrations that create them. The store itself knows nothing of any particular domain.
public struct ReplicaSchema: Sendable {
    /// The schema's version, stored in the replica; a newer program's file is refused.
    public let version: Int
    /// The domain tables.
    public let tables: [TableSchema]
    /// The migrations that make the tables, in order; a later version appends to them.
    public let migrations: [SchemaMigration]
    private let byName: [String: TableSchema]

    /// A schema.
    ///
    /// - Parameters:
    ///   - version: Its version.
    ///   - tables: Its tables.
    ///   - migrations: The migrations that make them.
    public init(version: Int, tables: [TableSchema], migrations: [SchemaMigration]) {
        self.version = version
        self.tables = tables
        self.migrations = migrations
        self.byName = Dictionary(uniqueKeysWithValues: tables.map { ($0.name, $0) })
    }

    /// The table of that name, if the schema has one.
    public func table(_ name: String) -> TableSchema? { byName[name] }
}

enum SQLName {
    static func isValid(_ name: String) -> Bool {
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return false }
        return name.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "_")
        }
    }
}
