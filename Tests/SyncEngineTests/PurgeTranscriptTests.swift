import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Purges in the session (Protocol/scope.md, "Purge"; session.md's rows on `purges` and purge-ack),
/// on both sides: the hub's welcome names what it owes, the client purges after pushing and before
/// pulling and acknowledges, the hub records it.
@Suite("Purge transcripts (Protocol/session.md: welcome purges, purge-ack)")
struct PurgeTranscriptTests {
    typealias F = ClientFixture

    // MARK: hub

    @Test("hub: the welcome carries the purges the store answered openSession with")
    func welcomeCarriesPurges() {
        var session = HubSession(hub: HubFixture.hub)
        _ = session.start(handshakeMillis: 10_000)
        _ = session.receive(HubFixture.hello(), nowMillis: HubFixture.now)
        _ = session.storageCompleted(.credential(.success(.device(.accepted(team: "T")))), nowMillis: HubFixture.now)
        let opening = SessionOpening(ownDurable: 0, hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16),
                                     certificate: nil, purges: ["p-1", "p-2"])
        let actions = session.storageCompleted(.opened(.success(opening)), nowMillis: HubFixture.now)
        guard case let .send(.welcome(welcome)) = actions.first else {
            Issue.record("expected a welcome, got \(actions)")
            return
        }
        #expect(welcome.purges == ["p-1", "p-2"])
    }

    @Test("hub: ready | purge-ack: recorded through the store, not answered")
    func purgeAckRecorded() {
        var session = HubFixture.ready()
        let actions = session.receive(.purgeAck(scopes: ["p-1"]), nowMillis: HubFixture.now)
        #expect(actions == [HubFixture.idle,
                            .store(.acknowledgePurges(scopes: ["p-1"], replica: HubFixture.replica, nowMillis: HubFixture.now))])
        #expect(!session.isAwaitingStorage, "a purge-ack expects no answer: the session goes on")
        #expect(session.state == .ready(replica: HubFixture.replica, team: "T"))
    }

    @Test("hub: awaiting-hello | purge-ack: UNEXPECTED_MESSAGE (fatal)")
    func purgeAckBeforeHello() {
        var session = HubSession(hub: HubFixture.hub)
        let actions = session.receive(.purgeAck(scopes: ["p-1"]), nowMillis: HubFixture.now)
        guard case .send(.error(.unexpectedMessage, true, _)) = actions.first else {
            Issue.record("expected UNEXPECTED_MESSAGE, got \(actions)")
            return
        }
        #expect(actions.last == .close)
    }

    @Test("hub with its store: the welcome names the purges owed; a purge-ack records them and they are owed no more; a scope not owed is ignored")
    func hubRecordsAcknowledgements() throws {
        let directory = TestFiles.directory("purge-hub")
        defer { TestFiles.remove(directory) }
        var random = SeededGenerator(seed: 11)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        defer { try? store.close() }
        let replica = ReplicaID(high: 6, low: 6)
        let now: UInt64 = 1_750_000_000_000
        let token = try store.issueEnrolmentToken(team: "T", replica: nil, expiresAtMillis: now + 60_000, random: &random)
        try store.owePurge("p-2", replicas: [replica], nowMillis: now)
        try store.owePurge("p-1", replicas: [replica], nowMillis: now)
        var session = InlineHubSession(store: store, random: RandomSource { 42 })
        let actions = session.receive(.hello(Hello(protocolMin: 4, protocolMax: 4, schemaVersion: 1, replica: replica, appVersion: "t",
                                                   credential: .enrolmentToken(token), maxFrameBody: 65_536,
                                                   deviceKey: TestSigner.publicKey(replica))), nowMillis: now)
        guard case let .send(.welcome(welcome)) = actions.first else {
            Issue.record("expected a welcome, got \(actions)")
            return
        }
        #expect(welcome.purges == ["p-1", "p-2"])
        #expect(session.receive(.purgeAck(scopes: ["p-1", "p-9"]), nowMillis: now + 1) == [], "not answered")
        #expect(try store.purgesOwed(replica: replica, limit: 10) == ["p-2"])
        let summary = try #require(try store.replicaSummaries().first { $0.replica == replica })
        #expect(summary.purgesOwed == 1 && summary.purgesAcknowledged == 1, "p-9 was never owed: ignored")
    }

    // MARK: client

    /// A replica holding rows of `scope` (its own, acknowledged by the hub) and of another scope.
    func replicaWithBundle(_ fixture: F, scope: String) throws {
        try fixture.store.write(author: "w") { tx in
            try tx.create("note", id: "n-a", values: ["text": .text("about them")], scope: scope)
            try tx.create("note", id: "n-b", values: ["text": .text("someone else")], scope: "p-other")
        }
        try fixture.store.recordHub(F.hub, address: "127.0.0.1:1", credential: nil)
        try fixture.store.recordPeerKnowledge(F.hub, VersionVector([fixture.own: 2]))
    }

    func row(_ fixture: F, _ id: String) throws -> [String: FieldValue]? {
        try fixture.store.read { try $0.row("note", id: id) }
    }

    static func welcome(purges: [String], ownDurable: UInt64 = 0) -> Message {
        .welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: F.hub, maxFrameBody: 65_536, issuedCredential: [],
                         hubTimeMillis: F.now, heartbeatIntervalMillis: 30_000, ownDurable: ownDurable, hubKey: F.hubKey.publicKey,
                         incarnation: F.incarnation, certificate: nil, purges: purges))
    }

    @Test("client: welcome with purges, nothing to push: purge, purge-ack naming the scopes purged, then the pull")
    func purgesBeforePulling() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try replicaWithBundle(fixture, scope: "p-gone")
        var session = fixture.started()
        let actions = session.receive(Self.welcome(purges: ["p-gone"], ownDurable: 2))
        #expect(actions == [.cancel(.handshake), fixture.heartbeat(), .send(.purgeAck(scopes: ["p-gone"]))] + F.review())
        #expect(session.summary.purged == 1 && session.summary.purgesWaiting == 0)
        #expect(try row(fixture, "n-a") == nil, "the bundle is gone")
        #expect(try row(fixture, "n-b") != nil, "another young person's rows stay")
    }

    @Test("client: own edits of the bundle are pushed first; the purge and its ack follow the push-ack, before the pull")
    func pushesBeforePurging() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try replicaWithBundle(fixture, scope: "p-gone")
        try fixture.store.write(author: "w") { tx in try tx.update("note", id: "n-a", values: ["text": .text("late edit")]) }
        var session = fixture.started()
        let welcomed = session.receive(Self.welcome(purges: ["p-gone"], ownDurable: 2))
        guard welcomed.count == 4, case let .send(.push(1, changes, _)) = welcomed[3] else {
            Issue.record("expected the push of the late edit first, got \(welcomed)")
            return
        }
        #expect(changes.map(\.id) == [ChangeID(replica: fixture.own, counter: 3)])
        #expect(try row(fixture, "n-a") != nil, "nothing is purged before its push is acknowledged")
        let acked = session.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 3]), hubHead: 3))
        #expect(acked == [.send(.purgeAck(scopes: ["p-gone"]))] + F.review())
        #expect(try row(fixture, "n-a") == nil)
    }

    @Test("client: a scope holding own changes the hub has not acknowledged is neither purged nor acknowledged; the others are")
    func unacknowledgedWaits() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try replicaWithBundle(fixture, scope: "p-gone")
        try fixture.store.write(author: "w") { tx in
            try tx.create("note", id: "n-c", values: ["text": .text("bye")], scope: "p-left")
            try tx.update("note", id: "n-a", values: ["text": .text("unsynced")])
        }
        // In a whole session every own change is pushed before the purge; a change can still be
        // unacknowledged there when another process wrote to the file after the last push-ack. A
        // client that pushes nothing stands in for that here.
        var configuration = ClientConfiguration()
        configuration.maxFrameBody = 65_536
        configuration.pushBatchChanges = 0
        var session = ClientSession(store: fixture.store, credential: .device([1]), configuration: configuration, random: RandomSource { 5 })
        _ = session.start()
        // The hub holds own changes 1 to 3 (n-c, scope p-left, is 3); 4 (n-a, scope p-gone) it lacks.
        try fixture.store.recordPeerKnowledge(F.hub, VersionVector([fixture.own: 3]))
        let actions = session.receive(Self.welcome(purges: ["p-gone", "p-left"], ownDurable: 3))
        #expect(actions == [.cancel(.handshake), fixture.heartbeat(pending: 1), .send(.purgeAck(scopes: ["p-left"]))] + F.review())
        #expect(try row(fixture, "n-a") != nil, "p-gone holds an unacknowledged own change: kept")
        #expect(try row(fixture, "n-c") == nil)
        #expect(session.summary.purged == 1 && session.summary.purgesWaiting == 1)
    }

    @Test("client: a welcome without purges sends no purge-ack")
    func noPurges() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = fixture.started()
        #expect(session.receive(Self.welcome(purges: [])) == [.cancel(.handshake), fixture.heartbeat()] + F.review())
        #expect(session.summary.purged == 0)
    }
}
