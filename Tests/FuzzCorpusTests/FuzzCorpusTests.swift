import Foundation
import SyncFuzzTargets
import Testing

/// Replays every committed fuzz input — the seeds and every crashing or hanging input the fuzzers
/// found — through the same entry points the libFuzzer executables call (Tools/fuzz). Each must
/// end in a clean refusal or be accepted; a trap ends the test run, as it ended the fuzzer.
@Suite("Fuzz corpus replay")
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
}
