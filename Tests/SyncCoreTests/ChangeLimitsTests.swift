import SyncCore
import Testing

@Suite("Change limits: the one range check")
struct ChangeLimitsTests {
    static let origin = ReplicaID(high: 7, low: 9)

    static func change(counter: UInt64 = 1, causalLength: UInt64 = 1, superseding: UInt64? = nil) -> Change {
        Change(id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: 1_700_000_000_000, logical: 0),
               author: "w", table: "goal", row: "g1", causalLength: causalLength,
               fields: [FieldEdit(column: "statement", operation: .assign(.integer(1)),
                                  supersedes: superseding.map { [ChangeID(replica: origin, counter: $0)] } ?? [])])
    }

    @Test("counters, superseded counters and causal lengths up to 2^63 - 1 fit; one more is refused (the store relies on this alone)")
    func rangeBoundary() {
        let top = UInt64(Int64.max)
        #expect(ChangeLimits.rangeViolation(of: Self.change(counter: top, causalLength: top, superseding: top)) == nil)
        #expect(ChangeLimits.rangeViolation(of: Self.change(causalLength: top + 1)) != nil)
        #expect(ChangeLimits.rangeViolation(of: Self.change(causalLength: .max)) != nil)
        #expect(ChangeLimits.rangeViolation(of: Self.change(counter: top + 1)) != nil)
        #expect(ChangeLimits.rangeViolation(of: Self.change(superseding: top + 1)) != nil)
    }
}

@Suite("Change(canonicalBytes:): the public decoder")
struct CanonicalBytesTests {
    @Test("canonical bytes decode to the same change; a cut or a trailing byte is refused at its offset")
    func roundTrip() throws {
        let change = ChangeLimitsTests.change(counter: 3, causalLength: 1, superseding: 2)
        #expect(try Change(canonicalBytes: change.canonicalBytes) == change)
        #expect(throws: ByteDecodingError(.trailingBytes, offset: change.canonicalBytes.count, "1 unexpected trailing bytes")) {
            try Change(canonicalBytes: change.canonicalBytes + [0])
        }
        let cut = try #require(throws: ByteDecodingError.self) { try Change(canonicalBytes: [0x00]) }
        #expect(cut.code == .truncated && cut.offset == 1)
    }
}
