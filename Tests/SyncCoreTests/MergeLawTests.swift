import PropertyBased
import SyncCore
import SyncTesting
import Testing

// Property tests of the merge laws: every field state is a join-semilattice, so replicas that have
// seen the same writes, in any order, with any duplicates, merged in any grouping, hold equal
// states. Each law runs `PropertyRun.cases` generated cases per policy, through PropertyBased's
// `propertyCheck`: a failing case is shrunk, one write removed at a time while the law still
// fails, and the smallest is reported with the case it was shrunk from.
//
// Reproduce a failure with the seed its message prints: `CARESYNC_SEED=0x… swift test --filter
// SyncCoreTests` (cases come from that seed's streams, so PropertyBased's `.fixedSeed` hint does
// not apply to them). `CARESYNC_CASES=100000` runs more cases.

/// One policy under test, shown by its name (`MergePolicy.name`).
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

/// One generated case of a law: its writes, and the generator for the law's other choices in it
/// (shuffles, what each replica saw). A case is checked the same way each time it runs, which
/// shrinking needs; a shrunk case keeps its choices and loses writes.
struct LawCase: Sendable, CustomTestStringConvertible {
    /// The case's own seed, drawn from the law's stream.
    let seed: UInt64
    var writes: [FieldWrite]
    let choices: SeededGenerator

    /// One case in ten: for the costlier checks made on a sample.
    var sampled: Bool { seed % 10 == 0 }

    var testDescription: String {
        "\(writes.count) writes (case seed \(SeededGenerator.spelling(of: seed))):\n" + writes.map { "  " + LawRun.describe($0) }.joined(separator: "\n")
    }
}

/// One law checked against one policy: its own random stream, case generation and failure
/// messages that carry the seed.
struct LawRun: Sendable {
    let law: String
    let policy: MergePolicy

    init(_ law: String, _ policy: MergePolicy) {
        self.law = law
        self.policy = policy
        print("[\(law) \(policy.name)] \(PropertyRun.cases) cases, \(SeededGenerator.seedVariable)="
              + SeededGenerator.spelling(of: PropertyRun.seed))
    }

    var empty: FieldState { FieldState.empty(for: policy) }

    /// 2 to 6 writes to one field, from a fresh generator.
    static func fieldWrites(_ policy: MergePolicy, using random: inout SeededGenerator) -> [FieldWrite] {
        var generator = FieldWriteGenerator(policy: policy)
        return generator.writes(count: 2 + random.index(below: 5), using: &random)
    }

    /// The law's other choices tried with each smaller case while shrinking: a failure that needs a
    /// particular order of the writes left may need other draws to show again.
    static let shrinkChoices = 8

    /// The law's cases as a PropertyBased generator: each drawn from the law's named stream under
    /// the run's seed (PropertyBased's own random source is not used), shrunk by leaving out one
    /// write at a time (never the last), each smaller case tried with its own and other choices.
    func cases(making make: @escaping @Sendable (MergePolicy, inout SeededGenerator) -> [FieldWrite] = Self.fieldWrites)
        -> Generator<LawCase, [LawCase]> {
        let stream = GeneratorBox(SeededGenerator(seed: PropertyRun.seed).stream("\(law)/\(policy.name)"))
        let policy = policy
        return Generator(run: { _ in
            var random = SeededGenerator(seed: stream.next())
            let writes = make(policy, &random)
            return LawCase(seed: random.seed, writes: writes, choices: random)
        }, shrink: { lawCase in
            Shrink.omitSingleElement(from: lawCase.writes, lowerBound: 1).flatMap { writes in
                (0..<Self.shrinkChoices).map { variant in
                    let choices = variant == 0 ? lawCase.choices : SeededGenerator(seed: lawCase.seed).stream("shrink-\(variant)")
                    return LawCase(seed: lawCase.seed, writes: writes, choices: choices)
                }
            }
        })
    }

    /// Runs `body` on `PropertyRun.cases` cases; it records what fails with `expectSame` or
    /// `#expect`. The first failing case is shrunk and reported (PropertyBased).
    func check(making make: @escaping @Sendable (MergePolicy, inout SeededGenerator) -> [FieldWrite] = Self.fieldWrites,
               _ body: (LawCase, inout SeededGenerator) throws -> Void) async {
        await propertyCheck(count: PropertyRun.cases, input: cases(making: make)) { lawCase in
            var random = lawCase.choices
            // A thrown error is recorded here: PropertyBased counts recorded issues, not throws.
            do { try body(lawCase, &random) } catch { Issue.record(error, comment(String(describing: error), lawCase)) }
        }
    }

