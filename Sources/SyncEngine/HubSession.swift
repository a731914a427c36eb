import SyncCore
import SyncIdentity
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
    /// Deadlines (Protocol/session.md, "Timeouts"). The handshake deadline is the shell's to
    /// choose per connection (it is shorter under admission pressure): see `HubSession.start`.
    public var frameCompletionMillis = ProtocolConstants.frameCompletionMillis
    public var idleMillis = ProtocolConstants.idleMillis

    public init() {}
}

/// The hub's side of one connection, as a state machine: events in (a message, a storage
/// outcome, a deadline, a frame begun or completed), actions out. The session never touches the
/// store: it asks for storage work with `.store` and hears the outcome in `storageCompleted`, as
/// NIO's `ProtocolNegotiationHandlerStateMachine` asks for user work. An acknowledgement is only
/// ever created from an append's outcome, so it follows its commit; the same code runs over TCP
/// (with concurrent sessions' pushes committed together) and in the simulator.
///
/// ```swift
/// var session = HubSession(hub: store.hubID)
/// var actions = session.start(handshakeMillis: 10_000)
/// // for each action: send, close, schedule/cancel a deadline, or perform `.store(request)` on the
/// // writer and hand its outcome back:
/// actions = session.storageCompleted(request.perform(on: store, random: &random)!, nowMillis: now)
/// // for each decoded frame, in order, once no storage outcome is awaited:
/// actions = session.receive(message, nowMillis: now)
/// ```
public struct HubSession: Sendable {
    /// Where the session is (Protocol/session.md, "Hub").
    public enum State: Equatable, Sendable {
        /// Accepted; the handshake deadline runs until a hello arrives (and while it is checked).
        case awaitingHello
        /// Welcomed: serving `replica` of `team` (after a fork, the new replica).
        case ready(replica: ReplicaID, team: String)
        /// Closed, or about to be: nothing more is read.
        case closed
    }

    /// The storage request whose outcome the session waits for, with what it needs to answer.
    enum Pending: Equatable, Sendable {
        case credential(Hello)
        case opening(Hello, team: String, issued: [UInt8])
        case push(batch: UInt64)
        case pull(cursor: UInt64)
        case recover(origin: ReplicaID)
        case fork(from: ReplicaID, into: ReplicaID, team: String)
        case review
    }

    /// The device key of the peer's TLS client certificate, as the TLS layer verified it; nil on
    /// a plaintext (loopback) connection. The hello's device key must be this one.
    public var tlsDeviceKey: [UInt8]?

    /// Where the session is.
    public private(set) var state: State = .awaitingHello
    /// The frame limit in both directions: the hub's own until the welcome, then the negotiated
    /// one (Protocol/framing.md, "The limit"). The shell applies it to its decoder and codec.
    public private(set) var maxFrameBody: Int
    private var lastBatch: UInt64 = 0
    /// Enrolled in this session, and the replica has not yet shown it received the secret.
    private var enrolmentUnconfirmed = false
    private(set) var pending: Pending?
    let hubID: ReplicaID
    let configuration: HubConfiguration

    /// A session for a connection just accepted.
    ///
    /// - Parameters:
    ///   - hub: The hub's own replica id, named in every welcome.
    ///   - configuration: Limits, budgets and deadlines.
    public init(hub: ReplicaID, configuration: HubConfiguration = HubConfiguration()) {
        hubID = hub
        self.configuration = configuration
        maxFrameBody = configuration.maxFrameBody
    }

    /// The replica served, once welcomed.
    public var replica: ReplicaID? {
        if case let .ready(replica, _) = state { return replica }
        return nil
    }

    /// Whether the session waits for a storage outcome; the shell hands it no frame meanwhile.
    public var isAwaitingStorage: Bool { pending != nil }

