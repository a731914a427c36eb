import SyncCore
import SyncHub
import Testing

/// The hub's admission rules as plain values (the sockets are in the loopback tests).
@Suite("Admission control")
struct AdmissionControlTests {
    func control(connections: Int = 8, unauthenticated: Int = 4) -> AdmissionControl {
        AdmissionControl(limits: .init(maxConnections: connections, maxUnauthenticated: unauthenticated,
                                       handshakeMillis: 10_000, pressuredHandshakeMillis: 2_000))
    }

    func admitted(_ admission: AdmissionControl.Admission) -> (id: UInt64, handshake: UInt64, evicting: UInt64?)? {
        if case let .admitted(id, handshake, evicting) = admission { return (id, handshake, evicting) }
        return nil
    }

    @Test("the unauthenticated budget: past half, shorter handshakes; when full, the oldest is ended for a newcomer")
    func unauthenticatedBudget() throws {
        var control = control()
        let first = try #require(admitted(control.admit()))
        let second = try #require(admitted(control.admit()))
        #expect(first.handshake == 10_000 && second.handshake == 10_000 && first.evicting == nil)
        let third = try #require(admitted(control.admit()))
        #expect(third.handshake == 2_000, "over half the budget in use")
        _ = control.admit()
        let fifth = try #require(admitted(control.admit()))
        #expect(fifth.evicting == first.id, "the oldest unauthenticated connection makes room")
        #expect(!control.isOpen(first.id) && control.count == 4 && control.unauthenticatedCount == 4)
        // A hello moves a connection out of the budget: it is never evicted after that.
        control.helloReceived(second.id)
        #expect(try #require(admitted(control.admit())).evicting == nil, "room in the budget again")
        #expect(try #require(admitted(control.admit())).evicting == third.id)
        #expect(control.isOpen(second.id))
    }

    @Test("at the connection cap with only sessions, a newcomer is BUSY; a closed connection frees its slot at once, once")
    func capAndRelease() throws {
        var control = control(connections: 2, unauthenticated: 2)
        let a = try #require(admitted(control.admit()))
        let b = try #require(admitted(control.admit()))
        _ = control.authenticated(a.id, as: ReplicaID(high: 1, low: 1))
        _ = control.authenticated(b.id, as: ReplicaID(high: 2, low: 2))
        #expect(control.admit() == .busy)
        control.end(a.id)
        control.end(a.id)
        #expect(control.count == 1, "ending twice frees one slot")
        let c = try #require(admitted(control.admit()))
        // At the cap, a newcomer takes the slot of an unauthenticated connection, never a session's.
        #expect(admitted(control.admit())?.evicting == c.id)
        #expect(control.isOpen(b.id) && control.count == 2)
    }

    @Test("one live session per replica: a new one replaces the old")
    func oneSessionPerReplica() throws {
        var control = control()
        let replica = ReplicaID(high: 3, low: 3)
        let old = try #require(admitted(control.admit()))
        let new = try #require(admitted(control.admit()))
        #expect(control.authenticated(old.id, as: replica) == nil)
        #expect(control.authenticated(new.id, as: replica) == old.id)
        #expect(!control.isOpen(old.id) && control.connection(of: replica) == new.id && control.count == 1)
        // The replaced connection's late close does not end its successor's registration.
        control.end(old.id)
        #expect(control.connection(of: replica) == new.id && control.liveReplicas == [replica])
        control.end(new.id)
        #expect(control.liveReplicas.isEmpty && control.count == 0)
    }

    @Test("a session that forks goes on as its new identity and no longer holds the old one's slot")
    func forkMovesTheSession() throws {
        var control = control()
        let old = ReplicaID(high: 4, low: 4)
        let forked = ReplicaID(high: 5, low: 5)
        let session = try #require(admitted(control.admit()))
        _ = control.authenticated(session.id, as: old)
        #expect(control.authenticated(session.id, as: forked) == nil)
        #expect(control.connection(of: forked) == session.id)
        #expect(control.connection(of: old) == nil, "the other copy's next session of the old id replaces nothing of this one")
        #expect(control.liveReplicas == [forked])
    }

    @Test("failed hellos: after the limit a source waits out its window; the table stays bounded")
    func failureBudget() {
        var budget = AuthenticationFailureBudget(limit: 3, windowMillis: 60_000, maxSources: 100)
        for offset in 0..<2 { budget.recordFailure("10.0.0.1", nowMillis: 1_000 + UInt64(offset)) }
        #expect(budget.retryAfter("10.0.0.1", nowMillis: 1_010) == nil)
        budget.recordFailure("10.0.0.1", nowMillis: 1_010)
        #expect(budget.retryAfter("10.0.0.1", nowMillis: 1_010) == 59_990)
        #expect(budget.retryAfter("10.0.0.2", nowMillis: 1_010) == nil, "per source")
        #expect(budget.retryAfter("10.0.0.1", nowMillis: 61_000) == nil, "the window ends")
        // A flood from many addresses (or forged extremes of time) keeps the table bounded.
        for index in 0..<10_000 { budget.recordFailure("192.0.2.\(index)", nowMillis: 2_000) }
        #expect(budget.trackedSources <= 100)
        budget.recordFailure("198.51.100.1", nowMillis: .max)
        #expect(budget.retryAfter("198.51.100.1", nowMillis: .max) == nil)
    }
}
