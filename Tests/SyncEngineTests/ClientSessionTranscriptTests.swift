import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// A fresh replica file and the hub's side of the conversation, for client transcripts: each test
/// feeds a `ClientSession` what a hub would send and checks the exact actions that come out,
/// row by row of Protocol/session.md's client table.
struct ClientFixture {
    static let now: UInt64 = 1_750_000_000_000
    static let hub = ReplicaID(high: 9, low: 9)
    /// The hub's key: welcomes carry its public half, certificates are signed with it.
    static let hubKey = TestSigner.key(hub)
    static let incarnation = [UInt8](repeating: 1, count: 16)
    static let budget = ClientConfiguration().pullBudget
    static let request = SessionAction.schedule(.request, afterMillis: ProtocolConstants.responseMillis)

    let directory = NSTemporaryDirectory() + "caresync-client-transcript-" + UUID().uuidString
    let store: ReplicaStore
    var own: ReplicaID { store.replicaID }

    init(replica: ReplicaID = ReplicaID(high: 3, low: 3)) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: replica,
                                        name: "r", wallClock: FixedWallClock(millis: Self.now))
        // A replica syncs with an address: its hub link (secret, cursor, forked_from) is kept with it.
        try store.setHubAddress("127.0.0.1:1")
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// A started session: the hello is out, the handshake deadline running.
    func started(maxFrameBody: Int = 65_536, random: RandomSource = RandomSource { 5 }) -> ClientSession {
        var configuration = ClientConfiguration()
        configuration.maxFrameBody = maxFrameBody
        var session = ClientSession(store: store, credential: .device([1]), configuration: configuration, random: random)
        _ = session.start()
        return session
    }

    /// A session past the welcome, its first request out (the actions that followed the welcome
    /// are returned with it). A review (nothing to push) is answered with nothing held, so the
    /// session is pulling then, and the actions end with the review's and the pull's.
    func welcomed(ownDurable: UInt64 = 0) -> (ClientSession, [SessionAction]) {
        var session = started()
        var actions = session.receive(Self.welcome(ownDurable: ownDurable))
        if case .reviewing = session.state { actions += session.receive(Self.noneHeld) }
        return (session, actions)
    }

    /// A review with no decisions, from the start of the listing (Protocol/session.md, "reviewing").
    static func review(_ decisions: [HeldDecision] = [], after: ChangeID? = nil) -> [SessionAction] {
        [request, .send(.review(decisions: decisions, after: after))]
    }

    /// The hub's answer to a review when nothing is held for the replica and nothing was decided.
    static let noneHeld = Message.held(outcomes: [], more: false, items: [])

    static func welcome(version: UInt64 = ProtocolConstants.version, maxFrameBody: UInt64 = 65_536, issued: [UInt8] = [],
                        ownDurable: UInt64 = 0, hubKey: [UInt8] = hubKey.publicKey, incarnation: [UInt8] = incarnation,
                        certificate: DeviceCertificate? = nil) -> Message {
        .welcome(Welcome(protocolVersion: version, schemaVersion: 1, hub: hub, maxFrameBody: maxFrameBody, issuedCredential: issued,
                         hubTimeMillis: now, heartbeatIntervalMillis: 30_000, ownDurable: ownDurable,
                         hubKey: hubKey, incarnation: incarnation, certificate: certificate))
    }

    /// The hub's certificate for `replica`'s device key (its test key unless `key` is given).
    static func certificate(_ replica: ReplicaID, key: [UInt8]? = nil) -> DeviceCertificate {
        hubKey.certificate(replica: replica, publicKey: key ?? TestSigner.publicKey(replica), team: "T", issuedAtMillis: now, attestedThrough: 0)
    }

    /// What the hub relays with `changes`: their origins' heads (signed by `signer`'s test keys,
    /// or `key`) and certificates.
    static func signed(_ changes: [Change], _ signer: inout TestSigner, key: SigningKey? = nil) -> Provenance {
        let origins = Set(changes.map(\.id.replica)).sorted()
        return Provenance(heads: signer.heads(changes, key: key),
                          certificates: origins.map { certificate($0, key: key?.publicKey) })
    }

    /// The heartbeat this replica sends, with `pending` changes the hub has not acknowledged.
    func heartbeat(pending: UInt64 = 0) -> SessionAction {
        .send(.heartbeat(ReplicaHealth(pendingChanges: pending, oldestUnsyncedAgeMillis: 0, openConflicts: 0,
                                       schemaVersion: UInt64(SimulationSchema.schema.version))))
    }

    static func pull(_ cursor: UInt64) -> [SessionAction] { [request, .send(.pull(cursor: cursor, byteBudget: budget))] }

    /// A local edit: one own change.
    func edit(_ row: String) throws {
        try store.write(author: "w") { tx in try tx.create("note", id: row, values: ["text": .text("x")]) }
    }

    /// A change of `origin` as the hub would relay it.
    static func change(_ origin: ReplicaID, _ counter: UInt64, text: String = "hub") -> Change {
        Change(table: "note", row: "h\(counter)", column: "text", write: FieldWrite(
            id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: now, logical: 0),
            author: "w", operation: .assign(.text(text))))
    }

    static func fatal(_ code: WireError.Code, _ actions: [SessionAction]) -> Bool {
        guard actions.count == 2, case let .send(.error(sent, true, _)) = actions[0], actions[1] == .close else { return false }
        return sent == code
    }
}

