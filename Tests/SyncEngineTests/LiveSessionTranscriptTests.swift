import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// A client staying connected (Protocol/session.md, client rows "idle"): after a round it waits in
/// `idle`, heartbeating, and pushes and pulls again on new local changes or when it is time to
/// pull again, on the same session.
@Suite("Client session transcripts: staying connected (Protocol/session.md, \"idle\")")
struct LiveSessionTranscriptTests {
    typealias F = ClientFixture
    static let interval: UInt64 = 5_000

    /// A session staying connected, welcomed, its first round's review answered (nothing held), its pull out.
    static func welcomed(_ fixture: F) -> ClientSession {
        var configuration = ClientConfiguration()
        configuration.maxFrameBody = 65_536
        configuration.staysConnected = true
        configuration.pullIntervalMillis = interval
        var session = ClientSession(store: fixture.store, credential: .device([1]), configuration: configuration, random: RandomSource { 5 })
        _ = session.start()
        _ = session.receive(F.welcome())
        if case .reviewing = session.state { _ = session.receive(F.noneHeld) }
        return session
    }

    /// What entering idle sends and starts: no answer is due, a heartbeat, then its two deadlines.
    static func enteredIdle(_ fixture: F, pending: UInt64 = 0) -> [SessionAction] {
        [.cancel(.request), fixture.heartbeat(pending: pending), .schedule(.heartbeat, afterMillis: 30_000),
         .schedule(.pullAgain, afterMillis: interval)]
    }

    static let leftIdle: [SessionAction] = [.cancel(.heartbeat), .cancel(.pullAgain)]

    @Test("pulling | batch with more = 0, staying connected: idle, the request deadline cancelled, a heartbeat, the heartbeat and pull-again deadlines; no goodbye")
    func caughtUpStaysConnected() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = Self.welcomed(fixture)
        #expect(session.receive(.batch(nextCursor: 3, more: false, changes: [], provenance: .none)) == Self.enteredIdle(fixture))
        #expect(session.state == .idle && !session.isFinished && session.roundsFinished == 1)
    }

    @Test("idle | staying connected: new local changes (syncAgain): pushing on the same session, then the review, then pulling from the cursor, then idle again")
    func newLocalChanges() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = Self.welcomed(fixture)
        _ = session.receive(.batch(nextCursor: 3, more: false, changes: [], provenance: .none))
        try fixture.edit("n1")
        let changes = try fixture.store.changes(notIn: VersionVector())
        #expect(session.syncAgain() == Self.leftIdle + [F.request, .send(.push(batch: 1, changes: changes,
                                                                                  provenance: try fixture.store.provenance(for: changes)))])
        #expect(session.state == .pushing(batch: 1, until: [fixture.own: 1]))
        #expect(session.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 1]), hubHead: 4)) == F.review())
        #expect(session.receive(F.noneHeld) == F.pull(3))
        #expect(session.receive(.batch(nextCursor: 4, more: false, changes: [], provenance: .none)) == Self.enteredIdle(fixture))
        #expect(session.roundsFinished == 2 && session.summary.pushed == 1)
        // The next round's push is batch 2: batch numbers run on through the session.
        try fixture.edit("n2")
        let second = try #require(session.syncAgain().last)
        guard case let .send(.push(batch, _, _)) = second else { Issue.record("expected a push, got \(second)"); return }
        #expect(batch == 2)
    }

    @Test("idle | staying connected: time to pull again (the pull-again deadline), nothing to push: the review, then pull from the cursor")
    func timeToPullAgain() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = Self.welcomed(fixture)
        _ = session.receive(.batch(nextCursor: 7, more: false, changes: [], provenance: .none))
        #expect(session.timerFired(.pullAgain) == Self.leftIdle + F.review())
        #expect(session.receive(F.noneHeld) == F.pull(7))
        #expect(session.state == .pulling(cursor: 7))
        // Outside idle a pull-again or heartbeat deadline raced its cancellation: ignored.
        #expect(session.timerFired(.pullAgain).isEmpty && session.timerFired(.heartbeat).isEmpty)
        #expect(session.syncAgain().isEmpty && session.finish().isEmpty, "mid-round, neither starts a round nor says goodbye")
        #expect(session.state == .pulling(cursor: 7))
    }

    @Test("idle | staying connected: heartbeat_interval_ms elapsed: heartbeat, the deadline again; the request and handshake deadlines are not running")
    func heartbeatInIdle() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = Self.welcomed(fixture)
        _ = session.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))
        try fixture.edit("n1")
        #expect(session.timerFired(.heartbeat) == [fixture.heartbeat(pending: 1), .schedule(.heartbeat, afterMillis: 30_000)])
        #expect(session.timerFired(.request).isEmpty && session.timerFired(.handshake).isEmpty)
        #expect(session.state == .idle)
    }

    @Test("idle | done (finish): goodbye (reason 0), close; the idle deadlines cancelled")
    func finishFromIdle() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = Self.welcomed(fixture)
        _ = session.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))
        #expect(session.finish() == Self.leftIdle + [.send(.goodbye(reason: 0)), .close])
        #expect(session.state == .done && session.failure == nil)
        #expect(session.syncAgain().isEmpty && session.timerFired(.heartbeat).isEmpty)
    }

    @Test("any | in idle, a batch or push-ack (no request awaited): UNEXPECTED_MESSAGE (fatal), close; a goodbye from the hub: close")
    func unexpectedInIdle() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var batch = Self.welcomed(fixture)
        _ = batch.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))
        #expect(F.fatal(.unexpectedMessage, batch.receive(.batch(nextCursor: 2, more: false, changes: [], provenance: .none))))
        var ack = Self.welcomed(fixture)
        _ = ack.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))
        #expect(F.fatal(.unexpectedMessage, ack.receive(.pushAck(batch: 1, durable: VersionVector(), hubHead: 1))))
        var ended = Self.welcomed(fixture)
        _ = ended.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))
        #expect(ended.receive(.goodbye(reason: 1)) == [.close])
        #expect(ended.failure?.code == .shuttingDown)
    }
}
