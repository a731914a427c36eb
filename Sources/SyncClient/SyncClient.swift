import Dispatch
import Foundation  // ECONNREFUSED
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// Progress of a running sync, for a progress bar.
public struct SyncProgress: Sendable {
    /// The attempt running, from 1.
    public let attempt: Int
    /// Own changes acknowledged so far, over every attempt.
    public let pushed: Int
    /// Changes received so far, over every attempt.
    public let pulled: Int
    /// Bytes sent so far (frames, headers included).
    public let bytesSent: Int
    /// Bytes received so far (frames, headers included).
    public let bytesReceived: Int
}

/// The outcome of a sync.
public struct SyncReport: Sendable {
    /// What the attempts did, added up.
    public let summary: SyncSummary
    /// Bytes sent over every attempt (frames, headers included).
    public let bytesSent: Int
    /// Bytes received over every attempt.
    public let bytesReceived: Int
    /// Attempts made, the successful one included.
    public let attempts: Int
    /// From the call to its return, backoff sleeps included.
    public let durationSeconds: Double
    /// Time spent in sessions after the TCP connection was established.
    public let sessionSeconds: Double
}

/// Retries with exponential backoff and jitter; each attempt resumes where the last stopped.
///
/// Its randomness and its sleeps are parameters, so a test runs the loop with a seeded source and
/// a clock that does not really sleep, and sees the exact delays:
///
/// ```swift
/// let policy = RetryPolicy(attempts: 3, random: RandomSource { 42 }, clock: ContinuousClock())
/// ```
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included (at least one is made).
    public var attempts = 5
    /// The bound of the first delay's jitter; it doubles with each attempt.
    public var firstDelayMillis: UInt64 = 1_000
    /// The largest bound, and the longest `retry_after_ms` from the hub that is waited for (a longer
    /// one ends the run instead).
    public var maxDelayMillis: UInt64 = 300_000
    /// Draws each delay.
    public var random: RandomSource
    /// Waits out each delay.
    public var clock: any Clock<Duration>

    /// - Parameters:
    ///   - attempts: Attempts in all, the first included.
    ///   - random: Draws each delay; the system's generator unless a test passes a seeded one.
    ///   - clock: Waits out each delay; the continuous clock unless a test passes one that records.
    public init(attempts: Int = 5, random: RandomSource = .system, clock: any Clock<Duration> = ContinuousClock()) {
        self.attempts = attempts
        self.random = random
        self.clock = clock
    }

    /// Full jitter (Protocol/session.md): uniform in 0…bound, the bound doubling from 1 s to 5 min.
    func delay(after attempt: Int) -> UInt64 {
        let bound = min(maxDelayMillis, firstDelayMillis << UInt64(min(attempt - 1, 20)))
        // A copy: the source's state lives behind its closure, so drawing from the copy advances it.
        var random = random
        return UInt64.random(in: 0...bound, using: &random)
    }

    /// Runs `attempt` until it succeeds, or fails in a way that retrying does not help, or the
    /// attempts are used up. Between attempts it sleeps `delay(after:)`, or the hub's
    /// `retry_after_ms` if that is longer.
    ///
    /// - Parameters:
    ///   - logger: Told of each retry (attempt, code, delay).
    ///   - attempt: One attempt, given its number from 1: the result, or why it stopped.
    /// - Returns: The first successful attempt's result.
    /// - Throws: The last `SyncFailure` when it is not retryable or no attempt is left; whatever
    ///   `attempt` throws, at once; `CancellationError` if cancelled while sleeping.
    package func run<T>(logger: Logger, _ attempt: (Int) async throws -> Result<T, SyncFailure>) async throws -> T {
        var number = 1
        while true {
            let failure: SyncFailure
            switch try await attempt(number) {
            case let .success(result): return result
            case let .failure(stopped): failure = stopped
            }
            // A reject's retry_after_ms comes from the hub: one beyond the longest backoff ends
            // this run instead of sleeping for it (or overflowing the duration).
            guard failure.retryable, number < attempts, failure.retryAfterMillis <= maxDelayMillis else { throw failure }
            let delay = max(delay(after: number), failure.retryAfterMillis)
            logger.notice("sync attempt failed; retrying", metadata: ["attempt": "\(number)", "code": "\(failure.code.name)",
                                                                     "delay_ms": "\(delay)"])
            try await clock.sleep(for: .milliseconds(delay))
            number += 1
        }
    }
}