    /// The connection was accepted: the handshake deadline starts (Protocol/session.md; the shell
    /// picks its length, 10 s or 2 s under admission pressure).
    ///
    /// - Parameter handshakeMillis: How long the peer has to send its hello.
    /// - Returns: The handshake deadline to schedule.
    public func start(handshakeMillis: UInt64) -> [SessionAction] {
        [.schedule(.handshake, afterMillis: handshakeMillis)]
    }

    /// The first byte of a frame arrived (`true`) or its last byte did (`false`).
    ///
    /// - Returns: The frame deadline to start or cancel; nothing once closed.
    public func frameProgress(inFrame: Bool) -> [SessionAction] {
        guard state != .closed else { return [] }
        return inFrame ? [.schedule(.frame, afterMillis: configuration.frameCompletionMillis)] : [.cancel(.frame)]
    }

    /// A deadline passed. Every (state, deadline) pair is listed, so a new state or deadline does
    /// not compile until it is decided here.
    ///
    /// - Parameters:
    ///   - timer: The deadline that passed.
    ///   - nowMillis: The hub's wall clock, for what is recorded.
    /// - Returns: The `TIMEOUT` error and the close, a restarted deadline, or nothing.
    public mutating func timerFired(_ timer: SessionTimer, nowMillis: UInt64) -> [SessionAction] {
        switch (state, timer) {
        case (.closed, .handshake), (.closed, .frame), (.closed, .idle), (.closed, .request):
            return []
        case (.awaitingHello, .handshake):
            // A hello being checked has arrived: the handshake deadline ended with it.
            guard pending == nil else { return [] }
            return fail(.timeout, "no hello within the handshake deadline", nowMillis: nowMillis)
        case (.awaitingHello, .frame), (.ready, .frame):
            return fail(.timeout, "frame was not completed in time", nowMillis: nowMillis)
        case (.ready, .idle):
            // The replica waits for this hub's answer: not idle.
            guard pending == nil else { return [.schedule(.idle, afterMillis: configuration.idleMillis)] }
            return fail(.timeout, "idle deadline passed", nowMillis: nowMillis)
        case (.ready, .handshake), (.awaitingHello, .idle):
            // Not running in this state (the handshake's was cancelled by the hello; the idle one
            // starts at the welcome): one that reached the session anyway raced its cancellation.
            return []
        case (.awaitingHello, .request), (.ready, .request), (_, .heartbeat), (_, .pullAgain):
            // The request, heartbeat and pull-again deadlines are the client's; this session never schedules them.
            return []
        }
    }

    /// A message from the client. The shell hands none while a storage outcome is awaited.
    ///
    /// - Parameters:
    ///   - message: The decoded message.
    ///   - nowMillis: The hub's wall clock.
    /// - Returns: Sends, closes, deadlines and storage requests, in the order to perform them.
    public mutating func receive(_ message: Message, nowMillis: UInt64) -> [SessionAction] {
        guard state != .closed else { return [] }
        guard pending == nil else {
            // The shell hands no frame to a session waiting for storage (so a request sent before
            // the last was answered waits, in order, behind it); a shell that reads ahead gets
            // this refusal (Protocol/session.md, hub row "ready | a push, pull, recover or fork…").
            if case .error = message {
                // Never answered with an error frame, even here.
                state = .closed
                self.pending = nil
                return [.close]
            }
            return fail(.limitExceeded, "\(message.kind) arrived while a request was still being handled", nowMillis: nowMillis)
        }
        var actions: [SessionAction] = []
        if case .ready = state { actions.append(.schedule(.idle, afterMillis: configuration.idleMillis)) }
        if enrolmentUnconfirmed, case let .ready(replica, _) = state {
            // A client stores its issued secret before it sends anything after the welcome, so any
            // frame now proves the welcome arrived: the token can no longer be redeemed again.
            enrolmentUnconfirmed = false
            actions.append(.store(.spendTokens(replica: replica, nowMillis: nowMillis)))
        }
        return actions + handle(message, nowMillis: nowMillis)
    }

