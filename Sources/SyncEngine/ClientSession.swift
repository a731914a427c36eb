import SyncCore
import SyncIdentity
import SyncStore
import SyncWire

/// The replica's side of a sync, as a state machine (Protocol/session.md, "Client"): hello, then
/// recover what the hub holds of this replica's own origin if it knows less, push until every
/// local change is acknowledged as durable, pull until caught up, then report health and say
/// goodbye. Messages and deadlines go in, actions come out; its deadlines (handshake, request,
/// frame) are timer actions, and the shell reports them through `timerFired(_:)`.
///
/// A shell performs the actions in order and feeds back what happens (SyncClient over TCP, the
/// simulator over a simulated network):
///
/// ```swift
/// var session = ClientSession(store: replica, credential: .device(secret))
/// var actions = session.start()                      // hello, and the handshake deadline
/// while !session.isFinished {
///     perform(actions)                               // send, close, schedule or cancel a deadline
///     actions = session.receive(try codec.decode(nextFrame()))
/// }
/// if session.state == .done { /* pushed, pulled to the end, goodbye said */ }
/// ```
///
/// Today the session still reads and writes its replica file itself, in line (the hub's session
/// asks for storage through actions instead).
public struct ClientSession {
    /// Where the session is. Unless `ClientConfiguration.staysConnected`, the spec's `idle` (a
    /// heartbeat on entry, then goodbye) is passed in one step from the last batch to `done`.
    public enum State: Equatable, Sendable {
        /// Not started: `start()` sends the hello (the spec's `connecting`, once connected).
        case connecting
        /// The hello is out; the handshake deadline runs until a welcome or reject.
        case awaitingWelcome
        /// Receiving the hub's changes of `origin` above `after`: this replica's own (it knows less of
        /// its origin than the hub holds), or, after a fork, its old identity's.
        case recovering(origin: ReplicaID, after: UInt64)
        /// Asked the hub for a new identity; own changes from `divergentFrom` on will be re-issued.
        /// The new identity's device key is held by the session until the hub's `forked` answer.
        case forking(newReplica: ReplicaID, divergentFrom: UInt64)
        /// Push `batch` is out, carrying each origin's changes up to `until`; its push-ack is awaited.
        case pushing(batch: UInt64, until: [ReplicaID: UInt64])
        /// A review (decisions on held writes, and a listing of those after `after`) is out; its
        /// held answer is awaited (Protocol/scope.md, "Quarantine review").
        case reviewing(after: ChangeID?)
        /// A pull from `cursor` is out; its batch is awaited.
        case pulling(cursor: UInt64)
        /// Staying connected, caught up: heartbeats every `heartbeat_interval_ms`; `syncAgain()` (or
        /// the pull-again deadline) starts the next round, `finish()` says goodbye.
        case idle
        /// Closed after a whole sync: pushed, pulled to the end, health reported, goodbye sent.
        case done
        /// Closed early, and why (the shell retries a retryable failure with backoff).
        case failed(SyncFailure)
    }

    /// Where the session is (Protocol/session.md, "Client").
    public private(set) var state: State = .connecting
    /// What this session has pushed, pulled, applied and recovered so far.
    public private(set) var summary = SyncSummary()
    /// Rounds (push until acknowledged, then pull until caught up) finished in this session: one
    /// for a session that does not stay connected; a shell staying connected waits on it.
    public private(set) var roundsFinished = 0
    let store: ReplicaStore
    let credential: Credential
    let configuration: ClientConfiguration
    /// Where the hub was reached; recorded with the hub's id once it has welcomed this replica.
    let hubAddress: String?
    private var hub: ReplicaID?
    private var nextBatch: UInt64 = 1
    /// What the welcome said the hub holds of this replica's own origin.
    private var ownDurable: UInt64 = 0
    /// The scopes the welcome said the hub owes this replica a purge of, until they are purged
    /// after pushing (Protocol/scope.md, "Purge").
    private var purgesOwed: [String] = []
    /// The decisions on held writes the review out carries, until the hub answers.
    private var decisionsSent: [HeldDecision] = []
    /// The held writes the hub listed in this session's review so far.
    private var heldListed: Set<ChangeID> = []
    /// Draws a new identity (and its device key) when this replica must fork.
    var random: RandomSource
    /// The device key made for the identity asked for in a fork, until the hub answers.
    private var forkKey: SigningKey?
    /// The welcome's `heartbeat_interval_ms`: how often a session staying connected says it is alive.
    private var heartbeatMillis: UInt64 = 0
    /// The hub key this session trusts: the pinned one, or the welcome's once it is pinned.
    private var hubKey: [UInt8]?
    /// The frame limit in both directions: this replica's own until the welcome, then the
    /// welcome's `max_frame_body`. The shell applies it to its decoder and codec.
    public private(set) var maxFrameBody: Int

