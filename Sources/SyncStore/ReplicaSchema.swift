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
    public let name: String
    public let type: ColumnType
    public let policy: MergePolicy

    public init(_ name: String, _ type: ColumnType, _ policy: MergePolicy) {
        precondition(SQLName.isValid(name), "column names are lowercase identifiers")
        self.name = name
        self.type = type
        self.policy = policy
    }
}

/// A replicated domain table: an `id TEXT PRIMARY KEY` column plus the listed columns.
public struct TableSchema: Sendable {
    public let name: String
    public let columns: [ColumnSchema]
    /// Whether rows may be deleted. Statutory records may not: void is a status.
    public let deletable: Bool
    private let byName: [String: ColumnSchema]

    public init(_ name: String, deletable: Bool = false, columns: [ColumnSchema]) {
        precondition(SQLName.isValid(name) && !name.hasPrefix("sync_"), "table names are lowercase identifiers, not sync_*")
        self.name = name
        self.columns = columns
        self.deletable = deletable
        self.byName = Dictionary(uniqueKeysWithValues: columns.map { ($0.name, $0) })
    }

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
    public let identifier: String
    public let sql: String

    public init(_ identifier: String, sql: String) {
        self.identifier = identifier
        self.sql = sql
    }
}

/// Everything the store needs to know about a domain: its tables with their merge policies and
/// the migrations that create them. The store itself knows nothing of any particular domain.
public struct ReplicaSchema: Sendable {
    public let version: Int
    public let tables: [TableSchema]
    public let migrations: [SchemaMigration]
    private let byName: [String: TableSchema]

    public init(version: Int, tables: [TableSchema], migrations: [SchemaMigration]) {
        self.version = version
        self.tables = tables
        self.migrations = migrations
        self.byName = Dictionary(uniqueKeysWithValues: tables.map { ($0.name, $0) })
    }

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
