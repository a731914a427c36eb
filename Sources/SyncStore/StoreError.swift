import GRDB
import SyncCore

/// An error from a replica or hub store, in the shape of GRDB's `DatabaseError` and NIO's
/// `FileSystemError`: a stable ``code`` to act on, a one-line ``message`` for a person, the
/// context as data (``path``, ``table``, ``column``, ``row``, ``change``, ``offset``) and the
/// underlying ``cause`` (SQLite's error, or the ``ByteDecodingError`` of an unreadable stored
/// blob).
///
/// Messages and context name files, tables, columns, ids, offsets and counts, never record
/// contents. They name no command or flag of any program either: the caller adds its own hint
/// (the CLI maps ``code`` to its exit codes and hints).
///
/// ```swift
/// do {
///     try store.write(author: "ann") { try $0.update("plan", id: "p1", values: ["status": .text("draft")]) }
/// } catch let error as StoreError where error.code == .statusBackwards {
///     // error.table == "plan", error.column == "status", error.row == "p1"
/// } catch let error as StoreError where error.code == .database {
///     // error.sqliteExtendedCode: SQLite's extended result code, e.g. 2067 (SQLITE_CONSTRAINT_UNIQUE)
/// }
/// ```
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable error code. A struct over a private enum, so codes can be added without breaking
    /// a caller's `switch` (which needs a `default:`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Sendable {
            case unknownTable = "UNKNOWN_TABLE"
            case unknownColumn = "UNKNOWN_COLUMN"
            case rowNotFound = "ROW_NOT_FOUND"
            case rowExists = "ROW_EXISTS"
            case immutableField = "IMMUTABLE_FIELD"
            case statusBackwards = "STATUS_BACKWARDS"
            case notDeletable = "NOT_DELETABLE"
            case wrongOperation = "WRONG_OPERATION"
            case wrongType = "WRONG_TYPE"
            case clockSkew = "CLOCK_SKEW"
            case notAReplica = "NOT_A_REPLICA"
            case notAHub = "NOT_A_HUB"
            case alreadyExists = "ALREADY_EXISTS"
            case schemaTooNew = "SCHEMA_TOO_NEW"
            case schemaTooOld = "SCHEMA_TOO_OLD"
            case corrupt = "CORRUPT"
            case limitExceeded = "LIMIT_EXCEEDED"
            case notDurable = "NOT_DURABLE"
            case database = "DATABASE"
            case equivocation = "EQUIVOCATION"
            case signatureInvalid = "SIGNATURE_INVALID"
            case chainGap = "CHAIN_GAP"
            case unsignedChanges = "UNSIGNED_CHANGES"
            case unknownDevice = "UNKNOWN_DEVICE"
            case identityMissing = "IDENTITY_MISSING"
            case identityMismatch = "IDENTITY_MISMATCH"
            case identityUnreadable = "IDENTITY_UNREADABLE"
            case unsyncedChanges = "UNSYNCED_CHANGES"
            case heldNotFound = "HELD_NOT_FOUND"
            case heldDecided = "HELD_DECIDED"
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The code's stable name (`"ROW_NOT_FOUND"`), for machine-readable output.
        public var name: String { wrapped.rawValue }

        /// The ``name``.
        public var description: String { name }

        /// The schema has no table of that name.
        public static let unknownTable = Code(.unknownTable)
        /// The table has no column of that name.
        public static let unknownColumn = Code(.unknownColumn)
        /// No row with that id exists (never created, or deleted).
        public static let rowNotFound = Code(.rowNotFound)
        /// A create of a row that exists.
        public static let rowExists = Code(.rowExists)
        /// A second, different value for a field written once.
        public static let immutableField = Code(.immutableField)
        /// A status edit the field's lattice does not admit (it would move backwards).
        public static let statusBackwards = Code(.statusBackwards)
        /// A delete (or re-create) in a table whose rows are never deleted.
        public static let notDeletable = Code(.notDeletable)
        /// An operation the field's policy does not take (an assign to a set, an add to a counter).
        public static let wrongOperation = Code(.wrongOperation)
        /// A value of another type than the column's, or a status outside its lattice.
        public static let wrongType = Code(.wrongType)
        /// A change timestamped too far ahead of this machine's clock: the whole batch is refused.
        public static let clockSkew = Code(.clockSkew)
        /// The file is not a replica (missing, empty, another application's, or a hub database).
        public static let notAReplica = Code(.notAReplica)
        /// The file is not a hub database.
        public static let notAHub = Code(.notAHub)
        /// Something already exists where a new file was to be created.
        public static let alreadyExists = Code(.alreadyExists)
        /// The file was written by a newer program.
        public static let schemaTooNew = Code(.schemaTooNew)
        /// The file needs a migration, and was opened read-only.
        public static let schemaTooOld = Code(.schemaTooOld)
        /// Stored or received bytes that cannot be right (an unreadable blob, an impossible value).
        public static let corrupt = Code(.corrupt)
        /// A local edit that would make a change over `ChangeLimits`: it could never be synced.
        public static let limitExceeded = Code(.limitExceeded)
        /// The connection is not as durable as an acknowledgement promises (WAL, `synchronous=FULL`).
        public static let notDurable = Code(.notDurable)
        /// SQLite failed (the ``StoreError/cause`` holds its error and extended result code), or the
        /// store was used after it was closed.
        public static let database = Code(.database)
        /// No write held for review has that id here (never received, or resolved and gone).
        public static let heldNotFound = Code(.heldNotFound)
        /// The held write was decided on already (accepted or dismissed) on this replica.
        public static let heldDecided = Code(.heldDecided)
        /// A change id already held here arrived with different content: the replica that made it
        /// was restored from a backup or copied, and reused its counters.
        public static let equivocation = Code(.equivocation)
        /// A head's signature or chain does not verify (Protocol/identity.md): nothing was stored.
        public static let signatureInvalid = Code(.signatureInvalid)
        /// A run starts above the store's contiguous counter + 1 for its origin.
        public static let chainGap = Code(.chainGap)
        /// A run of changes does not end at a signed head.
        public static let unsignedChanges = Code(.unsignedChanges)
        /// No key is known for a run's origin.
        public static let unknownDevice = Code(.unknownDevice)
        /// The store has no identity file (or holds no key), so it cannot sign: pushes and exports
        /// are refused (Protocol/identity.md's `NO_DEVICE_KEY`) until it re-enrols as a new identity.
        public static let identityMissing = Code(.identityMissing)
        /// The identity file beside the store names another replica (or hub).
        public static let identityMismatch = Code(.identityMismatch)
        /// The identity file is not one this program reads (an unknown version, a missing or extra
        /// line), or could not be written.
        public static let identityUnreadable = Code(.identityUnreadable)
        /// A purge of a young person's bundle that still holds changes the hub does not hold yet:
        /// refused, nothing removed, until they are pushed.
        public static let unsyncedChanges = Code(.unsyncedChanges)
    }

    /// What went wrong, stable across releases.
    public let code: Code
    /// One line for a person: what was wrong and where, with no record contents.
    public let message: String
    /// The store file, when the error is about a file.
    public let path: String?
    /// The domain (or store) table concerned.
    public let table: String?
    /// The column concerned.
    public let column: String?
    /// The row id concerned.
    public let row: String?
    /// The change concerned.
    public let change: ChangeID?
    /// The byte offset in a stored or received encoding where decoding failed.
    public let offset: Int?
    /// The underlying error: SQLite's (a GRDB `DatabaseError`, without its statement arguments,
    /// which can hold record contents), or the ``ByteDecodingError`` of an unreadable blob. Not
    /// compared by `==`.
    public let cause: (any Error & Sendable)?

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The stable code.
    ///   - message: One line naming what was wrong, without record contents or program commands.
    ///   - path: The store file concerned, if any.
    ///   - table: The table concerned, if any.
    ///   - column: The column concerned, if any.
    ///   - row: The row id concerned, if any.
    ///   - change: The change concerned, if any.
    ///   - offset: The byte offset where decoding failed, if any.
    ///   - cause: The underlying error, if any.
    public init(_ code: Code, _ message: String, path: String? = nil, table: String? = nil, column: String? = nil,
                row: String? = nil, change: ChangeID? = nil, offset: Int? = nil, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.table = table
        self.column = column
        self.row = row
        self.change = change
        self.offset = offset
        self.cause = cause
    }

    /// SQLite's extended result code (e.g. 2067, `SQLITE_CONSTRAINT_UNIQUE`) when SQLite caused
    /// the error; nil otherwise.
    public var sqliteExtendedCode: Int32? { (cause as? DatabaseError)?.extendedResultCode.rawValue }

    /// The ``message``.
    public var description: String { message }

    /// Code and context; neither the message's wording nor the cause.
    public static func == (lhs: StoreError, rhs: StoreError) -> Bool {
        lhs.code == rhs.code && lhs.path == rhs.path && lhs.table == rhs.table && lhs.column == rhs.column
            && lhs.row == rhs.row && lhs.change == rhs.change && lhs.offset == rhs.offset
    }
}

extension StoreError {
    /// SQLite's failure, with its extended result code and message kept in ``cause`` (the SQL is
    /// kept, the statement arguments are dropped: they can hold record contents).
    static func database(_ error: DatabaseError) -> StoreError {
        let kept = DatabaseError(resultCode: error.extendedResultCode, message: error.message, sql: error.sql)
        return StoreError(.database, "SQLite error \(error.extendedResultCode.rawValue): \(error.message ?? "unknown")", cause: kept)
    }

    /// A stored blob that does not decode: `what` names it ("stored merge state of plan.status"),
    /// the decoding error's offset is kept, and the decoding error is the cause.
    static func unreadable(_ what: String, table: String? = nil, column: String? = nil, row: String? = nil,
                           change: ChangeID? = nil, _ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        let decoding = error as? ByteDecodingError
        return StoreError(.corrupt, "\(what) is unreadable: \(error)", table: table, column: column, row: row, change: change,
                          offset: decoding?.offset, cause: error)
    }

    /// The stored merge state of a field that does not decode.
    static func unreadableState(table: String?, column: String, row: String? = nil, _ error: any Error) -> StoreError {
        unreadable("stored merge state of \(table.map { "\($0)." } ?? "")\(column)", table: table, column: column, row: row, error)
    }
}
