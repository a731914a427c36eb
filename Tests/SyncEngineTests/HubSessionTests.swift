import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The hub's session state machine without a network: what it accepts, refuses and stores.
@Suite("Hub session")
struct HubSessionTests {
    let directory = TestFiles.directory("hubsession")

    func readySession(_ store: SQLiteHubStore, replica: ReplicaID, now: UInt64) throws -> InlineHubSession {
        var random = SeededGenerator(seed: 7)
        let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: now + 60_000, random: &random)
        var session = InlineHubSession(store: store, random: RandomSource { 42 })
        let actions = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "test",
                                                   credential: .enrolmentToken(token), maxFrameBody: 65_536, deviceKey: TestSigner.publicKey(replica))), nowMillis: now)
        guard case .send(.welcome) = actions.first else {
            Issue.record("expected a welcome, got \(actions)")
            return session
        }
        return session
    }

    func change(_ replica: ReplicaID, _ counter: UInt64, now: UInt64, causalLength: UInt64 = 1, ahead: UInt64 = 0) -> Change {
        Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
            id: ChangeID(replica: replica, counter: counter), timestamp: HybridTimestamp(physicalMillis: now + ahead, logical: 0),
            causalLength: causalLength, author: "w", operation: .assign(.text("x"))))
    }

    @Test("a push is acknowledged with the contiguous durable counter; a re-sent batch stores nothing new")
    func pushAndResend() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 1)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let replica = ReplicaID(high: 5, low: 5)
        let now: UInt64 = 1_750_000_000_000
        var session = try readySession(store, replica: replica, now: now)
        let batch = (1...3).map { change(replica, $0, now: now) }
        var signer = TestSigner()
        let heads = Provenance(heads: signer.heads(batch))
        let first = session.receive(.push(batch: 1, changes: batch, provenance: heads), nowMillis: now)
        #expect(first == [.send(.pushAck(batch: 1, durable: VersionVector([replica: 3]), hubHead: 3))])
        let again = session.receive(.push(batch: 2, changes: batch, provenance: heads), nowMillis: now)
        #expect(again == [.send(.pushAck(batch: 2, durable: VersionVector([replica: 3]), hubHead: 3))])
        // Out-of-order batch numbers are a protocol error.
        let wrong = session.receive(.push(batch: 7, changes: [], provenance: .none), nowMillis: now)
        guard case .send(.error(.unexpectedMessage, true, _)) = wrong.first else {
            Issue.record("expected UNEXPECTED_MESSAGE, got \(wrong)")
            return
        }
    }

    @Test("changes no replica could apply are refused before they are stored")
    func poisonRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 2)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let replica = ReplicaID(high: 6, low: 6)
        let now: UInt64 = 1_750_000_000_000
        var session = try readySession(store, replica: replica, now: now)
        let skewed = session.receive(.push(batch: 1, changes: [change(replica, 1, now: now, ahead: 10 * 60_000)], provenance: .none), nowMillis: now)
        guard case .send(.error(.clockSkew, false, _)) = skewed.first else {
            Issue.record("expected a non-fatal CLOCK_SKEW, got \(skewed)")
            return
        }
        let impossible = session.receive(.push(batch: 2, changes: [change(replica, 1, now: now, causalLength: .max)], provenance: .none), nowMillis: now)
        guard case .send(.error(.malformedMessage, true, _)) = impossible.first else {
            Issue.record("expected MALFORMED_MESSAGE, got \(impossible)")
            return
        }
        #expect(try store.head() == 0, "nothing was stored")
    }

    @Test("before the hello only a hello is accepted; a revoked device is refused, though it presents its right secret")
    func handshakeRules() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 3)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        var session = InlineHubSession(store: store, random: RandomSource { 1 })
        let early = session.receive(.pull(cursor: 0, byteBudget: 1024), nowMillis: 0)
        #expect(early == [.send(.error(code: .unexpectedMessage, fatal: true, message: "expected hello, got pull")), .close])
        let replica = ReplicaID(high: 7, low: 7)
        let secret = try Self.enrol(store, replica: replica, now: 1_000)
        func hello() -> [SessionAction] {
            var again = InlineHubSession(store: store, random: RandomSource { 1 })
            return again.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
                                              credential: .device(secret), maxFrameBody: 65_536, deviceKey: TestSigner.publicKey(replica))), nowMillis: 3_000)
        }
        // The control: the same hello is welcomed before the revocation.
        guard case .send(.welcome) = hello().first else {
            Issue.record("the right secret was refused before any revocation")
            return
        }
        #expect(try store.revoke(replica: replica, nowMillis: 2_000))
        let refused = hello()
        guard case let .send(.reject(.authenticationFailed, _, text)) = refused.first else {
            Issue.record("expected AUTHENTICATION_FAILED, got \(refused)")
            return
        }
        #expect(text.contains("revoked"), "refused because of the revocation: \(text)")
    }

    @Test("a hello of protocol version 1, 2 or 3 (no purges) is rejected UNSUPPORTED_VERSION, naming both versions; 3 to 4 is welcomed with 4")
    func versionOneRejected() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 4)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let replica = ReplicaID(high: 8, low: 8)
        let secret = try Self.enrol(store, replica: replica, now: 1_000)
        func hello(_ min: UInt64, _ max: UInt64) -> [SessionAction] {
            var session = InlineHubSession(store: store, random: RandomSource { 1 })
            // A device key is carried only by a hello offering version 3.
            return session.receive(.hello(Hello(protocolMin: min, protocolMax: max, schemaVersion: 1, replica: replica, appVersion: "caresync/0.4.0",
                                                credential: .device(secret), maxFrameBody: 65_536,
                                                deviceKey: max >= 3 ? TestSigner.publicKey(replica) : [])), nowMillis: 2_000)
        }
        for version in [1, 2, 3] as [UInt64] {
            let old = hello(version, version)
            guard case let .send(.reject(.unsupportedVersion, retryAfter, text)) = old.first else {
                Issue.record("expected UNSUPPORTED_VERSION for version \(version), got \(old)")
                return
            }
            #expect(old.last == .close)
            #expect(retryAfter == 0, "an old client must be updated, not retried")
            #expect(text == "this hub speaks protocol version 4 only; the client offered \(version) to \(version): update the client")
            #expect(text.utf8.count <= 256)
        }
        guard case let .send(.welcome(welcome)) = hello(3, 4).first else {
            Issue.record("a client speaking 3 to 4 was refused")
            return
        }
        #expect(welcome.protocolVersion == 4)
    }

    @Test("the welcome carries the hub key, its incarnation and the replica's certificate for the key its enrolment registered")
    func welcomeCarriesIdentity() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 21)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let replica = ReplicaID(high: 5, low: 9)
        var session = InlineHubSession(store: store, random: RandomSource { 42 })
        let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: 70_000, random: &random)
        let actions = session.receive(.hello(Self.hello(replica, .enrolmentToken(token))), nowMillis: 1_000)
        guard case let .send(.welcome(welcome))? = actions.first else { throw Refused(actions: actions) }
        #expect(welcome.hubKey == store.hubKey && welcome.incarnation == store.incarnation)
        let certificate = try #require(welcome.certificate)
        #expect(certificate.replica == replica && certificate.publicKey == TestSigner.publicKey(replica) && certificate.verifies(with: store.hubKey))
    }

    @Test("a device-secret hello with another key than the registered one, or a TLS certificate's key other than the hello's: AUTHENTICATION_FAILED")
    func deviceKeyChecked() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 22)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let replica = ReplicaID(high: 7, low: 9)
        let secret = try Self.enrol(store, replica: replica, now: 1_000)
        let stranger = TestSigner.publicKey(ReplicaID(high: 1, low: 2))
        var wrongKey = InlineHubSession(store: store, random: RandomSource { 1 })
        guard case .send(.reject(.authenticationFailed, _, _))? = wrongKey.receive(.hello(Self.hello(replica, .device(secret), key: stranger)),
                                                                                   nowMillis: 2_000).first else {
            Issue.record("a hello with another device key was not refused")
            return
        }
        var tls = HubSession(hub: store.hubID)
        tls.tlsDeviceKey = stranger
        let refused = tls.receive(.hello(Self.hello(replica, .device(secret))), nowMillis: 2_000)
        guard case .send(.reject(.authenticationFailed, _, _)) = refused.dropFirst().first else {
            Issue.record("a hello naming another key than its TLS certificate's was not refused: \(refused)")
            return
        }
        var matching = HubSession(hub: store.hubID)
        matching.tlsDeviceKey = TestSigner.publicKey(replica)
        #expect(matching.receive(.hello(Self.hello(replica, .device(secret))), nowMillis: 2_000).contains {
            if case .store(.checkCredential) = $0 { true } else { false }
        }, "the control: the certificate's key is the hello's")
    }

    @Test("a push that does not verify is refused fatal with its code and nothing is stored: unsigned, forged origin, forged author, chain gap")
    func unverifiedPushRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 23)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let now: UInt64 = 1_750_000_000_000
        let mallory = ReplicaID(high: 6, low: 1), victim = ReplicaID(high: 6, low: 2), stranger = ReplicaID(high: 6, low: 3)
        let victimToken = try store.issueEnrolmentToken(team: "T", expiresAtMillis: now + 60_000, random: &random)
        _ = try store.redeemEnrolmentToken(victimToken, replica: victim, deviceKey: TestSigner.publicKey(victim), nowMillis: now, random: &random)
        let secret = try Self.enrol(store, replica: mallory, now: now)
        func session() throws -> InlineHubSession {
            var session = InlineHubSession(store: store, random: RandomSource { 42 })
            let actions = session.receive(.hello(Self.hello(mallory, .device(secret))), nowMillis: now)
            guard case .send(.welcome)? = actions.first else { throw Refused(actions: actions) }
            return session
        }
        let own = (1...2).map { change(mallory, $0, now: now) }
        var signer = TestSigner()
        let ownHeads = signer.heads(own)
        var earlySigner = TestSigner()
        let early = earlySigner.heads(own, alsoAt: [1]).filter { $0.counter == 1 }
        var forgedAuthor = own
        forgedAuthor[1] = Change(id: own[1].id, timestamp: own[1].timestamp, author: "someone.else", table: own[1].table, row: own[1].row,
                                 causalLength: own[1].causalLength, fields: own[1].fields)
        // Under the victim's origin, signed by mallory's own key; and under an origin the hub has no key for.
        let asVictim = (1...2).map { change(victim, $0, now: now) }
        var forger = TestSigner()
        let asStranger = [change(stranger, 1, now: now)]
        var strangerSigner = TestSigner()
        let cases: [(String, [Change], Provenance, WireError.Code)] = [
            ("no heads", own, Provenance.none, .unsignedChanges),
            ("a head before the run's end", own, Provenance(heads: early), .unsignedChanges),
            ("forged author", forgedAuthor, Provenance(heads: ownHeads), .signatureInvalid),
            ("forged origin", asVictim, Provenance(heads: forger.heads(asVictim, key: TestSigner.key(mallory))), .signatureInvalid),
            ("unknown origin", asStranger, Provenance(heads: strangerSigner.heads(asStranger)), .unknownDevice),
            ("chain gap", [own[1]], Provenance(heads: [ownHeads[ownHeads.count - 1]]), .chainGap),
        ]
        for (name, changes, provenance, code) in cases {
            var session = try session()
            let actions = session.receive(.push(batch: 1, changes: changes, provenance: provenance), nowMillis: now)
            guard case let .send(.error(sent, true, _))? = actions.first, actions.last == .close else {
                Issue.record("\(name): expected a fatal \(code.name), got \(actions)")
                continue
            }
            #expect(sent == code, "\(name)")
        }
        #expect(try store.head() == 0, "nothing of a refused push was stored")
        // The control: the same push, signed by mallory for mallory's own origin, is stored.
        var control = try session()
        #expect(control.receive(.push(batch: 1, changes: own, provenance: Provenance(heads: ownHeads)), nowMillis: now)
            == [.send(.pushAck(batch: 1, durable: VersionVector([mallory: 2]), hubHead: 2))])
    }

    static func hello(_ replica: ReplicaID, _ credential: Credential, key: [UInt8]? = nil) -> Hello {
        Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
              credential: credential, maxFrameBody: 65_536, deviceKey: key ?? TestSigner.publicKey(replica))
    }

    /// Enrols `replica` with a fresh token and returns its issued secret; the session then sends
    /// a heartbeat, as a client does after storing the secret.
    static func enrol(_ store: SQLiteHubStore, replica: ReplicaID, now: UInt64, team: String = "T") throws -> [UInt8] {
        var random = SeededGenerator(seed: 11)
        let token = try store.issueEnrolmentToken(team: team, expiresAtMillis: now + 60_000, random: &random)
        var session = InlineHubSession(store: store, random: RandomSource { UInt64.random(in: 0 ... .max) })
        let actions = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "test",
                                                   credential: .enrolmentToken(token), maxFrameBody: 65_536, deviceKey: TestSigner.publicKey(replica))), nowMillis: now)
        guard case let .send(.welcome(welcome)) = actions.first else { throw HubSessionTests.Refused(actions: actions) }
        _ = session.receive(.heartbeat(ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1)), nowMillis: now)
        return welcome.issuedCredential
    }

    struct Refused: Error { let actions: [SessionAction] }
}
