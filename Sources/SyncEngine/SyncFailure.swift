import SyncWire

/// Why a sync stopped early. `retryable` failures are retried by the shell with backoff; the
/// next attempt resumes from the last acknowledged push and the last applied pull.
public struct SyncFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: WireErrorCode
    public let message: String
    /// The least wait the hub asked for before reconnecting (from a reject).
    public let retryAfterMillis: UInt64

    public init(_ code: WireErrorCode, _ message: String, retryAfterMillis: UInt64 = 0) {
        self.code = code
        self.message = message
        self.retryAfterMillis = retryAfterMillis
    }

    public var retryable: Bool { code.retryable }
    public var description: String { "\(message) [\(code.name)]" }
}
