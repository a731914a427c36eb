import SyncTesting

// The store tests' schema (`SimulationSchema`), clock (`SimulatedClock`) and scratch directories
// (`TestFiles`) are SyncTesting's, shared with the simulator and the other test targets.
