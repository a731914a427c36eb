import SyncCore
import SyncIdentity
import SyncTesting
import Testing

@Suite("SyncIdentity: verifying a run of changes (Protocol/identity.md)")
struct RunVerifierTests {
    static let hub = key(seed: 100)
    static let alice = ReplicaID(high: 0xA11CE, low: 1)
    static let bob = ReplicaID(high: 0xB0B, low: 2)

    /// Alice's log of `count` changes, her certificate, and a ledger that knows her key.
    static func setup(count: Int = 5, attestedThrough: UInt64 = 0) -> (TestLog, DeviceCertificate, MemoryLedger) {
        var log = TestLog(origin: alice, key: key(seed: 101))
        for index in 1...count { log.append("visit \(index)") }
        let certificate = hub.certificate(replica: alice, publicKey: log.key.publicKey, team: "north", issuedAtMillis: 1, attestedThrough: attestedThrough)
        var ledger = MemoryLedger()
        ledger.keys[alice] = OriginKey(certificate: certificate)
        return (log, certificate, ledger)
    }

    var verifier: RunVerifier { RunVerifier(hubKey: Self.hub.publicKey) }

    @Test("a run from 1 with a head at its end verifies; the chains are returned; a replay is all held")
    func accepts() throws {
        var (log, _, ledger) = Self.setup()
        let verified = try verifier.verify(log.run(1...3), Provenance(heads: [log.head(at: 2), log.head(at: 3)]), ledger)
        #expect(verified.chains == Array(log.chains[0..<3]))
        #expect(verified.isNew == [true, true, true])
        #expect(verified.heads.map(\.counter) == [2, 3])
        ledger.keep(log.run(1...3), verified)
        // The next run continues from the held chain(3).
        let next = try verifier.verify(log.run(4...5), Provenance(heads: [log.head(at: 5)]), ledger)
        #expect(next.chains == Array(log.chains[3..<5]))
        // A replayed old batch repeats held changes: idempotent.
        let replay = try verifier.verify(log.run(2...3), Provenance(heads: [log.head(at: 3)]), ledger)
        #expect(replay.isNew == [false, false])
        #expect(replay.chains == Array(log.chains[1..<3]))
    }

    @Test("a forged origin (heads signed by another key) is SIGNATURE_INVALID")
    func forgedOrigin() {
        let (log, _, ledger) = Self.setup()
        let forger = key(seed: 666)
        let error = identityError { _ = try verifier.verify(log.run(1...3), Provenance(heads: [log.head(at: 3, by: forger)]), ledger) }
        #expect(error?.code == .signatureInvalid)
        #expect(error?.origin == Self.alice && error?.counter == 3)
    }

    @Test("an altered author (inside the signed bytes) is SIGNATURE_INVALID")
    func alteredAuthor() {
        let (log, _, ledger) = Self.setup()
        var changes = log.run(1...3)
        changes[1] = TestLog.change(origin: Self.alice, counter: 2, text: "visit 2", author: "someone.else")
        let error = identityError { _ = try verifier.verify(changes, Provenance(heads: [log.head(at: 3)]), ledger) }
        #expect(error?.code == .signatureInvalid)
    }

    @Test("contents reordered under the same ids are SIGNATURE_INVALID")
    func reorderedContents() {
        let (log, _, ledger) = Self.setup()
        let original = log.run(1...3)
        let swapped = [original[0], TestLog.change(origin: Self.alice, counter: 2, text: "visit 3"),
                       TestLog.change(origin: Self.alice, counter: 3, text: "visit 2")]
        #expect(identityError { _ = try verifier.verify(swapped, Provenance(heads: [log.head(at: 3)]), ledger) }?.code == .signatureInvalid)
    }

