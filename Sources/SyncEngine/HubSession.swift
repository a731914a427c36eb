import SyncCore
import SyncStore
import SyncWire

/// How a hub serves sessions.
public struct HubConfiguration: Sendable {
    public var schemaVersion: UInt64 = 1
    public var maxFrameBody: Int = Frame.defaultMaxBody
    /// Largest push accepted, in changes.
    public var maxPushChanges = 20_000
    /// Largest pull budget honoured; kept well under the frame limit so a batch always fits.
    public var maxPullBudget = 2 * 1024 * 1024
    public var maxPullChanges = 20_000
    public var heartbeatIntervalMillis: UInt64 = 30_000
    /// Pushed changes further ahead of the hub's clock than this are refused (CLOCK_SKEW).
    public var maxClockSkewMillis: UInt64 = 300_000

    public init() {}
}

/// The hub's side of one connection, as a state machine: a message in, actions out. Storage is
/// called synchronously (a push is committed before its acknowledgement is returned), so the same
/// code runs over TCP and in the simulator.
public struct HubSession: Sendable {
    public enum State: Equatable, Sendable {
        case awaitingHello
        case ready(replica: ReplicaID, team: String)
        case closed
    }

    public private(set) var state: State = .awaitingHello
    /// The frame limit in both directions: the hub's own until the welcome, then the negotiated
    /// one (Protocol/framing.md, "The limit"). The shell applies it to its decoder and codec.
    public private(set) var maxFrameBody: Int
    private var lastBatch: UInt64 = 0
    /// Enrolled in this session, and the replica has not yet shown it received the secret.
    private var enrolmentUnconfirmed = false
    let store: any HubStore
    let configuration: HubConfiguration
    var random: RandomSource

    public init(store: any HubStore, configuration: HubConfiguration = HubConfiguration(), random: RandomSource = .system) {
        self.store = store
        self.configuration = configuration
        self.random = random
        maxFrameBody = configuration.maxFrameBody
    }

    public var replica: ReplicaID? {
        if case let .ready(replica, _) = state { return replica }
        return nil
    }

    public mutating func receive(_ message: Message, nowMillis: UInt64) -> [SessionAction] {
        if enrolmentUnconfirmed, case let .ready(replica, _) = state {
            // A client stores its issued secret before it sends anything after the welcome, so any
            // frame now proves the welcome arrived: the token can no longer be redeemed again.
            enrolmentUnconfirmed = false
            try? store.spendEnrolmentTokens(of: replica, nowMillis: nowMillis)
        }
        switch (state, message) {
        case (.closed, _):
            return []
        case let (.awaitingHello, .hello(hello)):
            return handshake(hello, nowMillis: nowMillis)
        case (.awaitingHello, .error):
            // Never answer an error frame with an error frame (Protocol/framing.md): just close.
            state = .closed
            return [.close]
        case (.awaitingHello, _):
            return fail(.unexpectedMessage, "expected hello, got \(message.kind)", nowMillis: nowMillis)
        case let (.ready(replica, _), .push(batch, changes)):
            return push(batch, changes, from: replica, nowMillis: nowMillis)
        case let (.ready(replica, _), .pull(cursor, budget)):
            return pull(cursor, budget, for: replica, nowMillis: nowMillis)
        case let (.ready, .recover(origin, after, budget)):
            return recover(origin, after: after, budget, nowMillis: nowMillis)
        case let (.ready(replica, team), .fork(newReplica)):
            return fork(replica, team: team, into: newReplica, nowMillis: nowMillis)
        case let (.ready(replica, _), .heartbeat(health)):
            record(.health(pendingChanges: health.pendingChanges, oldestUnsyncedAgeMillis: health.oldestUnsyncedAgeMillis,
                           openConflicts: health.openConflicts, schemaVersion: health.schemaVersion), replica, nowMillis)
            return []
        case (.ready, .goodbye):
            state = .closed
            return [.close]
        case let (.ready(replica, _), .error(code, _, _)):
            record(.error(code: "client:\(code.name)"), replica, nowMillis)
            state = .closed
            return [.close]
        case (.ready, _):
            return fail(.unexpectedMessage, "\(message.kind) is not a client message", nowMillis: nowMillis)
        }
    }

