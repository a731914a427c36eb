import Crypto
import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// Malformed and hostile bytes: random mutations of a valid bundle must either be refused with an
/// error or, if they still decode, be applied or refused by the store without crashing; nothing
/// already stored is lost. (A trap would end the test process: that is the failure signal.)
@Suite("Hostile input")
struct HostileInputTests {
    @Test("10,000 mutated bundles: refused or applied, never a crash, nothing stored is lost")
    func mutatedBundles() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max / 2))
        print("HostileInputTests.mutatedBundles seed=\(seed)")
        var random = SeededGenerator(seed: seed)
        let directory = TestFiles.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let clock = SimulatedClock()
        let source = try ReplicaStore.create(at: "\(directory)/source.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1),
                                             name: "s", wallClock: clock)
        try source.write(author: "ann") { tx in
            try tx.create("item", id: "x", values: ["code": .text("C"), "title": .text("t"), "body": .text("b"), "status": .text("open")])
            try tx.add("item", id: "x", column: "tags", element: .text("k"))
            try tx.increment("item", id: "x", column: "hits", by: 3)
            try tx.create("note", id: "n", values: ["text": .text("hello")])
        }
        let target = try ReplicaStore.create(at: "\(directory)/target.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 2, low: 2),
                                             name: "t", wallClock: clock)
        try target.write(author: "bob") { try $0.create("note", id: "mine", values: ["text": .text("kept")]) }
        // The mutations change bytes and then re-seal the checksum, so they reach the decoder and
        // the store rather than stopping at the checksum.
        let original = Array(try BundleExchange.makeBundle(from: source, for: nil).0.encoded().dropLast(32))
        var decoded = 0
        var refused = 0
        for _ in 0..<10_000 {
            var body = original
            for _ in 0..<(1 + random.index(below: 4)) {
                let position = random.index(below: body.count)
                switch random.index(below: 3) {
                case 0: body[position] = UInt8(truncatingIfNeeded: random.next())
                case 1: body.remove(at: position)
                default: body.insert(UInt8(truncatingIfNeeded: random.next()), at: position)
                }
            }
            let sealed = body + SHA256.hash(data: body)
            guard let bundle = try? ChangeBundle.decode(sealed) else { refused += 1; continue }
            decoded += 1
            _ = try? BundleExchange.apply(bundle, to: target)
        }
        #expect(refused > 1_000 && decoded > 100, "the mutations exercised both the decoder's refusals and the store")
        #expect(try target.read { try $0.row("note", id: "mine")?["text"] } == .text("kept"), "nothing already stored was lost")
        // Truncations at every length are refused, never half-applied.
        let full = try BundleExchange.makeBundle(from: source, for: nil).0.encoded()
        for length in stride(from: 0, to: full.count, by: 7) {
            #expect(throws: BundleError.self) { try ChangeBundle.decode(Array(full.prefix(length))) }
        }
    }
}