/// The replica's async shell: connects to the hub, runs `ClientSession` over TCP, and retries
/// transient failures. Push resumes from what the hub last acknowledged, pull from the last batch
/// applied, because both are recorded in the replica file as they happen.
///
/// ```swift
/// let report = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: 7700, enrolmentToken: token,
///                                        configuration: ClientConfiguration(appVersion: "caresync/0.2"), logger: logger)
/// print("pushed \(report.summary.pushed), pulled \(report.summary.pulled)")
/// ```
public enum SyncClient {
    /// Syncs `store` with the hub at `host:port`: push until every local change is acknowledged as
    /// durable, then pull until caught up, retrying transient failures as `retry` says.
    ///
    /// - Parameters:
    ///   - store: The replica; the hub's address and credential are stored in it once welcomed.
    ///   - host: The hub's host name or address.
    ///   - port: The hub's port.
    ///   - enrolmentToken: A one-time token from the hub operator, for the first sync (or to enrol
    ///     again); nil to use the device secret stored by an earlier welcome.
    ///   - configuration: The hello's app version, batch sizes and deadlines.
    ///   - tls: TLS 1.3 to the hub, with the pinned hub certificate and this device's client
    ///     certificate; nil connects in plaintext (a hub serves that on loopback only).
    ///   - retry: Attempts, backoff, and the randomness and clock it uses.
    ///   - logger: Ids, codes and counts only.
    ///   - progress: Called as frames go out and come in.
    /// - Returns: What the sync did, over every attempt.
    /// - Throws: `HubUnreachable` at once when nothing listens at the address or the host is
    ///   unknown; `SyncFailure` when a failure is not retryable or the attempts ran out (a TLS
    ///   certificate refused either way is not retried); `StoreError` when the replica cannot be read.
    public static func sync(store: ReplicaStore, host: String, port: Int, enrolmentToken: String?,
                            configuration: ClientConfiguration = ClientConfiguration(), tls: ClientTLSConfiguration? = nil,
                            retry: RetryPolicy = RetryPolicy(),
                            logger: Logger, progress: @escaping @Sendable (SyncProgress) -> Void = { _ in }) async throws -> SyncReport {
        let tlsContext = try tls.map(ClientTLS.context)
        // The address is saved by the session with the hub's id, only once that hub has welcomed
        // this replica: a failed sync to a mistyped address leaves the stored one as it was.
        let address = "\(host):\(port)"
        var reachedHub = false
        let started = DispatchTime.now().uptimeNanoseconds
        var bytesSent = 0
        var bytesReceived = 0
        var total = SyncSummary()
        var sessionNanos: UInt64 = 0
        return try await retry.run(logger: logger) { attempt in
            // A token given for this sync is used first (enrolling again, or with another hub);
            // once a welcome has stored a device secret, later attempts use the secret.
            let credential: Credential
            if let enrolmentToken, !(total.enrolled) {
                credential = .enrolmentToken(enrolmentToken)
            } else if let secret = try store.hubLink()?.credential {
                credential = .device(secret)
            } else {
                throw SyncFailure(.authenticationFailed, "this replica is not enrolled: it has no credential for a hub and no enrolment token was given")
            }
            var session = ClientSession(store: store, credential: credential, configuration: configuration, hubAddress: address)
            var tlsFailure: SyncFailure?
            do {
                try await run(&session, host: host, port: port, tls: tlsContext, maxBody: configuration.maxFrameBody,
                              compressionThreshold: configuration.compressionThreshold, sessionNanos: &sessionNanos) { sent, received, current in
                    reachedHub = true
                    bytesSent += sent
                    bytesReceived += received
                    progress(SyncProgress(attempt: attempt, pushed: total.pushed + current.pushed,
                                          pulled: total.pulled + current.pulled, bytesSent: bytesSent, bytesReceived: bytesReceived))
                }
            } catch {
                // Nothing listening, or no such host, before any attempt got through: a wrong
                // address or a hub that is down, which retrying for seconds does not fix. Once a
                // session got through, a refusal is a hub restarting and is retried as usual.
                if !reachedHub, let unreachable = HubUnreachable(error, host: host, port: port) { throw unreachable }
                tlsFailure = ClientTLS.failure(error)
                session.connectionLost("connection to \(host):\(port) failed or broke: \(type(of: error))")
            }
            total.merge(session.summary)
            if session.state == .done {
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                return .success(SyncReport(summary: total, bytesSent: bytesSent, bytesReceived: bytesReceived, attempts: attempt,
                                           durationSeconds: seconds, sessionSeconds: Double(sessionNanos) / 1e9))
            }
            let failure = tlsFailure ?? session.failure ?? SyncFailure(.timeout, "the sync stopped before it finished")
            try? store.recordSyncOutcome(error: failure.code.name)
            return .failure(failure)
        }
    }

