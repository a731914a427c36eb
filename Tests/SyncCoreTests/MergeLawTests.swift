import SyncCore
import SyncTesting
import Testing

// Property tests of the merge laws: every field state is a join-semilattice, so replicas that have
// seen the same writes, in any order, with any duplicates, merged in any grouping, hold equal
// states. Each law runs `PropertyRun.cases` generated cases per policy.
//
// Reproduce a failure with the seed its message prints: `CARESYNC_SEED=0x… swift test --filter
// SyncCoreTests`. `CARESYNC_CASES=100000` runs more cases.

/// One policy under test, shown by its DOMAIN.md name.
struct PolicyUnderTest: Sendable, CustomTestStringConvertible {
    let policy: MergePolicy
    var testDescription: String { policy.name }

    static let all: [PolicyUnderTest] = ([
        .immutable, .lastWriterWins, .multiValue, .monotonic(FieldWriteGenerator.statusLattice),
        .addWinsSet, .removeWinsSet, .counter,
    ] as [MergePolicy]).map(PolicyUnderTest.init)
}

/// Settings shared by every property test in one run of the test binary.
enum PropertyRun {
    /// One seed for the whole run: fresh each run unless `CARESYNC_SEED` names one.
    static let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())

    /// Cases per law and policy; `CARESYNC_CASES` asks for more (or fewer, while debugging).
    static let cases = SeededGenerator.caseCountFromEnvironment(default: 10_000)
}

/// One law checked against one policy: its own random stream, case generation and failure
/// messages that carry the seed.
struct LawRun {
    let law: String
    let policy: MergePolicy
    var random: SeededGenerator

    init(_ law: String, _ policy: MergePolicy) {
        self.law = law
        self.policy = policy
        self.random = SeededGenerator(seed: PropertyRun.seed).stream("\(law)/\(policy.name)")
        print("[\(law) \(policy.name)] \(PropertyRun.cases) cases, \(SeededGenerator.seedVariable)="
              + SeededGenerator.spelling(of: PropertyRun.seed))
    }

    var empty: FieldState { FieldState.empty(for: policy) }

    /// 2 to 6 writes to one field, from a fresh generator.
    mutating func writes() -> [FieldWrite] {
        var generator = FieldWriteGenerator(policy: policy)
        return generator.writes(count: 2 + random.index(below: 5), using: &random)
    }

    func apply(_ writes: [FieldWrite], to state: FieldState? = nil) -> FieldState {
        writes.reduce(state ?? empty) { $0.applying($1, policy: policy) }
    }

    /// The state of a replica that saw a random part of `writes`, in a random order.
    mutating func replicaState(seeing writes: [FieldWrite]) -> (state: FieldState, seen: [FieldWrite]) {
        let seen = random.shuffled(FieldWriteGenerator.subset(of: writes, using: &random))
        return (apply(seen), seen)
    }

    func merge(_ a: FieldState, _ b: FieldState) -> FieldState { a.merged(with: b, policy: policy) }

    func comment(_ what: @autoclosure () -> String, case index: Int, writes: [FieldWrite]) -> Comment {
        Comment(rawValue: "\(law) failed for \(policy.name) (\(what())) in case \(index); reproduce with "
                + "\(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: PropertyRun.seed))\n"
                + writes.map { "  " + Self.describe($0) }.joined(separator: "\n"))
    }

    /// Expects two states to be equal, with the seed and the writes in the message. Returns whether
    /// they were, so that a law stops at its first failing case instead of reporting thousands.
    func expectSame(_ lhs: FieldState, _ rhs: FieldState, _ what: @autoclosure () -> String, case index: Int,
                    writes: [FieldWrite], sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let same = lhs == rhs
        if !same {
            #expect(lhs == rhs, comment(what(), case: index, writes: writes), sourceLocation: sourceLocation)
        }
        return same
    }

    /// `r0:3` for the generator's replicas (whose short ids collide), the short id otherwise.
    static func describe(_ id: ChangeID) -> String {
        guard let index = FieldWriteGenerator.replicas.firstIndex(of: id.replica) else { return id.description }
        return "r\(index):\(id.counter)"
    }

