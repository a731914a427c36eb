import Foundation
import GRDB
import GRDBSQLite
import SyncCore

/// Runs a prepared statement with values bound straight through the SQLite C API.
///
/// Used for the store's bulk writes (change log, field clocks, domain rows), where GRDB's
/// `StatementArguments` conversion (existential boxing of every value) cost more than SQLite's
/// own work in profiles. The statement is still prepared and cached by GRDB, and runs inside
/// GRDB's transaction; only argument binding and stepping are done here.
enum BulkStatement {
    /// SQLITE_TRANSIENT: SQLite copies text and blobs before `bind` returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    static func execute(_ statement: Statement, in db: Database, values: [FieldValue]) throws {
        let handle = try bind(statement, in: db, values: values)
        let step = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard step == SQLITE_DONE else { throw failure(step, db) }
    }

    /// Runs a query with bound values and hands its first row (if any) to `read`, which reads
    /// columns through the given accessors; the statement is reset before this returns.
    static func queryOne<T>(_ statement: Statement, in db: Database, values: [FieldValue], _ read: (Columns) throws -> T) throws -> T? {
        let handle = try bind(statement, in: db, values: values)
        defer { sqlite3_reset(handle) }
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return try read(Columns(handle: handle))
        case SQLITE_DONE: return nil
        case let code: throw failure(code, db)
        }
    }

    /// Column accessors of the current row of a query.
    struct Columns {
        let handle: OpaquePointer

        func int64(_ index: Int32) -> Int64 { sqlite3_column_int64(handle, index) }

        func text(_ index: Int32) -> String {
            guard let text = sqlite3_column_text(handle, index) else { return "" }
            return String(cString: text)
        }

        /// Nil for NULL.
        func blob(_ index: Int32) -> [UInt8]? {
            guard sqlite3_column_type(handle, index) != SQLITE_NULL else { return nil }
            let count = Int(sqlite3_column_bytes(handle, index))
            guard count > 0, let bytes = sqlite3_column_blob(handle, index) else { return [] }
            return Array(UnsafeRawBufferPointer(start: bytes, count: count))
        }
    }

    private static func bind(_ statement: Statement, in db: Database, values: [FieldValue]) throws -> OpaquePointer {
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        precondition(Int(sqlite3_bind_parameter_count(handle)) == values.count, "bulk statement arity mismatch")
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch value {
            case .null: code = sqlite3_bind_null(handle, index)
            case let .integer(number): code = sqlite3_bind_int64(handle, index, number)
            case let .real(number): code = sqlite3_bind_double(handle, index, number)
            case let .text(text): code = sqlite3_bind_text(handle, index, text, -1, transient)
            case let .blob(bytes):
                code = bytes.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), transient) }
            }
            guard code == SQLITE_OK else { throw failure(code, db) }
        }
        return handle
    }

    /// SQLite's failure as GRDB would report it: the connection's extended result code (a
    /// step's return value is only the primary code) and message, without the bound values.
    private static func failure(_ code: Int32, _ db: Database) -> StoreError {
        let connection = db.sqliteConnection
        let message = connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
        let extended = connection.map { sqlite3_extended_errcode($0) } ?? code
        return StoreError.database(DatabaseError(resultCode: ResultCode(rawValue: extended), message: message, sql: nil))
    }
}
