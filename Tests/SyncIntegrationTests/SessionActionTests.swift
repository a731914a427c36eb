import Dispatch
import Foundation
import NIOConcurrencyHelpers
import SyncCore
@testable import SyncEngine
import SyncHub
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// A hub store that counts group-commit calls, holds the first one (a slow fsync) so that other
/// pushes queue behind it, and records which pushes' commits have returned.
final class CountingHubStore: HubStore {
    let inner: SQLiteHubStore
    private let state = NIOLockedValueBox((calls: 0, pushes: 0, committed: Set<ReplicaID>()))
    let holdFirstMillis: UInt32

    init(_ inner: SQLiteHubStore, holdFirstMillis: UInt32 = 300) {
        self.inner = inner
        self.holdFirstMillis = holdFirstMillis
    }

    var calls: Int { state.withLockedValue { $0.calls } }
    var pushes: Int { state.withLockedValue { $0.pushes } }
    func committed(_ replica: ReplicaID) -> Bool { state.withLockedValue { $0.committed.contains(replica) } }

    var hubID: ReplicaID { inner.hubID }

    func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>] {
        let first = state.withLockedValue { state in
            state.calls += 1
            state.pushes += pushes.count
            return state.calls == 1
        }
        if first { usleep(holdFirstMillis * 1_000) }
        let results = inner.append(pushes)
        state.withLockedValue { state in for push in pushes { state.committed.insert(push.replica) } }
        return results
    }

    func append(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append([HubPush(changes: changes, replica: replica, receivedAtMillis: receivedAtMillis)])[0].get()
    }

    func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage {
        try inner.changes(after: cursor, excludingOrigin: excludedOrigin, byteBudget: byteBudget, maxCount: maxCount)
    }
    func head() throws -> UInt64 { try inner.head() }
    func ownDurable(_ origin: ReplicaID) throws -> UInt64 { try inner.ownDurable(origin) }
    func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage {
        try inner.changes(ofOrigin: origin, after: after, byteBudget: byteBudget, maxCount: maxCount)
    }
    func fork(_ replica: ReplicaID, into newReplica: ReplicaID, nowMillis: UInt64, random: inout some RandomNumberGenerator) throws -> ForkResult {
        try inner.fork(replica, into: newReplica, nowMillis: nowMillis, random: &random)
    }
    func equivocations() throws -> [EquivocationRecord] { try inner.equivocations() }
    func issueEnrolmentToken(team: String, replica: ReplicaID?, expiresAtMillis: UInt64, random: inout some RandomNumberGenerator) throws -> String {
        try inner.issueEnrolmentToken(team: team, replica: replica, expiresAtMillis: expiresAtMillis, random: &random)
    }
    func redeemEnrolmentToken(_ token: String, replica: ReplicaID, nowMillis: UInt64, random: inout some RandomNumberGenerator) throws -> EnrolmentResult {
        try inner.redeemEnrolmentToken(token, replica: replica, nowMillis: nowMillis, random: &random)
    }
    func spendEnrolmentTokens(of replica: ReplicaID, nowMillis: UInt64) throws { try inner.spendEnrolmentTokens(of: replica, nowMillis: nowMillis) }
    func revokedReplicas(among replicas: [ReplicaID]) throws -> Set<ReplicaID> { try inner.revokedReplicas(among: replicas) }
    func authenticate(replica: ReplicaID, secret: [UInt8]) throws -> AuthenticationResult { try inner.authenticate(replica: replica, secret: secret) }
    func revoke(replica: ReplicaID, nowMillis: UInt64) throws -> Bool { try inner.revoke(replica: replica, nowMillis: nowMillis) }
    func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws {
        try inner.recordSession(event, replica: replica, nowMillis: nowMillis)
    }
    func replicaSummaries() throws -> [ReplicaSummary] { try inner.replicaSummaries() }
    func close() throws { try inner.close() }
}

