import SyncCore
import SyncIdentity
import SyncTesting
import Testing

@Suite("SyncIdentity: verifying part of an origin's log, runs after a gap with anchors (Protocol/scope.md)")
struct AnchorTests {
    static let hub = RunVerifierTests.hub
    static let alice = RunVerifierTests.alice

    /// Alice's log of nine changes and a ledger that knows her key (attestations up to `attestedThrough`) and holds nothing.
    static func setup(attestedThrough: UInt64 = 0) -> (TestLog, MemoryLedger) {
        let (log, _, ledger) = RunVerifierTests.setup(count: 9, attestedThrough: attestedThrough)
        return (log, ledger)
    }

    var verifier: RunVerifier { RunVerifier(hubKey: Self.hub.publicKey) }

    @Test("two runs of one origin with a gap: the second starts from an origin-signed anchor, which is kept for relaying")
    func originAnchor() throws {
        var (log, ledger) = Self.setup()
        let changes = log.run(1...3) + log.run(7...9)
        let verified = try verifier.verify(changes, Provenance(heads: [log.head(at: 3), log.head(at: 6), log.head(at: 9)]), ledger)
        #expect(verified.chains == Array(log.chains[0..<3] + log.chains[6..<9]))
        #expect(verified.isNew == Array(repeating: true, count: 6))
        #expect(verified.heads == [log.head(at: 3), log.head(at: 6), log.head(at: 9)])
        // The runs are verified on their own: the first still needs its own end head.
        let unsigned = identityError { _ = try verifier.verify(changes, Provenance(heads: [log.head(at: 6), log.head(at: 9)]), ledger) }
        #expect(unsigned?.code == .unsignedChanges && unsigned?.counter == 3)
        ledger.keep(changes, verified)
        // Held now: a replay is all held, and the gap is filled from the held chain(3).
        #expect(try verifier.verify(log.run(7...9), Provenance(heads: [log.head(at: 6), log.head(at: 9)]), ledger).isNew == [false, false, false])
        #expect(try verifier.verify(log.run(4...6), Provenance(heads: [log.head(at: 6)]), ledger).chains == Array(log.chains[3..<6]))
    }

    @Test("a hub attestation anchors a run at any counter (beyond attested_through), and is not kept; the end head must still be the origin's")
    func attestationAnchor() throws {
        let (log, ledger) = Self.setup(attestedThrough: 2)
        let attested = log.head(at: 6, signer: .hubAttestation, by: Self.hub)
        let verified = try verifier.verify(log.run(7...9), Provenance(heads: [attested, log.head(at: 9)]), ledger)
        #expect(verified.chains == Array(log.chains[6..<9]))
        #expect(verified.heads == [log.head(at: 9)])
        // An anchor does not lift attested_through for the run's own heads.
        let endAttested = identityError {
            _ = try verifier.verify(log.run(7...9), Provenance(heads: [attested, log.head(at: 9, signer: .hubAttestation, by: Self.hub)]), ledger)
        }
        #expect(endAttested?.code == .signatureInvalid && endAttested?.counter == 9)
        // Without a pinned hub key an attestation anchors nothing.
        let unpinned = identityError { _ = try RunVerifier(hubKey: nil).verify(log.run(7...9), Provenance(heads: [attested, log.head(at: 9)]), ledger) }
        #expect(unpinned?.code == .signatureInvalid && unpinned?.counter == 6)
    }

    @Test("an anchor signed over a wrong chain verifies itself, but the run then fails at its end head")
    func wrongChain() {
        let (log, ledger) = Self.setup()
        for signer in [(HeadSigner.origin, log.key), (.hubAttestation, Self.hub)] {
            let lying = signer.1.head(origin: Self.alice, counter: 6, chain: log.chains[4], signer: signer.0)
            let error = identityError { _ = try verifier.verify(log.run(7...9), Provenance(heads: [lying, log.head(at: 9)]), ledger) }
            #expect(error?.code == .signatureInvalid && error?.counter == 9, "signer \(signer.0)")
        }
    }

    @Test("an anchor signed by another key is SIGNATURE_INVALID at the anchor's counter")
    func anchorByAnotherKey() {
        let (log, ledger) = Self.setup()
        let forger = key(seed: 666)
        for anchor in [log.head(at: 6, by: forger), log.head(at: 6, signer: .hubAttestation, by: forger), log.head(at: 6, signer: .hubAttestation)] {
            let error = identityError { _ = try verifier.verify(log.run(7...9), Provenance(heads: [anchor, log.head(at: 9)]), ledger) }
            #expect(error?.code == .signatureInvalid && error?.counter == 6)
        }
    }

