/// A hybrid logical clock timestamp: 48 bits of physical milliseconds since the Unix epoch and a
/// 16-bit logical counter, packed so that integer order is timestamp order.
public struct HybridTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// `physical_ms << 16 | logical`, as the timestamp travels (Protocol/README.md).
    public let rawValue: UInt64

    /// Before every real timestamp.
    public static let zero = HybridTimestamp(rawValue: 0)
    /// The largest physical time 48 bits hold (about the year 10889).
    public static let maxPhysicalMillis: UInt64 = (1 << 48) - 1

    /// The timestamp with this packed value.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The timestamp of `logical` within millisecond `physicalMillis`.
    /// - Precondition: `physicalMillis` fits 48 bits.
    public init(physicalMillis: UInt64, logical: UInt16) {
        precondition(physicalMillis <= Self.maxPhysicalMillis, "physical time exceeds 48 bits")
        self.rawValue = physicalMillis << 16 | UInt64(logical)
    }

    /// Milliseconds since the Unix epoch.
    public var physicalMillis: UInt64 { rawValue >> 16 }
    /// The logical counter within the millisecond.
    public var logical: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    /// `<physical ms>.<logical>`.
    public var description: String { "\(physicalMillis).\(logical)" }

    /// Timestamp order, which is integer order of `rawValue`.
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
    /// The time it returns, in milliseconds since the Unix epoch.
    public let millis: UInt64
    /// A clock stopped at `millis`.
    /// - Parameter millis: milliseconds since the Unix epoch.
    public init(millis: UInt64) { self.millis = millis }
    /// `millis`, every time.
    public func nowMillis() -> UInt64 { millis }
}

/// The one rule for a timestamp from elsewhere that is too far ahead of the local clock: a
/// replica applying a batch (`HybridClock.observe`/`check`) and the hub taking a push (CLOCK_SKEW,
/// Protocol/errors.md) both ask it, so the boundary is the same everywhere.
public enum ClockSkew {
    /// Whether `timestamp` is more than `limitMillis` ahead of `nowMillis`. Exactly `limitMillis`
    /// ahead is allowed. Computed without overflow: a limit of `UInt64.max` allows everything, and
    /// a clock near the top of the range never wraps round to refuse the past.
    ///
    /// ```swift
    /// ClockSkew.isTooFarAhead(HybridTimestamp(physicalMillis: 1_300, logical: 0), nowMillis: 1_000, limitMillis: 300) // false
    /// ClockSkew.isTooFarAhead(HybridTimestamp(physicalMillis: 1_301, logical: 0), nowMillis: 1_000, limitMillis: 300) // true
    /// ```
    /// - Parameters:
    ///   - timestamp: the remote timestamp; only its physical milliseconds count.
    ///   - nowMillis: the local wall clock.
    ///   - limitMillis: how far ahead a timestamp may be.
    /// - Returns: true if the timestamp must be refused.
    public static func isTooFarAhead(_ timestamp: HybridTimestamp, nowMillis: UInt64, limitMillis: UInt64) -> Bool {
        let physical = timestamp.physicalMillis
        return physical > nowMillis && physical - nowMillis > limitMillis
    }
}

/// A remote timestamp refused because it is too far ahead of this machine's clock. Context as data:
/// the timestamp's physical time, the local time and the limit, all in milliseconds. The text
/// says what is wrong and where to fix it (the sending machine's clock); which setting raises the
/// limit is for the program that has one to say.
public struct ClockError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure: a struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable { case clockSkew = "CLOCK_SKEW" }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// A remote timestamp is further ahead of the local wall clock than the limit.
        public static let clockSkew = Code(.clockSkew)

        /// A stable upper-case name, `CLOCK_SKEW` (the wire's name for the same refusal).
        public var name: String { wrapped.rawValue }
        /// The name.
        public var description: String { name }
    }

    /// What kind of failure.
    public let code: Code
    /// The remote timestamp's physical milliseconds.
    public let remoteMillis: UInt64
    /// The local wall clock when it was checked.
    public let localMillis: UInt64
    /// How far ahead a timestamp may be, in milliseconds.
    public let limitMillis: UInt64

    /// A clock-skew refusal.
    /// - Parameters:
    ///   - remoteMillis: the remote timestamp's physical milliseconds.
    ///   - localMillis: the local wall clock.
    ///   - limitMillis: how far ahead a timestamp may be.
    public init(remoteMillis: UInt64, localMillis: UInt64, limitMillis: UInt64) {
        code = .clockSkew
        self.remoteMillis = remoteMillis
        self.localMillis = localMillis
        self.limitMillis = limitMillis
    }

    /// How far ahead the remote clock is, in milliseconds.
    public var aheadMillis: UInt64 { remoteMillis > localMillis ? remoteMillis - localMillis : 0 }

    /// e.g. `remote clock is 600s ahead of this machine's (limit 300s); fix the clock on the sending machine`.
    public var description: String {
        "remote clock is \(aheadMillis / 1000)s ahead of this machine's (limit \(limitMillis / 1000)s); "
            + "fix the clock on the sending machine"
    }
}

