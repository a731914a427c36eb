import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// N replicas edit concurrently and exchange bundles in random orders with duplicates; all must
/// end with identical domain rows and merge states. Each run prints its seed; set CARESYNC_SEED
/// to replay one.
@Suite("Convergence of replicas exchanging bundles")
struct ConvergenceTests {
    struct Fleet {
        let clock = SimulatedClock()
        var replicas: [ReplicaStore] = []
    }

    static func makeFleet(_ count: Int, directory: String) throws -> Fleet {
        var fleet = Fleet()
        for index in 0..<count {
            var generator = SeededGenerator(seed: UInt64(index + 1) * 7919)
            fleet.replicas.append(try ReplicaStore.create(at: "\(directory)/r\(index).db", schema: SimulationSchema.v1,
                                                          replicaID: .random(using: &generator), name: "r\(index)",
                                                          wallClock: fleet.clock))
        }
        try TestEnrolment.enrol(fleet.replicas)
        return fleet
    }

    @Test("three replicas converge after random concurrent edits and random exchanges", arguments: 0..<10)
    func randomRuns(run: Int) throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max)) &+ UInt64(run)
        print("ConvergenceTests.randomRuns seed=\(seed) (replay with CARESYNC_SEED=\(seed &- UInt64(run)))")
        var random = SeededGenerator(seed: seed)
        let directory = TestFiles.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fleet = try Self.makeFleet(3, directory: directory)
        // The same edit mix as the simulator (SimulationSchema has SimulationSchema's tables and more).
        var editors = Array(repeating: RandomEditor(), count: 3)
        for _ in 0..<120 {
            let index = random.index(below: 3)
            fleet.clock.advance(random.next() % 50)
            try editors[index].edit(fleet.replicas[index], author: ["ann", "bob", "cy"][random.index(below: 3)], random: &random)
            if random.next() % 4 == 0 {
                let from = fleet.replicas[random.index(below: 3)]
                let target = random.index(below: 3)
                let (bundle, _) = try BundleExchange.makeBundle(from: from, for: fleet.replicas[target].replicaID)
                _ = try BundleExchange.apply(try ChangeBundle.decode(bundle.encoded()), to: fleet.replicas[target])
                try editors[target].learn(from: fleet.replicas[target])
            }
        }
        // Heal: everyone sends everything to everyone, in a random order, some twice.
        var pairs: [(Int, Int)] = []
        for from in 0..<3 { for to in 0..<3 where from != to { pairs.append((from, to)) } }
        pairs += pairs.filter { _ in random.next() % 2 == 0 }
        pairs.shuffle(using: &random)
        for round in 0..<2 {
            for (from, to) in pairs {
                let (bundle, _) = try BundleExchange.makeBundle(from: fleet.replicas[from], for: round == 0 ? nil : fleet.replicas[to].replicaID)
                _ = try BundleExchange.apply(bundle, to: fleet.replicas[to])
            }
        }
        let snapshots = try fleet.replicas.map { try ReplicaSnapshot.capture($0) }
        #expect(snapshots[0] == snapshots[1], "seed \(seed): replicas 0 and 1 differ: \(ReplicaSnapshot.difference(snapshots[0], snapshots[1]))")
        #expect(snapshots[1] == snapshots[2], "seed \(seed): replicas 1 and 2 differ: \(ReplicaSnapshot.difference(snapshots[1], snapshots[2]))")
        let vectors = try fleet.replicas.map { try $0.versionVector() }
        #expect(vectors[0] == vectors[1] && vectors[1] == vectors[2], "seed \(seed): version vectors differ")
        #expect(try fleet.replicas[0].read { try $0.count("item") } > 0, "seed \(seed): nothing was created")
    }

    @Test("applying the same changes in every order, with duplicates, gives identical replicas")
    func everyOrder() throws {
        let directory = TestFiles.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fleet = try Self.makeFleet(2, directory: directory)
        let (a, b) = (fleet.replicas[0], fleet.replicas[1])
        try a.write(author: "ann") { try $0.create("item", id: "x", values: ["code": .text("X"), "title": .text("one"), "status": .text("draft")]) }
        _ = try b.apply(try a.changes(notIn: VersionVector()))
        try a.write(author: "ann") { tx in
            try tx.update("item", id: "x", values: ["body": .text("from a"), "title": .text("a"), "status": .text("done")])
            try tx.add("item", id: "x", column: "tags", element: .text("t1"))
        }
        fleet.clock.advance(10)
        try b.write(author: "bob") { tx in
            try tx.update("item", id: "x", values: ["body": .text("from b"), "status": .text("void")])
            try tx.remove("item", id: "x", column: "tags", element: .text("t1"))
            try tx.increment("item", id: "x", column: "hits", by: 3)
        }
        let batches = [try a.changes(notIn: VersionVector()), try b.changes(notIn: VersionVector())]
        var snapshots: Set<String> = []
        for order in [[0, 1], [1, 0], [0, 1, 0], [1, 1, 0, 1]] {
            let replica = try ReplicaStore.create(at: "\(directory)/order-\(order.map(String.init).joined()).db", schema: SimulationSchema.v1,
                                                  replicaID: ReplicaID(high: 9, low: UInt64(order.count)), name: "o", wallClock: fleet.clock)
            for index in order { _ = try replica.apply(batches[index].reversed()) }
            snapshots.insert(try ReplicaSnapshot.capture(replica))
        }
        #expect(snapshots.count == 1)
        let merged = try ReplicaStore.open(at: "\(directory)/order-01.db", schema: SimulationSchema.v1, wallClock: fleet.clock)
        let (body, status, row) = try merged.read { view in
            (try view.resolution("item", id: "x", column: "body"), try view.resolution("item", id: "x", column: "status"),
             try view.row("item", id: "x"))
        }
        #expect(body?.candidates.count == 2)
        // Two different terminal statuses escalate to a conflict.
        #expect(status?.candidates.count == 2)
        #expect(row?["title"] == .text("a"))
        #expect(row?["hits"] == .integer(3))
    }

    @Test("delete, re-create and delete again converge whatever the order")
    func deleteRecreate() throws {
        let directory = TestFiles.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fleet = try Self.makeFleet(2, directory: directory)
        let (a, b) = (fleet.replicas[0], fleet.replicas[1])
        try a.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("v1")]) }
        _ = try b.apply(try a.changes(notIn: VersionVector()))
        try a.write(author: "ann") { try $0.delete("note", id: "n") }
        try b.write(author: "bob") { try $0.update("note", id: "n", values: ["text": .text("concurrent edit")]) }
        try a.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("v3")]) }
        try a.write(author: "ann") { try $0.delete("note", id: "n") }
        let fromA = try a.changes(notIn: VersionVector())
        let fromB = try b.changes(notIn: VersionVector())
        _ = try a.apply(fromB)
        _ = try b.apply(fromA.reversed())
        #expect(try ReplicaSnapshot.capture(a) == ReplicaSnapshot.capture(b))
        #expect(try a.read { try $0.row("note", id: "n") } == nil, "causal length 4 (even) means deleted")
        try b.write(author: "bob") { try $0.create("note", id: "n", values: ["text": .text("v5")]) }
        _ = try a.apply(try b.changes(notIn: VersionVector()))
        #expect(try a.read { try $0.row("note", id: "n")?["text"] } == .text("v5"))
        #expect(try ReplicaSnapshot.capture(a) == ReplicaSnapshot.capture(b))
    }
}