    static func describe(_ write: FieldWrite) -> String {
        let operation = switch write.operation {
        case let .assign(value): "assign \(value.debugSpelling)"
        case let .add(value): "add \(value.debugSpelling)"
        case let .remove(value): "remove \(value.debugSpelling)"
        case let .increment(delta): "increment \(delta)"
        }
        let supersedes = write.supersedes.isEmpty ? "" : " supersedes [\(write.supersedes.map(describe).joined(separator: ", "))]"
        return "\(describe(write.id)) cl=\(write.causalLength) t=\(write.timestamp) by \(write.author): \(operation)\(supersedes)"
    }
}

extension FieldValue {
    /// Type and content, for test messages only (generated values, never records).
    var debugSpelling: String {
        switch self {
        case .real: "real(\(description))"
        case .text: "text(\"\(description)\")"
        default: description
        }
    }
}

@Suite("Merge laws")
struct MergeLawTests {
    @Test("Any delivery order of the same writes gives the same state", arguments: PolicyUnderTest.all)
    func deliveryOrder(_ subject: PolicyUnderTest) {
        var run = LawRun("deliveryOrder", subject.policy)
        var lateSuperseded = 0
        var interesting = 0
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let delivered = run.random.shuffled(writes)
            let inOrder = run.apply(writes)
            let reordered = run.apply(delivered)
            guard run.expectSame(inOrder, reordered, "generated vs shuffled order", case: index, writes: delivered) else { return }
            if index % 10 == 0 {
                #expect(inOrder.encoded() == reordered.encoded(), run.comment("equal states encode alike", case: index, writes: delivered))
            }
            if Self.deliversSupersededLate(delivered) { lateSuperseded += 1 }
            if Self.isInteresting(inOrder, writes: writes, policy: subject.policy) { interesting += 1 }
        }
        // A law checked only on dull cases proves little: make sure the generator reaches the
        // states the law is about. (Each happens in well over 1% of cases.)
        guard PropertyRun.cases >= 1_000 else { return }
        #expect(interesting > 0, "no case reached a conflict, quarantine, tie or removal for \(subject.policy.name)")
        if subject.policy.keepsState && subject.policy != .counter && subject.policy != .immutable {
            #expect(lateSuperseded > 0, "no case delivered a superseded write after the write superseding it")
        }
    }

    @Test("Duplicate deliveries change nothing", arguments: PolicyUnderTest.all)
    func duplicates(_ subject: PolicyUnderTest) {
        var run = LawRun("duplicates", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let repeated = FieldWriteGenerator.subset(of: writes, using: &run.random)
            let extra = repeated.isEmpty ? [writes[0]] : repeated
            let delivered = run.random.shuffled(writes + extra)
            guard run.expectSame(run.apply(writes), run.apply(delivered), "with duplicates", case: index, writes: delivered) else { return }
        }
    }

    @Test("Applying a write already applied changes nothing", arguments: PolicyUnderTest.all)
    func reapplying(_ subject: PolicyUnderTest) {
        var run = LawRun("reapplying", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let final = run.apply(writes)
            for write in writes {
                guard run.expectSame(final.applying(write, policy: subject.policy), final, "re-applying \(write.id) to the final state",
                                     case: index, writes: writes) else { return }
            }
            let (partial, _) = run.replicaState(seeing: writes)
            let write = run.random.element(of: writes)
            let once = partial.applying(write, policy: subject.policy)
            guard run.expectSame(once.applying(write, policy: subject.policy), once, "applying \(write.id) twice in a row",
                                 case: index, writes: writes) else { return }
        }
    }

    @Test("Merging is commutative", arguments: PolicyUnderTest.all)
    func mergeCommutative(_ subject: PolicyUnderTest) {
        var run = LawRun("mergeCommutative", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let (a, _) = run.replicaState(seeing: writes)
            let (b, _) = run.replicaState(seeing: writes)
            guard run.expectSame(run.merge(a, b), run.merge(b, a), "a ⊔ b vs b ⊔ a", case: index, writes: writes) else { return }
        }
    }

    @Test("Merging is associative", arguments: PolicyUnderTest.all)
    func mergeAssociative(_ subject: PolicyUnderTest) {
        var run = LawRun("mergeAssociative", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let (a, _) = run.replicaState(seeing: writes)
            let (b, _) = run.replicaState(seeing: writes)
            let (c, _) = run.replicaState(seeing: writes)
            guard run.expectSame(run.merge(run.merge(a, b), c), run.merge(a, run.merge(b, c)), "(a ⊔ b) ⊔ c vs a ⊔ (b ⊔ c)",
                                 case: index, writes: writes) else { return }
        }
    }

    @Test("Merging is idempotent and the empty state is its identity", arguments: PolicyUnderTest.all)
    func mergeIdempotent(_ subject: PolicyUnderTest) {
        var run = LawRun("mergeIdempotent", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let (a, _) = run.replicaState(seeing: writes)
            guard run.expectSame(run.merge(a, a), a, "a ⊔ a vs a", case: index, writes: writes),
                  run.expectSame(run.merge(a, run.empty), a, "a ⊔ ⊥ vs a", case: index, writes: writes),
                  run.expectSame(run.merge(run.empty, a), a, "⊥ ⊔ a vs a", case: index, writes: writes)
            else { return }
        }
    }

    @Test("Merging two states equals applying the union of their writes", arguments: PolicyUnderTest.all)
    func mergeIsUnion(_ subject: PolicyUnderTest) {
        var run = LawRun("mergeIsUnion", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let (a, seenByA) = run.replicaState(seeing: writes)
            let (b, seenByB) = run.replicaState(seeing: writes)
            let union = writes.filter { write in seenByA.contains(write) || seenByB.contains(write) }
            guard run.expectSame(run.merge(a, b), run.apply(run.random.shuffled(union)), "a ⊔ b vs applying a's and b's writes",
                                 case: index, writes: writes) else { return }
        }
    }

    @Test("A state decodes to itself from its encoding", arguments: PolicyUnderTest.all)
    func stateCoding(_ subject: PolicyUnderTest) throws {
        var run = LawRun("stateCoding", subject.policy)
        for index in 0..<PropertyRun.cases {
            let writes = run.writes()
            let (state, _) = run.replicaState(seeing: writes)
            let bytes = state.encoded()
            let decoded = try FieldState.decode(bytes, policy: subject.policy)
            guard run.expectSame(decoded, state, "decode(encode(s)) vs s", case: index, writes: writes) else { return }
            #expect(decoded.encoded() == bytes, run.comment("re-encoding", case: index, writes: writes))
            // Strictness, on a sample: no proper prefix decodes, nor the encoding with a byte more.
            if index % 100 == 0 {
                for length in 0..<bytes.count {
                    #expect(throws: ByteDecodingError.self, run.comment("prefix of \(length) bytes decoded", case: index, writes: writes)) {
                        try FieldState.decode(Array(bytes.prefix(length)), policy: subject.policy)
                    }
                }
                #expect(throws: ByteDecodingError(.trailingBytes, offset: bytes.count, "1 unexpected trailing bytes")) {
                    try FieldState.decode(bytes + [0], policy: subject.policy)
                }
            }
        }
        #expect(try FieldState.decode(run.empty.encoded(), policy: subject.policy) == run.empty)
    }

    @Test("A write with arbitrary values, authors and supersedes decodes to itself")
    func writeCoding() throws {
        var run = LawRun("writeCoding", .lastWriterWins)
        for index in 0..<PropertyRun.cases {
            let value = FieldValueGenerator.arbitrary(using: &run.random)
            let operations: [FieldOperation] = [.assign(value), .add(value), .remove(value),
                                                .increment(Int64(bitPattern: run.random.next()))]
            let supersedes = (0..<Int.random(in: 0...3, using: &run.random)).map { _ in
                ChangeID(replica: .random(using: &run.random), counter: UInt64.random(in: 1 ... .max, using: &run.random))
            }
            let write = FieldWrite(
                id: ChangeID(replica: .random(using: &run.random), counter: UInt64.random(in: 1 ... .max, using: &run.random)),
                timestamp: HybridTimestamp(rawValue: run.random.next()), causalLength: run.random.next() >> Int.random(in: 0...63, using: &run.random),
                author: FieldValueGenerator.text(using: &run.random),
                operation: operations[Int.random(in: 0..<operations.count, using: &run.random)], supersedes: supersedes)
            var writer = ByteWriter()
            write.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            let decoded = try FieldWrite.decode(from: &reader)
            try reader.expectEnd()
            #expect(decoded == write, run.comment("decode(encode(w)) vs w", case: index, writes: [write]))
            guard decoded == write else { return }
        }
    }

    // MARK: - What counts as a case worth having

    /// True when some write arrives after a write that superseded it.
    static func deliversSupersededLate(_ delivered: [FieldWrite]) -> Bool {
        var superseded = Set<ChangeID>()
        for write in delivered {
            if superseded.contains(write.id) { return true }
            superseded.formUnion(write.supersedes)
        }
        return false
    }

    /// True when the case reached what the policy exists for: a quarantine, a conflict, a tie
    /// broken by replica id, an element removed or kept against a remove.
    static func isInteresting(_ state: FieldState, writes: [FieldWrite], policy: MergePolicy) -> Bool {
        switch state {
        case let .immutable(register): !register.resolution.quarantined.isEmpty
        case .lastWriterWins:
            Set(writes.map { "\($0.causalLength)/\($0.timestamp.rawValue)" }).count < writes.count
        case .multiValue, .monotonic: state.resolution(policy: policy).inConflict
        case let .addWinsSet(set): !set.removedTags.isEmpty && !set.elements.isEmpty
        case let .removeWinsSet(set):
            !set.removes.isEmpty && Set(set.adds.map(\.value)).count > set.elements.count
        case let .counter(counter): counter.increments.count > 1
        }
    }
}