    /// A framing or decoding failure on this connection: tell the peer why, then close.
    public mutating func protocolError(_ error: WireError, nowMillis: UInt64) -> [SessionAction] {
        fail(error.code, error.detail, nowMillis: nowMillis)
    }

    /// A deadline passed (handshake, frame completion, idle).
    public mutating func timedOut(_ what: String, nowMillis: UInt64) -> [SessionAction] {
        fail(.timeout, "\(what) deadline passed", nowMillis: nowMillis)
    }

    private mutating func handshake(_ hello: Hello, nowMillis: UInt64) -> [SessionAction] {
        guard hello.protocolMin >= 1, hello.protocolMin <= ProtocolLimits.version, ProtocolLimits.version <= hello.protocolMax else {
            return reject(.unsupportedVersion, "this hub speaks protocol version \(ProtocolLimits.version) only; "
                          + "the client offered \(hello.protocolMin) to \(hello.protocolMax): update the client")
        }
        guard hello.schemaVersion >= 1 else { return reject(.schemaMismatch, "schema version must be 1 or more") }
        guard hello.maxFrameBody >= ProtocolLimits.minimumFrameBody else {
            return reject(.limitExceeded, "max_frame_body must be at least \(ProtocolLimits.minimumFrameBody)")
        }
        // The hub's id names the hub in every welcome: no replica may take it.
        guard hello.replica != store.hubID else { return reject(.enrolmentInvalid, "that replica id is the hub's own; draw another") }
        let team: String
        var issued: [UInt8] = []
        do {
            switch hello.credential {
            case .none:
                return reject(.authenticationFailed, "a credential is required: enrol with a token from the hub operator")
            case let .enrolmentToken(token):
                switch try store.redeemEnrolmentToken(token, replica: hello.replica, nowMillis: nowMillis, random: &random) {
                case let .enrolled(enrolledTeam, secret):
                    team = enrolledTeam
                    issued = secret
                case .unknownToken, .alreadyUsed, .expired:
                    // One text for every case: a guesser must not learn that a token exists.
                    return reject(.enrolmentInvalid, Self.enrolmentRefusal)
                }
            case let .device(secret):
                switch try store.authenticate(replica: hello.replica, secret: secret) {
                case let .accepted(acceptedTeam):
                    team = acceptedTeam
                    try store.spendEnrolmentTokens(of: hello.replica, nowMillis: nowMillis)
                case .unknown: return reject(.authenticationFailed, "this replica's credential is not known to this hub")
                case .revoked: return reject(.authenticationFailed, "this replica's credential has been revoked")
                }
            }
            try store.recordSession(.hello(appVersion: String(hello.appVersion.prefix(64)), schemaVersion: hello.schemaVersion),
                                    replica: hello.replica, nowMillis: nowMillis)
        } catch {
            return reject(.storageFailure, "the hub could not read its store; retry later")
        }
        let ownDurable: UInt64
        do { ownDurable = try store.ownDurable(hello.replica) } catch {
            return reject(.storageFailure, "the hub could not read its store; retry later")
        }
        state = .ready(replica: hello.replica, team: team)
        enrolmentUnconfirmed = !issued.isEmpty
        maxFrameBody = min(configuration.maxFrameBody, Int(clamping: hello.maxFrameBody))
        return [.send(.welcome(Welcome(protocolVersion: ProtocolLimits.version, schemaVersion: configuration.schemaVersion,
                                       hub: store.hubID, maxFrameBody: UInt64(maxFrameBody), issuedCredential: issued,
                                       hubTimeMillis: nowMillis, heartbeatIntervalMillis: configuration.heartbeatIntervalMillis,
                                       ownDurable: ownDurable)))]
    }