    /// One connection: hello, then frames in and out until the session finishes. The session's
    /// deadlines (handshake, request, frame, and a session staying connected's idle ones) run on
    /// the channel's event loop. `attach` is given the connection's events once connected (a shell
    /// staying connected wakes the loop through them); `willHandle` runs as each event is taken,
    /// before the session sees it; `step` runs after each event the session handled and returns
    /// more actions to perform (`syncAgain()`, `finish()`).
    static func run(_ session: inout ClientSession, host: String, port: Int, tls: NIOSSLContext?, maxBody: Int, compressionThreshold: Int?,
                    sessionNanos: inout UInt64, attach: (SessionEvents<SessionTimer>) -> Void = { _ in },
                    willHandle: () -> Void = {}, step: (inout ClientSession) -> [SessionAction] = { _ in [] },
                    traffic: (Int, Int, SyncSummary) -> Void) async throws {
        // The TLS handler's error, whichever way it reaches this loop first (a failed write, the
        // inbound stream's end): a refused certificate must be reported as such, not as a lost
        // connection that is retried.
        let tlsError = TLSErrorCapture()
        do {
            try await connect(&session, host: host, port: port, tls: tls, tlsError: tlsError, maxBody: maxBody,
                              compressionThreshold: compressionThreshold, sessionNanos: &sessionNanos, attach: attach,
                              willHandle: willHandle, step: step,
                              traffic: traffic)
        } catch {
            if let refused = tlsError.error, ClientTLS.failure(refused) != nil { throw refused }
            throw error
        }
        if let refused = tlsError.error, ClientTLS.failure(refused) != nil { throw refused }
    }

    private static func connect(_ session: inout ClientSession, host: String, port: Int, tls: NIOSSLContext?, tlsError: TLSErrorCapture,
                            maxBody: Int, compressionThreshold: Int?, sessionNanos: inout UInt64,
                            attach: (SessionEvents<SessionTimer>) -> Void, willHandle: () -> Void,
                            step: (inout ClientSession) -> [SessionAction],
                            traffic: (Int, Int, SyncSummary) -> Void) async throws {
        let opened = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    // Before the frame handlers: every frame is inside TLS.
                    if let tls {
                        try pipeline.addHandler(try ClientTLS.handler(tls, host: host))
                        try pipeline.addHandler(tlsError)
                    }
                    let events = SessionEvents<SessionTimer>(eventLoop: channel.eventLoop)
                    // Lowered to the welcome's max_frame_body once it arrives.
                    let limit = FrameLimit(maxBody, eventLoop: channel.eventLoop)
                    // The decoder says whether a frame is unfinished; the session keeps the time.
                    let progress = FrameProgress(eventLoop: channel.eventLoop)
                    try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit, progress: progress)))
                    try pipeline.addHandler(FrameProgressHandler(progress: progress) { events.frameProgress(inFrame: $0) })
                    try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
                    return (try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel), limit, events)
                }
            }
        let (channel, limit, events) = opened
        attach(events)
        var codec = MessageCodec(maxBody: maxBody, compressionThreshold: compressionThreshold)
        let connected = DispatchTime.now().uptimeNanoseconds
        defer { sessionNanos += DispatchTime.now().uptimeNanoseconds - connected }
        try await channel.executeThenClose { inbound, outbound in
            try await events.feeding(from: inbound) {
                var pending = session.start()
                while true {
                    for action in pending {
                        switch action {
                        case let .send(message):
                            let frame = codec.frame(message)
                            try await outbound.write(frame)
                            traffic(frame.payload.count + Frame.headerSize, 0, session.summary)
                        case .close:
                            return
                        case let .schedule(timer, afterMillis):
                            events.schedule(timer, afterMillis: afterMillis)
                        case let .cancel(timer):
                            events.cancel(timer)
                        case .store:
                            preconditionFailure("a client session asks for no hub storage")
                        }
                    }
                    guard !session.isFinished else { return }
                    let event = await events.next()
                    willHandle()
                    switch event {
                    case let .frame(frame):
                        traffic(0, frame.payload.count + Frame.headerSize, session.summary)
                        do { pending = session.receive(try codec.decode(frame)) } catch let error as WireError {
                            pending = session.protocolError(error)
                        }
                    case let .ended(error as WireError):
                        pending = session.protocolError(error)
                    case let .ended(error?) where ClientTLS.failure(error) != nil:
                        // A certificate refused, by either side: the caller reports it, not retried.
                        throw error
                    case .ended:
                        session.connectionLost("the hub closed the connection")
                        return
                    case let .timer(timer):
                        pending = session.timerFired(timer)
                    case let .frameProgress(inFrame):
                        pending = session.frameProgress(inFrame: inFrame)
                    }
                    pending += step(&session)
                    if session.maxFrameBody != codec.maxBody {
                        codec.maxBody = session.maxFrameBody
                        try await limit.set(session.maxFrameBody).get()
                    }
                }
            }
        }
    }
}

