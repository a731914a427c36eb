import Foundation

/// SplitMix64 (Steele, Lea and Flood, with Vigna's reference constants): a small, fast generator
/// whose whole state is one word, so any run is reproduced from its printed seed.
///
/// Not for cryptography. Every random choice in tests and the simulator goes through one of these,
/// never through `SystemRandomNumberGenerator`, so that a failure can be replayed bit for bit.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    /// The seed this generator started from, for failure messages.
    public let seed: UInt64
    private var state: UInt64

    /// A generator whose whole future is fixed by `seed`.
    public init(seed: UInt64) {
        self.seed = seed
        self.state = seed
    }

    /// The next 64 random bits (one SplitMix64 step).
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    /// A number in `0..<count`, by Lemire's multiply-high (bias below count / 2^64). The standard
    /// library's `Int.random(in:using:)` does the same, but through generic code that debug builds
    /// do not specialise; property tests call this millions of times.
    public mutating func index(below count: Int) -> Int {
        precondition(count > 0, "empty range")
        return Int(next().multipliedFullWidth(by: UInt64(count)).high)
    }

    /// A fair coin.
    public mutating func coin() -> Bool { next() & 1 == 1 }

    /// One element of a non-empty array.
    public mutating func element<Element>(of elements: [Element]) -> Element {
        elements[index(below: elements.count)]
    }

    /// The elements in a uniformly random order (Fisher–Yates).
    public mutating func shuffled<Element>(_ elements: [Element]) -> [Element] {
        var result = elements
        var index = result.count
        while index > 1 {
            let other = self.index(below: index)
            index -= 1
            result.swapAt(index, other)
        }
        return result
    }

    /// An independent generator for one named stream under this generator's seed (one test, one
    /// policy), so that adding a stream does not shift the numbers every other stream draws.
    public func stream(_ name: String) -> SeededGenerator {
        // FNV-1a of the name, then one SplitMix64 step so that nearby seeds give unrelated streams.
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        var mixer = SeededGenerator(seed: seed ^ hash)
        return SeededGenerator(seed: mixer.next())
    }

    /// The environment variable that overrides a test's seed.
    public static let seedVariable = "CARESYNC_SEED"

    /// The seed from `CARESYNC_SEED` (decimal, or hex with a `0x` prefix) when it is set, otherwise
    /// `fallback`. A value that does not parse stops the run: quietly using another seed would make
    /// an attempt to reproduce a failure test something else.
    public static func seedFromEnvironment(default fallback: @autoclosure () -> UInt64) -> UInt64 {
        guard let text = ProcessInfo.processInfo.environment[seedVariable] else { return fallback() }
        guard let seed = parseSeed(text) else {
            preconditionFailure("\(seedVariable)=\(text) is not a decimal or 0x-prefixed hex UInt64")
        }
        return seed
    }

    /// Parses a seed as `seedSpelling` prints it, or in decimal.
    public static func parseSeed(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("0x") || trimmed.hasPrefix("0X") { return UInt64(trimmed.dropFirst(2), radix: 16) }
        return UInt64(trimmed)
    }

    /// The environment variable that sets how many cases a property test runs.
    public static let caseCountVariable = "CARESYNC_CASES"

    /// The case count from `CARESYNC_CASES` when it is set, otherwise `fallback`.
    public static func caseCountFromEnvironment(default fallback: Int) -> Int {
        guard let text = ProcessInfo.processInfo.environment[caseCountVariable] else { return fallback }
        guard let count = Int(text.trimmingCharacters(in: .whitespaces)), count > 0 else {
            preconditionFailure("\(caseCountVariable)=\(text) is not a positive integer")
        }
        return count
    }

    /// A seed from the system generator, for runs that are not asked for a particular one. Print it.
    public static func freshSeed() -> UInt64 {
        var system = SystemRandomNumberGenerator()
        return system.next()
    }

    /// How to print a seed: `0x` and 16 hex digits, which `CARESYNC_SEED` accepts back.
    public static func spelling(of seed: UInt64) -> String {
        let digits = String(seed, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }
}
