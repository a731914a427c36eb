import SyncCore
import SyncWire

/// What a session asks its shell to do. The shell (TCP or the simulator) only executes.
public enum SessionAction: Equatable, Sendable {
    case send(Message)
    /// Close the connection after everything before it has been sent.
    case close
}

/// Randomness for sessions, injected so the simulator is deterministic.
public struct RandomSource: RandomNumberGenerator, Sendable {
    private let nextValue: @Sendable () -> UInt64

    public init(_ next: @escaping @Sendable () -> UInt64) { nextValue = next }

    public static let system = RandomSource { UInt64.random(in: .min ... .max) }

    public mutating func next() -> UInt64 { nextValue() }
}

/// Protocol constants shared by both ends (Protocol/session.md).
public enum ProtocolLimits {
    /// The protocol version this code speaks, and the only one: version 2 carries row edits
    /// (Protocol/README.md, "Versioning"); version 1's changes were single field writes, which a
    /// version-2 peer cannot read, so a version-1 peer is refused with `UNSUPPORTED_VERSION`.
    public static let version: UInt64 = 2
    public static let handshakeMillis: UInt64 = 10_000
    public static let frameCompletionMillis: UInt64 = 30_000
    public static let idleMillis: UInt64 = 120_000
    public static let responseMillis: UInt64 = 30_000
    /// The smallest frame limit a peer may ask for (Protocol/session.md, hello check 3).
    public static let minimumFrameBody: UInt64 = 65_536
}
