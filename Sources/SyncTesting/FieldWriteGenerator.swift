import SyncCore

/// Field values for property tests.
///
/// Generators take a `SeededGenerator` rather than any `RandomNumberGenerator`: every test draws
/// from one, and a concrete type keeps debug builds fast (generic code is not specialised there).
///
/// NaN is never generated: `FieldValue` equality is IEEE equality, so a state holding a NaN is not
/// equal to itself and no law could be checked with `==`. (SQLite stores NaN as NULL, so a replica
/// never reads one back either.)
public enum FieldValueGenerator {
    /// Values that collide often, so independent writes agree or disagree by chance.
    public static let common: [FieldValue] = [.text("a"), .text("b"), .integer(1)]

    /// Edge cases: extreme integers, an integer and a real of equal magnitude, signed zeros (equal
    /// but encoded differently), canonically equivalent text in two spellings (equal but encoded
    /// differently), empty text and bytes.
    public static let edges: [FieldValue] = [
        .null, .integer(0), .integer(-1), .integer(.max), .integer(.min),
        .real(1), .real(0), .real(-0.0), .real(0.5), .real(-.infinity), .real(.greatestFiniteMagnitude),
        .text(""), .text("\u{E9}"), .text("e\u{301}"), .text("line\nbreak \"quoted\""), .text("🧸"),
        .blob([]), .blob([0]), .blob([0xFF, 0x00, 0x7F]),
    ]

    /// Mostly `common`, sometimes `edges`: what merge-law tests want.
    public static func pooled(using generator: inout SeededGenerator) -> FieldValue {
        generator.element(of: generator.index(below: 10) < 7 ? common : edges)
    }

    /// Any value but NaN, from the whole range of each type: what coding round-trip tests want.
    public static func arbitrary(using generator: inout SeededGenerator) -> FieldValue {
        switch generator.index(below: 6) {
        case 0: return pooled(using: &generator)
        case 1: return .integer(Int64(bitPattern: generator.next()))
        case 2:
            let real = Double(bitPattern: generator.next())
            return .real(real.isNaN ? .infinity : real)
        case 3, 4: return .text(text(using: &generator))
        default:
            return .blob((0..<Int.random(in: 0...24, using: &generator)).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        }
    }

    /// Up to 12 scalars from ASCII, Latin-1, combining marks, CJK and emoji.
    public static func text(using generator: inout SeededGenerator) -> String {
        let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0x00...0x1F, 0xA0...0xFF, 0x300...0x36F, 0x4E00...0x4E80, 0x1F600...0x1F64F]
        var text = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...12, using: &generator) {
            let range = ranges[Int.random(in: 0..<ranges.count, using: &generator)]
            if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &generator)) { text.append(scalar) }
        }
        return String(text)
    }
}

/// Generates writes to one field under one policy, each a plausible input to the merge:
///
/// - a few replicas, authors, milliseconds and causal lengths, so versions tie on everything but
///   the replica id (or the counter) often;
/// - change ids unique per generator (one counter per replica, as on a real origin), so a write
///   seen twice is a duplicate and never a different write under the same id;
/// - the operations the policy takes (assign, add and remove, increment);
/// - `supersedes` drawn from the writes generated before: resolution writes for MVR and terminal
///   statuses, observed tags for set removes (AWS) and re-adds (RWS), sometimes everything seen,
///   sometimes part of it, sometimes ids the policy should ignore.
public struct FieldWriteGenerator: Sendable {
    /// The policy of the field written.
    public let policy: MergePolicy
    /// Every write generated so far, in order.
    public private(set) var issued: [FieldWrite] = []
    private var counters: [UInt64]

    /// Three replicas whose ids differ in the high word, the low word, or both.
    public static let replicas: [ReplicaID] = [
        ReplicaID(high: 0x0000_0000_0000_0001, low: 0xFFFF_FFFF_FFFF_FFFF),
        ReplicaID(high: 0x0000_0000_0000_0001, low: 0x0000_0000_0000_0002),
        ReplicaID(high: 0xFFFF_FFFF_FFFF_FFFF, low: 0x0000_0000_0000_0000),
    ]
    /// Authors of the writes.
    public static let authors = ["amara.okafor", "ben.hughes", "cat.nguyen"]
    /// 14 Nov 2023, so generated timestamps look like real ones.
    public static let baseMillis: UInt64 = 1_700_000_000_000
    /// A status order with two terminal states, for `.monotonic` policies.
    public static let statusLattice = StatusLattice(
        ["draft", "submitted", "approved", "closed", "withdrawn"], terminal: ["closed", "withdrawn"])
    /// Set elements: few, so adds and removes meet.
    public static let elements: [FieldValue] = [.text("team-north"), .text("team-south"), .integer(7)]

