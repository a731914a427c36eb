import SyncWire

/// Why a sync stopped early. `retryable` failures are retried by the shell with backoff; the
/// next attempt resumes from the last acknowledged push and the last applied pull.
///
/// The code is the protocol's (Protocol/errors.md): the same one a peer sends or is sent, so the
/// shell and the CLI act on it, never on the message. The message names ids, counts, codes and
/// limits, never record contents, and no command or option of any program.
public struct SyncFailure: Error, Equatable, Sendable, CustomStringConvertible {
    /// The protocol's error code for what went wrong.
    public let code: WireError.Code
    /// One line for a person: what went wrong and, where it helps, what to do.
    public let message: String
    /// The least wait the hub asked for before reconnecting (from a reject); 0 when it asked none.
    public let retryAfterMillis: UInt64
    /// The error underneath, when there was one: the local store's (`StoreError`), or the codec's
    /// (`WireError`) for bytes the hub sent. Not part of equality, which compares what a caller acts on.
    public let cause: (any Error)?

    /// - Parameters:
    ///   - code: The protocol's code for the failure.
    ///   - message: One line for a person, without record contents.
    ///   - retryAfterMillis: The least wait before reconnecting, from the hub's reject.
    ///   - cause: The error underneath, kept for a caller that wants more than the code.
    public init(_ code: WireError.Code, _ message: String, retryAfterMillis: UInt64 = 0, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMillis = retryAfterMillis
        self.cause = cause
    }

    /// Whether the shell retries the sync (after a backoff): the code says the hub or the network
    /// may answer differently later (Protocol/errors.md).
    public var retryable: Bool { code.retryable }

    /// The message with its code, e.g. `hub refused: at capacity [BUSY]`.
    public var description: String { "\(message) [\(code.name)]" }

    /// Equal when what a caller acts on is equal; `cause` is not compared.
    public static func == (lhs: SyncFailure, rhs: SyncFailure) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.retryAfterMillis == rhs.retryAfterMillis
    }
}
