import SyncCore
import SyncStore
import SyncWire

/// What a session asks its shell to do. The shell (TCP or the simulator) only executes, and
/// reports back through the session's event methods: a storage request's outcome through
/// `HubSession.storageCompleted(_:nowMillis:)`, a deadline through `timerFired(_:nowMillis:)`.
public enum SessionAction: Equatable, Sendable {
    case send(Message)
    /// Close the connection after everything before it has been sent. The shell cancels every
    /// deadline of the session with it.
    case close
    /// Start a deadline, or restart it if it is running: after `afterMillis` without a
    /// `.cancel` of it, the shell calls the session's `timerFired`.
    case schedule(SessionTimer, afterMillis: UInt64)
    case cancel(SessionTimer)
    /// Hub only: perform this storage work on the hub's one writer. When the request expects an
    /// answer (`HubStoreRequest.expectsAnswer`), the session handles no other frame until the
    /// shell reports its outcome through `storageCompleted`; bookkeeping needs no answer.
    case store(HubStoreRequest)
}

/// The five deadlines of Protocol/session.md, "Timeouts". Each session runs its own.
public enum SessionTimer: Hashable, Sendable, CaseIterable {
    /// Hub: accepted until hello received. Client: hello sent until welcome or reject received.
    case handshake
    /// Both: first byte of a frame received until its last byte received.
    case frame
    /// Hub: last complete frame received until the next one.
    case idle
    /// Client: a request sent until its answer received.
    case request
    /// Client staying connected, in `idle`: until the next heartbeat (the welcome's
    /// `heartbeat_interval_ms`), which keeps the hub's idle deadline from expiring.
    case heartbeat
    /// Client staying connected, in `idle`: until the next round (push, then pull). The session
    /// starts it with `ClientConfiguration.pullIntervalMillis`; a shell told of new local changes
    /// restarts it at 0, which starts the round at once.
    case pullAgain
}

/// Randomness for sessions, injected so the simulator is deterministic.
public struct RandomSource: RandomNumberGenerator, Sendable {
    private let nextValue: @Sendable () -> UInt64

    /// A source that calls `next` for each value. A seeded one keeps its state behind the closure
    /// (a locked generator), so copies of the source draw from the one sequence.
    ///
    /// ```swift
    /// let fixed = RandomSource { 42 }   // every draw is 42: a test that wants exact values
    /// ```
    public init(_ next: @escaping @Sendable () -> UInt64) { nextValue = next }

    /// The system's generator: what production uses.
    public static let system = RandomSource { UInt64.random(in: .min ... .max) }

    /// The next value.
    public mutating func next() -> UInt64 { nextValue() }
}

/// Protocol constants shared by both ends (Protocol/session.md).
public enum ProtocolConstants {
    /// The protocol version this code speaks, and the only one: version 4 carries the purges a
    /// hub owes a replica in the welcome and the replica's purge-ack (Protocol/scope.md); version 3
    /// signed heads and device certificates with every run of changes (Protocol/identity.md). This
    /// codebase ships both ends, so an older peer is refused with `UNSUPPORTED_VERSION` at its hello.
    public static let version: UInt64 = 4
    /// Hub: accepted until hello; client: hello sent until welcome.
    public static let handshakeMillis: UInt64 = 10_000
    /// A frame's first byte until its last.
    public static let frameCompletionMillis: UInt64 = 30_000
    /// Hub: a complete frame until the next one.
    public static let idleMillis: UInt64 = 120_000
    /// Client: a request until its answer.
    public static let responseMillis: UInt64 = 30_000
    /// The smallest frame limit a peer may ask for (Protocol/session.md, hello check 3).
    public static let minimumFrameBody: UInt64 = 65_536
}
