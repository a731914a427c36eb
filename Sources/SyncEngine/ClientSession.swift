import SyncCore
import SyncStore
import SyncWire

/// The replica's side of a sync, as a state machine: push until every local change is
/// acknowledged as durable, then pull until caught up, then report health and say goodbye. Its
/// deadlines (handshake, request, frame) are timer actions; the shell reports them through
/// `timerFired(_:)`.
public struct ClientSession {
    public enum State: Equatable, Sendable {
        case idle
        case awaitingWelcome
        /// Receiving the hub's changes of `origin` above `after`: this replica's own (it knows less of
        /// its origin than the hub holds), or, after a fork, its old identity's.
        case recovering(origin: ReplicaID, after: UInt64)
        /// Asked the hub for a new identity; own changes from `divergentFrom` on will be re-issued.
        case forking(newReplica: ReplicaID, divergentFrom: UInt64)
        case pushing(batch: UInt64, until: [ReplicaID: UInt64])
        case pulling(cursor: UInt64)
        case done
        case failed
    }

    public private(set) var state: State = .idle
    public private(set) var summary = SyncSummary()
    public private(set) var failure: SyncFailure?
    let store: ReplicaStore
    let credential: Credential
    let configuration: ClientConfiguration
    /// Where the hub was reached; recorded with the hub's id once it has welcomed this replica.
    let hubAddress: String?
    private var hub: ReplicaID?
    private var nextBatch: UInt64 = 1
    /// What the welcome said the hub holds of this replica's own origin.
    private var ownDurable: UInt64 = 0
    /// Draws a new identity when this replica must fork.
    var random: RandomSource
    /// The frame limit in both directions: this replica's own until the welcome, then the
    /// welcome's `max_frame_body`. The shell applies it to its decoder and codec.
    public private(set) var maxFrameBody: Int

    public init(store: ReplicaStore, credential: Credential, configuration: ClientConfiguration = ClientConfiguration(),
                random: RandomSource = .system, hubAddress: String? = nil) {
        self.store = store
        self.credential = credential
        self.configuration = configuration
        self.random = random
        self.hubAddress = hubAddress
        maxFrameBody = configuration.maxFrameBody
    }

    public var isFinished: Bool { state == .done || state == .failed }