    private mutating func push(_ batch: UInt64, _ changes: [Change], from replica: ReplicaID, nowMillis: UInt64) -> [SessionAction] {
        guard batch == lastBatch + 1 else {
            return fail(.unexpectedMessage, "push batch \(batch), expected \(lastBatch + 1)", nowMillis: nowMillis)
        }
        lastBatch = batch
        guard changes.count <= configuration.maxPushChanges else {
            return fail(.limitExceeded, "push of \(changes.count) changes exceeds \(configuration.maxPushChanges)", nowMillis: nowMillis)
        }
        // A change no replica could apply, or one too large for the smallest frame a puller may
        // negotiate, would block every replica's pull behind it: refuse it here, before it is
        // stored and relayed (Protocol/messages.md, "Limits on a change").
        for change in changes {
            if let violation = ChangeLimits.rangeViolation(of: change) ?? ChangeLimits.contentViolation(of: change) {
                return fail(.malformedMessage, "change \(change.id) has \(violation); nothing stored", nowMillis: nowMillis)
            }
            if let violation = ChangeLimits.sizeViolation(of: change) {
                return fail(.limitExceeded, "change \(change.id): \(violation); nothing stored", nowMillis: nowMillis)
            }
        }
        for change in changes where change.timestamp.physicalMillis > nowMillis &+ configuration.maxClockSkewMillis {
            return [.send(.error(code: .clockSkew, fatal: false,
                                 message: "change \(change.id) is more than \(configuration.maxClockSkewMillis / 1000) s ahead of the hub's clock; nothing stored"))]
        }
        do {
            // Committed (fsync) before the acknowledgement is created: an ack means durable.
            let result = try store.append(changes, from: replica, receivedAtMillis: nowMillis)
            if let first = result.equivocations.first {
                // Never acknowledged: the hub keeps the version it holds (and the refused one as
                // evidence); the replica learns at its next handshake what the hub holds of its origin.
                record(.error(code: WireErrorCode.equivocation.name), replica, nowMillis)
                return [.send(.error(code: .equivocation, fatal: false, message: """
                    change \(first) (and \(result.equivocations.count - 1) more) is already held with other content; \
                    nothing of batch \(batch) stored; reconnect to recover this replica's own changes
                    """))]
            }
            return [.send(.pushAck(batch: batch, durable: result.durable, hubHead: result.head))]
        } catch {
            record(.error(code: WireErrorCode.storageFailure.name), replica, nowMillis)
            return [.send(.error(code: .storageFailure, fatal: false, message: "the hub could not store the batch; nothing stored; retry later"))]
        }
    }

    private mutating func pull(_ cursor: UInt64, _ budget: UInt64, for replica: ReplicaID, nowMillis: UInt64) -> [SessionAction] {
        do {
            // A cursor is a hub sequence this hub gave out: one above the head was forged, or
            // comes from before this hub's store was restored from an older backup. Answering it
            // would either wrap (≥ 2^63 in SQLite) and replay everything or skip what is to come.
            let head = try store.head()
            guard cursor <= head else {
                return fail(.cursorAhead, "pull cursor \(cursor) is above this hub's last sequence \(head)", nowMillis: nowMillis)
            }
            // Every change in a multi-change batch fits `room`, so the frame (with its envelope)
            // fits the negotiated limit; only a first change alone can be larger.
            let room = FrameBudget.changeBytes(maxBody: maxFrameBody)
            let page = try store.changes(after: cursor, excludingOrigin: replica,
                                         byteBudget: min(Int(clamping: budget), configuration.maxPullBudget, room),
                                         maxCount: configuration.maxPullChanges)
            if page.bytes > room, let first = try page.decodeChanges().first {
                record(.error(code: WireErrorCode.limitExceeded.name), replica, nowMillis)
                return [.send(.error(code: .limitExceeded, fatal: false,
                                     message: "hub change \(first.id) of \(page.bytes) bytes cannot fit a frame under the \(maxFrameBody)-byte limit"))]
            }
            try store.recordSession(.pulled(cursor: page.nextCursor), replica: replica, nowMillis: nowMillis)
            return [.send(.batch(nextCursor: page.nextCursor, more: page.more, changes: try page.decodeChanges()))]
        } catch {
            return fail(.storageFailure, "the hub could not read its store; retry later", nowMillis: nowMillis)
        }
    }