    @Test("changes out of counter order, a counter twice, or one skipped without an anchor are CHAIN_GAP with the counter expected")
    func reorderedAndGaps() throws {
        let (log, _, ledger) = Self.setup()
        let changes = log.run(1...3)
        let reordered = identityError { _ = try verifier.verify([changes[0], changes[2], changes[1]], Provenance(heads: [log.head(at: 3)]), ledger) }
        #expect(reordered?.code == .chainGap && reordered?.counter == 2 && reordered?.expectedCounter == 4)
        let twice = identityError { _ = try verifier.verify([changes[0], changes[1], changes[1]], Provenance(heads: [log.head(at: 2)]), ledger) }
        #expect(twice?.code == .chainGap && twice?.counter == 2 && twice?.expectedCounter == 3)
        let skipped = identityError { _ = try verifier.verify([changes[0], changes[2]], Provenance(heads: [log.head(at: 3)]), ledger) }
        #expect(skipped?.code == .chainGap && skipped?.expectedCounter == 2)
        // A run starting past what is held: the sender must start lower.
        let late = identityError { _ = try verifier.verify(log.run(3...4), Provenance(heads: [log.head(at: 4)]), ledger) }
        #expect(late?.code == .chainGap && late?.counter == 3)
    }

    @Test("a truncated run (not ending at a head) is UNSIGNED_CHANGES; a head inside that does not match is SIGNATURE_INVALID")
    func truncated() {
        let (log, _, ledger) = Self.setup()
        let truncated = identityError { _ = try verifier.verify(log.run(1...2), Provenance(heads: [log.head(at: 3)]), ledger) }
        #expect(truncated?.code == .unsignedChanges && truncated?.counter == 2)
        #expect(identityError { _ = try verifier.verify(log.run(1...3), .none, ledger) }?.code == .unsignedChanges)
        // A head inside the run whose chain is not the computed one.
        let wrong = SignedHead(origin: Self.alice, counter: 2, chain: log.chains[0], signature: log.head(at: 2).signature)
        let inside = identityError { _ = try verifier.verify(log.run(1...3), Provenance(heads: [wrong, log.head(at: 3)]), ledger) }
        #expect(inside?.code == .signatureInvalid && inside?.counter == 2)
    }

    @Test("no key and no certificate is UNKNOWN_DEVICE; a certificate in the message supplies the key; a forged one is SIGNATURE_INVALID")
    func certificatesInTheMessage() throws {
        let (log, certificate, _) = Self.setup()
        let empty = MemoryLedger()
        let unknown = identityError { _ = try verifier.verify(log.run(1...2), Provenance(heads: [log.head(at: 2)]), empty) }
        #expect(unknown?.code == .unknownDevice && unknown?.origin == Self.alice)
        let verified = try verifier.verify(log.run(1...2), Provenance(heads: [log.head(at: 2)], certificates: [certificate]), empty)
        #expect(verified.certificates == [certificate])
        // A certificate the hub did not sign (a replica vouching for its own forged key).
        let forger = key(seed: 666)
        let forged = forger.certificate(replica: Self.alice, publicKey: forger.publicKey, team: "north", issuedAtMillis: 1)
        let forgedHead = log.head(at: 2, by: forger)
        let error = identityError { _ = try verifier.verify(log.run(1...2), Provenance(heads: [forgedHead], certificates: [forged]), empty) }
        #expect(error?.code == .signatureInvalid && error?.origin == Self.alice)
        // Without a pinned hub key no certificate is usable.
        let unpinned = identityError {
            _ = try RunVerifier(hubKey: nil).verify(log.run(1...2), Provenance(heads: [log.head(at: 2)], certificates: [certificate]), empty)
        }
        #expect(unpinned?.code == .unknownDevice)
    }

    @Test("hub attestations (signer 1) verify with the hub key only, and only up to attested_through")
    func attestations() throws {
        let (log, _, ledger) = Self.setup(attestedThrough: 3)
        let attested = try verifier.verify(log.run(1...3), Provenance(heads: [log.head(at: 3, signer: .hubAttestation, by: Self.hub)]), ledger)
        #expect(attested.heads.map(\.signer) == [.hubAttestation])
        let beyond = identityError { _ = try verifier.verify(log.run(1...4), Provenance(heads: [log.head(at: 4, signer: .hubAttestation, by: Self.hub)]), ledger) }
        #expect(beyond?.code == .signatureInvalid && beyond?.counter == 4)
        let byDevice = identityError { _ = try verifier.verify(log.run(1...3), Provenance(heads: [log.head(at: 3, signer: .hubAttestation)]), ledger) }
        #expect(byDevice?.code == .signatureInvalid, "an attestation signed by the device's key is no attestation")
    }

