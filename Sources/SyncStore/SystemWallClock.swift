import Foundation
import SyncCore

/// The machine's wall clock (Foundation's `Date`): milliseconds since the Unix epoch. The one system
/// clock of the package; everything else that reads the time takes an `any WallClock`, so tests and
/// the simulator pass their own instead.
///
/// It lives here rather than in SyncCore because SyncCore is the standard library only, which has
/// no wall-clock time (`ContinuousClock` counts from an arbitrary point); SyncStore is the lowest
/// module that imports Foundation, and every shell, the CLI and the benchmarks import it.
///
/// ```swift
/// let store = try ReplicaStore.open(at: "replica.db", schema: schema, wallClock: SystemWallClock())
/// ```
public struct SystemWallClock: WallClock {
    /// The system clock.
    public init() {}

    /// Milliseconds since the Unix epoch, as the system clock reads now (0 before 1970).
    public func nowMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}
