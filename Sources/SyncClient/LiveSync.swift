import Logging
import NIOConcurrencyHelpers
import SyncEngine
import SyncStore
import SyncWire

/// A replica that stays connected to its hub (Protocol/session.md, client `idle`): one session,
/// kept open, runs a round (push until acknowledged, then pull until caught up) when asked with
/// `sync()` (new local changes) and every `ClientConfiguration.pullIntervalMillis`, heartbeating
/// in between. A lost connection is made again with backoff (full jitter, reset once a session
/// is welcomed); the first round of each session covers every `sync()` still waiting. A sync on
/// a live session pays no TCP connect, hello, credential check or welcome.
///
/// ```swift
/// let live = LiveSync(store: replica, host: "127.0.0.1", port: 7700, logger: logger)
/// let running = Task { try await live.run() }      // until stopped or cancelled
/// try replica.write(author: "sam") { try $0.create("note", id: id, values: values, scope: person) }
/// let round = try await live.sync()                // pushed and pulled, on the open session
/// live.stop(); try await running.value            // goodbye, close
/// ```
///
/// Purges the hub comes to owe after the welcome are named in the next welcome only, so a
/// session staying connected is ended and made again every `sessionLifetimeMillis`.
public final class LiveSync: Sendable {
    /// What one round did.
    public struct Round: Sendable, Equatable {
        /// Own changes the hub acknowledged in this round.
        public let pushed: Int
        /// Changes received from the hub in this round.
        public let pulled: Int
        /// The connection it ran on, from 1: it rises each time the connection is made again.
        public let connection: Int

        package init(pushed: Int, pulled: Int, connection: Int) {
            self.pushed = pushed
            self.pulled = pulled
            self.connection = connection
        }
    }

    private struct State {
        /// `sync()` calls so far; each waits for a round that starts after it.
        var requested: UInt64 = 0
        var waiting: [(ticket: UInt64, continuation: CheckedContinuation<Round, any Error>)] = []
        /// The open connection's events, to wake its loop; nil between connections.
        var events: SessionEvents<SessionTimer>?
        var stopping = false
        /// Why `run()` ended; later `sync()` calls fail with it.
        var ended: (any Error)?
    }

    private let state = NIOLockedValueBox(State())
    private let store: ReplicaStore
    private let host: String
    private let port: Int
    private let configuration: ClientConfiguration
    private let tls: ClientTLSConfiguration?
    private let retry: RetryPolicy
    private let sessionLifetimeMillis: UInt64
    private let logger: Logger

    /// A live sync not yet running; `run()` connects. The replica must be enrolled (a first
    /// `SyncClient.sync` with a token does that).
    ///
    /// - Parameters:
    ///   - store: The enrolled replica.
    ///   - host: The hub's host name or address.
    ///   - port: The hub's port.
    ///   - configuration: As for `SyncClient.sync`; `staysConnected` is set.
    ///   - tls: TLS 1.3 to the hub, as for `SyncClient.sync`; nil connects in plaintext.
    ///   - retry: The backoff between connections (its `attempts` is not used: it reconnects until stopped).
    ///   - sessionLifetimeMillis: A session is ended (at a round's end) and made again after this
    ///     long, so that purges owed since its welcome are learnt.
    ///   - logger: Ids, codes and counts only.
    public init(store: ReplicaStore, host: String, port: Int, configuration: ClientConfiguration = ClientConfiguration(),
                tls: ClientTLSConfiguration? = nil, retry: RetryPolicy = RetryPolicy(), sessionLifetimeMillis: UInt64 = 600_000,
                logger: Logger) {
        var configuration = configuration
        configuration.staysConnected = true
        self.store = store
        self.host = host
        self.port = port
        self.configuration = configuration
        self.tls = tls
        self.retry = retry
        self.sessionLifetimeMillis = sessionLifetimeMillis
        self.logger = logger
    }

    /// Asks for a round (there are new local changes, or the caller wants the hub's) and waits
    /// until a round that started after this call has finished, on the open session or on the
    /// next one once the connection is made again.
    ///
    /// - Returns: What that round did.
    /// - Throws: Why `run()` ended, if it has (stopped, cancelled, or a failure retrying does not help).
    public func sync() async throws -> Round {
        try await withCheckedThrowingContinuation { continuation in
            let wake: SessionEvents<SessionTimer>? = state.withLockedValue { state in
                if let ended = state.ended {
                    continuation.resume(throwing: ended)
                    return nil
                }
                state.requested += 1
                state.waiting.append((state.requested, continuation))
                return state.events
            }
            // The loop takes it as time to pull again: in idle the round starts at once; mid-round
            // the loop starts another when this one ends.
            wake?.schedule(.pullAgain, afterMillis: 0)
        }
    }

    /// Ends `run()`: at once between connections, at the end of the round running, with goodbye.
    public func stop() {
        let wake = state.withLockedValue { state in
            state.stopping = true
            return state.events
        }
        wake?.schedule(.pullAgain, afterMillis: 0)
    }