    @Test("a held chain wins over an anchor: a mismatching, forged anchor is neither checked nor kept")
    func heldChainWins() throws {
        var (log, ledger) = Self.setup()
        ledger.hold(log, through: 6)
        let forged = key(seed: 666).head(origin: Self.alice, counter: 6, chain: log.chains[0])
        let verified = try verifier.verify(log.run(7...9), Provenance(heads: [forged, log.head(at: 9)]), ledger)
        #expect(verified.chains == Array(log.chains[6..<9]))
        #expect(verified.heads == [log.head(at: 9)])
    }

    @Test("no held chain and no anchor is CHAIN_GAP, after another run in the message or alone")
    func noAnchor() {
        let (log, ledger) = Self.setup()
        let alone = identityError { _ = try verifier.verify(log.run(7...9), Provenance(heads: [log.head(at: 9)]), ledger) }
        #expect(alone?.code == .chainGap && alone?.counter == 7 && alone?.expectedCounter == nil)
        // An anchor at another counter anchors nothing.
        let elsewhere = identityError { _ = try verifier.verify(log.run(7...9), Provenance(heads: [log.head(at: 5), log.head(at: 9)]), ledger) }
        #expect(elsewhere?.code == .chainGap && elsewhere?.counter == 7)
        let after = identityError {
            _ = try verifier.verify(log.run(1...3) + log.run(7...9), Provenance(heads: [log.head(at: 3), log.head(at: 9)]), ledger)
        }
        #expect(after?.code == .chainGap && after?.counter == 7 && after?.expectedCounter == 4)
    }

    @Test("a forged run after a genuine anchor (the hub's bytes passed off as the origin's) fails at its end head")
    func forgedRunGenuineAnchor() {
        let (log, ledger) = Self.setup()
        var forged = log.run(7...9)
        forged[1] = TestLog.change(origin: Self.alice, counter: 8, text: "not what alice wrote")
        for anchor in [log.head(at: 6), log.head(at: 6, signer: .hubAttestation, by: Self.hub)] {
            let error = identityError { _ = try verifier.verify(forged, Provenance(heads: [anchor, log.head(at: 9)]), ledger) }
            #expect(error?.code == .signatureInvalid && error?.counter == 9)
        }
    }
}

extension AnchorTests {
    @Test("filling a gap below a held segment: the new changes must lead to the held chain, or the run is SIGNATURE_INVALID there")
    func fillingAGap() throws {
        var (log, ledger) = Self.setup()
        let segments = log.run(1...3) + log.run(7...9)
        ledger.keep(segments, try verifier.verify(segments, Provenance(heads: [log.head(at: 3), log.head(at: 6), log.head(at: 9)]), ledger))
        var forged = log.run(4...9)
        forged[1] = TestLog.change(origin: Self.alice, counter: 5, text: "not what alice wrote")
        let error = identityError { _ = try verifier.verify(forged, Provenance(heads: [log.head(at: 9)]), ledger) }
        #expect(error?.code == .signatureInvalid && error?.counter == 7)
        let filled = try verifier.verify(log.run(4...9), Provenance(heads: [log.head(at: 9)]), ledger)
        #expect(filled.chains == Array(log.chains[3..<9]))
        #expect(filled.isNew == [true, true, true, false, false, false])
    }
}

extension AnchorTests {
    @Test("TestSigner signs boundary heads on request: at every change followed by its origin's next in another scope")
    func testSignerBoundaries() throws {
        let changes = ["A", "A", "B", "A"].enumerated().map { index, scope in
            let plain = TestLog.change(origin: Self.alice, counter: UInt64(index + 1), text: "visit \(index + 1)")
            return Change(id: plain.id, timestamp: plain.timestamp, author: plain.author, table: plain.table, row: plain.row, scope: scope,
                          causalLength: plain.causalLength, setsLife: plain.setsLife, fields: plain.fields)
        }
        var plain = TestSigner()
        #expect(plain.heads(changes).map(\.counter) == [4])
        var signer = TestSigner()
        let heads = signer.heads(changes, atBoundaries: true)
        #expect(heads.map(\.counter) == [2, 3, 4])
        // They verify as the runs a team replica receives: 1–2, and 4 anchored at 3.
        var ledger = MemoryLedger()
        ledger.keys[Self.alice] = OriginKey(publicKey: TestSigner.publicKey(Self.alice))
        _ = try verifier.verify([changes[0], changes[1], changes[3]], Provenance(heads: heads), ledger)
    }
}
