import SyncCore
import SyncTesting
import Testing

/// Provenance's encoding (Protocol/identity.md, "Messages in protocol version 3"): a list of heads,
/// then a list of certificates each in a `bytes`; strict in order, counts and lengths.
@Suite("Provenance: heads and certificates, strictly")
struct ProvenanceTests {
    static let r1 = ReplicaID(high: 0x8F3C_2A1B_4D5E_6F70, low: 0x8192_A3B4_C5D6_E7F8)
    static let r2 = ReplicaID(high: 0x1F2E_3D4C_5B6A_7988, low: 0x0796_A5B4_C3D2_E1F0)

    static func head(_ origin: ReplicaID, _ counter: UInt64, signer: HeadSigner = .origin) -> SignedHead {
        SignedHead(origin: origin, counter: counter, chain: [UInt8](repeating: UInt8(truncatingIfNeeded: counter), count: 32), signer: signer,
                   signature: [UInt8](repeating: 0x5A, count: 64))
    }

    static func certificate(_ replica: ReplicaID, team: String = "leeds-east", issued: UInt64 = 1_750_000_000_000) -> DeviceCertificate {
        DeviceCertificate(replica: replica, publicKey: [UInt8](repeating: 0xC3, count: 32), team: team, issuedAtMillis: issued,
                          attestedThrough: 0, signature: [UInt8](repeating: 0x77, count: 64))
    }

