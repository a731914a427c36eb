import SyncCore

/// Errors from the replica store. Each has a stable code; messages name tables, columns, ids and
/// counts, never record contents.
public struct StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
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
        case alreadyExists = "ALREADY_EXISTS"
        case schemaTooNew = "SCHEMA_TOO_NEW"
        case corrupt = "CORRUPT"
        case database = "DATABASE"
        /// A change id already held here arrived with different content: the replica that made it was
        /// restored from a backup or copied, and reused its counters.
        case equivocation = "EQUIVOCATION"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
