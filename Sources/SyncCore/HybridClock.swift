/// A hybrid logical clock timestamp: 48 bits of physical milliseconds since the Unix epoch and a
/// 16-bit logical counter, packed so that integer order is timestamp order.
public struct HybridTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public static let zero = HybridTimestamp(rawValue: 0)
    public static let maxPhysicalMillis: UInt64 = (1 << 48) - 1

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(physicalMillis: UInt64, logical: UInt16) {
        precondition(physicalMillis <= Self.maxPhysicalMillis, "physical time exceeds 48 bits")
        self.rawValue = physicalMillis << 16 | UInt64(logical)
    }

    public var physicalMillis: UInt64 { rawValue >> 16 }
    public var logical: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public var description: String { "\(physicalMillis).\(logical)" }

    public static func < (lhs: HybridTimestamp, rhs: HybridTimestamp) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The wall clock, injected so that tests and the simulator control time.
public protocol WallClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMillis() -> UInt64
}

/// A wall clock that always returns the same value; for tests. A test that moves or steps its
/// clock uses SyncTesting's `SimulatedClock`.
public struct FixedWallClock: WallClock {
    public let millis: UInt64
    public init(millis: UInt64) { self.millis = millis }
    public func nowMillis() -> UInt64 { millis }
}

public enum ClockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A remote timestamp is further ahead of our wall clock than the configured bound.
    case remoteTooFarAhead(remoteMillis: UInt64, localMillis: UInt64, boundMillis: UInt64)

    public var code: String { "CLOCK_SKEW" }

    public var description: String {
        switch self {
        case let .remoteTooFarAhead(remote, local, bound):
            let ahead = (remote - local) / 1000
            return "remote clock is \(ahead)s ahead of this machine's (limit \(bound / 1000)s); "
                + "fix the clock on the sending machine, or raise --max-clock-skew"
        }
    }
}

/// Hybrid logical clock (Kulkarni et al.): timestamps never go backwards even when the wall clock
/// does, and every timestamp observed from a peer is followed by larger local ones.
///
/// Remote timestamps more than `maxForwardDriftMillis` ahead of our wall clock are refused rather
/// than adopted: adopting one would drag every later local timestamp into the future and let a
/// single bad clock win every last-writer-wins field for as long as the drift lasts.
public struct HybridClock: Sendable, Equatable {
    public static let defaultMaxForwardDriftMillis: UInt64 = 5 * 60 * 1000

    public private(set) var last: HybridTimestamp
    public let maxForwardDriftMillis: UInt64

    public init(last: HybridTimestamp = .zero, maxForwardDriftMillis: UInt64 = defaultMaxForwardDriftMillis) {
        self.last = last
        self.maxForwardDriftMillis = maxForwardDriftMillis
    }

    /// A new local timestamp, strictly greater than every one issued or observed before.
    public mutating func tick(wallMillis: UInt64) -> HybridTimestamp {
        let wall = min(wallMillis, HybridTimestamp.maxPhysicalMillis)
        if wall > last.physicalMillis {
            last = HybridTimestamp(physicalMillis: wall, logical: 0)
        } else {
            last = Self.successor(of: last)
        }
        return last
    }

    /// Takes a remote timestamp into account so that later local timestamps exceed it.
    public mutating func observe(_ remote: HybridTimestamp, wallMillis: UInt64) throws(ClockError) {
        try Self.check(remote, wallMillis: wallMillis, maxForwardDriftMillis: maxForwardDriftMillis)
        if remote > last { last = remote }
    }

    /// Checks a remote timestamp against the drift bound without changing any clock.
    public static func check(_ remote: HybridTimestamp, wallMillis: UInt64, maxForwardDriftMillis: UInt64) throws(ClockError) {
        if remote.physicalMillis > wallMillis &+ maxForwardDriftMillis {
            throw .remoteTooFarAhead(remoteMillis: remote.physicalMillis, localMillis: wallMillis,
                                     boundMillis: maxForwardDriftMillis)
        }
    }

    /// When the logical counter is exhausted within one millisecond, borrow the next millisecond:
    /// order is kept and the drift is at most one millisecond per 65,536 events.
    private static func successor(of timestamp: HybridTimestamp) -> HybridTimestamp {
        if timestamp.logical == UInt16.max {
            return HybridTimestamp(physicalMillis: timestamp.physicalMillis + 1, logical: 0)
        }
        return HybridTimestamp(rawValue: timestamp.rawValue + 1)
    }
}
