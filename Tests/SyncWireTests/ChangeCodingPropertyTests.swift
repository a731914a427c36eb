import SyncCore
import SyncTesting
import Testing

/// A row edit's encoding (Protocol/README.md, "A change") is canonical: every change the generator
/// makes (multi-field, every operation, supersedes, extreme integers) comes back as itself and as
/// the same bytes; and bytes that decode at all are the one encoding of what they decode to, so no
/// mangling of a change's bytes gives a second spelling of any change.
@Suite("Property: row edit encoding")
struct ChangeCodingPropertyTests {
    static let cases = 3_000

    static func decode(_ bytes: [UInt8]) throws(ByteDecodingError) -> (change: Change, length: Int) {
        var reader = ByteReader(bytes)
        let change = try Change.decode(from: &reader)
        return (change, reader.offset)
    }

    @Test("decode(encode(c)) == c, and re-encoding gives the same bytes")
    func roundTrip() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("ChangeCodingPropertyTests.roundTrip seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var generator = MessageGenerator(random: SeededGenerator(seed: seed))
        var fieldCounts: Set<Int> = []
        for index in 0..<Self.cases {
            let change = generator.change(large: index % 100 == 0)
            fieldCounts.insert(change.fields.count)
            let bytes = change.canonicalBytes
            let (decoded, length) = try Self.decode(bytes)
            #expect(length == bytes.count, "seed \(seed) case \(index): decoding stopped at \(length) of \(bytes.count) bytes")
            #expect(decoded.canonicalBytes == bytes, "seed \(seed) case \(index): re-encoding differs")
            #expect(decoded.isSameVersion(as: change), "seed \(seed) case \(index)")
            if !change.hasNaN { #expect(decoded == change, "seed \(seed) case \(index): \(change) came back as \(decoded)") }
        }
        #expect(fieldCounts.isSuperset(of: [0, 1, 2, 6]), "seed \(seed): the generator made edits of \(fieldCounts.sorted()) fields")
    }

    @Test("mutated bytes never trap: they are refused, or they are the canonical encoding of what they decode to")
    func mutated() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("ChangeCodingPropertyTests.mutated seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var generator = MessageGenerator(random: SeededGenerator(seed: seed))
        var refused = 0
        var accepted = 0
        for index in 0..<Self.cases {
            var bytes = generator.change().canonicalBytes
            for _ in 0..<Int.random(in: 1...3, using: &generator.random) {
                let at = Int.random(in: 0..<bytes.count, using: &generator.random)
                switch Int.random(in: 0..<5, using: &generator.random) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator.random)
                case 1: bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &generator.random)
                case 2: if bytes.count > 1 { bytes.remove(at: at) }
                case 3: bytes.insert(UInt8.random(in: 0...255, using: &generator.random), at: at)
                default: bytes.removeLast(Int.random(in: 0..<bytes.count, using: &generator.random))
                }
            }
            do {
                let (decoded, length) = try Self.decode(bytes)
                accepted += 1
                // What was read is that change's one encoding (any bytes after it belong to the next item).
                #expect(decoded.canonicalBytes == Array(bytes[..<length]),
                        "seed \(seed) case \(index): \(Array(bytes[..<length]).hexString) decoded, but re-encodes otherwise")
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0 && accepted > 0, "seed \(seed): \(refused) refused, \(accepted) accepted")
    }
}
