import Dispatch
import Foundation
import SyncCore
import SyncTesting
import Testing

/// Issue 10's scope-change scenarios under the network simulator's faults: care replicas of teams
/// A, A, B, B and C against a hub with the care scope rules (`Simulation.Workload.careTeams`).
/// Young people are recorded, transferred between A and B while the losing team's other replica
/// is offline and editing them, allocated to bring a team in, restricted to take replicas out;
/// meanwhile connections are cut mid-frame, replicas partitioned and restarted, the hub restarted
/// and crashed (a write lost before it was synced), its storage slow or failing, clocks drifting.
/// (Restores of replicas and of the hub from older backups are off in this mix: see the known
/// gaps at `faults(seed:)`.)
///
/// Checked at the end of every session, during the faults: nothing of A's and B's young people
/// ever reaches C, nor C's theirs, and no replica holds another origin's change of a young person
/// the hub never admitted it to. At quiescence (`Simulation.checkScopes`): every replica holds
/// exactly the bundles the hub admits it to, each whole; every write is in the hub's log, relayed
/// to every admitted replica or quarantined and relayed to none; no purge is owed, and a purged
/// bundle leaves no row, change or marker byte in the file or its WAL; replicas of one team agree
/// on every young person both hold. Seeds are consecutive from the first, which is printed;
/// CARESYNC_SEED=<seed> replays that one seed alone (CARESYNC_FAULTS changes its mix).
extension Integration {
    @Suite("Simulation: team scope changes under faults")
    struct ScopedSimulationTests {
        static let seedsPerRun = 100
        static let shards = 2
        static let steps = 80
        static let replayed = ProcessInfo.processInfo.environment[SeededGenerator.seedVariable] != nil
        static let firstSeed: UInt64 = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...(UInt64.max / 2)))

        /// The seed's own mix (storage faults in one seed of four), without the faults of the known
        /// gaps below unless `CARESYNC_FAULTS` is set (even empty: the drawn mix whole, as a replay
        /// of a gap's seed needs), whose options then apply over the drawn mix.
        ///
        /// Known gaps this workload found, not fixed yet:
        /// (Replay each with CARESYNC_SEED=<seed> and CARESYNC_FAULTS as given.)
        /// - Hub restores (seed 2277585546029160227, CARESYNC_FAULTS=""): a hub restored from a backup loses own changes
        ///   a replica has since purged with their scope; the replica cannot push them again, and
        ///   every later push of its origin is refused (CHAIN_GAP: no chain held at the purged
        ///   counter, no anchor). The client could anchor such a run with its `sync_purged` chains.
        /// - Replica restores (seed 3164902716358174201, CARESYNC_FAULTS="hubRestore=0 backup=150 restore=100"):
        ///   a replica file restored from a backup taken before a purge the replica has since
        ///   acknowledged holds the purged bundle again, and the hub never owes that purge again
        ///   (its `hub_purge` row is acknowledged), so the bundle stays on a replica outside its
        ///   scope for good. The hub cannot tell a restored file from the one that acknowledged.
        ///   (The seeds first given here were found on the h10-sim branch, before the quarantine
        ///   review and live sessions were merged, and no longer replay on main; the restores of
        ///   the drawn mix are rare, hence the weights above. 2316007116207532903, SIGNATURE_INVALID:
        ///   own changes recovered after a restore and then purged left the counter behind them,
        ///   fixed (RestoredReplicaTests.recoveredThenPurged). 2316007116207532957 draws no backups
        ///   nor restores: its case note that two replicas of team B differ on is not a restore's,
        ///   and is not analysed yet; replay it on 70662e2.)
        static func faults(seed: UInt64) -> FaultOptions {
            let drawn = FaultOptions.drawn(seed: seed, storageFaults: seed % 4 == 0)
            guard let text = ProcessInfo.processInfo.environment[FaultOptions.environmentVariable] else {
                var options = drawn
                (options.restoreWeight, options.hubRestoreWeight) = (0, 0)
                return options
            }
            guard let options = FaultOptions(parsing: text, over: drawn) else {
                preconditionFailure("\(FaultOptions.environmentVariable)=\(text) is not name=value pairs of FaultOptions")
            }
            return options
        }

        static func run(count: Int, from firstSeed: UInt64) throws -> [Simulation.Report] {
            var reports: [Simulation.Report] = []
            for offset in 0..<count {
                let seed = firstSeed &+ UInt64(offset)
                let report = try TestFiles.withDirectory("scoped-sim-\(seed)") { directory in
                    try Simulation(seed: seed, replicas: 5, steps: steps, faults: faults(seed: seed),
                                   directory: directory, workload: .careTeams).run()
                }
                reports.append(report)
                if !report.violations.isEmpty { break }
            }
            return reports
        }

        @Test("100 seeds: transfers, allocations and restrictions under faults; nothing lost, nothing left behind, no other team's data", arguments: 0..<2)
        func seeds(shard: Int) async throws {
            let count = Self.replayed ? (shard == 0 ? 1 : 0) : Self.seedsPerRun / Self.shards
            guard count > 0 else { return }
            if shard == 0 { print("ScopedSimulationTests first seed \(Self.firstSeed) (replay one seed with CARESYNC_SEED=<seed>)") }
            let firstSeed = Self.firstSeed &+ UInt64(shard * count)
            let started = Date()
            let reports = try await SimulationTests.offPool { try Self.run(count: count, from: firstSeed) }
            for report in reports {
                #expect(report.violations.isEmpty, "seed \(report.seed) (replay: CARESYNC_SEED=\(report.seed)) with faults \(report.faults): \(report.violations.prefix(3))")
            }
            func total<Count: AdditiveArithmetic>(_ path: KeyPath<Simulation.Report, Count>) -> Count {
                reports.reduce(.zero) { $0 + $1[keyPath: path] }
            }
            func total(_ path: KeyPath<ScopeCounts, Int>) -> Int { total((\Simulation.Report.scopes).appending(path: path)) }
            let (quarantined, purged) = (total(\.scopes.quarantined), total(\.scopes.purgesAcknowledged))
            let (cuts, restarts, restores) = (total(\.cuts), total(\.restarts), total(\.restores))
            let (lostWrites, underFaults) = (total(\.lostWrites), total(\.syncsCompletedUnderFaults))
            print("ScopedSimulationTests shard \(shard): \(reports.count) seeds from \(firstSeed) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(total(\.youngPeople)) young people, \(total(\.transfers)) transfers (\(total(\.transfersWhileOfflineEditing)) while a replica of the losing team held unpushed edits), \(total(\.teamsBroughtIn)) teams brought in, \(total(\.allocationsEnded)) allocations ended, \(total(\.restrictions)) restrictions, \(quarantined) changes quarantined, \(purged) purges acknowledged, \(total(\.holdingChecks)) holdings checks; \(underFaults) syncs completed under faults, \(cuts) cuts, \(restarts) restarts, \(restores) restores, \(lostWrites) hub writes lost")
            guard !Self.replayed, reports.allSatisfy(\.violations.isEmpty) else { return }
            // The scenarios and the faults must actually have happened, or the run proves nothing.
            #expect(total(\.transfersWhileOfflineEditing) > 0 && total(\.teamsBroughtIn) > 0 && total(\.restrictions) > 0)
            #expect(quarantined > 0 && purged > 0, "offline edits of young people who left are quarantined, and bundles purged")
            // Lost hub writes are rarer (a quarter of the seeds draw storage faults): reported above,
            // not required of every shard.
            #expect(underFaults > 0 && cuts > 0 && restarts > 0)
        }
    }
}
