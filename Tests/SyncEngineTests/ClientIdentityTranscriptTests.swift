import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The client's part of device identity (Protocol/identity.md): the hub key pinned at the first
/// welcome, a changed incarnation, and batches that do not verify.
@Suite("Client session transcripts: device identity")
struct ClientIdentityTranscriptTests {
    typealias F = ClientFixture

    @Test("awaiting-welcome | welcome: the hub key is pinned and the certificate kept; a later welcome with another key: HUB_KEY_CHANGED (fatal, not retried), nothing stored")
    func hubKeyPinned() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = try #require(fixture.store.signingKey).publicKey
        var first = fixture.started()
        _ = first.receive(F.welcome(issued: [7], certificate: F.certificate(fixture.own, key: own)))
        #expect(first.failure == nil)
        #expect(try fixture.store.pinnedHubKey() == F.hubKey.publicKey)
        #expect(try fixture.store.certificate(for: fixture.own)?.publicKey == own)
        let other = TestSigner.key(ReplicaID(high: 8, low: 8)).publicKey
        var second = fixture.started()
        let actions = second.receive(F.welcome(issued: [9, 9], hubKey: other))
        #expect(F.fatal(.hubKeyChanged, actions), "\(actions)")
        #expect(second.failure?.code == .hubKeyChanged && second.failure?.retryable == false)
        #expect(try fixture.store.pinnedHubKey() == F.hubKey.publicKey, "the pin stays")
        #expect(try fixture.store.hubLink()?.credential == [7], "the other hub's secret is not kept")
    }

    @Test("awaiting-welcome | a certificate for another key, or not signed by the welcome's hub key: SIGNATURE_INVALID (fatal), nothing pinned")
    func ownCertificateChecked() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = try #require(fixture.store.signingKey).publicKey
        let forged = TestSigner.key(ReplicaID(high: 8, low: 8)).certificate(replica: fixture.own, publicKey: own, team: "T",
                                                                          issuedAtMillis: F.now, attestedThrough: 0)
        for certificate in [F.certificate(fixture.own), forged] {
            var session = fixture.started()
            #expect(F.fatal(.signatureInvalid, session.receive(F.welcome(certificate: certificate))))
        }
        #expect(try fixture.store.pinnedHubKey() == nil)
    }

    @Test("welcome | another incarnation than the one recorded: pull cursor 0, and every change the hub does not show it holds is pushed again, other origins' included")
    func incarnationChanged() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let other = ReplicaID(high: 4, low: 4)
        try fixture.edit("n1")
        var session = fixture.started()
        let pushed = session.receive(F.welcome())
        guard case let .send(.push(_, own, _))? = pushed.last else { throw SyncFailure(.unexpectedMessage, "no push: \(pushed)") }
        _ = session.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 1]), hubHead: 1))
        _ = session.receive(F.noneHeld)
        var signer = TestSigner()
        let relayed = [F.change(other, 1)]
        _ = session.receive(.batch(nextCursor: 5, more: false, changes: relayed, provenance: F.signed(relayed, &signer)))
        #expect(session.state == .done)
        #expect(try fixture.store.hubLink()?.pullCursor == 5)
        #expect(try fixture.store.incarnation() == F.incarnation)
        // The same hub, restored from a backup: a new incarnation, and it lost everything.
        let restored = [UInt8](repeating: 2, count: 16)
        var again = fixture.started()
        let actions = again.receive(F.welcome(ownDurable: 0, incarnation: restored))
        let all = own + relayed
        let provenance = try fixture.store.provenance(for: all)
        // Pending: both changes, as far as this replica now knows the hub.
        #expect(actions == [.cancel(.handshake), fixture.heartbeat(pending: 2), F.request,
                            .send(.push(batch: 1, changes: all, provenance: provenance))], "\(actions)")
        #expect(try fixture.store.hubLink()?.pullCursor == 0, "the restored hub's sequence numbers name other changes")
        #expect(try fixture.store.incarnation() == restored)
        // The same incarnation again: nothing is reset.
        _ = again.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 1, other: 1]), hubHead: 2))
        var third = fixture.started()
        #expect(third.receive(F.welcome(ownDurable: 1, incarnation: restored)) == [.cancel(.handshake), fixture.heartbeat()] + F.review())
    }

    @Test("pulling | a batch that does not verify: its code (SIGNATURE_INVALID, UNSIGNED_CHANGES, UNKNOWN_DEVICE, CHAIN_GAP) sent fatal, nothing applied, the cursor kept")
    func unverifiedBatchRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let other = ReplicaID(high: 4, low: 4)
        let changes = [F.change(other, 1), F.change(other, 2)]
        var signer = TestSigner()
        let good = F.signed(changes, &signer)
        var forger = TestSigner()
        // Signed by a key the hub never vouched for other with (a forged origin).
        let forged = Provenance(heads: forger.heads(changes, key: TestSigner.key(ReplicaID(high: 8, low: 8))), certificates: good.certificates)
        // A changed author under a head signed for the original bytes (a forged author).
        var authored = changes
        authored[1] = Change(id: changes[1].id, timestamp: changes[1].timestamp, author: "mallory", table: changes[1].table, row: changes[1].row,
                             scope: changes[1].scope, causalLength: changes[1].causalLength, setsLife: changes[1].setsLife, fields: changes[1].fields)
        var gapSigner = TestSigner()
        let gap = [F.change(other, 2)]
        let cases: [(String, [Change], Provenance, WireError.Code)] = [
            ("forged origin", changes, forged, .signatureInvalid),
            ("forged author", authored, good, .signatureInvalid),
            ("no head (a truncated run)", changes, Provenance(certificates: good.certificates), .unsignedChanges),
            ("no key for the origin", changes, Provenance(heads: good.heads), .unknownDevice),
            ("a run above the held log", gap, Provenance(heads: [TestSigner.key(other).head(origin: other, counter: 2,
                                                                                            chain: gapSigner.heads(changes).last!.chain)],
                                                         certificates: good.certificates), .chainGap),
        ]
        for (name, batch, provenance, code) in cases {
            var (session, _) = fixture.welcomed()
            let actions = session.receive(.batch(nextCursor: 2, more: false, changes: batch, provenance: provenance))
            #expect(F.fatal(code, actions), "\(name): \(actions)")
            #expect(session.failure?.code == code && session.failure?.retryable == false, "\(name)")
        }
        #expect(try fixture.store.changes(notIn: VersionVector()).isEmpty, "nothing applied")
        #expect(try fixture.store.hubLink()?.pullCursor == 0)
        // The control: the same batch, signed, applies; replayed, it is idempotent.
        for _ in 0..<2 {
            var (session, _) = fixture.welcomed()
            _ = session.receive(.batch(nextCursor: 2, more: false, changes: changes, provenance: good))
            #expect(session.state == .done)
        }
        #expect(try fixture.store.changes(notIn: VersionVector()).count == 2)
    }
}