/// Hybrid logical clock (Kulkarni et al.): timestamps never go backwards even when the wall clock
/// does, and every timestamp observed from a peer is followed by larger local ones.
///
/// Remote timestamps more than `maxClockSkewMillis` ahead of our wall clock are refused rather
/// than adopted: adopting one would drag every later local timestamp into the future and let a
/// single bad clock win every last-writer-wins field for as long as the drift lasts.
///
/// ```swift
/// var clock = HybridClock(last: persistedLast)
/// let stamp = clock.tick(wallMillis: wall.nowMillis())            // a local edit
/// try clock.observe(remote.timestamp, wallMillis: wall.nowMillis())  // throws ClockError if too far ahead
/// assert(clock.tick(wallMillis: wall.nowMillis()) > remote.timestamp)
/// ```
public struct HybridClock: Sendable, Equatable {
    /// Five minutes: the hub's CLOCK_SKEW bound too (Protocol/errors.md).
    public static let defaultMaxClockSkewMillis: UInt64 = 5 * 60 * 1000

    /// The latest timestamp issued or observed.
    public private(set) var last: HybridTimestamp
    /// How far ahead of the wall clock an observed timestamp may be.
    public let maxClockSkewMillis: UInt64

    /// A clock that continues after `last`.
    /// - Parameters:
    ///   - last: the latest timestamp issued or observed before (persisted by the replica).
    ///   - maxClockSkewMillis: how far ahead an observed timestamp may be.
    public init(last: HybridTimestamp = .zero, maxClockSkewMillis: UInt64 = defaultMaxClockSkewMillis) {
        self.last = last
        self.maxClockSkewMillis = maxClockSkewMillis
    }

    /// A new local timestamp, strictly greater than every one issued or observed before.
    /// - Parameter wallMillis: the local wall clock (clamped to 48 bits).
    /// - Returns: the new timestamp, also kept as `last`.
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
    /// - Parameters:
    ///   - remote: a timestamp from another replica.
    ///   - wallMillis: the local wall clock.
    /// - Throws: ``ClockError`` if `remote` is more than `maxClockSkewMillis` ahead; the clock
    ///   is then unchanged.
    public mutating func observe(_ remote: HybridTimestamp, wallMillis: UInt64) throws(ClockError) {
        try Self.check(remote, wallMillis: wallMillis, maxClockSkewMillis: maxClockSkewMillis)
        if remote > last { last = remote }
    }

    /// Checks a remote timestamp against the drift bound without changing any clock
    /// (``ClockSkew/isTooFarAhead(_:nowMillis:limitMillis:)``).
    /// - Parameters:
    ///   - remote: the timestamp from elsewhere.
    ///   - wallMillis: the local wall clock.
    ///   - maxClockSkewMillis: how far ahead `remote` may be.
    /// - Throws: ``ClockError`` if `remote` is further ahead than that.
    public static func check(_ remote: HybridTimestamp, wallMillis: UInt64, maxClockSkewMillis: UInt64) throws(ClockError) {
        if ClockSkew.isTooFarAhead(remote, nowMillis: wallMillis, limitMillis: maxClockSkewMillis) {
            throw ClockError(remoteMillis: remote.physicalMillis, localMillis: wallMillis, limitMillis: maxClockSkewMillis)
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