    /// One switch over every message the protocol has, so a new message type does not compile
    /// until the hub says what it does with it; each case checks the state it is allowed in.
    private mutating func handle(_ message: Message, nowMillis: UInt64) -> [SessionAction] {
        switch message {
        case let .hello(hello):
            guard state == .awaitingHello else { return fail(.unexpectedMessage, "hello after the handshake", nowMillis: nowMillis) }
            return [.cancel(.handshake)] + handshake(hello, nowMillis: nowMillis)
        case let .error(code, fatal, _):
            // Never answered with an error frame (Protocol/framing.md). Before the hello there is
            // no session to go on with; once ready, a non-fatal error is the client's report, and
            // the session continues (Protocol/messages.md, "error": `fatal` = 0).
            guard case let .ready(replica, _) = state else {
                state = .closed
                return [.close]
            }
            let recorded = record(.error(code: "client:\(code.name)"), replica, nowMillis)
            guard fatal else { return [recorded] }
            state = .closed
            return [recorded, .close]
        case let .push(batch, changes, provenance):
            guard case let .ready(replica, _) = state else { return beforeHello(message, nowMillis: nowMillis) }
            return push(batch, changes, provenance, from: replica, nowMillis: nowMillis)
        case let .pull(cursor, budget):
            guard case let .ready(replica, _) = state else { return beforeHello(message, nowMillis: nowMillis) }
            pending = .pull(cursor: cursor)
            let room = Self.pageBudget(FrameBudget.changeBytes(maxBody: maxFrameBody, provenance: .none))
            return [.store(.readPage(cursor: cursor, excludingOrigin: replica,
                                     byteBudget: min(Int(clamping: budget), configuration.maxPullBudget, room),
                                     maxCount: configuration.maxPullChanges))]
        case let .recover(origin, after, budget):
            guard case .ready = state else { return beforeHello(message, nowMillis: nowMillis) }
            pending = .recover(origin: origin)
            let room = Self.pageBudget(FrameBudget.recoveredChangeBytes(maxBody: maxFrameBody, provenance: .none))
            return [.store(.readOrigin(origin: origin, after: after,
                                       byteBudget: min(Int(clamping: budget), configuration.maxPullBudget, room),
                                       maxCount: configuration.maxPullChanges))]
        case let .fork(newReplica, deviceKey):
            guard case let .ready(replica, team) = state else { return beforeHello(message, nowMillis: nowMillis) }
            pending = .fork(from: replica, into: newReplica, team: team)
            return [.store(.fork(replica: replica, into: newReplica, deviceKey: deviceKey, nowMillis: nowMillis))]
        case let .heartbeat(health):
            guard case let .ready(replica, _) = state else { return beforeHello(message, nowMillis: nowMillis) }
            return [record(.health(pendingChanges: health.pendingChanges, oldestUnsyncedAgeMillis: health.oldestUnsyncedAgeMillis,
                                   openConflicts: health.openConflicts, schemaVersion: health.schemaVersion), replica, nowMillis)]
        case let .purgeAck(scopes):
            // Not answered, like a heartbeat; a scope not owed to this replica is ignored by the store.
            guard case let .ready(replica, _) = state else { return beforeHello(message, nowMillis: nowMillis) }
            return [.store(.acknowledgePurges(scopes: scopes, replica: replica, nowMillis: nowMillis))]
        case let .review(decisions, after):
            guard case let .ready(replica, _) = state else { return beforeHello(message, nowMillis: nowMillis) }
            pending = .review
            let room = maxFrameBody - ReviewCoding.heldEnvelopeBytes(outcomes: decisions.count)
            return [.store(.review(decisions: decisions, after: after, replica: replica, byteBudget: room,
                                   maxCount: ReviewCoding.maxItems, nowMillis: nowMillis))]
        case .goodbye:
            guard case .ready = state else { return beforeHello(message, nowMillis: nowMillis) }
            state = .closed
            return [.close]
        case .welcome, .reject, .pushAck, .batch, .recovered, .forked, .relayedBatch, .relayedRecovered, .held:
            return fail(.unexpectedMessage, "\(message.kind) is not a client message", nowMillis: nowMillis)
        }
    }

