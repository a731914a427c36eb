import SyncStore

/// A refused care-record operation: a stable code and a one-line message saying what was wrong
/// and how to fix it. Messages name kinds, fields, ids and dates of rules, never record contents.
public struct CareError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: String
    public let message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
