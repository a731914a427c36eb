import SyncTesting
import Testing

/// The benchmark's care workload measures bytes per change and compression on this text, so it
/// must be reproducible from its seed and varied like real notes, not one string repeated.
@Suite struct CareNarrativeTests {
    @Test func sameSeedSameText() {
        var first = CareNarrative(seed: 42)
        var second = CareNarrative(seed: 42)
        let a = (0..<50).map { _ in first.caseNote(name: "Ava") }
        let b = (0..<50).map { _ in second.caseNote(name: "Ava") }
        #expect(a == b)
        var other = CareNarrative(seed: 43)
        #expect((0..<50).map { _ in other.caseNote(name: "Ava") } != a)
    }

    @Test func notesVaryInWordsAndLength() {
        let seed: UInt64 = 7
        var narrative = CareNarrative(seed: seed)
        let notes = (0..<500).map { _ in narrative.caseNote(name: "Kai") }
        let sentences = notes.flatMap { $0.split(separator: ".").map { $0.trimmingPrefix(" ") } }
        let distinctSentences = Set(sentences).count
        let lengths = notes.map(\.utf8.count)
        // Printed so a failure can be replayed.
        #expect(Set(notes).count == notes.count, "seed \(seed): repeated notes")
        #expect(distinctSentences * 2 > sentences.count, "seed \(seed): \(distinctSentences) distinct of \(sentences.count) sentences")
        #expect(lengths.min()! >= 40 && lengths.max()! <= 2_000, "seed \(seed): lengths \(lengths.min()!)…\(lengths.max()!)")
        let mean = lengths.reduce(0, +) / lengths.count
        #expect((200...900).contains(mean), "seed \(seed): mean note length \(mean) bytes")
        #expect(notes.allSatisfy { $0.hasSuffix(".") && !$0.contains("{name}") && $0.first!.isUppercase }, "seed \(seed)")
    }
}
