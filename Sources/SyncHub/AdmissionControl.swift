import SyncCore

/// Which connections the hub lets in, and which it ends, as plain values: the socket shell
/// (`ConnectionRegistry`) asks and then acts. No I/O here, so every rule is tested alone.
///
/// Three budgets, each against a different way to lock legitimate replicas out:
/// - all connections (`maxConnections`);
/// - connections that have not completed a hello (`maxUnauthenticated`, much smaller): when full,
///   the oldest of them is ended to let a newcomer in, so idle sockets cannot hold the door shut
///   against a replica that sends its hello at once; past half of it, newcomers get a shorter
///   handshake deadline;
/// - one live session per replica: a new session of the same replica id replaces the old one, so
///   one stolen secret holds one slot, not hundreds.
package struct AdmissionControl: Sendable {
    package typealias ConnectionID = UInt64

    package struct Limits: Sendable {
        package var maxConnections: Int
        package var maxUnauthenticated: Int
        package var handshakeMillis: UInt64
        package var pressuredHandshakeMillis: UInt64

        package init(maxConnections: Int, maxUnauthenticated: Int, handshakeMillis: UInt64, pressuredHandshakeMillis: UInt64) {
            self.maxConnections = maxConnections
            self.maxUnauthenticated = maxUnauthenticated
            self.handshakeMillis = handshakeMillis
            self.pressuredHandshakeMillis = pressuredHandshakeMillis
        }
    }

    package enum Admission: Equatable, Sendable {
        /// Let in with this handshake deadline; `evicting` is an unauthenticated connection to end
        /// now (its slot is already given to the newcomer).
        case admitted(ConnectionID, handshakeMillis: UInt64, evicting: ConnectionID?)
        case busy
    }

    package let limits: Limits
    private var next: ConnectionID = 0
    private var open: Set<ConnectionID> = []
    /// Not yet through a hello, oldest first (at most `maxUnauthenticated`).
    private var unauthenticated: [ConnectionID] = []
    private var sessions: [ReplicaID: ConnectionID] = [:]
    private var replicaOf: [ConnectionID: ReplicaID] = [:]

    package init(limits: Limits) {
        precondition(limits.maxConnections > 0 && limits.maxUnauthenticated > 0, "admission budgets must be positive")
        self.limits = limits
    }

    /// Connections holding a slot.
    package var count: Int { open.count }
    package var unauthenticatedCount: Int { unauthenticated.count }
    package var liveReplicas: [ReplicaID] { Array(sessions.keys) }

    package func isOpen(_ id: ConnectionID) -> Bool { open.contains(id) }
    package func connection(of replica: ReplicaID) -> ConnectionID? { sessions[replica] }

    /// A connection was accepted.
    package mutating func admit() -> Admission {
        var evicting: ConnectionID?
        if open.count >= limits.maxConnections || unauthenticated.count >= limits.maxUnauthenticated {
            // Authenticated sessions are never ended for a newcomer; an unauthenticated one is.
            guard let oldest = unauthenticated.first else { return .busy }
            end(oldest)
            evicting = oldest
        }
        next += 1
        open.insert(next)
        unauthenticated.append(next)
        let pressured = unauthenticated.count > limits.maxUnauthenticated / 2
        return .admitted(next, handshakeMillis: pressured ? min(limits.pressuredHandshakeMillis, limits.handshakeMillis) : limits.handshakeMillis,
                         evicting: evicting)
    }

    /// A hello arrived on the connection: it leaves the unauthenticated budget now, not once the
    /// store has checked it (that may wait behind other sessions' commits, and an eviction then
    /// would end a replica that did everything right). Hellos that fail count against their
    /// source's failure budget instead.
    package mutating func helloReceived(_ id: ConnectionID) {
        unauthenticated.removeAll { $0 == id }
    }

    /// The connection completed a hello as `replica`. Returns the replica's previous session,
    /// which the caller ends (its slot is released here); nil if there was none or `id` is gone.
    package mutating func authenticated(_ id: ConnectionID, as replica: ReplicaID) -> ConnectionID? {
        guard open.contains(id) else { return nil }
        unauthenticated.removeAll { $0 == id }
        // A session that forked goes on as its new identity: it no longer holds the old one's slot.
        if let earlier = replicaOf[id], earlier != replica, sessions[earlier] == id { sessions[earlier] = nil }
        let previous = sessions[replica].flatMap { $0 == id ? nil : $0 }
        if let previous { end(previous) }
        sessions[replica] = id
        replicaOf[id] = replica
        return previous
    }

    /// The connection closed, or is being ended: its slot is free at once. Idempotent.
    package mutating func end(_ id: ConnectionID) {
        guard open.remove(id) != nil else { return }
        if let index = unauthenticated.firstIndex(of: id) { unauthenticated.remove(at: index) }
        if let replica = replicaOf.removeValue(forKey: id), sessions[replica] == id { sessions[replica] = nil }
    }
}

/// Failed authentications per source address: after `limit` failures within `windowMillis`,
/// further hellos from that address are refused until the window ends, without touching the store.
/// The table holds at most `maxSources` addresses; when full, expired entries go first, then the
/// entry whose window started earliest (a flood from many addresses costs only its own budget).
package struct AuthenticationFailureBudget: Sendable {
    package let limit: Int
    package let windowMillis: UInt64
    package let maxSources: Int
    private var sources: [String: (failures: Int, since: UInt64)] = [:]

    package init(limit: Int = 10, windowMillis: UInt64 = 60_000, maxSources: Int = 4_096) {
        precondition(limit > 0 && maxSources > 0, "failure budget limits must be positive")
        self.limit = limit
        self.windowMillis = windowMillis
        self.maxSources = maxSources
    }

    package var trackedSources: Int { sources.count }

    /// Milliseconds the source must wait, or nil if its hellos may be checked.
    package func retryAfter(_ source: String, nowMillis: UInt64) -> UInt64? {
        guard let entry = sources[source], entry.failures >= limit else { return nil }
        let ends = entry.since &+ windowMillis
        return ends > nowMillis ? ends - nowMillis : nil
    }

    package mutating func recordFailure(_ source: String, nowMillis: UInt64) {
        if let entry = sources[source], nowMillis < entry.since &+ windowMillis {
            sources[source] = (entry.failures + 1, entry.since)
            return
        }
        if sources[source] == nil && sources.count >= maxSources {
            let window = windowMillis
            sources = sources.filter { nowMillis < $0.value.since &+ window }
            if sources.count >= maxSources, let oldest = sources.min(by: { $0.value.since < $1.value.since }) {
                sources[oldest.key] = nil
            }
        }
        sources[source] = (1, nowMillis)
    }
}
