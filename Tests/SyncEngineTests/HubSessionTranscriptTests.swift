import SyncCore
import SyncEngine
import SyncStore
import SyncWire
import Testing

/// The hub's side of transcripts: a `HubSession` alone, storage outcomes made up, so that every
/// action it asks for (sends, closes, deadlines, storage requests) is checked exactly, row by row
/// of Protocol/session.md's hub table. What the real store answers is HubSessionTests'.
enum HubFixture {
    static let hub = ReplicaID(high: 1, low: 1)
    static let replica = ReplicaID(high: 5, low: 5)
    static let now: UInt64 = 1_750_000_000_000
    static let idle = SessionAction.schedule(.idle, afterMillis: ProtocolConstants.idleMillis)

    static func hello(min: UInt64 = ProtocolConstants.version, max: UInt64 = ProtocolConstants.version, schema: UInt64 = 1,
                      replica: ReplicaID = replica, credential: Credential = .device([1]), maxFrameBody: UInt64 = 100_000) -> Message {
        .hello(Hello(protocolMin: min, protocolMax: max, schemaVersion: schema, replica: replica, appVersion: "t",
                     credential: credential, maxFrameBody: maxFrameBody, deviceKey: []))
    }

    /// A session past its welcome, for `replica` in team T.
    static func ready(enrolled: Bool = false) -> HubSession {
        var session = HubSession(hub: hub)
        _ = session.start(handshakeMillis: 10_000)
        _ = session.receive(hello(), nowMillis: now)
        _ = session.storageCompleted(.credential(.success(enrolled ? .enrolment(.enrolled(team: "T", secret: [9])) : .device(.accepted(team: "T")))),
                                     nowMillis: now)
        _ = session.storageCompleted(opened(0), nowMillis: now)
        return session
    }

    /// The store's answer to `openSession`: the durable counter, a made-up hub key and incarnation, no certificate.
    static func opened(_ ownDurable: UInt64) -> HubStoreOutcome {
        .opened(.success(SessionOpening(ownDurable: ownDurable, hubKey: [UInt8](repeating: 0, count: 32),
                                        incarnation: [UInt8](repeating: 0, count: 16), certificate: nil)))
    }

    static func record(_ event: HubSessionEvent, _ replica: ReplicaID = replica) -> SessionAction {
        .store(.record(event, replica: replica, nowMillis: now))
    }

    /// What a fatal error in ready looks like: recorded for the operator view, told, closed.
    static func fatal(_ code: WireError.Code, _ text: String) -> [SessionAction] {
        [record(.error(code: code.name)), .send(.error(code: code, fatal: true, message: text)), .close]
    }

    static func rejected(_ actions: [SessionAction]) -> (WireError.Code, UInt64, String)? {
        guard actions.count == 2, case let .send(.reject(code, retryAfter, text)) = actions[0], actions[1] == .close else { return nil }
        return (code, retryAfter, text)
    }

    static func change(_ counter: UInt64, aheadMillis: UInt64 = 0) -> Change {
        Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
            id: ChangeID(replica: replica, counter: counter), timestamp: HybridTimestamp(physicalMillis: now + aheadMillis, logical: 0),
            author: "w", operation: .assign(.text("x"))))
    }
}

@Suite("Hub session transcripts (Protocol/session.md, \"Hub\")")
struct HubSessionTranscriptTests {
    typealias H = HubFixture

