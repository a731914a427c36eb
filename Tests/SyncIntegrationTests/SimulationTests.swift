import Foundation
import SyncCore
import SyncTesting
import Testing

/// The deterministic simulator: the production session code, real SQLite stores and the real
/// codec, under cuts mid-frame, partitions, restarts and drifting clocks. Every seed must end with
/// no lost acknowledged write and full convergence. A failing seed replays exactly with
/// CARESYNC_SEED=<seed> (the first seed of the run; seeds are consecutive).
@Suite("Simulation: replicas and a hub under faults")
struct SimulationTests {
    static let seedsPerRun = 200
    static let firstSeed: UInt64 = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...(UInt64.max / 2)))

    @Test("200 seeds: convergence and no lost acknowledged write", arguments: 0..<4)
    func seeds(shard: Int) throws {
        if shard == 0 { print("SimulationTests first seed \(Self.firstSeed) (replay with CARESYNC_SEED=\(Self.firstSeed))") }
        let perShard = Self.seedsPerRun / 4
        var totals = (edits: 0, syncs: 0, underFaults: 0, cuts: 0, restarts: 0)
        for offset in 0..<perShard {
            let seed = Self.firstSeed &+ UInt64(shard * perShard + offset)
            let directory = NSTemporaryDirectory() + "caresync-sim-\(seed)-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let report = try Simulation(seed: seed, directory: directory).run()
            #expect(report.violations.isEmpty, "seed \(seed) (replay: CARESYNC_SEED=\(seed)): \(report.violations.prefix(3))")
            totals.edits += report.edits
            totals.syncs += report.syncsCompleted
            totals.underFaults += report.syncsCompletedUnderFaults
            totals.cuts += report.cuts
            totals.restarts += report.restarts
            if !report.violations.isEmpty { break }
        }
        // The faults and the work must actually have happened, or the run proves nothing.
        #expect(totals.edits > perShard * 20)
        #expect(totals.syncs > perShard)
        #expect(totals.underFaults > 2, "some syncs complete while faults are injected (typically ~20 per 50 seeds)")
        #expect(totals.cuts > perShard / 2)
        #expect(totals.restarts > 0)
        print("SimulationTests shard \(shard): \(perShard) seeds, \(totals.edits) edits, \(totals.syncs) completed syncs (\(totals.underFaults) under faults), \(totals.cuts) cuts, \(totals.restarts) restarts")
    }
}
