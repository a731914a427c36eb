import Foundation
import SyncCore

/// The machine's clock: milliseconds since the Unix epoch. The one system clock of the package;
/// everything else that needs the time takes `any WallClock`, so tests and the simulator pass
/// their own.
///
/// It lives here rather than in SyncCore because SyncCore is the standard library only, which has
/// no wall-clock time (`ContinuousClock` counts from an arbitrary point); SyncEngine is the lowest
/// module that every shell, the CLI and the benchmarks import.
///
/// ```swift
/// let server = HubServer(store: store, configuration: configuration, logger: logger, wallClock: SystemWallClock())
/// ```
public struct SystemWallClock: WallClock {
    /// The machine's clock.
    public init() {}

    /// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
    public func nowMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}