    @Test("awaiting-hello | hello, accepted: the handshake deadline ends, the credential is checked, the session opened, then the welcome and the idle deadline")
    func welcome() {
        var session = HubSession(hub: H.hub)
        #expect(session.start(handshakeMillis: 2_000) == [.schedule(.handshake, afterMillis: 2_000)])
        #expect(session.receive(H.hello(), nowMillis: H.now)
            == [.cancel(.handshake), .store(.checkCredential(replica: H.replica, credential: .device([1]), deviceKey: [], nowMillis: H.now))])
        #expect(session.timerFired(.handshake, nowMillis: H.now).isEmpty, "the hello arrived: the handshake deadline ended with it")
        #expect(session.storageCompleted(.credential(.success(.device(.accepted(team: "T")))), nowMillis: H.now)
            == [.store(.openSession(replica: H.replica, spendTokens: true, appVersion: "t", schemaVersion: 1, nowMillis: H.now))])
        #expect(session.storageCompleted(H.opened(3), nowMillis: H.now) == [
            .send(.welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: H.hub, maxFrameBody: 100_000,
                                   issuedCredential: [], hubTimeMillis: H.now, heartbeatIntervalMillis: 30_000, ownDurable: 3,
                                   hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16), certificate: nil))),
            H.idle,
        ])
        #expect(session.state == .ready(replica: H.replica, team: "T") && session.maxFrameBody == 100_000)
    }

    @Test("validating a hello: each check in the order of the table, the first failure's reject (retry_after_ms 0), then close")
    func helloChecks() {
        let cases: [(String, Message, WireError.Code)] = [
            ("version 1 only", H.hello(min: 1, max: 1), .unsupportedVersion),
            ("min above max", H.hello(min: 2, max: 1), .unsupportedVersion),
            ("version 0", H.hello(min: 0, max: 2), .unsupportedVersion),
            ("version 1 and schema 0: check 1 first", H.hello(min: 1, max: 1, schema: 0), .unsupportedVersion),
            ("schema 0", H.hello(schema: 0), .schemaMismatch),
            ("schema 0 and a small limit: check 2 first", H.hello(schema: 0, maxFrameBody: 1), .schemaMismatch),
            ("max_frame_body 65,535", H.hello(maxFrameBody: 65_535), .limitExceeded),
            ("the hub's own id", H.hello(replica: H.hub), .enrolmentInvalid),
            ("no credential", H.hello(credential: .none), .authenticationFailed),
        ]
        for (name, hello, code) in cases {
            var session = HubSession(hub: H.hub)
            let actions = session.receive(hello, nowMillis: H.now)
            #expect(actions.first == .cancel(.handshake))
            let refusal = H.rejected(Array(actions.dropFirst()))
            #expect(refusal?.0 == code && refusal?.1 == 0, "\(name): \(actions)")
            #expect(session.state == .closed)
        }
    }

    @Test("credential outcomes: a revoked secret and an unknown one are told apart; every refused token gets one text; a store failure is retryable")
    func credentialOutcomes() {
        func outcome(_ result: Result<CredentialCheck, any Error>) -> [SessionAction] {
            var session = HubSession(hub: H.hub)
            _ = session.receive(H.hello(), nowMillis: H.now)
            return session.storageCompleted(.credential(result), nowMillis: H.now)
        }
        let revoked = H.rejected(outcome(.success(.device(.revoked))))
        let unknown = H.rejected(outcome(.success(.device(.unknown))))
        #expect(revoked?.0 == .authenticationFailed && unknown?.0 == .authenticationFailed)
        #expect(revoked?.2 == "this replica's credential has been revoked")
        #expect(unknown?.2 == "this replica's credential is not known to this hub")
        let tokens = [EnrolmentResult.unknownToken, .alreadyUsed, .expired].map { H.rejected(outcome(.success(.enrolment($0)))) }
        #expect(tokens.allSatisfy { $0?.0 == .enrolmentInvalid && $0?.1 == 0 })
        #expect(Set(tokens.map { $0?.2 }).count == 1, "one text for every refused token")
        let failed = H.rejected(outcome(.failure(StoreError(.database, "disk"))))
        #expect(failed?.0 == .storageFailure && (failed?.1 ?? 0) > 0)
        // An enrolment: the secret goes out in the welcome; the tokens are spent by the next frame.
        var enrolling = HubSession(hub: H.hub)
        _ = enrolling.receive(H.hello(credential: .enrolmentToken("tok")), nowMillis: H.now)
        #expect(enrolling.storageCompleted(.credential(.success(.enrolment(.enrolled(team: "T", secret: [9])))), nowMillis: H.now)
            == [.store(.openSession(replica: H.replica, spendTokens: false, appVersion: "t", schemaVersion: 1, nowMillis: H.now))])
        guard case let .send(.welcome(welcome))? = enrolling.storageCompleted(H.opened(0), nowMillis: H.now).first else {
            Issue.record("no welcome")
            return
        }
        #expect(welcome.issuedCredential == [9])
    }

    @Test("awaiting-hello | error: close, sending nothing; any other message: UNEXPECTED_MESSAGE (fatal); handshake deadline: TIMEOUT")
    func beforeHello() {
        var quiet = HubSession(hub: H.hub)
        #expect(quiet.receive(.error(code: .timeout, fatal: true, message: "x"), nowMillis: H.now) == [.close])
        for message: Message in [.pull(cursor: 0, byteBudget: 1), .push(batch: 1, changes: [], provenance: .none), .goodbye(reason: 0),
                                 .heartbeat(ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1))] {
            var session = HubSession(hub: H.hub)
            #expect(session.receive(message, nowMillis: H.now)
                == [.send(.error(code: .unexpectedMessage, fatal: true, message: "expected hello, got \(message.kind)")), .close])
        }
        var silent = HubSession(hub: H.hub)
        #expect(silent.timerFired(.handshake, nowMillis: H.now)
            == [.send(.error(code: .timeout, fatal: true, message: "no hello within the handshake deadline")), .close])
    }

    @Test("ready | heartbeat: recorded for the operator view, no answer, still ready")
    func heartbeat() {
        var session = H.ready()
        let health = ReplicaHealth(pendingChanges: 4, oldestUnsyncedAgeMillis: 10, openConflicts: 1, schemaVersion: 1)
        #expect(session.receive(.heartbeat(health), nowMillis: H.now)
            == [H.idle, H.record(.health(pendingChanges: 4, oldestUnsyncedAgeMillis: 10, openConflicts: 1, schemaVersion: 1))])
        #expect(session.state == .ready(replica: H.replica, team: "T"))
    }

    @Test("ready | error, non-fatal: its code recorded, nothing sent, still ready; fatal: recorded, close, sending nothing")
    func clientError() {
        var session = H.ready()
        #expect(session.receive(.error(code: .storageFailure, fatal: false, message: "local disk"), nowMillis: H.now)
            == [H.idle, H.record(.error(code: "client:STORAGE_FAILURE"))])
        #expect(session.state == .ready(replica: H.replica, team: "T"), "a non-fatal error does not end the session")
        #expect(session.receive(.pull(cursor: 0, byteBudget: 1_000), nowMillis: H.now).contains {
            if case .store(.readPage) = $0 { true } else { false }
        }, "and the session goes on")
        var ending = H.ready()
        #expect(ending.receive(.error(code: .malformedMessage, fatal: true, message: "bad"), nowMillis: H.now)
            == [H.idle, H.record(.error(code: "client:MALFORMED_MESSAGE")), .close])
        #expect(ending.state == .closed)
    }

    @Test("ready | goodbye: close")
    func goodbye() {
        var session = H.ready()
        #expect(session.receive(.goodbye(reason: 0), nowMillis: H.now) == [H.idle, .close])
        #expect(session.receive(.heartbeat(ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1)),
                                nowMillis: H.now).isEmpty, "a closed session reads nothing")
    }

    @Test("ready | hello, welcome, reject, push-ack, batch, recovered or forked: UNEXPECTED_MESSAGE (fatal), recorded, close")
    func unexpected() {
        let messages: [(Message, String)] = [
            (H.hello(), "hello after the handshake"),
            (.welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: H.hub, maxFrameBody: 65_536, issuedCredential: [], hubTimeMillis: 0,
                              heartbeatIntervalMillis: 1,
                              hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16), certificate: nil)), "welcome is not a client message"),
            (.reject(code: .busy, retryAfterMillis: 0, message: "x"), "reject is not a client message"),
            (.pushAck(batch: 1, durable: VersionVector(), hubHead: 0), "pushAck is not a client message"),
            (.batch(nextCursor: 0, more: false, changes: [], provenance: .none), "batch is not a client message"),
            (.recovered(origin: H.replica, nextCounter: 0, more: false, changes: [], provenance: .none), "recovered is not a client message"),
            (.forked(newReplica: H.replica, issuedCredential: [1], certificate: nil), "forked is not a client message"),
        ]
        for (message, text) in messages {
            var session = H.ready()
            #expect(session.receive(message, nowMillis: H.now) == [H.idle] + H.fatal(.unexpectedMessage, text), "\(message.kind)")
        }
    }

    @Test("ready | push: stored, then acknowledged from the append's outcome only; the wrong batch number: UNEXPECTED_MESSAGE")
    func push() {
        var session = H.ready()
        let changes = [H.change(1)]
        #expect(session.receive(.push(batch: 1, changes: changes, provenance: .none), nowMillis: H.now)
            == [H.idle, .store(.append(changes: changes, replica: H.replica, provenance: .none, receivedAtMillis: H.now))])
        let durable = VersionVector([H.replica: 1])
        var stored = session
        #expect(stored.storageCompleted(.appended(.success(HubAppendResult(durable: durable, head: 1, stored: 1, duplicates: 0))), nowMillis: H.now)
            == [H.idle, .send(.pushAck(batch: 1, durable: durable, hubHead: 1))])
        #expect(stored.receive(.push(batch: 3, changes: [], provenance: .none), nowMillis: H.now) == [H.idle] + H.fatal(.unexpectedMessage, "push batch 3, expected 2"))
        // Storing a push, steps 2 and 3: an equivocation or a failed commit is never acknowledged, and the session goes on.
        var equivocated = session
        let refused = equivocated.storageCompleted(.appended(.success(HubAppendResult(durable: durable, head: 1, stored: 0, duplicates: 0,
                                                                                      equivocations: [changes[0].id]))), nowMillis: H.now)
        #expect(refused.prefix(2) == [H.idle, H.record(.error(code: "EQUIVOCATION"))])
        #expect(refused.count == 3 && { if case .send(.error(.equivocation, false, _)) = refused[2] { true } else { false } }())
        var failed = session
        let failure = failed.storageCompleted(.appended(.failure(StoreError(.database, "disk full"))), nowMillis: H.now)
        #expect(failure == [H.idle, H.record(.error(code: "STORAGE_FAILURE")),
                            .send(.error(code: .storageFailure, fatal: false, message: "the hub could not store the batch; nothing stored; retry later"))])
        #expect(failed.state == .ready(replica: H.replica, team: "T"))
    }

    @Test("storing a push, step 1: a change more than 5 minutes ahead of the hub's clock: CLOCK_SKEW (non-fatal), nothing asked of the store")
    func clockSkew() {
        var session = H.ready()
        let actions = session.receive(.push(batch: 1, changes: [H.change(1, aheadMillis: 300_001)], provenance: .none), nowMillis: H.now)
        #expect(actions.count == 2 && actions[0] == H.idle)
        #expect({ if case .send(.error(.clockSkew, false, _)) = actions[1] { true } else { false } }(), "\(actions)")
        #expect(!session.isAwaitingStorage)
        var atTheEdge = H.ready()
        #expect(atTheEdge.receive(.push(batch: 1, changes: [H.change(1, aheadMillis: 300_000)], provenance: .none), nowMillis: H.now).last
            == .store(.append(changes: [H.change(1, aheadMillis: 300_000)], replica: H.replica, provenance: .none, receivedAtMillis: H.now)))
    }

    @Test("ready | pull: a page is read and relayed as stored; a cursor above the hub's last sequence: CURSOR_AHEAD (fatal)")
    func pull() {
        var session = H.ready()
        #expect(session.receive(.pull(cursor: 7, byteBudget: 1_000), nowMillis: H.now)
            == [H.idle, .store(.readPage(cursor: 7, excludingOrigin: H.replica, byteBudget: 1_000, maxCount: HubConfiguration().maxPullChanges))])
        var answered = session
        #expect(answered.storageCompleted(.page(.success(HubPullRead(head: 9, page: HubPage(encoded: [], nextCursor: 9, more: false, bytes: 0)))),
                                          nowMillis: H.now)
            == [H.idle, H.record(.pulled(cursor: 9)), .send(.relayedBatch(nextCursor: 9, more: false, encodedChanges: [], provenance: .none))])
        var ahead = session
        #expect(ahead.storageCompleted(.page(.success(HubPullRead(head: 6, page: nil))), nowMillis: H.now)
            == [H.idle] + H.fatal(.cursorAhead, "pull cursor 7 is above this hub's last sequence 6"))
    }

    @Test("ready | a request while one is still being handled: LIMIT_EXCEEDED (fatal); an error frame then is not answered")
    func oneRequestAtATime() {
        var session = H.ready()
        _ = session.receive(.pull(cursor: 0, byteBudget: 1_000), nowMillis: H.now)
        #expect(session.isAwaitingStorage)
        var second = session
        #expect(second.receive(.pull(cursor: 0, byteBudget: 1_000), nowMillis: H.now)
            == H.fatal(.limitExceeded, "pull arrived while a request was still being handled"))
        var quiet = session
        #expect(quiet.receive(.error(code: .timeout, fatal: true, message: "x"), nowMillis: H.now) == [.close])
        #expect(quiet.state == .closed)
    }

    @Test("ready | fork: the session goes on as the new replica; a taken id, the lineage cap, an unknown replica or a failed commit: fatal")
    func fork() {
        let newReplica = ReplicaID(high: 6, low: 6)
        var session = H.ready()
        #expect(session.receive(.fork(newReplica: newReplica, deviceKey: [UInt8](repeating: 0, count: 32)), nowMillis: H.now)
            == [H.idle, .store(.fork(replica: H.replica, into: newReplica, deviceKey: [UInt8](repeating: 0, count: 32), nowMillis: H.now))])
        var forked = session
        #expect(forked.storageCompleted(.forked(.success(.forked(secret: [4]))), nowMillis: H.now)
            == [H.idle, H.record(.hello(appVersion: "fork of \(H.replica.short)", schemaVersion: 1), newReplica),
                .send(.forked(newReplica: newReplica, issuedCredential: [4], certificate: nil))])
        #expect(forked.replica == newReplica)
        let refusals: [(Result<ForkResult, any Error>, WireError.Code)] = [
            (.success(.idTaken), .enrolmentInvalid), (.success(.tooManyForks), .limitExceeded),
            (.success(.unknownReplica), .authenticationFailed), (.failure(StoreError(.database, "disk")), .storageFailure),
        ]
        for (result, code) in refusals {
            var refused = session
            let actions = refused.storageCompleted(.forked(result), nowMillis: H.now)
            #expect(actions.count == 4 && actions.last == .close && {
                if case .send(.error(code, true, _)) = actions[2] { true } else { false }
            }(), "\(code): \(actions)")
            #expect(refused.state == .closed)
        }
    }

    @Test("enrolment: the first frame after the welcome spends the tokens, once")
    func enrolmentConfirmed() {
        var session = H.ready(enrolled: true)
        let health = ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1)
        #expect(session.receive(.heartbeat(health), nowMillis: H.now)
            == [H.idle, .store(.spendTokens(replica: H.replica, nowMillis: H.now)),
                H.record(.health(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1))])
        #expect(session.receive(.heartbeat(health), nowMillis: H.now).count == 2, "spent once")
    }

    @Test("any | idle deadline: TIMEOUT (fatal), unless a request is being handled (the replica waits for the hub); frame deadline: TIMEOUT")
    func deadlines() {
        var waiting = H.ready()
        _ = waiting.receive(.pull(cursor: 0, byteBudget: 1_000), nowMillis: H.now)
        #expect(waiting.timerFired(.idle, nowMillis: H.now) == [H.idle])
        var idle = H.ready()
        #expect(idle.timerFired(.handshake, nowMillis: H.now).isEmpty, "cancelled by the hello")
        #expect(idle.timerFired(.idle, nowMillis: H.now) == H.fatal(.timeout, "idle deadline passed"))
        var dripping = H.ready()
        #expect(dripping.frameProgress(inFrame: true) == [.schedule(.frame, afterMillis: ProtocolConstants.frameCompletionMillis)])
        #expect(dripping.timerFired(.frame, nowMillis: H.now) == H.fatal(.timeout, "frame was not completed in time"))
        #expect(dripping.timerFired(.frame, nowMillis: H.now).isEmpty, "a closed session ignores later deadlines")
    }

    @Test("any | framing or decoding failure: error with its code (fatal), recorded once ready, close")
    func badBytes() {
        var session = H.ready()
        #expect(session.protocolError(WireError(.trailingBytes, "2 bytes after the payload"), nowMillis: H.now)
            == H.fatal(.trailingBytes, "2 bytes after the payload"))
        var early = HubSession(hub: H.hub)
        #expect(early.protocolError(WireError(.frameTooLarge, "big"), nowMillis: H.now)
            == [.send(.error(code: .frameTooLarge, fatal: true, message: "big")), .close])
    }
}
