import Crypto
import Foundation
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// The hub store's part of Protocol/identity.md: verified appends, the device registry and its
/// certificates, attestations of a migrated protocol-2 hub, pages that end at valid cuts, the
/// hub's own signed origins and its incarnation.
@Suite("Hub store identity: verified runs, device registry, attestations, valid cuts, incarnation")
struct HubIdentityTests {
    static let a = ReplicaID(high: 0xA, low: 1)
    static let b = ReplicaID(high: 0xB, low: 2)
    static let stranger = ReplicaID(high: 0xE, low: 5)
    static let publisher = ReplicaID(high: 0, low: 0xCA7A_10)

    func openHub(_ path: String, seed: UInt64 = 1) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: seed)
        return try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random, hubKeyedOrigins: [Self.publisher])
    }

    /// A hub with `a` and `b` enrolled under their test keys.
    func enrolledHub() throws -> SQLiteHubStore {
        let hub = try openHub(TestFiles.directory() + "/hub.db")
        var random = SeededGenerator(seed: 2)
        try hub.enrolForTests([Self.a, Self.b], random: &random)
        return hub
    }

    func changes(_ origin: ReplicaID, _ counters: ClosedRange<UInt64>, text: String = "t") -> [Change] {
        counters.map { HubFixture.change(origin, $0, row: "\(origin.short)-\($0)", text: text) }
    }

    /// The hub's private key, read from its identity file (to forge what only the hub could sign).
    static func hubPrivateKey(_ database: String) throws -> SigningKey {
        try IdentityFile.readHub(at: IdentityFile.path(forStore: database), expecting: nil).hubKey
    }

    func refusal(_ body: () throws -> Void) -> StoreError.Code? {
        do {
            try body()
            return nil
        } catch {
            return (error as? StoreError)?.code
        }
    }

    @Test("a run under another device's origin, signed with the pusher's own key, is refused with SIGNATURE_INVALID; nothing is stored")
    func forgedOriginRefused() throws {
        let hub = try enrolledHub()
        var signer = TestSigner()
        // B writes changes as if A had made them, and signs with the only key it has: its own.
        let forged = changes(Self.a, 1...2)
        let heads = signer.heads(forged, key: TestSigner.key(Self.b))
        #expect(refusal { _ = try hub.append(forged, from: Self.b, heads: heads, receivedAtMillis: 1) } == .signatureInvalid)
        // With a good run of B's own in the same push: nothing of the push is stored.
        var fresh = TestSigner()
        let mixed = changes(Self.b, 1...1) + forged
        var mixedHeads = fresh.heads(Array(mixed.prefix(1)))
        mixedHeads += heads
        #expect(refusal { _ = try hub.append(mixed, from: Self.b, heads: mixedHeads, receivedAtMillis: 1) } == .signatureInvalid)
        #expect(try hub.head() == 0 && hub.ownDurable(Self.a) == 0 && hub.ownDurable(Self.b) == 0)
        // A's own key verifies the same changes.
        var own = TestSigner()
        #expect(try hub.signedAppend(forged, from: Self.a, signer: &own).durable[Self.a] == 2)
    }

    @Test("a change altered after signing and a head over other bytes are refused with SIGNATURE_INVALID, a reordered run with CHAIN_GAP")
    func alteredRunsRefused() throws {
        let hub = try enrolledHub()
        var signer = TestSigner()
        let run = changes(Self.a, 1...3)
        let heads = signer.heads(run)
        let altered = [run[0], HubFixture.change(Self.a, 2, row: "\(Self.a.short)-2", text: "edited"), run[2]]
        #expect(refusal { _ = try hub.append(altered, from: Self.a, heads: heads, receivedAtMillis: 1) } == .signatureInvalid)
        #expect(refusal { _ = try hub.append([run[1], run[0], run[2]], from: Self.a, heads: heads, receivedAtMillis: 1) } == .chainGap)
        var tampered = heads[0].signature
        tampered[0] ^= 1
        let badSignature = SignedHead(origin: Self.a, counter: 3, chain: heads[0].chain, signature: tampered)
        #expect(refusal { _ = try hub.append(run, from: Self.a, heads: [badSignature], receivedAtMillis: 1) } == .signatureInvalid)
        #expect(try hub.head() == 0)
        #expect(try hub.append(run, from: Self.a, heads: heads, receivedAtMillis: 1).stored == 3)
    }

    @Test("a run of an origin no device key is registered for is refused with UNKNOWN_DEVICE")
    func unknownDeviceRefused() throws {
        let hub = try enrolledHub()
        var signer = TestSigner()
        #expect(refusal { _ = try hub.signedAppend(changes(Self.stranger, 1...2), from: Self.a, signer: &signer) } == .unknownDevice)
        #expect(try hub.head() == 0)
    }

    @Test("a run that does not end at a head is UNSIGNED_CHANGES; one that starts above the hub's counter + 1 is CHAIN_GAP")
    func unsignedAndGapRefused() throws {
        let hub = try enrolledHub()
        var signer = TestSigner()
        let run = changes(Self.a, 1...4)
        let heads = signer.heads(run, alsoAt: [2])
        #expect(refusal { _ = try hub.append(run, from: Self.a, heads: [heads[0]], receivedAtMillis: 1) } == .unsignedChanges)
        #expect(refusal { _ = try hub.append(run, from: Self.a, heads: [], receivedAtMillis: 1) } == .unsignedChanges)
        _ = try hub.append(Array(run.prefix(2)), from: Self.a, heads: [heads[0]], receivedAtMillis: 1)
        // 4 alone: the hub holds 1…2, so chain(3) is unknown to it.
        #expect(refusal { _ = try hub.append([run[3]], from: Self.a, heads: [heads[1]], receivedAtMillis: 1) } == .chainGap)
        // 3…4 continues the chain; a replayed 1…2 with its head is only duplicates.
        #expect(try hub.append(Array(run.suffix(2)), from: Self.a, heads: [heads[1]], receivedAtMillis: 1).durable[Self.a] == 4)
        let replayed = try hub.append(Array(run.prefix(2)), from: Self.a, heads: [heads[0]], receivedAtMillis: 1)
        #expect(replayed.stored == 0 && replayed.duplicates == 2)
    }

    @Test("enrolment registers the device key and issues a certificate signed by the hub key; a key another replica holds is refused")
    func enrolmentIssuesCertificate() throws {
        let hub = try enrolledHub()
        let certificate = try #require(try hub.certificate(for: Self.a))
        #expect(certificate.replica == Self.a && certificate.publicKey == TestSigner.publicKey(Self.a) && certificate.team == "north")
        #expect(certificate.attestedThrough == 0 && certificate.issuedAtMillis == 1)
        let hubKey = try Curve25519.Signing.PublicKey(rawRepresentation: hub.hubKey)
        #expect(hubKey.isValidSignature(certificate.signature, for: certificate.signedBytes))
        var random = SeededGenerator(seed: 3)
        let token = try hub.issueEnrolmentToken(team: "north", expiresAtMillis: .max, random: &random)
        #expect(try hub.redeemEnrolmentToken(token, replica: Self.stranger, deviceKey: TestSigner.publicKey(Self.a), nowMillis: 2,
                                             random: &random) == .alreadyUsed)
        #expect(try hub.redeemEnrolmentToken(token, replica: Self.stranger, deviceKey: [1, 2, 3], nowMillis: 2, random: &random) == .alreadyUsed)
        // The catalogue's publisher is the hub key's alone.
        #expect(try hub.redeemEnrolmentToken(token, replica: Self.publisher, deviceKey: TestSigner.publicKey(Self.publisher), nowMillis: 2,
                                             random: &random) == .alreadyUsed)
        #expect(try hub.certificate(for: Self.stranger) == nil)
    }

    @Test("a revoked device's key is never accepted again: not at re-enrolment of its id, nor for another id; a new key is")
    func revokedKeyRefused() throws {
        let hub = try enrolledHub()
        #expect(try hub.revoke(replica: Self.a, nowMillis: 5))
        var random = SeededGenerator(seed: 4)
        let rebound = try hub.issueEnrolmentToken(team: "north", replica: Self.a, expiresAtMillis: .max, random: &random)
        #expect(try hub.redeemEnrolmentToken(rebound, replica: Self.a, deviceKey: TestSigner.publicKey(Self.a), nowMillis: 6,
                                             random: &random) == .alreadyUsed)
        let fresh = try hub.issueEnrolmentToken(team: "north", expiresAtMillis: .max, random: &random)
        #expect(try hub.redeemEnrolmentToken(fresh, replica: Self.stranger, deviceKey: TestSigner.publicKey(Self.a), nowMillis: 6,
                                             random: &random) == .alreadyUsed)
        guard case .enrolled = try hub.redeemEnrolmentToken(fresh, replica: Self.stranger, deviceKey: TestSigner.publicKey(Self.stranger),
                                                            nowMillis: 6, random: &random)
        else {
            Issue.record("a new identity with a new key was refused")
            return
        }
        // What A signed before its revocation still verifies when another replica relays it.
        var signer = TestSigner()
        #expect(try hub.signedAppend(changes(Self.a, 1...2), from: Self.b, signer: &signer).durable[Self.a] == 2)
    }

    @Test("authentication checks the registered device key; a protocol-2 replica registers one at its first hello, once")
    func authenticationChecksKey() throws {
        let path = TestFiles.directory() + "/hub.db"
        let hub = try openHub(path)
        var random = SeededGenerator(seed: 5)
        let token = try hub.issueEnrolmentToken(team: "north", expiresAtMillis: .max, random: &random)
        guard case let .enrolled(_, secret) = try hub.redeemEnrolmentToken(token, replica: Self.a, deviceKey: TestSigner.publicKey(Self.a),
                                                                           nowMillis: 1, random: &random)
        else {
            Issue.record("enrolment refused")
            return
        }
        #expect(try hub.authenticate(replica: Self.a, secret: secret, deviceKey: TestSigner.publicKey(Self.a), nowMillis: 2) == .accepted(team: "north"))
        #expect(try hub.authenticate(replica: Self.a, secret: secret, deviceKey: TestSigner.publicKey(Self.b), nowMillis: 2) == .unknown)
        // A replica enrolled before device keys: its row has a secret and no key.
        try HubFixture.sqlite(path, "UPDATE hub_replica SET public_key = NULL, certificate = NULL WHERE replica_id = '\(Self.a.hex)'")
        #expect(try hub.certificate(for: Self.a) == nil)
        #expect(try hub.authenticate(replica: Self.a, secret: secret, deviceKey: TestSigner.publicKey(Self.b), nowMillis: 3) == .accepted(team: "north"))
        #expect(try hub.certificate(for: Self.a)?.publicKey == TestSigner.publicKey(Self.b))
        #expect(try hub.authenticate(replica: Self.a, secret: secret, deviceKey: TestSigner.publicKey(Self.a), nowMillis: 4) == .unknown,
                "registered once: a second key is refused")
    }

    @Test("a fork registers the new identity's key and certificate; a revoked or taken key is refused")
    func forkRegistersKey() throws {
        let hub = try enrolledHub()
        var random = SeededGenerator(seed: 6)
        #expect(try hub.fork(Self.a, into: Self.stranger, deviceKey: TestSigner.publicKey(Self.b), nowMillis: 7, random: &random) == .idTaken)
        guard case .forked = try hub.fork(Self.a, into: Self.stranger, deviceKey: TestSigner.publicKey(Self.stranger), nowMillis: 7, random: &random)
        else {
            Issue.record("fork refused")
            return
        }
        let certificate = try #require(try hub.certificate(for: Self.stranger))
        #expect(certificate.publicKey == TestSigner.publicKey(Self.stranger) && certificate.issuedAtMillis == 7)
    }

    @Test("a protocol-2 hub is migrated with chains and hub attestations that verify, attested_through in the certificate, and pushes continue the chain")
    func migratedHubAttests() throws {
        let path = TestFiles.directory() + "/hub.db"
        let writes = (1...3).map { counter in
            FieldWrite(id: ChangeID(replica: HubStoreTests.a, counter: UInt64(counter)),
                       timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000, logical: UInt16(counter)), author: "ann",
                       operation: .assign(.text("x\(counter)")))
        }
        try HubStoreTests().legacyHub(at: path, rows: writes.enumerated().map { index, write in
            (index + 1, 1, write.id.counter, HubFixture.legacyBytes(table: "item", row: "r", column: "title", write: write))
        })
        // The legacy fixture says A's contiguous counter is 2; the hub holds 1…3.
        try HubFixture.sqlite(path, "UPDATE hub_origin SET contiguous = 3 WHERE id = 1")
        let hub = try openHub(path)
        let expected = writes.map { HubFixture.migrated(table: "item", row: "r", column: "title", write: $0) }
        let page = try HubFixture.all(hub)
        #expect(page.encoded == expected.map(\.canonicalBytes))
        var chain = TestSigner.genesis(HubStoreTests.a)
        for (change, head) in zip(expected, page.heads) {
            chain = TestSigner.next(chain, change.canonicalBytes)
            #expect(head.signer == .hubAttestation && head.chain == chain && TestSigner.verifies(head, publicKey: hub.hubKey))
        }
        #expect(page.heads.count == 3)
        // A's first hello with its secret registers its key; the certificate carries the attestation limit.
        try HubFixture.sqlite(path, "UPDATE hub_replica SET secret_hash = '\(Array(SHA256.hash(data: [7])).hexString)'")
        #expect(try hub.authenticate(replica: HubStoreTests.a, secret: [7], deviceKey: TestSigner.publicKey(HubStoreTests.a), nowMillis: 9)
            == .accepted(team: "north"))
        #expect(try hub.certificate(for: HubStoreTests.a)?.attestedThrough == 3)
        // A goes on signing from the migrated chain.
        var signer = TestSigner()
        _ = signer.heads(expected)
        let next = try hub.signedAppend([HubFixture.change(HubStoreTests.a, 4, row: "r4")], from: HubStoreTests.a, signer: &signer)
        #expect(next.durable[HubStoreTests.a] == 4)
        // A hub attestation is not accepted past the attested counter, even signed by the hub key.
        let pushed = HubFixture.change(HubStoreTests.a, 5, row: "r5")
        let chain5 = TestSigner.next(signer.chains[HubStoreTests.a]?.chain ?? [], pushed.canonicalBytes)
        let attestation = TestSigner.head(HubStoreTests.a, 5, chain: chain5, signer: .hubAttestation, key: try Self.hubPrivateKey(path))
        #expect(refusal { _ = try hub.append([pushed], from: HubStoreTests.a, heads: [attestation], receivedAtMillis: 1) } == .signatureInvalid)
        #expect(try hub.append([pushed], from: HubStoreTests.a, heads: [TestSigner.head(HubStoreTests.a, 5, chain: chain5)], receivedAtMillis: 1)
            .durable[HubStoreTests.a] == 5)
    }

    @Test("a protocol-2 row kept after a gap joins the log (chained, with a new sequence) when the gap is filled")
    func legacyRowAfterGapJoinsLater() throws {
        let path = TestFiles.directory() + "/hub.db"
        let writes = [1, 3].map { counter in
            FieldWrite(id: ChangeID(replica: HubStoreTests.a, counter: UInt64(counter)),
                       timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000, logical: UInt16(counter)), author: "ann",
                       operation: .assign(.text("x\(counter)")))
        }
        try HubStoreTests().legacyHub(at: path, rows: writes.enumerated().map { index, write in
            (index + 1, 1, write.id.counter, HubFixture.legacyBytes(table: "item", row: "r", column: "title", write: write))
        })
        try HubFixture.sqlite(path, "UPDATE hub_origin SET contiguous = 1 WHERE id = 1")
        let hub = try openHub(path)
        let migrated = writes.map { HubFixture.migrated(table: "item", row: "r", column: "title", write: $0) }
        #expect(try HubFixture.all(hub).encoded == [migrated[0].canonicalBytes], "A:3 is not part of A's log yet")
        try HubFixture.sqlite(path, "UPDATE hub_replica SET secret_hash = '\(Array(SHA256.hash(data: [7])).hexString)'")
        _ = try hub.authenticate(replica: HubStoreTests.a, secret: [7], deviceKey: TestSigner.publicKey(HubStoreTests.a), nowMillis: 9)
        var signer = TestSigner()
        _ = signer.heads([migrated[0]])
        let two = HubFixture.change(HubStoreTests.a, 2, row: "r2")
        #expect(try hub.signedAppend([two], from: HubStoreTests.a, signer: &signer).durable[HubStoreTests.a] == 2)
        // A re-pushes 3 (the hub never acknowledged it): held bytes, now chained and relayed after 2.
        let result = try hub.signedAppend([migrated[1]], from: HubStoreTests.a, signer: &signer)
        #expect(result.durable[HubStoreTests.a] == 3 && result.duplicates == 1)
        let page = try HubFixture.all(hub)
        #expect(page.encoded == [migrated[0], two, migrated[1]].map(\.canonicalBytes) && page.heads.map(\.counter) == [1, 2, 3])
    }

    @Test("the hub's own origins are published with hub-signed heads; a device's push under them is refused")
    func publishSignsWithHubKey() throws {
        let hub = try enrolledHub()
        let catalogue = (1...3).map { HubFixture.change(Self.publisher, $0, row: "cat-\($0)") }
        #expect(try hub.publish(catalogue, receivedAtMillis: 1).durable[Self.publisher] == 3)
        let page = try HubFixture.all(hub)
        #expect(page.heads.count == 1 && page.heads[0].counter == 3 && TestSigner.verifies(page.heads[0], publicKey: hub.hubKey))
        #expect(page.certificates.isEmpty, "hub-keyed origins need no certificate")
        var signer = TestSigner()
        _ = signer.heads(catalogue)
        let forged = [HubFixture.change(Self.publisher, 4, row: "cat-4")]
        #expect(refusal { _ = try hub.signedAppend(forged, from: Self.a, signer: &signer) } == .signatureInvalid)
        #expect(refusal { _ = try hub.publish(changes(Self.a, 1...1), receivedAtMillis: 1) } == .unknownDevice)
        #expect(try hub.publish([HubFixture.change(Self.publisher, 4, row: "cat-4")], receivedAtMillis: 2).durable[Self.publisher] == 4)
    }

    @Test("pull pages end at valid cuts, carry the heads inside them and their origins' certificates, and fit the budget when a cut allows")
    func pagesEndAtValidCuts() throws {
        let hub = try enrolledHub()
        var signer = TestSigner()
        // A:1…5 (head at 5), B:1…5 (heads at 2 and 5), A:6…10 (head at 10).
        _ = try hub.signedAppend(changes(Self.a, 1...5), from: Self.a, signer: &signer)
        let bRun = changes(Self.b, 1...5)
        _ = try hub.append(bRun, from: Self.b, heads: signer.heads(bRun, alsoAt: [2]), receivedAtMillis: 1)
        _ = try hub.signedAppend(changes(Self.a, 6...10), from: Self.a, signer: &signer)
        let size = changes(Self.a, 1...1)[0].canonicalBytes.count
        let viewer = ReplicaID(high: 9, low: 9)
        // A budget of one byte still gets to the first valid cut: A:5.
        let first = try hub.changes(after: 0, excludingOrigin: viewer, byteBudget: 1, maxCount: 1_000)
        #expect(first.encoded.count == 5 && first.nextCursor == 5 && first.more)
        #expect(first.heads.map(\.counter) == [5] && first.certificates.map(\.replica) == [Self.a])
        // Room for seven changes and their provenance: the cut at B:2 (seq 7) fits, the page ends there.
        let certificateBytes = try #require(try hub.certificate(for: Self.a)).encoded.count
        let budget = 7 * size + 2 * (SignedHead.minimumEncodedSize) + 2 * certificateBytes
        let second = try hub.changes(after: 0, excludingOrigin: viewer, byteBudget: budget, maxCount: 1_000)
        #expect(second.encoded.count == 7 && second.nextCursor == 7 && second.more)
        #expect(second.heads.map { "\($0.origin.short):\($0.counter)" } == ["\(Self.a.short):5", "\(Self.b.short):2"], "ascending by origin")
        let provenance = second.heads.count * SignedHead.minimumEncodedSize + second.certificates.map(\.encoded.count).reduce(0, +)
        #expect(second.bytes + provenance <= budget)
        // Room for nine: B:3 and B:4 would fit, but the page must end at a cut, B:2.
        let third = try hub.changes(after: 0, excludingOrigin: viewer, byteBudget: budget + 2 * size, maxCount: 1_000)
        #expect(third.encoded.count == 7 && third.nextCursor == 7 && third.more && third.heads.count == 2)
        // A's own pull skips its changes; B's run alone cuts at B:2 and B:5.
        let own = try hub.changes(after: 0, excludingOrigin: Self.a, byteBudget: 3 * size, maxCount: 1_000)
        #expect(own.encoded.count == 2 && own.heads.map(\.counter) == [2])
        // By count the same: maxCount 1 stops at the first cut.
        #expect(try hub.changes(after: 5, excludingOrigin: viewer, byteBudget: 1 << 20, maxCount: 1).encoded.count == 2)
        // The whole log: every head, both certificates.
        let all = try HubFixture.all(hub)
        #expect(all.encoded.count == 15 && !all.more && all.heads.count == 4 && Set(all.certificates.map(\.replica)) == [Self.a, Self.b])
        // A recovery ends at a head of the origin.
        let recovered = try hub.changes(ofOrigin: Self.b, after: 0, byteBudget: 1, maxCount: 10)
        #expect(recovered.encoded.count == 2 && recovered.nextCounter == 2 && recovered.more && recovered.heads.map(\.counter) == [2])
        #expect(recovered.certificates.map(\.replica) == [Self.b])
    }

    @Test("a hub store put back from an older copy takes a new incarnation at open; a store reopened as it was keeps its own")
    func restoredStoreGetsNewIncarnation() throws {
        let directory = TestFiles.directory()
        let path = directory + "/hub.db"
        var signer = TestSigner()
        var random = SeededGenerator(seed: 7)
        let created: [UInt8]
        do {
            let hub = try openHub(path)
            created = hub.incarnation
            #expect(created.count == 16 && !hub.renewedIncarnation)
            try hub.enrolForTests([Self.a], random: &random)
            _ = try hub.signedAppend(changes(Self.a, 1...2), from: Self.a, signer: &signer)
            try hub.close()
        }
        // The operator's backup: the closed file.
        try FileManager.default.copyItem(atPath: path, toPath: directory + "/backup.db")
        do {
            let hub = try openHub(path, seed: 9)
            #expect(hub.incarnation == created && !hub.renewedIncarnation, "reopened as it was")
            _ = try hub.signedAppend(changes(Self.a, 3...4), from: Self.a, signer: &signer)
            try hub.close()
        }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: directory + "/backup.db", toPath: path)
        let restored = try openHub(path, seed: 10)
        #expect(restored.renewedIncarnation && restored.incarnation != created && restored.incarnation.count == 16)
        #expect(try restored.head() == 2)
        try restored.close()
        let again = try openHub(path, seed: 11)
        #expect(again.incarnation == restored.incarnation && !again.renewedIncarnation, "the new incarnation is kept")
        #expect(try SQLiteHubStore(readingAt: path).incarnation == restored.incarnation)
    }

    @Test("the hub key lives in <hub.db>.identity (0600) beside the store; another hub's identity file is refused")
    func hubKeyFile() throws {
        let directory = TestFiles.directory()
        let hub = try openHub(directory + "/hub.db")
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/hub.db.identity")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let key = hub.hubKey
        try hub.close()
        #expect(try openHub(directory + "/hub.db", seed: 5).hubKey == key, "loaded at open, not made again")
        _ = try openHub(directory + "/other.db", seed: 6)
        try FileManager.default.removeItem(atPath: directory + "/hub.db.identity")
        try FileManager.default.copyItem(atPath: directory + "/other.db.identity", toPath: directory + "/hub.db.identity")
        #expect(#expect(throws: StoreError.self) { try openHub(directory + "/hub.db", seed: 7) }?.code == .identityMismatch)
        try FileManager.default.removeItem(atPath: directory + "/hub.db.identity")
        #expect(#expect(throws: StoreError.self) { try openHub(directory + "/hub.db", seed: 8) }?.code == .identityMissing,
                "a hub whose key file is gone is not given a new key")
    }
}
