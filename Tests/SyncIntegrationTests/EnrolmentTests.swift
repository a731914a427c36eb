import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Enrolment tokens against the real hub store, through the hub's session: a token binds one
/// replica id once, never re-binds a known one, cannot undo a revocation, and its refusals do not
/// tell an unknown token from a used one. The lost-welcome retry still works until the replica
/// shows it holds its secret.
@Suite("Enrolment tokens")
struct EnrolmentTests {
    let directory = TestFiles.directory("enrolment")
    let now: UInt64 = 1_750_000_000_000
    let alpha = ReplicaID(high: 0xA, low: 1)
    let beta = ReplicaID(high: 0xB, low: 2)

    func store() throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 5)
        return try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
    }

    func token(_ store: SQLiteHubStore, team: String = "T", replica: ReplicaID? = nil) throws -> String {
        var random = SystemRandomNumberGenerator()
        return try store.issueEnrolmentToken(team: team, replica: replica, expiresAtMillis: now + 3_600_000, random: &random)
    }

    /// One hello on a new session; returns the session (to go on with) and its answer.
    /// One hello on a new session, with the replica's test device key unless `key` is given.
    func hello(_ store: SQLiteHubStore, _ replica: ReplicaID, _ credential: Credential, at offset: UInt64 = 0,
               key: [UInt8]? = nil) -> (InlineHubSession, [SessionAction]) {
        var session = InlineHubSession(store: store, random: RandomSource { UInt64.random(in: 0 ... .max) })
        let actions = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
                                                   credential: credential, maxFrameBody: 65_536, deviceKey: key ?? TestSigner.publicKey(replica))),
                                      nowMillis: now + offset)
        return (session, actions)
    }

    func secret(_ actions: [SessionAction]) -> [UInt8]? {
        if case let .send(.welcome(welcome)) = actions.first, !welcome.issuedCredential.isEmpty { return welcome.issuedCredential }
        return nil
    }

    func refusal(_ actions: [SessionAction]) -> (WireError.Code, String)? {
        if case let .send(.reject(code, _, text)) = actions.first { return (code, text) }
        return nil
    }

    func accepted(_ store: SQLiteHubStore, _ replica: ReplicaID, _ secret: [UInt8], key: [UInt8]? = nil) throws -> Bool {
        if case .accepted = try store.authenticate(replica: replica, secret: secret, deviceKey: key ?? TestSigner.publicKey(replica), nowMillis: now) {
            return true
        }
        return false
    }

    @Test("a lost welcome may be retried with the same token by the same replica, until it uses its secret; then the token is spent")
    func lostWelcomeThenSpent() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try store()
        let token = try token(store)
        // The first welcome is lost: the client never got the secret and sends nothing more.
        let (_, first) = hello(store, alpha, .enrolmentToken(token))
        let lost = try #require(secret(first), "enrolled")
        let (_, retried) = hello(store, alpha, .enrolmentToken(token), at: 1)
        let issued = try #require(secret(retried), "the same replica may redeem again after a lost welcome")
        #expect(issued != lost)
        #expect(try !accepted(store, alpha, lost), "the lost secret is replaced")
        // Another replica id cannot use it.
        #expect(refusal(hello(store, beta, .enrolmentToken(token), at: 2).1)?.0 == .enrolmentInvalid)
        // The replica's first authenticated session spends the token for good.
        let (_, welcomed) = hello(store, alpha, .device(issued), at: 3)
        guard case .send(.welcome) = welcomed.first else {
            Issue.record("the issued secret was refused: \(welcomed)")
            return
        }
        let (_, replayed) = hello(store, alpha, .enrolmentToken(token), at: 4)
        #expect(refusal(replayed)?.0 == .enrolmentInvalid, "a spent token re-issues nothing")
        #expect(try accepted(store, alpha, issued), "the device is not locked out by a replay")
    }

    @Test("a request after the welcome proves the secret arrived: the token is spent within that session")
    func spentByTheEnrollingSession() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try store()
        let token = try token(store)
        var (session, first) = hello(store, alpha, .enrolmentToken(token))
        let issued = try #require(secret(first))
        _ = session.receive(.pull(cursor: 0, byteBudget: 65_536), nowMillis: now + 1)
        #expect(refusal(hello(store, alpha, .enrolmentToken(token), at: 2).1)?.0 == .enrolmentInvalid)
        #expect(try accepted(store, alpha, issued))
    }

    @Test("a fresh token, even for another team, never re-binds a known replica id")
    func knownReplicaNotRebound() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try store()
        var (enrolling, welcome) = hello(store, alpha, .enrolmentToken(try token(store)))
        let issued = try #require(secret(welcome))
        _ = enrolling.receive(.heartbeat(ReplicaHealth(pendingChanges: 0, oldestUnsyncedAgeMillis: 0, openConflicts: 0, schemaVersion: 1)), nowMillis: now)
        let other = try token(store, team: "OTHER")
        let (_, answer) = hello(store, alpha, .enrolmentToken(other), at: 1)
        #expect(refusal(answer)?.0 == .enrolmentInvalid)
        #expect(try accepted(store, alpha, issued), "the device keeps its secret")
        #expect(try store.replicaSummaries().first { $0.replica == alpha }?.team == "T", "and its team")
        // The refused token is still good for a new replica.
        #expect(secret(hello(store, beta, .enrolmentToken(other), at: 2).1) != nil)
    }

    @Test("revocation is final: no token re-enrols the revoked replica id, not even one the operator bound to it; its device comes back as a new identity")
    func revocationFinalUntilReEnrolment() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try store()
        // Revoked before the replica ever used its secret: the old token must still be dead.
        let token = try token(store)
        let old = try #require(secret(hello(store, alpha, .enrolmentToken(token)).1))
        #expect(try store.revoke(replica: alpha, nowMillis: now + 1))
        #expect(refusal(hello(store, alpha, .enrolmentToken(token), at: 2).1)?.0 == .enrolmentInvalid)
        #expect(try store.authenticate(replica: alpha, secret: old, deviceKey: TestSigner.publicKey(alpha), nowMillis: now) == .revoked)
        // A fresh unbound token cannot lift it either.
        #expect(refusal(hello(store, alpha, .enrolmentToken(try self.token(store)), at: 3).1)?.0 == .enrolmentInvalid)
        #expect(try store.replicaSummaries().first { $0.replica == alpha }?.revoked == true)
        // The operator's re-enrolment token works for that replica only.
        let bound = try self.token(store, team: "T2", replica: alpha)
        #expect(refusal(hello(store, beta, .enrolmentToken(bound), at: 4).1)?.0 == .enrolmentInvalid)
        // Revocation is final: neither the revoked key nor a new one re-enrols the revoked id; the
        // device comes back as a new identity (another replica id, another key).
        #expect(refusal(hello(store, alpha, .enrolmentToken(bound), at: 5).1)?.0 == .enrolmentInvalid, "the revoked key is refused")
        let newKey = TestSigner.publicKey(ReplicaID(high: 0xA, low: 99))
        #expect(refusal(hello(store, alpha, .enrolmentToken(bound), at: 6, key: newKey).1)?.0 == .enrolmentInvalid,
                "a revoked replica id is never enrolled again")
        #expect(try !accepted(store, alpha, old, key: newKey), "the old secret stays dead")
        let gamma = ReplicaID(high: 0xA, low: 99)
        let fresh = try #require(secret(hello(store, gamma, .enrolmentToken(try self.token(store, team: "T2")), at: 7, key: newKey).1),
                                 "the device enrols as a new identity")
        #expect(try accepted(store, gamma, fresh, key: newKey))
        #expect(try store.replicaSummaries().first { $0.replica == alpha }?.revoked == true)
    }

    @Test("refusals do not tell an unknown token from a used or expired one")
    func refusalsAlike() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try store()
        let used = try token(store)
        _ = try #require(secret(hello(store, alpha, .enrolmentToken(used)).1))
        var random = SystemRandomNumberGenerator()
        let expired = try store.issueEnrolmentToken(team: "T", expiresAtMillis: now - 1, random: &random)
        let answers = [
            refusal(hello(store, beta, .enrolmentToken("cse1-00000000000000000000000000000000"), at: 1).1),
            refusal(hello(store, beta, .enrolmentToken(used), at: 2).1),
            refusal(hello(store, beta, .enrolmentToken(expired), at: 3).1),
        ]
        #expect(answers.allSatisfy { $0?.0 == .enrolmentInvalid })
        #expect(Set(answers.map { $0?.1 ?? "" }).count == 1, "one text for all: \(answers)")
    }
}