    /// A client message before the hello (`receive` hands a closed session nothing).
    private mutating func beforeHello(_ message: Message, nowMillis: UInt64) -> [SessionAction] {
        fail(.unexpectedMessage, "expected hello, got \(message.kind)", nowMillis: nowMillis)
    }

    /// A framing or decoding failure on this connection: tell the peer why, then close.
    ///
    /// - Parameters:
    ///   - error: The codec's error; its code is sent back, fatal.
    ///   - nowMillis: The hub's wall clock, for what is recorded.
    /// - Returns: The error frame (recorded once ready) and the close.
    public mutating func protocolError(_ error: WireError, nowMillis: UInt64) -> [SessionAction] {
        fail(error.code, error.detail, nowMillis: nowMillis)
    }

    /// The outcome of the storage request the session asked for.
    ///
    /// - Parameters:
    ///   - outcome: What the store answered, of the kind the request expects.
    ///   - nowMillis: The hub's wall clock.
    /// - Returns: The answer to send (a welcome, a push-ack, a batch…) and what follows it.
    public mutating func storageCompleted(_ outcome: HubStoreOutcome, nowMillis: UInt64) -> [SessionAction] {
        guard state != .closed, let pending else { return [] }
        self.pending = nil
        var actions: [SessionAction] = []
        if case .ready = state { actions.append(.schedule(.idle, afterMillis: configuration.idleMillis)) }
        // Over the request asked for, so a new kind of request does not compile until its outcome
        // is handled; an outcome of another kind is the shell's mistake.
        switch pending {
        case let .credential(hello):
            guard case let .credential(result) = outcome else { mismatched(outcome, pending) }
            return credentialChecked(hello, result, nowMillis: nowMillis)
        case let .opening(hello, team, issued):
            guard case let .opened(result) = outcome else { mismatched(outcome, pending) }
            return opened(hello, team: team, issued: issued, result, nowMillis: nowMillis)
        case let .push(batch):
            guard case let .appended(result) = outcome else { mismatched(outcome, pending) }
            return actions + appended(batch, result, nowMillis: nowMillis)
        case let .pull(cursor):
            guard case let .page(result) = outcome else { mismatched(outcome, pending) }
            return actions + pulled(cursor, result, nowMillis: nowMillis)
        case let .recover(origin):
            guard case let .originPage(result) = outcome else { mismatched(outcome, pending) }
            return actions + recovered(origin, result, nowMillis: nowMillis)
        case let .fork(replica, newReplica, team):
            guard case let .forked(result, certificate) = outcome else { mismatched(outcome, pending) }
            return actions + forked(replica, into: newReplica, team: team, result, certificate: certificate, nowMillis: nowMillis)
        case .review:
            guard case let .reviewed(result) = outcome else { mismatched(outcome, pending) }
            guard case let .success(review) = result else {
                return actions + fail(.storageFailure, "the hub could not read its store; retry later", nowMillis: nowMillis)
            }
            return actions + [.send(.held(outcomes: review.outcomes, more: review.page.more, items: review.page.items))]
        }
    }

    private func mismatched(_ outcome: HubStoreOutcome, _ pending: Pending) -> Never {
        preconditionFailure("storage outcome \(outcome) does not answer the request pending (\(pending))")
    }

