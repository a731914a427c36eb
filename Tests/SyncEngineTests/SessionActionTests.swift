import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

@Suite("Session actions: storage requests, deadlines, relayed bytes")
struct SessionActionTests {
    let directory = TestFiles.directory("actions")
    static let now: UInt64 = 1_750_000_000_000

    @Test("the hub session asks for storage and acknowledges only from the append's outcome")
    func pushIsAStorageRequest() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SeededGenerator(seed: 9)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: Self.now + 60_000, random: &random)
        let replica = ReplicaID(high: 5, low: 5)
        var session = HubSession(hub: store.hubID)
        #expect(session.start(handshakeMillis: 10_000) == [.schedule(.handshake, afterMillis: 10_000)])
        let hello = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
                                                 credential: .enrolmentToken(token), maxFrameBody: 65_536, deviceKey: TestSigner.publicKey(replica))), nowMillis: Self.now)
        #expect(hello == [.cancel(.handshake), .store(.checkCredential(replica: replica, credential: .enrolmentToken(token),
                                                                       deviceKey: TestSigner.publicKey(replica), nowMillis: Self.now))])
        #expect(session.isAwaitingStorage)
        // Nothing more is handled while the request is outstanding.
        var busy = session
        #expect(busy.receive(.goodbye(reason: 0), nowMillis: Self.now).contains(.send(.error(code: .limitExceeded, fatal: true,
                                                                                        message: "goodbye arrived while a request was still being handled"))))
        var source = RandomSource { 4 }
        guard case let .store(check) = hello[1], let checked = check.perform(on: store, random: &source) else {
            Issue.record("no credential check")
            return
        }
        let open = session.storageCompleted(checked, nowMillis: Self.now)
        guard case let .store(opening)? = open.first, let opened = opening.perform(on: store, random: &source) else {
            Issue.record("no session opening: \(open)")
            return
        }
        let welcome = session.storageCompleted(opened, nowMillis: Self.now)
        guard case .send(.welcome)? = welcome.first else {
            Issue.record("expected a welcome, got \(welcome)")
            return
        }
        #expect(welcome.contains(.schedule(.idle, afterMillis: ProtocolConstants.idleMillis)))
        let push = session.receive(.push(batch: 1, changes: [], provenance: .none), nowMillis: Self.now)
        #expect(!push.contains { if case .send = $0 { true } else { false } }, "no answer before the commit: \(push)")
        #expect(push.contains(.store(.append(changes: [], replica: replica, provenance: .none, receivedAtMillis: Self.now))))
        // A failed commit is never acknowledged.
        var failed = session
        let refused = failed.storageCompleted(.appended(.failure(StoreError(.database, "disk full"))), nowMillis: Self.now)
        #expect(refused.contains { if case .send(.error(.storageFailure, false, _)) = $0 { true } else { false } })
        let acked = session.storageCompleted(.appended(.success(HubAppendResult(durable: VersionVector(), head: 0, stored: 0, duplicates: 0))),
                                             nowMillis: Self.now)
        #expect(acked.contains(.send(.pushAck(batch: 1, durable: VersionVector(), hubHead: 0))))
    }

    @Test("deadlines are the sessions' own: each fires TIMEOUT as Protocol/session.md says, and a cancelled one stays quiet")
    func deadlines() throws {
        // Hub: handshake before the hello, frame while one is in progress, idle once ready.
        var silent = HubSession(hub: ReplicaID(high: 1, low: 1))
        #expect(silent.timerFired(.handshake, nowMillis: Self.now)
            == [.send(.error(code: .timeout, fatal: true, message: "no hello within the handshake deadline")), .close])
        #expect(silent.timerFired(.handshake, nowMillis: Self.now).isEmpty, "a closed session ignores later deadlines")
        var dripping = HubSession(hub: ReplicaID(high: 1, low: 1))
        #expect(dripping.frameProgress(inFrame: true) == [.schedule(.frame, afterMillis: ProtocolConstants.frameCompletionMillis)])
        #expect(dripping.frameProgress(inFrame: false) == [.cancel(.frame)])
        #expect(dripping.timerFired(.frame, nowMillis: Self.now)
            == [.send(.error(code: .timeout, fatal: true, message: "frame was not completed in time")), .close])
        // Client: the handshake and request deadlines close without an error frame.
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 2, low: 2),
                                              name: "r", wallClock: FixedWallClock(millis: Self.now))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var client = ClientSession(store: replica, credential: .device([1]))
        #expect(client.start().last == .schedule(.handshake, afterMillis: ProtocolConstants.handshakeMillis))
        #expect(client.timerFired(.request).isEmpty, "no request is outstanding before the welcome")
        #expect(client.timerFired(.handshake) == [.close])
        #expect(client.failure?.code == .timeout && client.failure?.retryable == true)
        var waiting = ClientSession(store: replica, credential: .device([1]))
        _ = waiting.start()
        let afterWelcome = waiting.receive(.welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: ReplicaID(high: 9, low: 9),
                                                            maxFrameBody: 65_536, issuedCredential: [], hubTimeMillis: Self.now,
                                                            heartbeatIntervalMillis: 30_000,
                                                            hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16), certificate: nil)))
        #expect(afterWelcome.first == .cancel(.handshake))
        #expect(afterWelcome.contains(.schedule(.request, afterMillis: ProtocolConstants.responseMillis)), "\(afterWelcome)")
        #expect(waiting.timerFired(.handshake).isEmpty, "the handshake deadline, cancelled by the welcome, stays quiet")
        #expect(waiting.timerFired(.request) == [.close])
        #expect(waiting.failure?.message.contains("request deadline") == true)
    }

    @Test("a relayed batch or recovered answer (stored bytes, not re-encoded) has exactly the bytes of the decoded message, and decodes to it")
    func relayedMessagesKeepTheBytes() throws {
        let changes = (1...3).map { counter in
            Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
                id: ChangeID(replica: ReplicaID(high: 4, low: 4), counter: UInt64(counter)),
                timestamp: HybridTimestamp(physicalMillis: Self.now, logical: 0), author: "w",
                operation: .assign(.text(String(repeating: "x", count: 400 * counter)))))
        }
        let encoded = changes.map { change in
            var writer = ByteWriter()
            change.encode(into: &writer)
            return writer.bytes
        }
        for threshold in [nil, 64] as [Int?] {
            let codec = MessageCodec(compressionThreshold: threshold)
            let batch = Message.batch(nextCursor: 9, more: true, changes: changes, provenance: .none)
            let relayed = Message.relayedBatch(nextCursor: 9, more: true, encodedChanges: encoded, provenance: .none)
            #expect(codec.encode(relayed) == codec.encode(batch), "compression threshold \(String(describing: threshold))")
            #expect(try codec.decode(codec.frame(relayed)) == batch)
            #expect(relayed.decoded == batch)
            let origin = ReplicaID(high: 4, low: 4)
            let recovered = Message.recovered(origin: origin, nextCounter: 3, more: false, changes: changes, provenance: .none)
            let relayedRecovered = Message.relayedRecovered(origin: origin, nextCounter: 3, more: false, encodedChanges: encoded, provenance: .none)
            #expect(codec.encode(relayedRecovered) == codec.encode(recovered))
            #expect(try codec.decode(codec.frame(relayedRecovered)) == recovered)
        }
        #expect(Message.relayedBatch(nextCursor: 1, more: false, encodedChanges: [[0xFF]], provenance: .none).decoded == nil, "bytes that do not decode")
    }
}
