import Dispatch
import Foundation
import NIOConcurrencyHelpers
import SyncCore
import SyncEngine
import SyncHub
import SyncIdentity
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
    var hubKey: [UInt8] { inner.hubKey }
    var incarnation: [UInt8] { inner.incarnation }

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

    func append(_ changes: [Change], from replica: ReplicaID, provenance: Provenance, receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append([HubPush(changes: changes, replica: replica, provenance: provenance, receivedAtMillis: receivedAtMillis)])[0].get()
    }

    func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage {
        try inner.changes(after: cursor, excludingOrigin: excludedOrigin, byteBudget: byteBudget, maxCount: maxCount)
    }
    func head() throws -> UInt64 { try inner.head() }
    func ownDurable(_ origin: ReplicaID) throws -> UInt64 { try inner.ownDurable(origin) }
    func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage {
        try inner.changes(ofOrigin: origin, after: after, byteBudget: byteBudget, maxCount: maxCount)
    }
    func fork(_ replica: ReplicaID, into newReplica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
              random: inout some RandomNumberGenerator) throws -> ForkResult {
        try inner.fork(replica, into: newReplica, deviceKey: deviceKey, nowMillis: nowMillis, random: &random)
    }
    func certificate(for replica: ReplicaID) throws -> DeviceCertificate? { try inner.certificate(for: replica) }
    func equivocations() throws -> [EquivocationRecord] { try inner.equivocations() }
    func issueEnrolmentToken(team: String, replica: ReplicaID?, expiresAtMillis: UInt64, random: inout some RandomNumberGenerator) throws -> String {
        try inner.issueEnrolmentToken(team: team, replica: replica, expiresAtMillis: expiresAtMillis, random: &random)
    }
    func redeemEnrolmentToken(_ token: String, replica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
                              random: inout some RandomNumberGenerator) throws -> EnrolmentResult {
        try inner.redeemEnrolmentToken(token, replica: replica, deviceKey: deviceKey, nowMillis: nowMillis, random: &random)
    }
    func spendEnrolmentTokens(of replica: ReplicaID, nowMillis: UInt64) throws { try inner.spendEnrolmentTokens(of: replica, nowMillis: nowMillis) }
    func revokedReplicas(among replicas: [ReplicaID]) throws -> Set<ReplicaID> { try inner.revokedReplicas(among: replicas) }
    func authenticate(replica: ReplicaID, secret: [UInt8], deviceKey: [UInt8], nowMillis: UInt64) throws -> AuthenticationResult {
        try inner.authenticate(replica: replica, secret: secret, deviceKey: deviceKey, nowMillis: nowMillis)
    }
    func revoke(replica: ReplicaID, nowMillis: UInt64) throws -> Bool { try inner.revoke(replica: replica, nowMillis: nowMillis) }
    func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws {
        try inner.recordSession(event, replica: replica, nowMillis: nowMillis)
    }
    func replicaSummaries() throws -> [ReplicaSummary] { try inner.replicaSummaries() }
    func purgesOwed(replica: ReplicaID, limit: Int) throws -> [String] { try inner.purgesOwed(replica: replica, limit: limit) }
    func acknowledgePurges(_ scopes: [String], replica: ReplicaID, nowMillis: UInt64) throws {
        try inner.acknowledgePurges(scopes, replica: replica, nowMillis: nowMillis)
    }
    func heldItems(for replica: ReplicaID, after: ChangeID?, byteBudget: Int, maxCount: Int) throws -> HeldPage {
        try inner.heldItems(for: replica, after: after, byteBudget: byteBudget, maxCount: maxCount)
    }
    func resolveHeld(_ decisions: [HeldDecision], replica: ReplicaID, nowMillis: UInt64) throws -> [HeldOutcome] {
        try inner.resolveHeld(decisions, replica: replica, nowMillis: nowMillis)
    }
    func close() throws { try inner.close() }
}

/// The hub shell's one writer: group commit across sessions, and nothing stored for a session the
/// hub ended meanwhile. (The sessions' own storage requests are SyncEngineTests' SessionActionTests.)
@Suite("Hub writer: group commit")
struct HubWriterTests {
    let directory = TestFiles.directory("writer")
    static let now: UInt64 = 1_750_000_000_000

    func hubStore() throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 3)
        return try SQLiteHubStore(path: "\(directory)/hub-\(UUID().uuidString).db", wallClock: SystemWallClock(), random: &random)
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
                    let outcome = await writer.perform(.append(changes: [], replica: replica, provenance: .none, receivedAtMillis: Self.now), unless: { false })
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
        let outcome = await writer.perform(.append(changes: [], replica: replica, provenance: .none, receivedAtMillis: Self.now), unless: { true })
        #expect(outcome == nil)
        #expect(!store.committed(replica) && store.calls == 0)
    }
}
