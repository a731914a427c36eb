import Foundation
import SyncFuzzTargets
import Testing

/// Replays every committed fuzz input — the seeds and every crashing or hanging input the fuzzers
/// found — through the same entry points the libFuzzer executables call (Tools/fuzz). Each must
/// end in a clean refusal or be accepted; a trap ends the test run, as it ended the fuzzer.
@Suite("Fuzz corpus replay", .serialized)
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus")

    static func inputs(_ target: FuzzTarget) throws -> [(name: String, bytes: [UInt8])] {
        let directory = corpus.appendingPathComponent(target.rawValue)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted().map { name in
            (name, Array(try Data(contentsOf: directory.appendingPathComponent(name))))
        }
    }

    @Test("every committed input ends in a clean refusal or is accepted", arguments: FuzzTarget.allCases)
    func replay(_ target: FuzzTarget) throws {
        let inputs = try Self.inputs(target)
        #expect(inputs.count >= 3, "the \(target.rawValue) seed corpus is committed")
        var accepted = 0
        for input in inputs {
            switch target.run(input.bytes) {
            case .accepted: accepted += 1
            case .refused: break
            case let .invariantBroken(why): Issue.record("\(target.rawValue)/\(input.name): \(why)")
            }
        }
        // The seeds are valid inputs: they reach the code past the decoder, not only its refusals.
        #expect(accepted > 0, "no \(target.rawValue) input was accepted")
    }

    /// Since protocol 3 the hub checks a hello's device key against the registered one: the
    /// device-mode hub seeds must show the template device's key (Tools/fuzz/make_seeds.py), or
    /// they stop at the hello and never reach push, pull, fork or recover.
    @Test("the device-mode hub seeds get past authentication: their hello shows the template device's key")
    func deviceSeedsAuthenticate() throws {
        let seeds = try Self.inputs(.hub).filter { $0.name.hasPrefix("seed-device-") }
        #expect(seeds.count >= 3)
        for seed in seeds {
            if case let .refused(why) = FuzzTarget.hub.run(seed.bytes), why.hasPrefix("AUTHENTICATION_FAILED") {
                Issue.record("hub/\(seed.name) is refused at its hello: \(why)")
            }
        }
    }

    /// The names of Protocol/vectors' positive vectors (those with a `decoded` message).
    static func positiveVectorNames() throws -> Set<String> {
        struct File: Decodable { let vectors: [Entry] }
        struct Entry: Decodable {
            let name: String
            let decoded: Decoded?
        }
        struct Decoded: Decodable {}
        let directory = corpus.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Protocol/vectors")
        var names: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".json") {
            let content = try JSONDecoder().decode(File.self, from: Data(contentsOf: directory.appendingPathComponent(file)))
            names.formUnion(content.vectors.filter { $0.decoded != nil }.map(\.name))
        }
        return names
    }

    /// The bundle seeds are made by `BundleSeeds` (signed by the fuzz sender, which a script
    /// cannot do): with `CARESYNC_UPDATE_SEEDS=1` this writes them; otherwise the committed ones
    /// must be exactly what it makes, so they cannot go stale when the bundle format changes.
    @Test("the committed bundle seeds are the ones BundleSeeds makes (CARESYNC_UPDATE_SEEDS=1 writes them)")
    func bundleSeedsCurrent() throws {
        let directory = Self.corpus.appendingPathComponent(FuzzTarget.bundle.rawValue)
        let made = try BundleSeeds.make()
        #expect(made.count >= 3)
        if ProcessInfo.processInfo.environment["CARESYNC_UPDATE_SEEDS"] == "1" {
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path)
            where name.hasPrefix("seed-") && !made.contains(where: { $0.name == name }) {
                try FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
            for seed in made { try Data(seed.bytes).write(to: directory.appendingPathComponent(seed.name)) }
        }
        let committed = try Self.inputs(.bundle).filter { $0.name.hasPrefix("seed-") }
        #expect(committed.map(\.name) == made.map(\.name).sorted(), "run with CARESYNC_UPDATE_SEEDS=1 to write the bundle seeds")
        for seed in made {
            // A Bool, so a mismatch reports the file, not two kilobytes of bytes.
            let same = committed.first { $0.name == seed.name }?.bytes == seed.bytes
            #expect(same, "bundle/\(seed.name) is not what BundleSeeds makes: run with CARESYNC_UPDATE_SEEDS=1")
        }
    }

    /// Message seeds are made by Tools/fuzz/make_seeds.py from the vectors, bundle seeds by
    /// `BundleSeeds`; when the protocol changes they must be made again, or the fuzzers start from
    /// inputs that stop at the decoder.
    @Test("the seeds of valid messages and bundles are accepted: they speak the current protocol")
    func validSeedsAccepted() throws {
        let positive = try Self.positiveVectorNames()
        #expect(positive.count > 40, "found \(positive.count) positive vectors")
        var checked = 0
        for target in [FuzzTarget.message, .bundle] {
            for input in try Self.inputs(target) where input.name.hasPrefix("seed-") {
                let vector = String(input.name.dropFirst("seed-".count))
                guard target == .bundle || positive.contains(vector) else { continue }
                checked += 1
                if case let .refused(why) = target.run(input.bytes) {
                    Issue.record("\(target.rawValue)/\(input.name) is meant to be valid, and is refused: \(why)")
                }
            }
        }
        #expect(checked > 50, "only \(checked) seeds checked")
    }
}
