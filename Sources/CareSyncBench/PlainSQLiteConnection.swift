// The headline baseline: plain SQLite through its C API, with no library in between.
//
// GRDB's own plain path (statement lookup, `StatementArguments` boxing) measured 1.3–1.9× slower
// than the C API on these workloads, so a ratio against GRDB alone flatters the tracked store.
// This connection is what an application writing SQLite by hand would do: `sqlite3_open_v2`,
// statements prepared once, values bound with `sqlite3_bind_*`, `sqlite3_step`, `sqlite3_reset`,
// and the stores' pragmas (WAL, `synchronous=FULL`), read back and refused otherwise.
import GRDBSQLite

/// A failure of the C-API baseline: what was being done, SQLite's result code and its message.
/// Never carries bound values.
struct PlainSQLiteError: Error, CustomStringConvertible {
    let description: String

    init(_ what: String, code: Int32, connection: OpaquePointer?) {
        let message = connection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "no message"
        description = "plain SQLite baseline: \(what) failed (SQLite error \(code): \(message))"
    }

    init(_ description: String) { self.description = "plain SQLite baseline: \(description)" }
}

/// One plain SQLite connection through the C API, at the same durability as our stores.
final class PlainSQLiteConnection {
    let path: String
    fileprivate let handle: OpaquePointer

    /// Opens (creating) `path` read-write, switches it to WAL and `synchronous=FULL` as
    /// `StoreFile.openDurableQueue` does, and refuses to run unless both read back.
    init(path: String) throws {
        var opened: OpaquePointer?
        // Same flags as GRDB's default configuration opens our stores with.
        let code = sqlite3_open_v2(path, &opened, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard code == SQLITE_OK, let opened else {
            let error = PlainSQLiteError("opening \(path)", code: code, connection: opened)
            sqlite3_close_v2(opened)
            throw error
        }
        self.path = path
        handle = opened
        sqlite3_busy_timeout(handle, 10_000)
        let mode = try text("PRAGMA journal_mode = WAL")
        guard mode == "wal" else { throw PlainSQLiteError("\(path) could not be switched to WAL (journal mode \(mode ?? "?"))") }
        try execute("PRAGMA synchronous = FULL")
        let readBack = try pragmas()
        guard readBack.synchronous == 2, readBack.journalMode == "wal" else {
            throw PlainSQLiteError("\(path) reads back synchronous=\(readBack.synchronous) journal_mode=\(readBack.journalMode), expected 2 (FULL) and wal; refusing to run")
        }
    }

    deinit { sqlite3_close_v2(handle) }

    /// `PRAGMA synchronous` and `PRAGMA journal_mode` as this connection reports them.
    func pragmas() throws -> (synchronous: Int, journalMode: String) {
        (Int(try text("PRAGMA synchronous") ?? "") ?? -1, try text("PRAGMA journal_mode") ?? "?")
    }

    func execute(_ sql: String) throws {
        let code = sqlite3_exec(handle, sql, nil, nil, nil)
        guard code == SQLITE_OK else { throw PlainSQLiteError("executing a statement", code: code, connection: handle) }
    }

    /// The first column of the first row `sql` returns, as text.
    func text(_ sql: String) throws -> String? {
        let statement = try prepare(sql)
        return try statement.firstText()
    }

    func prepare(_ sql: String) throws -> PlainSQLiteStatement {
        var prepared: OpaquePointer?
        let code = sqlite3_prepare_v2(handle, sql, -1, &prepared, nil)
        guard code == SQLITE_OK, let prepared else { throw PlainSQLiteError("preparing a statement", code: code, connection: handle) }
        return PlainSQLiteStatement(prepared, connection: self)
    }

    /// One transaction, begun as GRDB's `DatabaseQueue.write` begins ours (deferred): committed
    /// when `body` returns, rolled back when it throws.
    func transaction(_ body: () throws -> Void) throws {
        try execute("BEGIN")
        do {
            try body()
            try execute("COMMIT")
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// A prepared statement: bind values, then `run()` steps it to completion and resets it.
final class PlainSQLiteStatement {
    /// SQLITE_TRANSIENT: SQLite copies the text before `bind` returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    private let handle: OpaquePointer
    /// Held so the connection outlives its statements.
    private let connection: PlainSQLiteConnection

    fileprivate init(_ handle: OpaquePointer, connection: PlainSQLiteConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    /// Binds text (or NULL for nil) to the 1-based parameter `index`.
    func bind(_ text: String?, at index: Int32) throws {
        let code = text.map { sqlite3_bind_text(handle, index, $0, -1, Self.transient) } ?? sqlite3_bind_null(handle, index)
        guard code == SQLITE_OK else { throw PlainSQLiteError("binding parameter \(index)", code: code, connection: connection.handle) }
    }

    /// Binds `values` to parameters 1… and runs the statement.
    func run(_ values: String?...) throws {
        for (offset, value) in values.enumerated() { try bind(value, at: Int32(offset + 1)) }
        try run()
    }

    /// Steps a statement that returns no rows, then resets it for the next bindings.
    func run() throws {
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else { throw PlainSQLiteError("stepping a statement", code: code, connection: connection.handle) }
    }

    fileprivate func firstText() throws -> String? {
        defer { sqlite3_reset(handle) }
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_ROW: return sqlite3_column_text(handle, 0).map { String(cString: $0) }
        case SQLITE_DONE: return nil
        default: throw PlainSQLiteError("reading a row", code: code, connection: connection.handle)
        }
    }
}