    /// Connects, and keeps a session open until `stop()` or cancellation; reconnects with backoff
    /// when the connection is lost or the hub ends the session with a retryable code.
    ///
    /// - Throws: `HubUnreachable` when no connection ever reached the hub; a `SyncFailure` that
    ///   retrying does not help (a revoked credential, a replaced session, a hub key changed);
    ///   `CancellationError` when cancelled. Waiting `sync()` calls fail with the same error.
    public func run() async throws {
        do {
            try await withTaskCancellationHandler { try await connections() } onCancel: { stop() }
            end(with: CancellationError())
            if Task.isCancelled { throw CancellationError() }
        } catch {
            end(with: error)
            throw error
        }
    }

    private func connections() async throws {
        let tlsContext = try tls.map(ClientTLS.context)
        var reachedHub = false
        var failures = 0
        var connection = 0
        while !state.withLockedValue({ $0.stopping }) {
            guard let secret = try store.hubLink()?.credential else {
                throw SyncFailure(.authenticationFailed, "this replica is not enrolled: sync once with an enrolment token first")
            }
            var session = ClientSession(store: store, credential: .device(secret), configuration: configuration,
                                        hubAddress: "\(host):\(port)")
            connection += 1
            var rounds = Rounds(connection: connection, started: ContinuousClock.now, lifetime: .milliseconds(sessionLifetimeMillis))
            var nanos: UInt64 = 0
            do {
                try await SyncClient.run(&session, host: host, port: port, tls: tlsContext, maxBody: configuration.maxFrameBody,
                                         compressionThreshold: configuration.compressionThreshold, sessionNanos: &nanos,
                                         attach: attach, willHandle: { rounds.asked = self.roundStarting() },
                                         step: { rounds.step(&$0, self) }, traffic: { _, _, _ in reachedHub = true })
            } catch {
                if !reachedHub, let unreachable = HubUnreachable(error, host: host, port: port) { throw unreachable }
                if let refused = ClientTLS.failure(error) { throw refused }
                session.connectionLost("connection to \(host):\(port) failed or broke: \(type(of: error))")
            }
            state.withLockedValue { $0.events = nil }
            if session.summary.hub != nil { failures = 0 }
            guard let failure = session.failure else { continue }  // done: stopping, or the lifetime passed
            guard failure.retryable, failure.retryAfterMillis <= retry.maxDelayMillis else { throw failure }
            failures += 1
            let delay = max(retry.delay(after: failures), failure.retryAfterMillis)
            logger.notice("live sync connection lost; reconnecting", metadata: ["code": "\(failure.code.name)", "delay_ms": "\(delay)"])
            try await retry.clock.sleep(for: .milliseconds(delay))
        }
    }

    private func attach(_ events: SessionEvents<SessionTimer>) {
        let stopping = state.withLockedValue { state in
            state.events = events
            return state.stopping
        }
        if stopping { events.schedule(.pullAgain, afterMillis: 0) }
    }

    /// The tickets a round starting now covers, and whether the shell should end the session.
    fileprivate func roundStarting() -> UInt64 { state.withLockedValue { $0.requested } }

    fileprivate func idle(covered: UInt64) -> (more: Bool, stopping: Bool) {
        state.withLockedValue { ($0.requested > covered, $0.stopping) }
    }

    fileprivate func finished(_ round: Round, covered: UInt64) {
        let ready = state.withLockedValue { state in
            let ready = state.waiting.filter { $0.ticket <= covered }
            state.waiting.removeAll { $0.ticket <= covered }
            return ready
        }
        for waiter in ready { waiter.continuation.resume(returning: round) }
    }

    private func end(with error: any Error) {
        let waiting = state.withLockedValue { state in
            state.ended = error
            state.events = nil
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.continuation.resume(throwing: error) }
    }
}

/// One connection's rounds, as the shell sees them after each event: a round starts when the
/// session leaves `idle` (or at the welcome), and finishes when `roundsFinished` moves.
private struct Rounds {
    let connection: Int
    let started: ContinuousClock.Instant
    let lifetime: Duration
    /// `sync()` calls made before the event being handled was taken: a round that event starts
    /// reads the local changes after them. One made while the event is handled may have written
    /// after that read, so it waits for the next round.
    var asked: UInt64 = 0
    /// The tickets the running round covers: every `sync()` made before it started.
    var covered: UInt64?
    var finished = 0
    var wasIdle = false
    var pushed = 0
    var pulled = 0

    mutating func step(_ session: inout ClientSession, _ live: LiveSync) -> [SessionAction] {
        if covered == nil, session.summary.hub != nil {
            // Welcomed: the session's first round is under way.
            covered = asked
        }
        // The pull-again deadline started a round.
        if wasIdle, session.state != .idle, !session.isFinished { covered = asked }
        if session.roundsFinished > finished, let covered {
            finished = session.roundsFinished
            live.finished(LiveSync.Round(pushed: session.summary.pushed - pushed, pulled: session.summary.pulled - pulled,
                                         connection: connection), covered: covered)
            pushed = session.summary.pushed
            pulled = session.summary.pulled
        }
        wasIdle = session.state == .idle
        guard wasIdle, let covered else { return [] }
        let (more, stopping) = live.idle(covered: covered)
        if stopping || ContinuousClock.now - started > lifetime { return session.finish() }
        guard more else { return [] }
        wasIdle = false
        self.covered = live.roundStarting()
        return session.syncAgain()
    }
}