@Suite("Seeded generator")
struct SeededGeneratorTests {
    @Test("SplitMix64 matches the reference outputs for seed 1234567")
    func referenceVector() {
        var generator = SeededGenerator(seed: 1_234_567)
        let outputs = (0..<5).map { _ in generator.next() }
        #expect(outputs == [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
                            4_593_380_528_125_082_431, 16_408_922_859_458_223_821])
    }

    @Test("Streams are reproducible and distinct")
    func streams() {
        let root = SeededGenerator(seed: 42)
        var first = root.stream("a"), again = root.stream("a"), other = root.stream("b")
        let a = (0..<4).map { _ in first.next() }
        #expect(a == (0..<4).map { _ in again.next() })
        #expect(a != (0..<4).map { _ in other.next() })
    }

    @Test("Seeds print in a form that parses back", arguments: [0, 1, 0xDEAD_BEEF, UInt64.max])
    func seedSpelling(_ seed: UInt64) {
        #expect(SeededGenerator.parseSeed(SeededGenerator.spelling(of: seed)) == seed)
        #expect(SeededGenerator.parseSeed(String(seed)) == seed)
    }

    @Test("Malformed seeds are refused", arguments: ["", "0x", "-1", "12a", "0x1ffffffffffffffff", "18446744073709551616"])
    func malformedSeed(_ text: String) {
        #expect(SeededGenerator.parseSeed(text) == nil)
    }

    @Test("Generated writes have unique ids and supersede only earlier writes", arguments: PolicyUnderTest.all)
    func writeGenerator(_ subject: PolicyUnderTest) {
        var random = SeededGenerator(seed: 7)
        var generator = FieldWriteGenerator(policy: subject.policy)
        let writes = generator.writes(count: 500, using: &random)
        #expect(Set(writes.map(\.id)).count == writes.count)
        var earlier = Set<ChangeID>()
        for write in writes {
            #expect(write.supersedes.allSatisfy(earlier.contains))
            earlier.insert(write.id)
        }
    }
}