    private mutating func handshake(_ hello: Hello, nowMillis: UInt64) -> [SessionAction] {
        guard hello.protocolMin >= 1, hello.protocolMin <= ProtocolConstants.version, ProtocolConstants.version <= hello.protocolMax else {
            return reject(.unsupportedVersion, "this hub speaks protocol version \(ProtocolConstants.version) only; "
                          + "the client offered \(hello.protocolMin) to \(hello.protocolMax): update the client")
        }
        guard hello.schemaVersion >= 1 else { return reject(.schemaMismatch, "schema version must be 1 or more") }
        guard hello.maxFrameBody >= ProtocolConstants.minimumFrameBody else {
            return reject(.limitExceeded, "max_frame_body must be at least \(ProtocolConstants.minimumFrameBody)")
        }
        // The hub's id names the hub in every welcome: no replica may take it.
        guard hello.replica != hubID else { return reject(.enrolmentInvalid, "that replica id is the hub's own; draw another") }
        if case .none = hello.credential {
            return reject(.authenticationFailed, "a credential is required: enrol with a token from the hub operator")
        }
        // Under TLS the connection proved the certificate's key: the hello must name that device.
        if let tlsDeviceKey, tlsDeviceKey != hello.deviceKey {
            return reject(.authenticationFailed, "the hello's device key is not the key of this connection's client certificate")
        }
        pending = .credential(hello)
        return [.store(.checkCredential(replica: hello.replica, credential: hello.credential, deviceKey: hello.deviceKey, nowMillis: nowMillis))]
    }

    private mutating func credentialChecked(_ hello: Hello, _ result: Result<CredentialCheck, any Error>, nowMillis: UInt64) -> [SessionAction] {
        let team: String
        var issued: [UInt8] = []
        switch result {
        case .failure:
            return reject(.storageFailure, "the hub could not read its store; retry later")
        case let .success(.enrolment(.enrolled(enrolledTeam, secret))):
            team = enrolledTeam
            issued = secret
        case .success(.enrolment(.unknownToken)), .success(.enrolment(.alreadyUsed)), .success(.enrolment(.expired)):
            // One text for every case: a guesser must not learn that a token exists.
            return reject(.enrolmentInvalid, Self.enrolmentRefusal)
        case let .success(.device(.accepted(acceptedTeam))):
            team = acceptedTeam
        case .success(.device(.unknown)):
            return reject(.authenticationFailed, "this replica's credential is not known to this hub")
        case .success(.device(.revoked)):
            return reject(.authenticationFailed, "this replica's credential has been revoked")
        }
        pending = .opening(hello, team: team, issued: issued)
        // A hello with the device secret shows the replica holds it: its tokens are spent.
        return [.store(.openSession(replica: hello.replica, spendTokens: issued.isEmpty, appVersion: String(hello.appVersion.prefix(64)),
                                    schemaVersion: hello.schemaVersion, nowMillis: nowMillis))]
    }