    /// A replica restored from a backup, or a copy, gets back what the hub holds of an origin.
    private mutating func recover(_ origin: ReplicaID, after: UInt64, _ budget: UInt64, nowMillis: UInt64) -> [SessionAction] {
        do {
            // As for a pull: every change of a multi-change answer fits `room`, so the frame fits
            // the negotiated limit.
            let room = FrameBudget.recoveredChangeBytes(maxBody: maxFrameBody)
            let page = try store.changes(ofOrigin: origin, after: after,
                                         byteBudget: min(Int(clamping: budget), configuration.maxPullBudget, room),
                                         maxCount: configuration.maxPullChanges)
            if page.bytes > room, let first = try page.decodeChanges().first {
                return [.send(.error(code: .limitExceeded, fatal: false,
                                     message: "hub change \(first.id) of \(page.bytes) bytes cannot fit a frame under the \(maxFrameBody)-byte limit"))]
            }
            return [.send(.recovered(origin: origin, nextCounter: page.nextCounter, more: page.more, changes: try page.decodeChanges()))]
        } catch {
            return fail(.storageFailure, "the hub could not read its store; retry later", nowMillis: nowMillis)
        }
    }

    /// A copy that diverged from what the hub holds of its origin takes a new identity in the same
    /// team; the session goes on as that identity.
    private mutating func fork(_ replica: ReplicaID, team: String, into newReplica: ReplicaID, nowMillis: UInt64) -> [SessionAction] {
        do {
            switch try store.fork(replica, into: newReplica, nowMillis: nowMillis, random: &random) {
            case let .forked(secret):
                state = .ready(replica: newReplica, team: team)
                record(.hello(appVersion: "fork of \(replica.short)", schemaVersion: 1), newReplica, nowMillis)
                return [.send(.forked(newReplica: newReplica, issuedCredential: secret))]
            case .idTaken:
                return fail(.enrolmentInvalid, "replica id \(newReplica.short) is already known to this hub", nowMillis: nowMillis)
            case .tooManyForks:
                return fail(.limitExceeded, "this replica has forked as often as the hub allows; ask the operator", nowMillis: nowMillis)
            case .unknownReplica:
                return fail(.authenticationFailed, "this replica's credential is not valid for a fork", nowMillis: nowMillis)
            }
        } catch {
            return fail(.storageFailure, "the hub could not store the fork; retry later", nowMillis: nowMillis)
        }
    }

    static let enrolmentRefusal = "enrolment token is not valid (unknown, used or expired); ask the operator for a new one"

    private func record(_ event: HubSessionEvent, _ replica: ReplicaID, _ nowMillis: UInt64) {
        // Bookkeeping for the operator view must not break a sync.
        try? store.recordSession(event, replica: replica, nowMillis: nowMillis)
    }

    private mutating func reject(_ code: WireErrorCode, _ text: String) -> [SessionAction] {
        state = .closed
        return [.send(.reject(code: code, retryAfterMillis: code.retryable ? 5_000 : 0, message: text)), .close]
    }

    private mutating func fail(_ code: WireErrorCode, _ text: String, nowMillis: UInt64) -> [SessionAction] {
        if case let .ready(replica, _) = state { record(.error(code: code.name), replica, nowMillis) }
        state = .closed
        return [.send(.error(code: code, fatal: true, message: text)), .close]
    }
}