    /// A session not yet started.
    ///
    /// - Parameters:
    ///   - store: The replica file; the session reads and writes it as the sync goes.
    ///   - credential: What the hello presents: an enrolment token, or the device secret.
    ///   - configuration: Batch sizes, budgets, limits and deadlines.
    ///   - random: Draws a new identity when the replica must fork; injected for determinism.
    ///   - hubAddress: Where the hub was reached, recorded with its id once it has welcomed this replica.
    public init(store: ReplicaStore, credential: Credential, configuration: ClientConfiguration = ClientConfiguration(),
                random: RandomSource = .system, hubAddress: String? = nil) {
        self.store = store
        self.credential = credential
        self.configuration = configuration
        self.random = random
        self.hubAddress = hubAddress
        maxFrameBody = configuration.maxFrameBody
    }

    /// Why the session closed early; nil while it runs and after a whole sync.
    public var failure: SyncFailure? {
        if case let .failed(failure) = state { return failure }
        return nil
    }

    /// Whether the session has closed, after a whole sync or early.
    public var isFinished: Bool {
        switch state {
        case .done, .failed: true
        case .connecting, .awaitingWelcome, .recovering, .forking, .pushing, .reviewing, .pulling, .idle: false
        }
    }

    /// The connection is up: sends the hello and starts the handshake deadline. Called once.
    ///
    /// - Returns: The hello to send and the deadline to schedule.
    public mutating func start() -> [SessionAction] {
        precondition(state == .connecting, "a client session is started once")
        state = .awaitingWelcome
        return [.send(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version,
                                   schemaVersion: UInt64(store.schema.version), replica: store.replicaID,
                                   appVersion: configuration.appVersion, credential: credential,
                                   maxFrameBody: UInt64(configuration.maxFrameBody),
                                   // The key the hub registers at enrolment, or checks against the registered one.
                                   deviceKey: store.signingKey?.publicKey ?? []))),
                .schedule(.handshake, afterMillis: configuration.handshakeMillis)]
    }

    /// The first byte of a frame from the hub arrived (`true`) or its last byte did (`false`).
    ///
    /// - Returns: The frame deadline to start or cancel; nothing once the session has closed.
    public func frameProgress(inFrame: Bool) -> [SessionAction] {
        guard !isFinished else { return [] }
        return inFrame ? [.schedule(.frame, afterMillis: configuration.frameCompletionMillis)] : [.cancel(.frame)]
    }

    /// A deadline passed: the handshake or request deadline closes the connection (the shell
    /// retries with backoff); a frame left unfinished is told `TIMEOUT` first (Protocol/session.md).
    /// A deadline that is not running in the current state is ignored.
    ///
    /// - Parameter timer: The deadline that passed.
    /// - Returns: What to send and whether to close.
    public mutating func timerFired(_ timer: SessionTimer) -> [SessionAction] {
        let failure: SyncFailure
        switch (state, timer) {
        case (.done, _), (.failed, _):
            return []
        case (.idle, .heartbeat):
            return guarded { [.send(.heartbeat(try $0.health())), .schedule(.heartbeat, afterMillis: $0.heartbeatMillis)] }
        case (.idle, .pullAgain):
            return syncAgain()
        case (_, .heartbeat), (_, .pullAgain):
            // Run only in idle; one that fired as the session left idle raced its cancellation.
            return []
        case (_, .frame):
            return fail(SyncFailure(.timeout, "frame was not completed in time"))
        case (.awaitingWelcome, .handshake):
            failure = SyncFailure(.timeout, "no welcome from the hub within the handshake deadline")
        case (.recovering, .request), (.forking, .request), (.pushing, .request), (.reviewing, .request), (.pulling, .request):
            failure = SyncFailure(.timeout, "the hub did not answer within the request deadline")
        case (.connecting, .handshake), (.connecting, .request),
             (.awaitingWelcome, .request),
             (.recovering, .handshake), (.forking, .handshake), (.pushing, .handshake), (.reviewing, .handshake), (.pulling, .handshake),
             (.idle, .handshake), (.idle, .request):
            // A deadline that is not running (never started, or cancelled by the answer it waited
            // for) and reached the session anyway, racing its cancellation: nothing is overdue.
            return []
        case (_, .idle):
            preconditionFailure("the idle deadline is the hub's; a client session never schedules it")
        }
        state = .failed(failure)
        try? store.recordSyncOutcome(error: WireError.Code.timeout.name)
        return [.close]
    }

    /// A request is sent with its deadline: the answer is due within `responseMillis` (the
    /// deadline is started as the request goes out, so the send is the last action).
    private func request(_ message: Message) -> [SessionAction] {
        [.schedule(.request, afterMillis: configuration.responseMillis), .send(message)]
    }

    /// A message from the hub. Nothing is read once the session has closed.
    ///
    /// - Parameter message: The decoded message.
    /// - Returns: The answer (the next request, an error, goodbye) and the deadlines to start or cancel.
    public mutating func receive(_ message: Message) -> [SessionAction] {
        guard !isFinished else { return [] }
        precondition(state != .connecting, "a client session handles messages only after start()")
        return guarded { try $0.handle(message) }
    }

    /// Staying connected, in `idle`: new local changes (or time to pull again) start the next
    /// round, push then pull (Protocol/session.md, client row "idle | staying connected: new local
    /// changes, or time to pull again"). Outside `idle` nothing happens: a round is running, or the
    /// session has closed; a shell that has new changes mid-round calls this again once
    /// `roundsFinished` moves.
    ///
    /// - Returns: The idle deadlines to cancel and the first request of the round.
    public mutating func syncAgain() -> [SessionAction] {
        guard state == .idle else { return [] }
        return [.cancel(.heartbeat), .cancel(.pullAgain)] + guarded { try $0.nextPush() }
    }

    /// Staying connected, in `idle`: say goodbye (reason 0) and close; the session is `done`.
    /// Outside `idle` nothing happens (a shell ending mid-round closes the connection instead).
    ///
    /// - Returns: The idle deadlines to cancel, the goodbye and the close.
    public mutating func finish() -> [SessionAction] {
        guard state == .idle else { return [] }
        state = .done
        return [.cancel(.heartbeat), .cancel(.pullAgain), .send(.goodbye(reason: 0)), .close]
    }

    /// Runs a step of the session; what it throws fails the session with the code the peer acts on.
    private mutating func guarded(_ step: (inout ClientSession) throws -> [SessionAction]) -> [SessionAction] {
        do {
            return try step(&self)
        } catch let failure as SyncFailure {
            return fail(failure)
        } catch let error as IdentityError {
            // What the hub sent does not verify: nothing of it was applied (Protocol/identity.md).
            return fail(SyncFailure(Self.wireCode(error.code), "hub sent changes that do not verify: \(error.message); nothing applied",
                                    cause: error))
        } catch let error as StoreError where error.code == .identityMissing {
            return fail(SyncFailure(.authenticationFailed, "local replica: \(error.message)", cause: error))
        } catch let error as StoreError {
            let code: WireError.Code = error.code == .clockSkew ? .clockSkew : .storageFailure
            return fail(SyncFailure(code, "local replica: \(error.message)", cause: error))
        } catch {
            return fail(SyncFailure(.storageFailure, "local replica: \(error)", cause: error))
        }
    }

    /// The connection broke before the sync finished: the session fails with a retryable `TIMEOUT`.
    ///
    /// - Parameter reason: Why, for the failure's message (no record contents).
    public mutating func connectionLost(_ reason: String) {
        guard !isFinished else { return }
        state = .failed(SyncFailure(.timeout, reason))
    }

    /// A frame from the hub did not decode (or broke the framing): tell the hub why, then close.
    ///
    /// - Parameter error: The codec's error; its code is sent back, fatal.
    /// - Returns: The error frame and the close.
    public mutating func protocolError(_ error: WireError) -> [SessionAction] {
        guard !isFinished else { return [] }
        return fail(SyncFailure(error.code, "hub sent bad bytes: \(error.detail)", cause: error), tell: error.code)
    }

    /// One switch over every message the protocol has, so a new message type does not compile
    /// until this client says what it does with it; each case checks the state it is allowed in
    /// (Protocol/session.md, the client table's rows "any").
    private mutating func handle(_ message: Message) throws -> [SessionAction] {
        switch message {
        case let .reject(code, retryAfter, text):
            // A reject answers a hello, instead of the welcome; after the handshake it is unexpected.
            guard state == .awaitingWelcome else { throw unexpected(message) }
            return closed(SyncFailure(code, "hub refused: \(OperatorText.sanitised(text, maxBytes: 200))", retryAfterMillis: retryAfter))
        case let .goodbye(reason):
            // The hub closes the session; a goodbye is never answered (Protocol/session.md).
            return closed(Self.goodbyeFailure(reason))
        case let .error(code, fatal, text):
            // Fatal or not, the attempt ends here; the shell retries retryable codes with backoff,
            // and the next attempt resumes from what the hub acknowledged. An error frame is never
            // answered with an error frame; after a fatal one nothing more is sent.
            let failure = SyncFailure(code, "hub refused: \(OperatorText.sanitised(text, maxBytes: 200))")
            if code == .cursorAhead {
                // The hub's log is not the one this cursor was given out by (restored from an older
                // backup): pull it again from the start; merges are idempotent.
                try? store.resetPullCursor()
            }
            let actions = closed(failure)
            return fatal ? actions : [.send(.goodbye(reason: 0))] + actions
        case let .welcome(welcome):
            guard state == .awaitingWelcome else { throw unexpected(message) }
            return try welcomed(welcome)
        case let .recovered(answered, next, more, changes, provenance):
            guard case let .recovering(origin, after) = state else { throw unexpected(message) }
            return try recovered(origin, after: after, answered, next: next, more: more, changes, provenance)
        case let .forked(answered, credential, certificate):
            guard case let .forking(newReplica, divergentFrom) = state, let forkKey else { throw unexpected(message) }
            guard answered == newReplica, !credential.isEmpty else {
                throw SyncFailure(.unexpectedMessage, answered == newReplica ? "hub answered the fork with an empty credential"
                                                                             : "hub answered a fork for another identity")
            }
            if let certificate { try checkOwn(certificate, replica: newReplica, key: forkKey.publicKey) }
            let old = store.replicaID
            summary.reissued += try store.fork(into: newReplica, credential: credential, divergentFrom: divergentFrom, deviceKey: forkKey)
            self.forkKey = nil
            if let certificate { try store.saveCertificate(certificate) }
            summary.forkedFrom = old
            // The hub now serves this session as the new identity, which it holds nothing of.
            ownDurable = 0
            return try afterHandshake()
        case let .pushAck(acked, durable, _):
            guard case let .pushing(batch, until) = state, let hub else { throw unexpected(message) }
            guard acked == batch else { throw SyncFailure(.unexpectedMessage, "acknowledgement for batch \(acked), expected \(batch)") }
            for (origin, counter) in until where durable[origin] < counter {
                throw SyncFailure(.storageFailure, "hub acknowledged batch \(batch) without storing all of it")
            }
            // Only what this batch carried is known to be on the hub as this replica has it: the hub's
            // durable counter may run further on changes another copy of this replica pushed there,
            // and those must still be compared (recovered) before they count as held.
            try store.recordPeerKnowledge(hub, VersionVector(until))
            return try nextPush()
        case let .batch(next, more, changes, provenance):
            guard case let .pulling(cursor) = state else { throw unexpected(message) }
            return try pulled(cursor: cursor, next: next, more: more, changes, provenance)
        case let .held(outcomes, more, items):
            guard case let .reviewing(after) = state else { throw unexpected(message) }
            return try reviewed(after: after, outcomes, more: more, items)
        case .hello, .push, .pull, .recover, .fork, .heartbeat, .purgeAck, .review:
            throw SyncFailure(.unexpectedMessage, "\(message.kind) is not a hub message")
        case .relayedBatch, .relayedRecovered:
            // Only ever sent: its frame decodes as a batch or recovered. A shell that hands one over
            // without the wire (a test's) gets the answer the wire would give.
            guard let decoded = message.decoded else { throw SyncFailure(.malformedMessage, "a relayed change does not decode") }
            return try handle(decoded)
        }
    }

    private func unexpected(_ message: Message) -> SyncFailure {
        SyncFailure(.unexpectedMessage, "unexpected \(message.kind) from the hub")
    }

    /// What a goodbye from the hub means for this replica (Protocol/session.md, client row "any | goodbye").
    static func goodbyeFailure(_ reason: UInt64) -> SyncFailure {
        switch reason {
        case 2:
            // Replaced by a newer session of this replica: not this device's own retry if the
            // user did not start one, so it is said, and not retried automatically.
            SyncFailure(.authenticationFailed, """
                the hub ended this session: a newer session of this replica replaced it (another copy of this \
                replica file, or its credential, is in use elsewhere)
                """)
        case 1:
            SyncFailure(.shuttingDown, "the hub is shutting down; the sync resumes when it is back")
        default:
            SyncFailure(.timeout, "the hub closed the session (goodbye \(reason))")
        }
    }

    /// Ends the session quietly: nothing is sent (the hub's reject, goodbye or error ended it).
    private mutating func closed(_ failure: SyncFailure) -> [SessionAction] {
        state = .failed(failure)
        try? store.recordSyncOutcome(error: failure.code.name)
        return [.close]
    }

    private mutating func welcomed(_ welcome: Welcome) throws -> [SessionAction] {
        guard welcome.protocolVersion == ProtocolConstants.version else {
            throw SyncFailure(.unsupportedVersion, "hub chose protocol version \(welcome.protocolVersion); "
                              + "this client speaks \(ProtocolConstants.version) only: update the hub or the client")
        }
        guard welcome.maxFrameBody >= ProtocolConstants.minimumFrameBody, welcome.maxFrameBody <= UInt64(configuration.maxFrameBody) else {
            throw SyncFailure(.limitExceeded, "hub chose max_frame_body \(welcome.maxFrameBody), outside \(ProtocolConstants.minimumFrameBody)...\(configuration.maxFrameBody)")
        }
        // The hub must be the one pinned at enrolment before anything of its welcome is kept.
        let pinned = try store.pinnedHubKey()
        if let pinned, pinned != welcome.hubKey {
            throw SyncFailure(.hubKeyChanged, """
                the hub's key is not the one pinned when this replica enrolled: this may not be its hub; \
                nothing was sent or stored; ask the hub operator
                """)
        }
        if let certificate = welcome.certificate {
            guard let own = store.signingKey?.publicKey else {
                throw SyncFailure(.authenticationFailed, "this replica has no device key: it cannot sign; enrol it again as a new identity")
            }
            try checkOwn(certificate, replica: store.replicaID, key: own, hubKey: welcome.hubKey)
        }
        maxFrameBody = Int(welcome.maxFrameBody)
        heartbeatMillis = welcome.heartbeatIntervalMillis
        hub = welcome.hub
        hubKey = welcome.hubKey
        summary.hub = welcome.hub
        summary.enrolled = !welcome.issuedCredential.isEmpty
        // The issued secret is durable before anything more is sent: the next frame spends the token.
        try store.recordHub(welcome.hub, address: hubAddress,
                            credential: welcome.issuedCredential.isEmpty ? nil : welcome.issuedCredential)
        // Pinned at enrolment (or at the first welcome of a replica enrolled before protocol 3).
        if pinned == nil { try store.pinHubKey(welcome.hubKey) }
        if let certificate = welcome.certificate { try store.saveCertificate(certificate) }
        let incarnation = try store.incarnation()
        if incarnation != welcome.incarnation {
            try store.setIncarnation(welcome.incarnation)
            if incarnation != nil {
                // The hub's store was restored from a backup: what it acknowledged may be gone, and
                // its sequence numbers name other changes. Pull from the start, and push again
                // everything the hub does not show it holds; it keeps what it has, by id. Nothing
                // of this replica's own origin counts as held either: another copy of this device
                // may have filled, with its own versions, the counters the restore lost, so the
                // own-origin check compares the hub's copies from the first (a copy that diverged
                // there is re-identified from there, not from where this one was last acknowledged).
                try store.forgetHubKnowledge(welcome.hub, keeping: VersionVector())
                try store.resetPullCursor()
            }
        }
        ownDurable = welcome.ownDurable
        purgesOwed = welcome.purges
        // Health first, so the operator's view shows this replica's backlog as the session opens,
        // even when the session is cut before its last pull (Protocol/messages.md, "heartbeat").
        return [.cancel(.handshake), .send(.heartbeat(try health()))] + (try afterHandshake())
    }

    private mutating func pulled(cursor: UInt64, next: UInt64, more: Bool, _ changes: [Change], _ provenance: Provenance) throws -> [SessionAction] {
        guard let hub else { throw SyncFailure(.unexpectedMessage, "batch before welcome") }
        guard next >= cursor else { throw SyncFailure(.malformedMessage, "hub cursor went backwards") }
        // Hub sequences are SQLite integers: a larger cursor is not one this hub gave out.
        guard next <= UInt64(Int64.max) else { throw SyncFailure(.malformedMessage, "hub cursor \(next) is above 2^63 - 1") }
        // Verified against the batch's heads and certificates: nothing of it is applied otherwise.
        let result = try store.applyFromHub(changes, hub: hub, nextCursor: next, provenance: provenance)
        summary.pulled += changes.count
        summary.pullBatches += 1
        summary.roundTrips += 1
        summary.applied += result.applied
        summary.duplicates += result.duplicates
        summary.conflictsOpened += result.conflictsOpened
        // More to pull, as long as the cursor moves: a batch may carry no change and still move it
        // past this replica's own changes, which the hub leaves out; one that moves nothing would
        // be asked again for ever.
        if more && next > cursor {
            state = .pulling(cursor: next)
            return request(.pull(cursor: next, byteBudget: configuration.pullBudget))
        }
        try store.recordSyncOutcome(error: nil)
        roundsFinished += 1
        // The spec's idle: health on entry; then goodbye, unless this client stays connected.
        let heartbeat = Message.heartbeat(try health())
        guard configuration.staysConnected else {
            state = .done
            return [.send(heartbeat), .send(.goodbye(reason: 0)), .close]
        }
        state = .idle
        // The last batch answered the last request: no answer is due while idle.
        return [.cancel(.request), .send(heartbeat), .schedule(.heartbeat, afterMillis: heartbeatMillis),
                .schedule(.pullAgain, afterMillis: configuration.pullIntervalMillis)]
    }

    /// After the handshake (or a fork), before pushing: first the hub's changes of an identity this
    /// replica forked from (its pull never carried them while it had that identity), then a check
    /// of its own origin.
    private mutating func afterHandshake() throws -> [SessionAction] {
        guard let hub else { throw SyncFailure(.unexpectedMessage, "push before welcome") }
        if let old = try store.hubLink()?.forkedFrom {
            let after = try store.peerKnowledge(hub)[old]
            state = .recovering(origin: old, after: after)
            return request(.recover(origin: old, after: after, byteBudget: configuration.pullBudget))
        }
        return try checkOwnOrigin(hub, hubHolds: ownDurable)
    }

    /// Before pushing: does the hub hold more of this replica's own origin than the hub is known to
    /// hold from here? Then this file is a restored backup or a copy (or an acknowledgement was
    /// lost): get those changes back and compare them with the log before writing over them.
    private mutating func checkOwnOrigin(_ hub: ReplicaID, hubHolds: UInt64) throws -> [SessionAction] {
        let own = store.replicaID
        let acknowledged = try store.peerKnowledge(hub)[own]
        if hubHolds > acknowledged {
            state = .recovering(origin: own, after: acknowledged)
            return request(.recover(origin: own, after: acknowledged, byteBudget: configuration.pullBudget))
        }
        if hubHolds < acknowledged {
            // The hub lost what it acknowledged (restored from a backup of its own): push it again,
            // and pull its log again from the start, since its sequence numbers after the backup
            // now name other changes.
            try store.forgetHubKnowledge(hub, ownAbove: hubHolds)
            try store.resetPullCursor()
        }
        return try nextPush()
    }

    private mutating func recovered(_ origin: ReplicaID, after: UInt64, _ answered: ReplicaID, next: UInt64, more: Bool,
                                    _ changes: [Change], _ provenance: Provenance) throws -> [SessionAction] {
        guard let hub else { throw SyncFailure(.unexpectedMessage, "recovered before welcome") }
        guard answered == origin, next >= after, next - after == UInt64(changes.count),
              changes.enumerated().allSatisfy({ $1.id.replica == origin && $1.id.counter == after + UInt64($0) + 1 })
        else { throw SyncFailure(.malformedMessage, "recovered changes are not the contiguous run of \(origin.short) asked for") }
        summary.roundTrips += 1
        if origin == store.replicaID {
            let check = try store.recoverOwnChanges(changes, hub: hub)
            summary.recovered += check.recovered
            if let divergent = check.firstDivergent {
                let newReplica = ReplicaID.random(using: &random)
                // A new identity has a new key (Protocol/identity.md, "Keys"): the copy keeps the old one.
                let key = SigningKey(random: &random)
                forkKey = key
                state = .forking(newReplica: newReplica, divergentFrom: divergent)
                return request(.fork(newReplica: newReplica, deviceKey: key.publicKey))
            }
        } else {
            let result = try store.applyFromHub(changes, hub: hub, nextCursor: nil, provenance: provenance)
            summary.applied += result.applied
            summary.conflictsOpened += result.conflictsOpened
        }
        if more && !changes.isEmpty {
            state = .recovering(origin: origin, after: next)
            return request(.recover(origin: origin, after: next, byteBudget: configuration.pullBudget))
        }
        if origin != store.replicaID {
            try store.finishForkRecovery()
            return try checkOwnOrigin(hub, hubHolds: ownDurable)
        }
        return try nextPush()
    }

    private mutating func nextPush() throws -> [SessionAction] {
        guard let hub else { throw SyncFailure(.unexpectedMessage, "push before welcome") }
        // The hub's own origin and the hub-keyed ones (the catalogue) are signed by the hub alone:
        // a replica never pushes them (the seed every replica makes is the same bytes everywhere).
        // They are left out of the query, not filtered after its limit: a catalogue of more
        // changes than a batch would otherwise fill every batch, and nothing of this replica's
        // would ever be pushed.
        var known = try store.peerKnowledge(hub).counters
        for origin in [hub] + store.hubKeyedOrigins { known[origin] = UInt64(Int64.max) }
        let candidates = try store.changes(notIn: VersionVector(known), limit: configuration.pushBatchChanges)
        // Every push frame fits the negotiated limit with its envelope and provenance
        // (Protocol/framing.md): changes are cut at `budget`, and a first change too large for any
        // frame is refused here rather than sent to be refused by the hub.
        var budget = min(configuration.pushBatchBytes, FrameBudget.changeBytes(maxBody: maxFrameBody, provenance: .none))
        var changes: [Change] = []
        var provenance = Provenance.none
        // The heads take room from the changes: cut, sign, and cut again with what is left (the
        // heads shrink with the changes, so this settles in a round or two).
        for _ in 0..<8 {
            // Each run of another origin must end at a head held of it (Protocol/identity.md, "Where runs may be cut").
            changes = try BundleExchange.signedRuns(Self.cut(candidates, budget: budget, maxFrameBody: maxFrameBody), of: store)
            provenance = try store.provenance(for: changes)
            let room = FrameBudget.changeBytes(maxBody: maxFrameBody, provenance: provenance)
            let bytes = changes.reduce(0) { $0 + ChangeLimits.encodedSize($1) }
            if bytes <= room { break }
            guard changes.count > 1 else {
                throw SyncFailure(.limitExceeded, "local change \(changes[0].id) of \(bytes) bytes cannot fit a frame with its signed head under the \(maxFrameBody)-byte limit; it cannot be synced")
            }
            budget = min(room, bytes - 1)
        }
        guard !changes.isEmpty else {
            // Pushed: own edits of a bundle leaving scope are on the hub (quarantined there if out
            // of scope) before the bundle is purged here, and the pull comes after the purge.
            // Then the review: decisions taken here reach the hub, and the writes it holds for
            // this replica's review (whose bundles it holds, so after the purges) come down.
            let acks = try purgeOwed()
            decisionsSent = try store.heldDecisionsToSend(limit: ReviewCoding.decisionsPerReview)
            heldListed = []
            state = .reviewing(after: nil)
            return acks + request(.review(decisions: decisionsSent, after: nil))
        }
        var until: [ReplicaID: UInt64] = [:]
        for change in changes { until[change.id.replica] = max(until[change.id.replica] ?? 0, change.id.counter) }
        let batch = nextBatch
        nextBatch += 1
        state = .pushing(batch: batch, until: until)
        summary.pushed += changes.count
        summary.pushBatches += 1
        summary.roundTrips += 1
        return request(.push(batch: batch, changes: changes, provenance: provenance))
    }

    /// The hub's answer to a review: each decision's outcome is recorded, the held writes are
    /// stored (never merged), and the listing goes on after the last one while the hub says there
    /// is more. Once the listing is whole, held writes the hub no longer listed are deleted, and
    /// the pull begins.
    private mutating func reviewed(after: ChangeID?, _ outcomes: [HeldOutcome], more: Bool, _ items: [HeldItem]) throws -> [SessionAction] {
        guard outcomes.map(\.change) == decisionsSent.map(\.change) else {
            throw SyncFailure(.malformedMessage, "held answers \(outcomes.count) decisions, not the \(decisionsSent.count) sent, in their order")
        }
        guard after.map({ after in items.allSatisfy { $0.change.id > after } }) ?? true else {
            throw SyncFailure(.malformedMessage, "held items are not after the review's cursor")
        }
        try store.recordHeldOutcomes(outcomes)
        try store.receiveHeld(items)
        summary.roundTrips += 1
        summary.heldReceived += items.count
        summary.heldDecisionsRecorded += outcomes.filter { $0.code != .refused }.count
        heldListed.formUnion(items.map(\.change.id))
        // Decisions beyond one review's go in the next; each outcome moves its decision on, so a
        // batch seen again means the store could not record them: left for the next session.
        let sent = decisionsSent
        decisionsSent = try store.heldDecisionsToSend(limit: ReviewCoding.decisionsPerReview)
        if decisionsSent == sent { decisionsSent = [] }
        let listedOn = more ? items.last?.change.id : nil
        if listedOn != nil || !decisionsSent.isEmpty {
            let next = listedOn ?? after
            state = .reviewing(after: next)
            return request(.review(decisions: decisionsSent, after: next))
        }
        try store.keepOnlyHeld(heldListed)
        let cursor = try store.hubLink()?.pullCursor ?? 0
        state = .pulling(cursor: cursor)
        return request(.pull(cursor: cursor, byteBudget: configuration.pullBudget))
    }

    /// After pushing, before pulling: purges each scope the welcome named, unless it holds changes
    /// the hub does not hold yet (own ones, or others' this replica relays from a bundle: they would
    /// be lost; that purge waits for a later session, whose welcome names it again). Returns the
    /// purge-acks naming the scopes purged, each within the frame limit. Runs once a session; a
    /// purge that fails fails the session, and the hub, not told, owes it again (purging a scope
    /// twice is harmless).
    private mutating func purgeOwed() throws -> [SessionAction] {
        guard !purgesOwed.isEmpty else { return [] }
        var purged: [String] = []
        for scope in purgesOwed {
            if try store.pendingChanges(scope: scope) > 0 {
                summary.purgesWaiting += 1
                continue
            }
            _ = try store.purge(scope: scope)
            purged.append(scope)
        }
        purgesOwed = []
        summary.purged += purged.count
        return ScopeList.chunks(purged, maxBody: maxFrameBody).map { .send(.purgeAck(scopes: $0)) }
    }

    /// The changes up to `budget` bytes (at least the first, unless it cannot fit any frame).
    static func cut(_ changes: [Change], budget: Int, maxFrameBody: Int) throws -> [Change] {
        var bytes = 0
        guard let cut = changes.firstIndex(where: { change in
            bytes += ChangeLimits.encodedSize(change)
            return bytes > budget
        }) else { return changes }
        if cut == 0 && bytes > FrameBudget.changeBytes(maxBody: maxFrameBody, provenance: .none) {
            throw SyncFailure(.limitExceeded, "local change \(changes[0].id) of \(bytes) bytes cannot fit a frame under the \(maxFrameBody)-byte limit; it cannot be synced")
        }
        return Array(changes[..<max(cut, 1)])
    }

    /// Checks a device certificate the hub gave this replica for its own identity: for this
    /// replica, this key, signed by the hub key.
    private func checkOwn(_ certificate: DeviceCertificate, replica: ReplicaID, key: [UInt8], hubKey: [UInt8]? = nil) throws {
        guard let hubKey = hubKey ?? self.hubKey, certificate.replica == replica, certificate.publicKey == key,
              certificate.verifies(with: hubKey) else {
            throw SyncFailure(.signatureInvalid, "the hub's device certificate for \(replica.short) does not verify with its key; nothing stored")
        }
    }

    /// The wire code of a verification failure (Protocol/errors.md).
    static func wireCode(_ code: IdentityError.Code) -> WireError.Code {
        switch code {
        case .signatureInvalid: .signatureInvalid
        case .chainGap: .chainGap
        case .unsignedChanges: .unsignedChanges
        case .unknownDevice: .unknownDevice
        case .equivocation: .equivocation
        default: .storageFailure
        }
    }

    private func health() throws -> ReplicaHealth {
        let health = try store.health(hub: hub)
        return ReplicaHealth(pendingChanges: health.pendingChanges, oldestUnsyncedAgeMillis: health.oldestUnsyncedAgeMillis,
                             openConflicts: health.openConflicts, schemaVersion: health.schemaVersion)
    }

    private mutating func fail(_ failure: SyncFailure, tell code: WireError.Code? = nil) -> [SessionAction] {
        state = .failed(failure)
        try? store.recordSyncOutcome(error: failure.code.name)
        let notice = code ?? failure.code
        return [.send(.error(code: notice, fatal: true, message: String(failure.message.prefix(200)))), .close]
    }
}
