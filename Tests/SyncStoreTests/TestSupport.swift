import SyncTesting

// The store tests' schema, clock and scratch directories are SyncTesting's, shared with the
// simulator and the other test targets; these names keep the tests reading as they did.

/// A small domain-free schema exercising every policy, so the store is tested without care records.
typealias TestSchema = SimulationSchema

/// A wall clock the test moves by hand (`advance(_:)`).
typealias ManualClock = SimulatedClock