@Suite("Client session transcripts (Protocol/session.md, \"Client\")")
struct ClientSessionTranscriptTests {
    typealias F = ClientFixture

    @Test("connecting | connected: hello with the protocol range, schema version, replica id, credential and max_frame_body; the handshake deadline starts")
    func hello() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = ClientSession(store: fixture.store, credential: .device([1, 2]))
        let key = try #require(fixture.store.signingKey).publicKey
        #expect(session.state == .connecting)
        #expect(session.start() == [
            .send(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version,
                               schemaVersion: UInt64(SimulationSchema.schema.version), replica: fixture.own,
                               appVersion: ClientConfiguration().appVersion, credential: .device([1, 2]),
                               maxFrameBody: UInt64(ClientConfiguration().maxFrameBody),
                               deviceKey: key))),
            .schedule(.handshake, afterMillis: ProtocolConstants.handshakeMillis),
        ])
        #expect(session.state == .awaitingWelcome)
    }

    @Test("awaiting-welcome | welcome, valid: the issued secret is stored first, health reported, then (nothing to recover or push) the review, then the first pull")
    func welcomeValid() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = fixture.started()
        let actions = session.receive(F.welcome(issued: [7, 7, 7]))
        #expect(actions == [.cancel(.handshake), fixture.heartbeat()] + F.review())
        #expect(try fixture.store.hubLink()?.credential == [7, 7, 7], "the issued secret is durable before the next frame")
        #expect(session.state == .reviewing(after: nil))
        #expect(session.receive(F.noneHeld) == F.pull(0))
        #expect(session.state == .pulling(cursor: 0))
        #expect(session.summary.enrolled && session.summary.hub == F.hub)
    }

    @Test("awaiting-welcome | welcome with max_frame_body above the hello's or below 65,536: LIMIT_EXCEEDED (fatal); within, it is adopted")
    func welcomeLimit() throws {
        let fixture = try F()
        defer { fixture.remove() }
        for refused in [0, 65_535, 100_001, UInt64.max] as [UInt64] {
            var session = fixture.started(maxFrameBody: 100_000)
            #expect(F.fatal(.limitExceeded, session.receive(F.welcome(maxFrameBody: refused))), "max_frame_body \(refused)")
            #expect(session.failure?.code == .limitExceeded && session.maxFrameBody == 100_000)
        }
        for adopted in [65_536, 70_000, 100_000] as [UInt64] {
            var session = fixture.started(maxFrameBody: 100_000)
            _ = session.receive(F.welcome(maxFrameBody: adopted))
            #expect(session.failure == nil && session.maxFrameBody == Int(adopted), "max_frame_body \(adopted)")
        }
    }

    @Test("awaiting-welcome | welcome with a protocol version outside the hello's range: UNSUPPORTED_VERSION (fatal), nothing stored")
    func welcomeVersion() throws {
        let fixture = try F()
        defer { fixture.remove() }
        for version in [ProtocolConstants.version - 1, ProtocolConstants.version + 1] {
            var session = fixture.started()
            #expect(F.fatal(.unsupportedVersion, session.receive(F.welcome(version: version, issued: [1]))))
            #expect(try fixture.store.hubLink()?.credential == nil, "the refused welcome's secret is not kept")
        }
    }

    @Test("awaiting-welcome | reject: close, sending nothing; its code and retry_after_ms are the failure")
    func reject() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = fixture.started()
        #expect(session.receive(.reject(code: .busy, retryAfterMillis: 4_000, message: "full")) == [.close])
        #expect(session.failure?.code == .busy && session.failure?.retryAfterMillis == 4_000 && session.failure?.retryable == true)
    }

    @Test("any | a reject after the handshake: UNEXPECTED_MESSAGE (fatal), close")
    func rejectAfterHandshake() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        let actions = session.receive(.reject(code: .busy, retryAfterMillis: 4_000, message: "late"))
        #expect(F.fatal(.unexpectedMessage, actions), "\(actions)")
        #expect(session.failure?.code == .unexpectedMessage)
    }

    @Test("awaiting-welcome | handshake deadline: close without an error frame, retryable; deadlines not running are ignored")
    func handshakeDeadline() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = fixture.started()
        #expect(session.timerFired(.request).isEmpty, "no request is outstanding before the welcome")
        #expect(session.timerFired(.handshake) == [.close])
        #expect(session.failure?.code == .timeout && session.failure?.retryable == true)
        #expect(session.timerFired(.handshake).isEmpty, "a closed session ignores later deadlines")
    }

    @Test("pushing | changes above the hub-held counters: push with the request deadline; push-ack raises them; none left: pulling")
    func pushThenPull() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try fixture.edit("n1")
        let changes = try fixture.store.changes(notIn: VersionVector())
        #expect(changes.count == 1)
        var session = fixture.started()
        #expect(session.receive(F.welcome()) == [.cancel(.handshake), fixture.heartbeat(pending: 1), F.request,
                                                  .send(.push(batch: 1, changes: changes, provenance: try fixture.store.provenance(for: changes)))])
        #expect(session.state == .pushing(batch: 1, until: [fixture.own: 1]))
        #expect(session.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 1]), hubHead: 1)) == F.review())
        #expect(try fixture.store.peerKnowledge(F.hub)[fixture.own] == 1, "the hub-held counter rose with the ack, durably")
        #expect(session.receive(F.noneHeld) == F.pull(0))
    }

    @Test("pushing | a push-ack for another batch: UNEXPECTED_MESSAGE; one whose durable is below what the batch carried: STORAGE_FAILURE")
    func pushAckRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try fixture.edit("n1")
        var (wrongBatch, _) = fixture.welcomed()
        #expect(F.fatal(.unexpectedMessage, wrongBatch.receive(.pushAck(batch: 2, durable: VersionVector([fixture.own: 1]), hubHead: 1))))
        var (short, _) = fixture.welcomed()
        #expect(F.fatal(.storageFailure, short.receive(.pushAck(batch: 1, durable: VersionVector(), hubHead: 0))))
        #expect(try fixture.store.peerKnowledge(F.hub)[fixture.own] == 0, "nothing counted as held")
    }

    @Test("pushing | error, non-fatal (STORAGE_FAILURE, CLOCK_SKEW, EQUIVOCATION): goodbye, close; fatal: close, sending nothing")
    func pushRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try fixture.edit("n1")
        for (code, retryable) in [(WireError.Code.storageFailure, true), (.clockSkew, false), (.equivocation, true)] {
            var (session, _) = fixture.welcomed()
            #expect(session.receive(.error(code: code, fatal: false, message: "no")) == [.send(.goodbye(reason: 0)), .close], "\(code)")
            #expect(session.failure?.code == code && session.failure?.retryable == retryable)
        }
        var (session, _) = fixture.welcomed()
        #expect(session.receive(.error(code: .limitExceeded, fatal: true, message: "no")) == [.close])
        #expect(try fixture.store.peerKnowledge(F.hub)[fixture.own] == 0)
    }

    @Test("pulling | batch: committed in one transaction; more = 1: pull from next_cursor; more = 0: the heartbeat, goodbye, close")
    func pullToTheEnd() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let other = ReplicaID(high: 4, low: 4)
        var (session, _) = fixture.welcomed()
        var signer = TestSigner()
        let first = [F.change(other, 1)], second = [F.change(other, 2)]
        #expect(session.receive(.batch(nextCursor: 1, more: true, changes: first, provenance: F.signed(first, &signer))) == F.pull(1))
        #expect(try fixture.store.hubLink()?.pullCursor == 1, "the cursor is stored with the batch")
        #expect(session.receive(.batch(nextCursor: 2, more: false, changes: second, provenance: F.signed(second, &signer)))
            == [fixture.heartbeat(), .send(.goodbye(reason: 0)), .close])
        #expect(session.state == .done && session.failure == nil)
        #expect(session.summary.pulled == 2 && session.summary.applied == 2)
        #expect(try fixture.store.peerKnowledge(F.hub)[other] == 2, "changes received from the hub count as held by it")
    }

    @Test("pulling | a batch with no change that moves the cursor (past own changes the hub left out), more = 1: pull again")
    func emptyBatchThatMoves() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        #expect(session.receive(.batch(nextCursor: 40, more: true, changes: [], provenance: .none)) == F.pull(40))
        // One that moves nothing would be asked again for ever: the sync ends there.
        #expect(session.receive(.batch(nextCursor: 40, more: true, changes: [], provenance: .none)) == [fixture.heartbeat(), .send(.goodbye(reason: 0)), .close])
    }

    @Test("pulling | batch with next_cursor above 2^63 − 1, or below the pull's cursor: MALFORMED_MESSAGE (fatal); nothing stored")
    func batchCursorRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let other = ReplicaID(high: 4, low: 4)
        var (above, _) = fixture.welcomed()
        #expect(F.fatal(.malformedMessage, above.receive(.batch(nextCursor: UInt64(Int64.max) + 1, more: false, changes: [F.change(other, 1)], provenance: .none))))
        var (backwards, _) = fixture.welcomed()
        _ = backwards.receive(.batch(nextCursor: 5, more: true, changes: [], provenance: .none))
        #expect(F.fatal(.malformedMessage, backwards.receive(.batch(nextCursor: 4, more: false, changes: [F.change(other, 1)], provenance: .none))))
        #expect(try fixture.store.peerKnowledge(F.hub)[other] == 0, "nothing of either batch applied")
    }

    @Test("pulling | error, non-fatal: goodbye, close; CURSOR_AHEAD (fatal): close and pull again from 0 next time")
    func pullRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        _ = session.receive(.batch(nextCursor: 3, more: true, changes: [], provenance: .none))
        #expect(session.receive(.error(code: .limitExceeded, fatal: false, message: "too large")) == [.send(.goodbye(reason: 0)), .close])
        var (ahead, _) = fixture.welcomed()
        #expect(try fixture.store.hubLink()?.pullCursor == 3)
        #expect(ahead.receive(.error(code: .cursorAhead, fatal: true, message: "ahead")) == [.close])
        #expect(try fixture.store.hubLink()?.pullCursor == 0)
        #expect(ahead.failure?.retryable == true)
    }

    @Test("any | an answer not awaited, a welcome after the handshake, or a message only a client sends: UNEXPECTED_MESSAGE (fatal)")
    func unexpected() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = fixture.own
        let messages: [Message] = [
            .pushAck(batch: 1, durable: VersionVector(), hubHead: 0),
            .recovered(origin: own, nextCounter: 0, more: false, changes: [], provenance: .none),
            .forked(newReplica: ReplicaID(high: 6, low: 6), issuedCredential: [1], certificate: nil),
            F.welcome(),
            .hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: own, appVersion: "x", credential: .none, maxFrameBody: 65_536, deviceKey: [])),
            .push(batch: 1, changes: [], provenance: .none), .pull(cursor: 0, byteBudget: 1), .recover(origin: own, after: 0, byteBudget: 1),
            .fork(newReplica: ReplicaID(high: 6, low: 6), deviceKey: [UInt8](repeating: 0, count: 32)),
            .heartbeat(ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1)),
        ]
        for message in messages {
            var (session, _) = fixture.welcomed()
            #expect(session.state == .pulling(cursor: 0))
            #expect(F.fatal(.unexpectedMessage, session.receive(message)), "\(message.kind) while pulling")
        }
        var early = fixture.started()
        #expect(F.fatal(.unexpectedMessage, early.receive(.batch(nextCursor: 1, more: false, changes: [], provenance: .none))), "a batch before the welcome")
    }

    @Test("any | goodbye: close, never answered; reason 1 is retried later, reason 2 (replaced) is not")
    func goodbye() throws {
        let fixture = try F()
        defer { fixture.remove() }
        for (reason, code) in [(UInt64(0), WireError.Code.timeout), (1, .shuttingDown), (2, .authenticationFailed)] {
            var (session, _) = fixture.welcomed()
            #expect(session.receive(.goodbye(reason: reason)) == [.close])
            #expect(session.failure?.code == code, "goodbye \(reason)")
        }
    }

    @Test("closed: nothing more is read; a late goodbye, error or frame does not rewrite how the sync ended")
    func closedReadsNothing() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        _ = session.receive(.batch(nextCursor: 0, more: false, changes: [], provenance: .none))
        #expect(session.state == .done)
        #expect(session.receive(.goodbye(reason: 2)).isEmpty)
        #expect(session.receive(.error(code: .timeout, fatal: true, message: "late")).isEmpty)
        #expect(session.protocolError(WireError(.malformedFrame, "late")).isEmpty)
        #expect(session.timerFired(.frame).isEmpty)
        #expect(session.state == .done, "still a whole sync")
    }

    @Test("any | framing or decoding failure: error with its code (fatal), close; a frame left unfinished: TIMEOUT (fatal)")
    func badBytes() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        #expect(F.fatal(.reservedBits, session.protocolError(WireError(.reservedBits, "flag bit 3"))))
        var (slow, _) = fixture.welcomed()
        #expect(slow.frameProgress(inFrame: true) == [.schedule(.frame, afterMillis: ProtocolConstants.frameCompletionMillis)])
        #expect(slow.frameProgress(inFrame: false) == [.cancel(.frame)])
        #expect(slow.timerFired(.frame) == [.send(.error(code: .timeout, fatal: true, message: "frame was not completed in time")), .close])
    }

    @Test("any | request deadline: close, retryable")
    func requestDeadline() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var (session, _) = fixture.welcomed()
        #expect(session.timerFired(.handshake).isEmpty, "cancelled by the welcome")
        #expect(session.timerFired(.request) == [.close])
        #expect(session.failure?.code == .timeout && session.failure?.message.contains("request deadline") == true)
    }

    @Test("after the handshake, rule 2: own_durable above A recovers the own origin from A; a missing change is applied, then pushing")
    func recoverMissing() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = fixture.own
        var (session, actions) = fixture.welcomed(ownDurable: 1)
        #expect(actions == [.cancel(.handshake), fixture.heartbeat(), F.request, .send(.recover(origin: own, after: 0, byteBudget: F.budget))])
        #expect(session.state == .recovering(origin: own, after: 0))
        // Missing from this file's log (a restored backup): applied; A rises; nothing left to push.
        #expect(session.receive(.recovered(origin: own, nextCounter: 1, more: false, changes: [F.change(own, 1)], provenance: .none)) == F.review())
        #expect(session.receive(F.noneHeld) == F.pull(0))
        #expect(session.summary.recovered == 1)
        #expect(try fixture.store.peerKnowledge(F.hub)[own] == 1)
    }

    @Test("recovering | recovered that is not the run asked for: MALFORMED_MESSAGE (fatal)")
    func recoveredRefused() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = fixture.own
        let runs: [(ReplicaID, UInt64, [Change])] = [
            (ReplicaID(high: 4, low: 4), 1, [F.change(ReplicaID(high: 4, low: 4), 1)]),   // another origin
            (own, 2, [F.change(own, 1)]),                                                  // next_counter − after ≠ count
            (own, 1, [F.change(own, 2)]),                                                  // not after + 1
        ]
        for (origin, next, changes) in runs {
            var (session, _) = fixture.welcomed(ownDurable: 2)
            #expect(F.fatal(.malformedMessage, session.receive(.recovered(origin: origin, nextCounter: next, more: false, changes: changes, provenance: .none))))
        }
        #expect(try fixture.store.changes(notIn: VersionVector()).isEmpty, "nothing applied")
    }

    @Test("recovering | a recovered change differs from the log: fork; forking | forked for another id or with no credential: UNEXPECTED_MESSAGE")
    func forking() throws {
        let fixture = try F()
        defer { fixture.remove() }
        let own = fixture.own
        try fixture.edit("n1")
        func forkingSession() -> (ClientSession, ReplicaID?) {
            var (session, _) = fixture.welcomed(ownDurable: 1)
            let actions = session.receive(.recovered(origin: own, nextCounter: 1, more: false, changes: [F.change(own, 1, text: "other")], provenance: .none))
            guard case let .forking(newReplica, divergentFrom) = session.state, divergentFrom == 1 else { return (session, nil) }
            guard actions.count == 2, actions[0] == F.request, case let .send(.fork(asked, key)) = actions[1], asked == newReplica else {
                Issue.record("expected a fork request, got \(actions)")
                return (session, nil)
            }
            #expect(key.count == 32 && key != fixture.store.signingKey?.publicKey, "the new identity has a key of its own")
            return (session, newReplica)
        }
        var (wrongID, drawn) = forkingSession()
        let newReplica = try #require(drawn, "a differing change leads to a fork")
        #expect(F.fatal(.unexpectedMessage, wrongID.receive(.forked(newReplica: ReplicaID(high: 6, low: 6), issuedCredential: [1], certificate: nil))))
        var (noSecret, _) = forkingSession()
        #expect(F.fatal(.unexpectedMessage, noSecret.receive(.forked(newReplica: newReplica, issuedCredential: [], certificate: nil))))
        #expect(fixture.store.replicaID == own, "nothing was changed locally")
        // forking | forked for the id asked: the new identity, then rule 1: recover the old origin.
        var (session, _) = forkingSession()
        let oldKey = try #require(fixture.store.signingKey)
        let actions = session.receive(.forked(newReplica: newReplica, issuedCredential: [8], certificate: nil))
        #expect(fixture.store.signingKey?.publicKey != oldKey.publicKey, "the identity file holds the new identity's key")
        #expect(fixture.store.replicaID == newReplica && session.summary.forkedFrom == own && session.summary.reissued == 1)
        #expect(actions == [F.request, .send(.recover(origin: own, after: 0, byteBudget: F.budget))])
        #expect(try fixture.store.hubLink()?.forkedFrom == own)
        // recovering (forked_from) | recovered: the hub's version arrives as another replica's change; forked_from is
        // cleared; then rule 2 on the new identity, of which the hub holds nothing: push the re-issued change.
        // The other copy's version, signed by the old key, which the hub vouches for.
        var signer = TestSigner()
        let hubVersion = [F.change(own, 1, text: "other")]
        let recovered = session.receive(.recovered(origin: own, nextCounter: 1, more: false, changes: hubVersion,
                                                   provenance: F.signed(hubVersion, &signer, key: oldKey)))
        #expect(try fixture.store.hubLink()?.forkedFrom == nil)
        #expect(try fixture.store.peerKnowledge(F.hub)[own] == 1)
        let reissued = try fixture.store.changes(notIn: VersionVector([own: 1]))
        #expect(reissued.map(\.id) == [ChangeID(replica: newReplica, counter: 1)])
        #expect(recovered == [F.request, .send(.push(batch: 1, changes: reissued, provenance: try fixture.store.provenance(for: reissued)))])
    }

    @Test("after the handshake, rule 3: own_durable below A lowers A, so those changes are pushed again, and the log is pulled again from 0")
    func hubRestored() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try fixture.edit("n1")
        var (first, _) = fixture.welcomed()
        _ = first.receive(.pushAck(batch: 1, durable: VersionVector([fixture.own: 1]), hubHead: 1))
        _ = first.receive(F.noneHeld)
        _ = first.receive(.batch(nextCursor: 9, more: false, changes: [], provenance: .none))
        #expect(first.state == .done)
        #expect(try fixture.store.hubLink()?.pullCursor == 9)
        let (second, actions) = fixture.welcomed(ownDurable: 0)
        let own = try fixture.store.changes(notIn: VersionVector())
        #expect(actions == [.cancel(.handshake), fixture.heartbeat(), F.request,
                            .send(.push(batch: 1, changes: own, provenance: try fixture.store.provenance(for: own)))])
        #expect(second.state == .pushing(batch: 1, until: [fixture.own: 1]))
        #expect(try fixture.store.hubLink()?.pullCursor == 0)
    }
}