    public mutating func start() -> [SessionAction] {
        state = .awaitingWelcome
        return [.send(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version,
                                   schemaVersion: UInt64(store.schema.version), replica: store.replicaID,
                                   appVersion: configuration.appVersion, credential: credential,
                                   maxFrameBody: UInt64(configuration.maxFrameBody)))),
                .schedule(.handshake, afterMillis: configuration.handshakeMillis)]
    }

    /// The first byte of a frame from the hub arrived (`true`) or its last byte did (`false`).
    public func frameProgress(inFrame: Bool) -> [SessionAction] {
        guard !isFinished else { return [] }
        return inFrame ? [.schedule(.frame, afterMillis: configuration.frameCompletionMillis)] : [.cancel(.frame)]
    }

    /// A deadline passed: the handshake or request deadline closes the connection (the shell
    /// retries with backoff); a frame left unfinished is told `TIMEOUT` first (Protocol/session.md).
    public mutating func timerFired(_ timer: SessionTimer) -> [SessionAction] {
        guard !isFinished else { return [] }
        switch (state, timer) {
        case (.awaitingWelcome, .handshake):
            failure = SyncFailure(.timeout, "no welcome from the hub within the handshake deadline")
        case (.recovering, .request), (.forking, .request), (.pushing, .request), (.pulling, .request):
            failure = SyncFailure(.timeout, "the hub did not answer within the request deadline")
        case (_, .frame):
            return fail(SyncFailure(.timeout, "frame was not completed in time"))
        default:
            return []
        }
        state = .failed
        try? store.recordSyncOutcome(error: WireErrorCode.timeout.name)
        return [.close]
    }

    /// A request is sent with its deadline: the answer is due within `responseMillis` (the
    /// deadline is started as the request goes out, so the send is the last action).
    private func request(_ message: Message) -> [SessionAction] {
        [.schedule(.request, afterMillis: configuration.responseMillis), .send(message)]
    }

    public mutating func receive(_ message: Message) -> [SessionAction] {
        do {
            return try handle(message)
        } catch let failure as SyncFailure {
            return fail(failure)
        } catch let error as StoreError {
            let code: WireErrorCode = error.code == .clockSkew ? .clockSkew : .storageFailure
            return fail(SyncFailure(code, "local replica: \(error.message)", cause: error))
        } catch {
            return fail(SyncFailure(.storageFailure, "local replica: \(error)", cause: error))
        }
    }

    /// The connection broke or a deadline passed before the sync finished.
    public mutating func connectionLost(_ reason: String) {
        guard !isFinished else { return }
        failure = SyncFailure(.timeout, reason)
        state = .failed
    }

    public mutating func protocolError(_ error: WireError) -> [SessionAction] {
        fail(SyncFailure(error.code, "hub sent bad bytes: \(error.detail)", cause: error), tell: error.code)
    }

    private mutating func handle(_ message: Message) throws -> [SessionAction] {
        switch (state, message) {
        case let (_, .reject(code, retryAfter, text)):
            failure = SyncFailure(code, "hub refused: \(OperatorText.sanitised(text, maxBytes: 200))", retryAfterMillis: retryAfter)
            state = .failed
            try? store.recordSyncOutcome(error: code.name)
            return [.close]
        case let (_, .goodbye(reason)):
            // The hub closes the session; a goodbye is never answered (Protocol/session.md).
            state = .failed
            switch reason {
            case 2:
                // Replaced by a newer session of this replica: not this device's own retry if the
                // user did not start one, so it is said, and not retried automatically.
                failure = SyncFailure(.authenticationFailed, """
                    the hub ended this session: a newer session of this replica replaced it (another copy of this \
                    replica file, or its credential, is in use elsewhere)
                    """)
            case 1:
                failure = SyncFailure(.shuttingDown, "the hub is shutting down; the sync resumes when it is back")
            default:
                failure = SyncFailure(.timeout, "the hub closed the session (goodbye \(reason))")
            }
            try? store.recordSyncOutcome(error: failure?.code.name)
            return [.close]
        case let (_, .error(code, fatal, text)):
            // Fatal or not, the attempt ends here; the shell retries retryable codes with backoff,
            // and the next attempt resumes from what the hub acknowledged. An error frame is never
            // answered with an error frame; after a fatal one nothing more is sent.
            failure = SyncFailure(code, "hub refused: \(OperatorText.sanitised(text, maxBytes: 200))")
            state = .failed
            try? store.recordSyncOutcome(error: code.name)
            if code == .cursorAhead {
                // The hub's log is not the one this cursor was given out by (restored from an older
                // backup): pull it again from the start; merges are idempotent.
                try? store.resetPullCursor()
            }
            return fatal ? [.close] : [.send(.goodbye(reason: 0)), .close]
        case let (.awaitingWelcome, .welcome(welcome)):
            guard welcome.protocolVersion == ProtocolConstants.version else {
                throw SyncFailure(.unsupportedVersion, "hub chose protocol version \(welcome.protocolVersion); "
                                  + "this client speaks \(ProtocolConstants.version) only: update the hub or the client")
            }
            guard welcome.maxFrameBody >= ProtocolConstants.minimumFrameBody, welcome.maxFrameBody <= UInt64(configuration.maxFrameBody) else {
                throw SyncFailure(.limitExceeded, "hub chose max_frame_body \(welcome.maxFrameBody), outside \(ProtocolConstants.minimumFrameBody)...\(configuration.maxFrameBody)")
            }
            maxFrameBody = Int(welcome.maxFrameBody)
            hub = welcome.hub
            summary.hub = welcome.hub
            summary.enrolled = !welcome.issuedCredential.isEmpty
            try store.recordHub(welcome.hub, address: hubAddress,
                                credential: welcome.issuedCredential.isEmpty ? nil : welcome.issuedCredential)
            ownDurable = welcome.ownDurable
            return [.cancel(.handshake), .send(.heartbeat(try health()))] + (try afterHandshake())
        case let (.recovering(origin, after), .recovered(answered, next, more, changes)):
            return try recovered(origin, after: after, answered, next: next, more: more, changes)
        case let (.forking(newReplica, divergentFrom), .forked(answered, credential)):
            guard answered == newReplica, !credential.isEmpty else {
                throw SyncFailure(.unexpectedMessage, "hub answered a fork for another identity")
            }
            let old = store.replicaID
            summary.reissued += try store.fork(into: newReplica, credential: credential, divergentFrom: divergentFrom)
            summary.forkedFrom = old
            // The hub now serves this session as the new identity, which it holds nothing of.
            ownDurable = 0
            return try afterHandshake()
        case let (.pushing(batch, until), .pushAck(acked, durable, _)):
            guard acked == batch, let hub else { throw SyncFailure(.unexpectedMessage, "acknowledgement for batch \(acked), expected \(batch)") }
            for (origin, counter) in until where durable[origin] < counter {
                throw SyncFailure(.storageFailure, "hub acknowledged batch \(batch) without storing all of it")
            }
            // Only what this batch carried is known to be on the hub as this replica has it: the hub's
            // durable counter may run further on changes another copy of this replica pushed there,
            // and those must still be compared (recovered) before they count as held.
            try store.recordPeerKnowledge(hub, VersionVector(until))
            return try nextPush()
        case let (.pulling(cursor), .batch(next, more, changes)):
            guard let hub else { throw SyncFailure(.unexpectedMessage, "batch before welcome") }
            guard next >= cursor else { throw SyncFailure(.malformedMessage, "hub cursor went backwards") }
            // Hub sequences are SQLite integers: a larger cursor is not one this hub gave out.
            guard next <= UInt64(Int64.max) else { throw SyncFailure(.malformedMessage, "hub cursor \(next) is above 2^63 - 1") }
            let result = try store.applyFromHub(changes, hub: hub, nextCursor: next)
            summary.pulled += changes.count
            summary.pullBatches += 1
            summary.roundTrips += 1
            summary.applied += result.applied
            summary.duplicates += result.duplicates
            summary.conflictsOpened += result.conflictsOpened
            if more && !changes.isEmpty {
                state = .pulling(cursor: next)
                return request(.pull(cursor: next, byteBudget: configuration.pullBudget))
            }
            try store.recordSyncOutcome(error: nil)
            state = .done
            return [.send(.heartbeat(try health())), .send(.goodbye(reason: 0)), .close]
        default:
            throw SyncFailure(.unexpectedMessage, "unexpected \(message.kind) from the hub")
        }
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
                                    _ changes: [Change]) throws -> [SessionAction] {
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
                state = .forking(newReplica: newReplica, divergentFrom: divergent)
                return request(.fork(newReplica: newReplica))
            }
        } else {
            let result = try store.applyFromHub(changes, hub: hub, nextCursor: nil)
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
        let known = try store.peerKnowledge(hub)
        var changes = try store.changes(notIn: known, limit: configuration.pushBatchChanges)
        // Every push frame fits the negotiated limit with its envelope (Protocol/framing.md):
        // changes are cut at `budget`, and a first change too large for any frame is refused
        // here rather than sent to be refused by the hub.
        let room = FrameBudget.changeBytes(maxBody: maxFrameBody)
        let budget = min(configuration.pushBatchBytes, room)
        var bytes = 0
        if let cut = changes.firstIndex(where: { change in
            bytes += ChangeLimits.encodedSize(change)
            return bytes > budget
        }) {
            if cut == 0 && bytes > room {
                throw SyncFailure(.limitExceeded, "local change \(changes[0].id) of \(bytes) bytes cannot fit a frame under the \(maxFrameBody)-byte limit; it cannot be synced")
            }
            changes.removeSubrange(max(cut, 1)...)
        }
        guard !changes.isEmpty else {
            let cursor = try store.hubLink()?.pullCursor ?? 0
            state = .pulling(cursor: cursor)
            return request(.pull(cursor: cursor, byteBudget: configuration.pullBudget))
        }
        var until: [ReplicaID: UInt64] = [:]
        for change in changes { until[change.id.replica] = max(until[change.id.replica] ?? 0, change.id.counter) }
        let batch = nextBatch
        nextBatch += 1
        state = .pushing(batch: batch, until: until)
        summary.pushed += changes.count
        summary.pushBatches += 1
        summary.roundTrips += 1
        return request(.push(batch: batch, changes: changes))
    }

    private func health() throws -> ReplicaHealth {
        let health = try store.health(hub: hub)
        return ReplicaHealth(pendingChanges: health.pendingChanges, oldestUnsyncedAgeMillis: health.oldestUnsyncedAgeMillis,
                             openConflicts: health.openConflicts, schemaVersion: health.schemaVersion)
    }

    private mutating func fail(_ failure: SyncFailure, tell code: WireErrorCode? = nil) -> [SessionAction] {
        self.failure = failure
        state = .failed
        try? store.recordSyncOutcome(error: failure.code.name)
        let notice = code ?? failure.code
        return [.send(.error(code: notice, fatal: true, message: String(failure.message.prefix(200)))), .close]
    }
}
