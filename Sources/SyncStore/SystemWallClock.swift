import Foundation
import SyncCore

/// The machine's wall clock (Foundation's `Date`), for production callers. Everything that reads
/// the time takes an `any WallClock`, so tests and the simulator pass their own instead.
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