    private mutating func opened(_ hello: Hello, team: String, issued: [UInt8], _ result: Result<SessionOpening, any Error>,
                                 nowMillis: UInt64) -> [SessionAction] {
        guard case let .success(opening) = result else {
            return reject(.storageFailure, "the hub could not read its store; retry later")
        }
        state = .ready(replica: hello.replica, team: team)
        enrolmentUnconfirmed = !issued.isEmpty
        maxFrameBody = min(configuration.maxFrameBody, Int(clamping: hello.maxFrameBody))
        return [.send(.welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: configuration.schemaVersion,
                                       hub: hubID, maxFrameBody: UInt64(maxFrameBody), issuedCredential: issued,
                                       hubTimeMillis: nowMillis, heartbeatIntervalMillis: configuration.heartbeatIntervalMillis,
                                       ownDurable: opening.ownDurable, hubKey: opening.hubKey, incarnation: opening.incarnation,
                                       certificate: opening.certificate, purges: opening.purges))),
                .schedule(.idle, afterMillis: configuration.idleMillis)]
    }

    private mutating func push(_ batch: UInt64, _ changes: [Change], _ provenance: Provenance, from replica: ReplicaID,
                               nowMillis: UInt64) -> [SessionAction] {
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
        for change in changes where ClockSkew.isTooFarAhead(change.timestamp, nowMillis: nowMillis, limitMillis: configuration.maxClockSkewMillis) {
            return [.send(.error(code: .clockSkew, fatal: false,
                                 message: "change \(change.id) is more than \(configuration.maxClockSkewMillis / 1000) s ahead of the hub's clock; nothing stored"))]
        }
        // Acknowledged only from the append's outcome, which the shell reports after the commit
        // (fsync) returned: an ack means durable.
        pending = .push(batch: batch)
        return [.store(.append(changes: changes, replica: replica, provenance: provenance, receivedAtMillis: nowMillis))]
    }

    private mutating func appended(_ batch: UInt64, _ result: Result<HubAppendResult, any Error>, nowMillis: UInt64) -> [SessionAction] {
        guard let replica else { return [] }
        switch result {
        case let .success(result):
            if let first = result.equivocations.first {
                // Never acknowledged: the hub keeps the version it holds (and the refused one as
                // evidence); the replica learns at its next handshake what the hub holds of its origin.
                return [record(.error(code: WireError.Code.equivocation.name), replica, nowMillis),
                        .send(.error(code: .equivocation, fatal: false, message: """
                    change \(first) (and \(result.equivocations.count - 1) more) is already held with other content; \
                    nothing of batch \(batch) stored; reconnect to recover this replica's own changes
                    """))]
            }
            return [.send(.pushAck(batch: batch, durable: result.durable, hubHead: result.head))]
        case let .failure(error):
            if let error = error as? StoreError, let code = Self.identityCode(error.code) {
                // The push does not verify (Protocol/identity.md): refused whole, and fatal, since
                // sending it again cannot help.
                return fail(code, "batch \(batch) refused, nothing stored: \(error.message)", nowMillis: nowMillis)
            }
            return [record(.error(code: WireError.Code.storageFailure.name), replica, nowMillis),
                    .send(.error(code: .storageFailure, fatal: false, message: "the hub could not store the batch; nothing stored; retry later"))]
        }
    }

    private mutating func pulled(_ cursor: UInt64, _ result: Result<HubPullRead, any Error>, nowMillis: UInt64) -> [SessionAction] {
        guard let replica else { return [] }
        guard case let .success(read) = result else {
            return fail(.storageFailure, "the hub could not read its store; retry later", nowMillis: nowMillis)
        }
        // A cursor is a hub sequence this hub gave out: one above the head was forged, or comes
        // from before this hub's store was restored from an older backup. Answering it would either
        // wrap (≥ 2^63 in SQLite) and replay everything or skip what is to come.
        guard let page = read.page else {
            return fail(.cursorAhead, "pull cursor \(cursor) is above this hub's last sequence \(read.head)", nowMillis: nowMillis)
        }
        // Every change in a multi-change batch fits `room`, so the frame (with its envelope) fits
        // the negotiated limit; only a first change alone can be larger.
        let room = FrameBudget.changeBytes(maxBody: maxFrameBody, provenance: page.provenance)
        if page.bytes > room, let first = page.encoded.first {
            return [record(.error(code: WireError.Code.limitExceeded.name), replica, nowMillis),
                    .send(.error(code: .limitExceeded, fatal: false, message: Self.tooLarge(first, page.bytes, maxFrameBody)))]
        }
        // The stored bytes go out as they are: the hub neither decodes nor re-encodes values.
        return [record(.pulled(cursor: page.nextCursor), replica, nowMillis),
                .send(.relayedBatch(nextCursor: page.nextCursor, more: page.more, encodedChanges: page.encoded, provenance: page.provenance))]
    }

    /// A replica restored from a backup, or a copy, gets back what the hub holds of an origin.
    private mutating func recovered(_ origin: ReplicaID, _ result: Result<HubOriginPage, any Error>, nowMillis: UInt64) -> [SessionAction] {
        guard case let .success(page) = result else {
            return fail(.storageFailure, "the hub could not read its store; retry later", nowMillis: nowMillis)
        }
        // As for a pull: every change of a multi-change answer fits `room`, so the frame fits the
        // negotiated limit.
        let room = FrameBudget.recoveredChangeBytes(maxBody: maxFrameBody, provenance: page.provenance)
        if page.bytes > room, let first = page.encoded.first {
            return [.send(.error(code: .limitExceeded, fatal: false, message: Self.tooLarge(first, page.bytes, maxFrameBody)))]
        }
        return [.send(.relayedRecovered(origin: origin, nextCounter: page.nextCounter, more: page.more, encodedChanges: page.encoded,
                                        provenance: page.provenance))]
    }

    /// A copy that diverged from what the hub holds of its origin takes a new identity in the same
    /// team; the session goes on as that identity.
    private mutating func forked(_ replica: ReplicaID, into newReplica: ReplicaID, team: String, _ result: Result<ForkResult, any Error>,
                                 certificate: DeviceCertificate?, nowMillis: UInt64) -> [SessionAction] {
        switch result {
        case let .success(.forked(secret)):
            state = .ready(replica: newReplica, team: team)
            return [record(.hello(appVersion: "fork of \(replica.short)", schemaVersion: 1), newReplica, nowMillis),
                    .send(.forked(newReplica: newReplica, issuedCredential: secret, certificate: certificate))]
        case .success(.idTaken):
            return fail(.enrolmentInvalid, "replica id \(newReplica.short) or its device key is already known to this hub", nowMillis: nowMillis)
        case .success(.tooManyForks):
            return fail(.limitExceeded, "this replica has forked as often as the hub allows; ask the operator", nowMillis: nowMillis)
        case .success(.unknownReplica):
            return fail(.authenticationFailed, "this replica's credential is not valid for a fork", nowMillis: nowMillis)
        case .failure:
            return fail(.storageFailure, "the hub could not store the fork; retry later", nowMillis: nowMillis)
        }
    }

    /// Why a stored change cannot be relayed under the negotiated limit. Only its id is read from
    /// its bytes (the encoding starts with it).
    static func tooLarge(_ encoded: [UInt8], _ bytes: Int, _ maxFrameBody: Int) -> String {
        var reader = ByteReader(encoded)
        let id = (try? ChangeID.decode(from: &reader)).map { "\($0)" } ?? "of unreadable id"
        return "hub change \(id) of \(bytes) bytes cannot fit a frame under the \(maxFrameBody)-byte limit"
    }

    /// The budget a page is read with inside `room`: a page may run up to 16 KiB (one
    /// checkpoint's span) and its heads past its budget to reach a valid cut (Protocol/identity.md,
    /// "Checkpoints"), so that margin is left.
    static func pageBudget(_ room: Int) -> Int { max(1, room - Checkpoints.span - 4_096) }

    /// The wire code of a push the store refused because its runs do not verify; nil for other errors.
    static func identityCode(_ code: StoreError.Code) -> WireError.Code? {
        switch code {
        case .signatureInvalid: .signatureInvalid
        case .chainGap: .chainGap
        case .unsignedChanges: .unsignedChanges
        case .unknownDevice: .unknownDevice
        default: nil
        }
    }

    static let enrolmentRefusal = "enrolment token is not valid (unknown, used or expired); ask the operator for a new one"

    private func record(_ event: HubSessionEvent, _ replica: ReplicaID, _ nowMillis: UInt64) -> SessionAction {
        .store(.record(event, replica: replica, nowMillis: nowMillis))
    }

    private mutating func reject(_ code: WireError.Code, _ text: String) -> [SessionAction] {
        state = .closed
        return [.send(.reject(code: code, retryAfterMillis: code.retryable ? 5_000 : 0, message: text)), .close]
    }

    private mutating func fail(_ code: WireError.Code, _ text: String, nowMillis: UInt64) -> [SessionAction] {
        var actions: [SessionAction] = []
        if case let .ready(replica, _) = state { actions.append(record(.error(code: code.name), replica, nowMillis)) }
        state = .closed
        pending = nil
        return actions + [.send(.error(code: code, fatal: true, message: text)), .close]
    }
}