    @Test("a hub-keyed origin's heads verify with the hub key")
    func hubKeyed() throws {
        var log = TestLog(origin: Self.bob, key: Self.hub)
        log.append("catalogue v1")
        var ledger = MemoryLedger()
        ledger.keys[Self.bob] = OriginKey(publicKey: Self.hub.publicKey, isHubKey: true)
        _ = try verifier.verify(log.run(1...1), Provenance(heads: [log.head(at: 1)]), ledger)
        let forged = identityError { _ = try verifier.verify(log.run(1...1), Provenance(heads: [log.head(at: 1, by: key(seed: 7))]), ledger) }
        #expect(forged?.code == .signatureInvalid)
    }

    @Test("another signed version of a held change is an EQUIVOCATION with both digests and both heads")
    func equivocation() throws {
        var (log, _, ledger) = Self.setup()
        let held = try verifier.verify(log.run(1...3), Provenance(heads: [log.head(at: 3)]), ledger)
        ledger.keep(log.run(1...3), held)
        // A clone of alice, same key, writes its own change 2 and 3.
        var clone = TestLog(origin: Self.alice, key: log.key)
        clone.append("visit 1")
        clone.append("other visit 2")
        clone.append("other visit 3")
        let error = identityError { _ = try verifier.verify(clone.run(1...3), Provenance(heads: [clone.head(at: 3)]), ledger) }
        #expect(error?.code == .equivocation && error?.counter == 2)
        let evidence = try #require(error?.evidence)
        #expect(evidence.change == ChangeID(replica: Self.alice, counter: 2))
        #expect(evidence.heldDigest == OriginChain.digest(of: log.changes[1].canonicalBytes))
        #expect(evidence.receivedDigest == OriginChain.digest(of: clone.changes[1].canonicalBytes))
        #expect(evidence.heldHead == log.head(at: 3))
        #expect(evidence.receivedHead == clone.head(at: 3))
        // Other bytes without a head that verifies are a forgery, not an equivocation.
        let unsigned = identityError { _ = try verifier.verify(clone.run(1...3), Provenance(heads: [log.head(at: 3)]), ledger) }
        #expect(unsigned?.code == .signatureInvalid)
    }

    @Test("interleaved origins in one batch verify per origin")
    func interleaved() throws {
        var (alice, aliceCertificate, ledger) = Self.setup(count: 2)
        var bob = TestLog(origin: Self.bob, key: key(seed: 102))
        bob.append("b1")
        bob.append("b2")
        ledger.keys[Self.bob] = OriginKey(publicKey: bob.key.publicKey)
        let batch = [alice.changes[0], bob.changes[0], alice.changes[1], bob.changes[1]]
        let verified = try verifier.verify(batch, Provenance(sorting: [alice.head(at: 2), bob.head(at: 2)], certificates: [aliceCertificate]), ledger)
        #expect(verified.chains == [alice.chains[0], bob.chains[0], alice.chains[1], bob.chains[1]])
        alice.append("a3")
        _ = alice
    }

    @Test("property: any run cut at a head verifies; flipping any byte of any change or head is refused")
    func property() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("RunVerifierTests.property seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        for round in 0..<20 {
            var log = TestLog(origin: Self.alice, key: key(seed: 101))
            let count = 1 + random.index(below: 12)
            for index in 0..<count { log.append("note \(round).\(index) " + String(repeating: "x", count: random.index(below: 50))) }
            var ledger = MemoryLedger()
            ledger.keys[Self.alice] = OriginKey(publicKey: log.key.publicKey)
            var held: UInt64 = 0
            while held < UInt64(count) {
                let end = held + 1 + UInt64(random.index(below: count - Int(held)))
                let run = log.run(held + 1...end)
                let heads = (held + 1...end).filter { $0 == end || random.coin() }.map { log.head(at: $0) }
                if random.index(below: 4) == 0 {
                    // Tamper with one change: the run must be refused.
                    var tampered = run
                    let victim = random.index(below: run.count)
                    tampered[victim] = TestLog.change(origin: Self.alice, counter: run[victim].id.counter, text: "tampered")
                    let error = identityError { _ = try verifier.verify(tampered, Provenance(heads: heads), ledger) }
                    #expect(error?.code == .signatureInvalid, "seed \(seed): a tampered change was accepted")
                }
                let verified = try verifier.verify(run, Provenance(heads: heads), ledger)
                #expect(verified.chains == Array(log.chains[Int(held)..<Int(end)]), "seed \(seed)")
                ledger.keep(run, verified)
                held = end
            }
        }
    }
}