/// No hub could be reached at the address: the connection was refused or the host name did not
/// resolve. Reported at once, never as a `TIMEOUT` after retries.
public struct HubUnreachable: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable code, e.g. `CONNECTION_REFUSED`; match on the static members, show `name`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable {
            case connectionRefused = "CONNECTION_REFUSED"
            case hostNotFound = "HOST_NOT_FOUND"
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// Every address of the host refused the connection: nothing listens on the port.
        public static let connectionRefused = Code(.connectionRefused)
        /// The host name did not resolve.
        public static let hostNotFound = Code(.hostNotFound)

        /// The code as shown to people and scripts, e.g. `HOST_NOT_FOUND`.
        public var name: String { kind.rawValue }
        /// The code's name.
        public var description: String { name }
    }

    /// Why no hub was reached.
    public let code: Code
    /// The host name or address given.
    public let host: String
    /// The port given.
    public let port: Int
    /// NIO's connection error, with each address tried. Not part of equality.
    public let cause: (any Error)?

    /// Classifies a connect error; nil for anything else (a timeout, a reset), which is retried.
    init?(_ error: any Error, host: String, port: Int) {
        guard let failure = error as? NIOConnectionError else { return nil }
        if failure.connectionErrors.isEmpty, failure.dnsAError != nil || failure.dnsAAAAError != nil {
            code = .hostNotFound
        } else if !failure.connectionErrors.isEmpty, failure.connectionErrors.allSatisfy({
            ($0.error as? IOError)?.errnoCode == ECONNREFUSED
        }) {
            code = .connectionRefused
        } else {
            return nil
        }
        self.host = host
        self.port = port
        cause = error
    }

    /// One line for a person, without record contents.
    public var description: String {
        switch code {
        case .connectionRefused: "connection refused by \(host):\(port): no hub is listening there"
        default: "host \(host) not found"
        }
    }

    /// Equal when what a caller acts on is equal; `cause` is not compared.
    public static func == (lhs: HubUnreachable, rhs: HubUnreachable) -> Bool {
        lhs.code == rhs.code && lhs.host == rhs.host && lhs.port == rhs.port
    }
}

extension SyncSummary {
    mutating func merge(_ other: SyncSummary) {
        pushed += other.pushed
        pushBatches += other.pushBatches
        pulled += other.pulled
        pullBatches += other.pullBatches
        applied += other.applied
        duplicates += other.duplicates
        conflictsOpened += other.conflictsOpened
        roundTrips += other.roundTrips
        enrolled = enrolled || other.enrolled
        hub = other.hub ?? hub
        recovered += other.recovered
        reissued += other.reissued
        purged += other.purged
        purgesWaiting += other.purgesWaiting
        heldReceived += other.heldReceived
        heldDecisionsRecorded += other.heldDecisionsRecorded
        forkedFrom = other.forkedFrom ?? forkedFrom
    }
}