    static func encoded(_ provenance: Provenance) -> [UInt8] {
        var writer = ByteWriter()
        provenance.encode(into: &writer)
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(ByteDecodingError) -> Provenance {
        var reader = ByteReader(bytes)
        let provenance = try Provenance.decode(from: &reader)
        try reader.expectEnd()
        return provenance
    }

    /// Raw bytes of a list of heads and a list of certificates, in the order given (no checks).
    static func raw(heads: [SignedHead], certificates: [DeviceCertificate], certificateBytes: (DeviceCertificate) -> [UInt8] = { $0.encoded })
        -> [UInt8] {
        var writer = ByteWriter()
        writer.varint(UInt64(heads.count))
        for head in heads { head.encode(into: &writer) }
        writer.varint(UInt64(certificates.count))
        for certificate in certificates { writer.lengthPrefixed(certificateBytes(certificate)) }
        return writer.bytes
    }

    static func refusal(_ bytes: [UInt8]) throws -> ByteDecodingError {
        try #require(throws: ByteDecodingError.self) { try decode(bytes) }
    }

    @Test("none is two empty counts; heads and certificates round-trip, and encodedSize is the bytes written")
    func roundTrip() throws {
        #expect(Self.encoded(.none) == [0, 0])
        #expect(Provenance.none.encodedSize == 2)
        let provenance = Provenance(heads: [Self.head(Self.r2, 9), Self.head(Self.r2, 300, signer: .hubAttestation), Self.head(Self.r1, 42)],
                                    certificates: [Self.certificate(Self.r2), Self.certificate(Self.r1, team: "t", issued: 1 << 62)])
        let bytes = Self.encoded(provenance)
        #expect(bytes.count == provenance.encodedSize)
        #expect(try Self.decode(bytes) == provenance)
        // Each certificate travels in a `bytes`: its length, then exactly its encoding.
        let certificate = Self.certificate(Self.r2)
        #expect(certificate.encodedSize == certificate.encoded.count)
        var expected = ByteWriter()
        expected.raw([0, 1])
        expected.lengthPrefixed(certificate.encoded)
        #expect(Self.encoded(Provenance(heads: [], certificates: [certificate])) == expected.bytes)
    }

    @Test("a head of counter 0 or an unknown signer is refused where it stands")
    func headRefusals() throws {
        var zero = Self.raw(heads: [Self.head(Self.r1, 1)], certificates: [])
        zero[1 + 16] = 0   // the counter's one byte, after the count and the origin
        let counter = try Self.refusal(zero)
        #expect(counter.code == .invalidValue && counter.offset == 17 && counter.field == "head counter")

        var signer = Self.raw(heads: [Self.head(Self.r1, 1)], certificates: [])
        signer[1 + 16 + 1 + 32] = 2
        let unknown = try Self.refusal(signer)
        #expect(unknown.code == .invalidValue && unknown.offset == 50 && unknown.field == "head signer")

        let short = Array(Self.raw(heads: [Self.head(Self.r1, 1)], certificates: []).prefix(1 + SignedHead.minimumEncodedSize - 1))
        #expect(try Self.refusal(short).code == .limitExceeded, "one byte short of a head: the count cannot fit")
        // Counter 300 takes two bytes, so one byte short of this head still passes the count check.
        let cut = Array(Self.raw(heads: [Self.head(Self.r1, 300)], certificates: []).prefix(1 + SignedHead.minimumEncodedSize))
        #expect(try Self.refusal(cut).code == .truncated, "a signature cut short")
    }

    @Test("heads out of order, or twice, are refused, never sorted", arguments: [
        [(ProvenanceTests.r1, 5), (ProvenanceTests.r1, 4)], [(ProvenanceTests.r1, 1), (ProvenanceTests.r2, 1)],
        [(ProvenanceTests.r2, 3), (ProvenanceTests.r2, 3)],
    ] as [[(ReplicaID, UInt64)]])
    func headOrder(_ keys: [(ReplicaID, UInt64)]) throws {
        let heads = keys.map { Self.head($0.0, $0.1) }
        #expect(!Provenance.isAscending(heads))
        let error = try Self.refusal(Self.raw(heads: heads, certificates: []))
        #expect(error.code == .invalidValue && error.field == "heads")
        #expect(error.offset == 1 + SignedHead.minimumEncodedSize, "at the second head")
    }

    @Test("certificates out of order, twice, empty or not filling their bytes are refused")
    func certificateRefusals() throws {
        let outOfOrder = try Self.refusal(Self.raw(heads: [], certificates: [Self.certificate(Self.r1), Self.certificate(Self.r2)]))
        #expect(outOfOrder.code == .invalidValue && outOfOrder.field == "certificates")
        let twice = try Self.refusal(Self.raw(heads: [], certificates: [Self.certificate(Self.r2), Self.certificate(Self.r2)]))
        #expect(twice.code == .invalidValue && twice.field == "certificates")
        #expect(!Provenance.isAscending([Self.certificate(Self.r2), Self.certificate(Self.r2)]))

        let empty = try Self.refusal([0, 1, 0] + [UInt8](repeating: 0, count: DeviceCertificate.minimumEncodedSize))
        #expect(empty.code == .invalidValue && empty.offset == 2 && empty.field == "certificates")

        let padded = try Self.refusal(Self.raw(heads: [], certificates: [Self.certificate(Self.r2)]) { $0.encoded + [0] })
        #expect(padded.code == .invalidValue && padded.offset == 2, "a byte after the certificate inside its field")
        let shortField = Self.raw(heads: [], certificates: [Self.certificate(Self.r2)]) { Array($0.encoded.dropLast()) } + [0]
        #expect(try Self.refusal(shortField).code == .invalidValue, "a field one byte shorter than its certificate")

        let noTeam = try Self.refusal(Self.raw(heads: [], certificates: [Self.certificate(Self.r2)]) { certificate in
            var bytes = certificate.encoded
            bytes.replaceSubrange(48..<59, with: [0])   // team "leeds-east" (length 10) as the empty string
            return bytes
        })
        #expect(noTeam.code == .invalidValue && noTeam.field == "team")
    }

    @Test("a count that cannot fit in what is left is refused before anything is allocated")
    func countsThatCannotFit() throws {
        var heads = ByteWriter()
        heads.varint(1_000)
        heads.raw([UInt8](repeating: 0, count: SignedHead.minimumEncodedSize))
        let headCount = try Self.refusal(heads.bytes)
        #expect(headCount.code == .limitExceeded && headCount.offset == 0)

        var certificates = ByteWriter()
        certificates.varint(0)
        certificates.varint(2)
        certificates.lengthPrefixed(Self.certificate(Self.r2).encoded)
        let certificateCount = try Self.refusal(certificates.bytes)
        #expect(certificateCount.code == .limitExceeded && certificateCount.offset == 1)
    }

    @Test("property: decode(encode(p)) == p and encodedSize is exact, for random provenance")
    func randomRoundTrip() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("[ProvenanceTests.randomRoundTrip] \(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: seed))")
        var random = SeededGenerator(seed: seed)
        func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }
        func number() -> UInt64 {
            switch Int.random(in: 0..<3, using: &random) {
            case 0: UInt64.random(in: 1...127, using: &random)
            case 1: UInt64.max - UInt64.random(in: 0...1, using: &random)
            default: max(1, random.next() >> UInt64.random(in: 0...63, using: &random))
            }
        }
        func replica() -> ReplicaID { ReplicaID(high: UInt64.random(in: 0...3, using: &random), low: UInt64.random(in: 0...3, using: &random)) }
        for index in 0..<2_000 {
            var heads: [String: SignedHead] = [:]
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                let head = SignedHead(origin: replica(), counter: number(), chain: bytes(32),
                                      signer: HeadSigner.allCases.randomElement(using: &random)!, signature: bytes(64))
                heads["\(head.origin)/\(head.counter)"] = head
            }
            var certificates: [ReplicaID: DeviceCertificate] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &random) {
                let team = String(repeating: "é", count: Int.random(in: 1...70, using: &random))
                let certificate = DeviceCertificate(replica: replica(), publicKey: bytes(32), team: team, issuedAtMillis: number(),
                                                    attestedThrough: number() - 1, signature: bytes(64))
                certificates[certificate.replica] = certificate
            }
            let provenance = Provenance(heads: heads.values.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) },
                                        certificates: certificates.values.sorted { $0.replica < $1.replica })
            let encoded = Self.encoded(provenance)
            #expect(encoded.count == provenance.encodedSize, "seed \(SeededGenerator.spelling(of: seed)) case \(index): encodedSize")
            #expect(try Self.decode(encoded) == provenance, "seed \(SeededGenerator.spelling(of: seed)) case \(index): round trip")
        }
    }
}