    /// A generator of writes to one field under `policy`, with no write issued yet.
    public init(policy: MergePolicy) {
        self.policy = policy
        self.counters = Array(repeating: 0, count: Self.replicas.count)
    }

    /// `count` more writes.
    public mutating func writes(count: Int, using generator: inout SeededGenerator) -> [FieldWrite] {
        (0..<count).map { _ in next(using: &generator) }
    }

    /// One more write.
    public mutating func next(using generator: inout SeededGenerator) -> FieldWrite {
        let replicaIndex = generator.index(below: Self.replicas.count)
        counters[replicaIndex] += 1
        let id = ChangeID(replica: Self.replicas[replicaIndex], counter: counters[replicaIndex])
        let timestamp = HybridTimestamp(physicalMillis: Self.baseMillis + UInt64(generator.index(below: 3)),
                                        logical: UInt16(generator.index(below: 2)))
        let lengthRoll = generator.index(below: 20)
        let causalLength: UInt64 = lengthRoll < 15 ? 1 : lengthRoll < 19 ? 2 : 3
        let author = generator.element(of: Self.authors)
        let (operation, supersedes) = operation(using: &generator)
        let write = FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author,
                               operation: operation, supersedes: supersedes)
        issued.append(write)
        return write
    }

    private func operation(using generator: inout SeededGenerator) -> (FieldOperation, [ChangeID]) {
        switch policy {
        case .immutable, .lastWriterWins:
            return (.assign(FieldValueGenerator.pooled(using: &generator)), [])
        case .multiValue:
            return (.assign(FieldValueGenerator.pooled(using: &generator)), resolutionSupersedes(using: &generator))
        case let .monotonic(lattice):
            let roll = generator.index(below: 20)
            let value: FieldValue = switch roll {
            case 0: .text("status-from-a-newer-schema")
            case 1: .null
            default: .text(generator.element(of: lattice.order))
            }
            let terminal = value.textValue.map(lattice.isTerminal) ?? false
            return (.assign(value), terminal ? resolutionSupersedes(using: &generator) : [])
        case .addWinsSet:
            let element = element(using: &generator)
            if generator.coin() { return (.add(element), []) }
            return (.remove(element), observed(element, isRemove: false, using: &generator))
        case .removeWinsSet:
            let element = element(using: &generator)
            if generator.coin() { return (.remove(element), []) }
            return (.add(element), observed(element, isRemove: true, using: &generator))
        case .counter:
            let extremes: [Int64] = [.max, .min, 1 << 62]
            let delta = generator.index(below: 10) == 0
                ? generator.element(of: extremes)
                : Int64(generator.index(below: 9)) - 3
            return (.increment(delta), [])
        }
    }

    private func element(using generator: inout SeededGenerator) -> FieldValue {
        if generator.index(below: 10) == 0 { return FieldValueGenerator.pooled(using: &generator) }
        return generator.element(of: Self.elements)
    }

    /// For a write that may resolve a conflict: nothing, some earlier writes, or all of them.
    private func resolutionSupersedes(using generator: inout SeededGenerator) -> [ChangeID] {
        switch generator.index(below: 20) {
        case 0..<9: []
        case 9..<15: Self.subset(of: issued.map(\.id), using: &generator)
        default: issued.map(\.id)
        }
    }

    /// For a set remove (AWS) or re-add (RWS): the ids of the earlier adds (or removes) of the same
    /// element it observed: all, some, or unrelated ids the set must ignore.
    private func observed(_ element: FieldValue, isRemove: Bool, using generator: inout SeededGenerator) -> [ChangeID] {
        let wanted: FieldOperation = isRemove ? .remove(element) : .add(element)
        let matching = issued.filter { $0.operation == wanted }.map(\.id)
        switch generator.index(below: 10) {
        case 0..<5: return matching
        case 5..<8: return Self.subset(of: matching, using: &generator)
        default: return Self.subset(of: issued.map(\.id), using: &generator)
        }
    }

    /// Each element kept with probability one half.
    public static func subset<Element>(of elements: [Element], using generator: inout SeededGenerator) -> [Element] {
        elements.filter { _ in generator.coin() }
    }
}