    func apply(_ writes: [FieldWrite], to state: FieldState? = nil) -> FieldState {
        writes.reduce(state ?? empty) { $0.applying($1, policy: policy) }
    }

    /// The state of a replica that saw a random part of `writes`, in a random order.
    func replicaState(seeing writes: [FieldWrite], using random: inout SeededGenerator) -> (state: FieldState, seen: [FieldWrite]) {
        let seen = random.shuffled(FieldWriteGenerator.subset(of: writes, using: &random))
        return (apply(seen), seen)
    }

    func merge(_ a: FieldState, _ b: FieldState) -> FieldState { a.merged(with: b, policy: policy) }

    func comment(_ what: @autoclosure () -> String, _ lawCase: LawCase, writes: [FieldWrite]? = nil) -> Comment {
        Comment(rawValue: "\(law) failed for \(policy.name) (\(what())); reproduce with "
                + "\(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: PropertyRun.seed)), case seed "
                + "\(SeededGenerator.spelling(of: lawCase.seed))\n"
                + (writes ?? lawCase.writes).map { "  " + Self.describe($0) }.joined(separator: "\n"))
    }

    /// Expects two states to be equal, with the seeds and the writes in the message. Returns
    /// whether they were, so that a case stops at its first failing check.
    func expectSame(_ lhs: FieldState, _ rhs: FieldState, _ what: @autoclosure () -> String, _ lawCase: LawCase,
                    writes: [FieldWrite]? = nil, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let same = lhs == rhs
        if !same {
            #expect(lhs == rhs, comment(what(), lawCase, writes: writes), sourceLocation: sourceLocation)
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
    func deliveryOrder(_ subject: PolicyUnderTest) async {
        let run = LawRun("deliveryOrder", subject.policy)
        var lateSuperseded = 0
        var interesting = 0
        await run.check { lawCase, random in
            let writes = lawCase.writes
            let delivered = random.shuffled(writes)
            let inOrder = run.apply(writes)
            let reordered = run.apply(delivered)
            guard run.expectSame(inOrder, reordered, "generated vs shuffled order", lawCase, writes: delivered) else { return }
            if lawCase.sampled {
                #expect(inOrder.encoded() == reordered.encoded(), run.comment("equal states encode alike", lawCase, writes: delivered))
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
    func duplicates(_ subject: PolicyUnderTest) async {
        let run = LawRun("duplicates", subject.policy)
        await run.check { lawCase, random in
            let writes = lawCase.writes
            let repeated = FieldWriteGenerator.subset(of: writes, using: &random)
            let extra = repeated.isEmpty ? [writes[0]] : repeated
            let delivered = random.shuffled(writes + extra)
            _ = run.expectSame(run.apply(writes), run.apply(delivered), "with duplicates", lawCase, writes: delivered)
        }
    }

    @Test("Applying a write already applied changes nothing", arguments: PolicyUnderTest.all)
    func reapplying(_ subject: PolicyUnderTest) async {
        let run = LawRun("reapplying", subject.policy)
        await run.check { lawCase, random in
            let writes = lawCase.writes
            let final = run.apply(writes)
            for write in writes {
                guard run.expectSame(final.applying(write, policy: subject.policy), final, "re-applying \(LawRun.describe(write.id)) to the final state",
                                     lawCase) else { return }
            }
            let (partial, _) = run.replicaState(seeing: writes, using: &random)
            let write = random.element(of: writes)
            let once = partial.applying(write, policy: subject.policy)
            _ = run.expectSame(once.applying(write, policy: subject.policy), once, "applying \(LawRun.describe(write.id)) twice in a row", lawCase)
        }
    }

    @Test("Merging is commutative", arguments: PolicyUnderTest.all)
    func mergeCommutative(_ subject: PolicyUnderTest) async {
        let run = LawRun("mergeCommutative", subject.policy)
        await run.check { lawCase, random in
            let (a, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            let (b, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            _ = run.expectSame(run.merge(a, b), run.merge(b, a), "a ⊔ b vs b ⊔ a", lawCase)
        }
    }

    @Test("Merging is associative", arguments: PolicyUnderTest.all)
    func mergeAssociative(_ subject: PolicyUnderTest) async {
        let run = LawRun("mergeAssociative", subject.policy)
        await run.check { lawCase, random in
            let (a, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            let (b, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            let (c, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            _ = run.expectSame(run.merge(run.merge(a, b), c), run.merge(a, run.merge(b, c)), "(a ⊔ b) ⊔ c vs a ⊔ (b ⊔ c)", lawCase)
        }
    }

    @Test("Merging is idempotent and the empty state is its identity", arguments: PolicyUnderTest.all)
    func mergeIdempotent(_ subject: PolicyUnderTest) async {
        let run = LawRun("mergeIdempotent", subject.policy)
        await run.check { lawCase, random in
            let (a, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            _ = run.expectSame(run.merge(a, a), a, "a ⊔ a vs a", lawCase)
                && run.expectSame(run.merge(a, run.empty), a, "a ⊔ ⊥ vs a", lawCase)
                && run.expectSame(run.merge(run.empty, a), a, "⊥ ⊔ a vs a", lawCase)
        }
    }

    @Test("Merging two states equals applying the union of their writes", arguments: PolicyUnderTest.all)
    func mergeIsUnion(_ subject: PolicyUnderTest) async {
        let run = LawRun("mergeIsUnion", subject.policy)
        await run.check { lawCase, random in
            let writes = lawCase.writes
            let (a, seenByA) = run.replicaState(seeing: writes, using: &random)
            let (b, seenByB) = run.replicaState(seeing: writes, using: &random)
            let union = writes.filter { write in seenByA.contains(write) || seenByB.contains(write) }
            _ = run.expectSame(run.merge(a, b), run.apply(random.shuffled(union)), "a ⊔ b vs applying a's and b's writes", lawCase)
        }
    }

    @Test("A state decodes to itself from its encoding", arguments: PolicyUnderTest.all)
    func stateCoding(_ subject: PolicyUnderTest) async throws {
        let run = LawRun("stateCoding", subject.policy)
        await run.check { lawCase, random in
            let (state, _) = run.replicaState(seeing: lawCase.writes, using: &random)
            let bytes = state.encoded()
            let decoded = try FieldState.decode(bytes, policy: subject.policy)
            guard run.expectSame(decoded, state, "decode(encode(s)) vs s", lawCase) else { return }
            #expect(decoded.encoded() == bytes, run.comment("re-encoding", lawCase))
            // Strictness, on a sample: no proper prefix decodes, nor the encoding with a byte more.
            guard lawCase.seed % 100 == 0 else { return }
            for length in 0..<bytes.count {
                #expect(throws: ByteDecodingError.self, run.comment("prefix of \(length) bytes decoded", lawCase)) {
                    try FieldState.decode(Array(bytes.prefix(length)), policy: subject.policy)
                }
            }
            #expect(throws: ByteDecodingError(.trailingBytes, offset: bytes.count, "1 unexpected trailing bytes")) {
                try FieldState.decode(bytes + [0], policy: subject.policy)
            }
        }
        #expect(try FieldState.decode(run.empty.encoded(), policy: subject.policy) == run.empty)
    }

    /// One write with values, authors, ids and supersedes from their whole ranges.
    @Sendable static func arbitraryWrite(_ policy: MergePolicy, using random: inout SeededGenerator) -> [FieldWrite] {
        let value = FieldValueGenerator.arbitrary(using: &random)
        let operations: [FieldOperation] = [.assign(value), .add(value), .remove(value), .increment(Int64(bitPattern: random.next()))]
        let supersedes = (0..<Int.random(in: 0...3, using: &random)).map { _ in
            ChangeID(replica: .random(using: &random), counter: UInt64.random(in: 1 ... .max, using: &random))
        }
        return [FieldWrite(
            id: ChangeID(replica: .random(using: &random), counter: UInt64.random(in: 1 ... .max, using: &random)),
            timestamp: HybridTimestamp(rawValue: random.next()), causalLength: random.next() >> Int.random(in: 0...63, using: &random),
            author: FieldValueGenerator.text(using: &random),
            operation: operations[Int.random(in: 0..<operations.count, using: &random)], supersedes: supersedes)]
    }

    @Test("A write with arbitrary values, authors and supersedes decodes to itself")
    func writeCoding() async {
        let run = LawRun("writeCoding", .lastWriterWins)
        await run.check(making: Self.arbitraryWrite) { lawCase, _ in
            let write = lawCase.writes[0]
            var writer = ByteWriter()
            write.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            let decoded = try FieldWrite.decode(from: &reader)
            try reader.expectEnd()
            #expect(decoded == write, run.comment("decode(encode(w)) vs w", lawCase))
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