@Suite("Session actions: storage requests, group commit, deadlines")
struct SessionActionTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "caresync-actions-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()
    static let now: UInt64 = 1_750_000_000_000

    func hubStore() throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 3)
        return try SQLiteHubStore(path: "\(directory)/hub-\(UUID().uuidString).db", random: &random)
    }

    @Test("pushes from concurrent sessions are committed together, and each is answered only after its commit returned")
    func groupCommit() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CountingHubStore(try hubStore())
        let writer = HubWriter(store: store)
        let replicas = (1...8).map { ReplicaID(high: 7, low: UInt64($0)) }
        let answered = await withTaskGroup(of: (ReplicaID, Bool, Bool).self) { group in
            for (index, replica) in replicas.enumerated() {
                group.addTask {
                    // The first push holds the writer; the others arrive while it commits.
                    if index > 0 { try? await Task.sleep(nanoseconds: 50_000_000) }
                    let outcome = await writer.perform(.append(changes: [], replica: replica, receivedAtMillis: Self.now), unless: { false })
                    guard case .appended(.success)? = outcome else { return (replica, false, false) }
                    return (replica, true, store.committed(replica))
                }
            }
            var answers: [(ReplicaID, Bool, Bool)] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
        #expect(answered.count == replicas.count)
        for (replica, succeeded, committedFirst) in answered {
            #expect(succeeded, "push of \(replica.short) acknowledged")
            #expect(committedFirst, "push of \(replica.short) answered before its commit returned")
        }
        #expect(store.pushes == replicas.count)
        #expect(store.calls < store.pushes, "\(store.calls) commits for \(store.pushes) pushes: none were grouped")
        print("SessionActionTests.groupCommit: \(store.pushes) pushes in \(store.calls) commits")
    }

    @Test("a session that the hub ended while its push waited for the writer has nothing of it stored")
    func endedSessionStoresNothing() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = CountingHubStore(try hubStore(), holdFirstMillis: 0)
        let writer = HubWriter(store: store)
        let replica = ReplicaID(high: 8, low: 1)
        let outcome = await writer.perform(.append(changes: [], replica: replica, receivedAtMillis: Self.now), unless: { true })
        #expect(outcome == nil)
        #expect(!store.committed(replica) && store.calls == 0)
    }

    @Test("the hub session asks for storage and acknowledges only from the append's outcome")
    func pushIsAStorageRequest() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try hubStore()
        var random = SeededGenerator(seed: 9)
        let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: Self.now + 60_000, random: &random)
        let replica = ReplicaID(high: 5, low: 5)
        var session = HubSession(hub: store.hubID)
        #expect(session.start(handshakeMillis: 10_000) == [.schedule(.handshake, afterMillis: 10_000)])
        let hello = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
                                                 credential: .enrolmentToken(token), maxFrameBody: 65_536)), nowMillis: Self.now)
        #expect(hello == [.cancel(.handshake), .store(.checkCredential(replica: replica, credential: .enrolmentToken(token), nowMillis: Self.now))])
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
        let push = session.receive(.push(batch: 1, changes: []), nowMillis: Self.now)
        #expect(!push.contains { if case .send = $0 { true } else { false } }, "no answer before the commit: \(push)")
        #expect(push.contains(.store(.append(changes: [], replica: replica, receivedAtMillis: Self.now))))
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
                                                            heartbeatIntervalMillis: 30_000)))
        #expect(afterWelcome.first == .cancel(.handshake))
        #expect(afterWelcome.contains(.schedule(.request, afterMillis: ProtocolConstants.responseMillis)), "\(afterWelcome)")
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
            let batch = Message.batch(nextCursor: 9, more: true, changes: changes)
            let relayed = Message.relayedBatch(nextCursor: 9, more: true, encodedChanges: encoded)
            #expect(codec.encode(relayed) == codec.encode(batch), "compression threshold \(String(describing: threshold))")
            #expect(try codec.decode(codec.frame(relayed)) == batch)
            #expect(relayed.decoded == batch)
            let origin = ReplicaID(high: 4, low: 4)
            let recovered = Message.recovered(origin: origin, nextCounter: 3, more: false, changes: changes)
            let relayedRecovered = Message.relayedRecovered(origin: origin, nextCounter: 3, more: false, encodedChanges: encoded)
            #expect(codec.encode(relayedRecovered) == codec.encode(recovered))
            #expect(try codec.decode(codec.frame(relayedRecovered)) == recovered)
        }
        #expect(Message.relayedBatch(nextCursor: 1, more: false, encodedChanges: [[0xFF]]).decoded == nil, "bytes that do not decode")
    }
}
