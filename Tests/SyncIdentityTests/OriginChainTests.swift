import SyncCore
import SyncIdentity
import Testing

@Suite("SyncIdentity: chains, keys, heads, certificates, checkpoints")
struct OriginChainTests {
    static let origin = ReplicaID(hex: "000102030405060708090a0b0c0d0e0f")!

    // python3: import hashlib; o = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    //   g = hashlib.sha256(b"caresync/origin-log/v1" + o).hexdigest()
    //   hashlib.sha256(bytes.fromhex(g) + b"abc").hexdigest()
    @Test("genesis and next match SHA-256 computed independently (Python hashlib)")
    func vectors() {
        let genesis = OriginChain.genesis(of: Self.origin)
        #expect(hex(genesis) == "1d63e61dd877b606b0a8b7b3317b8113b73a9c553a3fce19ad7ce2d5cc343fe9")
        #expect(hex(OriginChain.next(after: genesis, canonicalBytes: Array("abc".utf8)))
                == "1f902030b13003d2840500bd62dfc5c3b2e4fdacb773410b422e17c1c38e0940")
    }

    @Test("a seeded generator makes the same key; its raw representation round-trips; a wrong length is refused")
    func keys() throws {
        let first = key(seed: 1)
        #expect(first.publicKey == key(seed: 1).publicKey)
        #expect(first.publicKey != key(seed: 2).publicKey)
        #expect(first.publicKey.count == 32 && first.rawRepresentation.count == 32)
        #expect(try SigningKey(rawRepresentation: first.rawRepresentation).publicKey == first.publicKey)
        #expect(identityError { _ = try SigningKey(rawRepresentation: [1, 2, 3]) }?.code == .keyUnreadable)
    }

    @Test("a head verifies with its key only; any altered field is refused")
    func heads() {
        let signer = key(seed: 3)
        let chain = OriginChain.genesis(of: Self.origin)
        let head = signer.head(origin: Self.origin, counter: 7, chain: chain)
        #expect(head.verifies(with: signer.publicKey))
        #expect(!head.verifies(with: key(seed: 4).publicKey))
        let altered = [
            SignedHead(origin: ReplicaID(high: 1, low: 1), counter: 7, chain: chain, signature: head.signature),
            SignedHead(origin: Self.origin, counter: 8, chain: chain, signature: head.signature),
            SignedHead(origin: Self.origin, counter: 7, chain: [UInt8](repeating: 0, count: 32), signature: head.signature),
            SignedHead(origin: Self.origin, counter: 7, chain: chain, signer: .hubAttestation, signature: head.signature),
            SignedHead(origin: Self.origin, counter: 7, chain: chain, signature: head.signature.map { $0 ^ 1 }),
        ]
        for head in altered { #expect(!head.verifies(with: signer.publicKey)) }
        #expect(!head.verifies(with: [1, 2, 3]), "a key of the wrong size does not verify")
    }

    @Test("a certificate verifies with the hub key only; any altered field is refused")
    func certificates() {
        let hub = key(seed: 5)
        let device = key(seed: 6)
        let certificate = hub.certificate(replica: Self.origin, publicKey: device.publicKey, team: "north", issuedAtMillis: 1_700, attestedThrough: 3)
        #expect(certificate.verifies(with: hub.publicKey))
        #expect(!certificate.verifies(with: device.publicKey))
        let s = certificate.signature
        let altered = [
            DeviceCertificate(replica: ReplicaID(high: 9, low: 9), publicKey: device.publicKey, team: "north", issuedAtMillis: 1_700, attestedThrough: 3, signature: s),
            DeviceCertificate(replica: Self.origin, publicKey: hub.publicKey, team: "north", issuedAtMillis: 1_700, attestedThrough: 3, signature: s),
            DeviceCertificate(replica: Self.origin, publicKey: device.publicKey, team: "south", issuedAtMillis: 1_700, attestedThrough: 3, signature: s),
            DeviceCertificate(replica: Self.origin, publicKey: device.publicKey, team: "north", issuedAtMillis: 1_701, attestedThrough: 3, signature: s),
            DeviceCertificate(replica: Self.origin, publicKey: device.publicKey, team: "north", issuedAtMillis: 1_700, attestedThrough: 4, signature: s),
        ]
        for certificate in altered { #expect(!certificate.verifies(with: hub.publicKey)) }
    }

    @Test("checkpoints: the previous change is one when the next would pass 16,384 bytes since the last")
    func checkpoints() {
        #expect(!Checkpoints.previousIsCheckpoint(bytesSinceCheckpoint: 0, nextChangeSize: 20_000), "nothing since: no empty span")
        #expect(!Checkpoints.previousIsCheckpoint(bytesSinceCheckpoint: 16_000, nextChangeSize: 384), "exactly 16,384 fits")
        #expect(Checkpoints.previousIsCheckpoint(bytesSinceCheckpoint: 16_000, nextChangeSize: 385))
        #expect(Checkpoints.bytesSinceCheckpoint(after: 16_000, nextChangeSize: 385) == 385)
        #expect(Checkpoints.bytesSinceCheckpoint(after: 16_000, nextChangeSize: 384) == 16_384)
        #expect(Checkpoints.indices(sizes: [10_000, 6_384, 1, 20_000, 5]) == [1, 2, 3])
        // Every span between checkpoints is at most 16,384 bytes or one change.
        var random = SplitMix(seed: 0xC0FFEE)
        let sizes = (0..<2_000).map { _ in 25 + random.index(below: random.coin() ? 200 : 9_000) }
        var start = 0
        for end in Checkpoints.indices(sizes: sizes) + [sizes.count - 1] {
            let span = sizes[start...end].reduce(0, +)
            #expect(span <= Checkpoints.span || end == start, "seed 0xC0FFEE: span \(start)…\(end) is \(span) bytes")
            start = end + 1
        }
    }
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
