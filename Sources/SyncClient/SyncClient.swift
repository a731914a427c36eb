import Dispatch
import Foundation  // ECONNREFUSED
import Logging
import NIOCore
import NIOPosix
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// Progress of a running sync, for a progress bar.
public struct SyncProgress: Sendable {
    public let attempt: Int
    public let pushed: Int
    public let pulled: Int
    public let bytesSent: Int
    public let bytesReceived: Int
}

/// The outcome of a sync.
public struct SyncReport: Sendable {
    public let summary: SyncSummary
    public let bytesSent: Int
    public let bytesReceived: Int
    public let attempts: Int
    public let durationSeconds: Double
    /// Time spent in sessions after the TCP connection was established.
    public let sessionSeconds: Double
}

/// Retries with exponential backoff and jitter; each attempt resumes where the last stopped.
public struct RetryPolicy: Sendable {
    public var attempts = 5
    public var firstDelayMillis: UInt64 = 1_000
    public var maxDelayMillis: UInt64 = 300_000

    public init(attempts: Int = 5) { self.attempts = attempts }

    /// Full jitter (Protocol/session.md): uniform in 0…bound, the bound doubling from 1 s to 5 min.
    func delay(after attempt: Int) -> UInt64 {
        let bound = min(maxDelayMillis, firstDelayMillis << UInt64(min(attempt - 1, 20)))
        return UInt64.random(in: 0...bound)
    }
}

/// The replica's async shell: connects to the hub, runs `ClientSession` over TCP, and retries
/// transient failures. Push resumes from what the hub last acknowledged, pull from the last batch
/// applied, because both are recorded in the replica file as they happen.
public enum SyncClient {
    public static func sync(store: ReplicaStore, host: String, port: Int, enrolmentToken: String?,
                            configuration: ClientConfiguration = ClientConfiguration(), retry: RetryPolicy = RetryPolicy(),
                            logger: Logger, progress: @escaping @Sendable (SyncProgress) -> Void = { _ in }) async throws -> SyncReport {
        // The address is saved by the session with the hub's id, only once that hub has welcomed
        // this replica: a failed sync to a mistyped address leaves the stored one as it was.
        let address = "\(host):\(port)"
        var reachedHub = false
        let started = DispatchTime.now().uptimeNanoseconds
        var bytesSent = 0
        var bytesReceived = 0
        var total = SyncSummary()
        var sessionNanos: UInt64 = 0
        for attempt in 1...max(retry.attempts, 1) {
            // A token given for this sync is used first (enrolling again, or with another hub);
            // once a welcome has stored a device secret, later attempts use the secret.
            let credential: Credential
            if let enrolmentToken, !(total.enrolled) {
                credential = .enrolmentToken(enrolmentToken)
            } else if let secret = try store.hubLink()?.credential {
                credential = .device(secret)
            } else {
                throw SyncFailure(.authenticationFailed, "this replica is not enrolled: run `caresync sync --token <token from the hub operator>`")
            }
            var session = ClientSession(store: store, credential: credential, configuration: configuration, hubAddress: address)
            do {
                try await run(&session, host: host, port: port, maxBody: configuration.maxFrameBody,
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
                session.connectionLost("connection to \(host):\(port) failed or broke: \(type(of: error))")
            }
            total.merge(session.summary)
            if session.state == .done {
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                return SyncReport(summary: total, bytesSent: bytesSent, bytesReceived: bytesReceived, attempts: attempt,
                                  durationSeconds: seconds, sessionSeconds: Double(sessionNanos) / 1e9)
            }
            let failure = session.failure ?? SyncFailure(.timeout, "the sync stopped before it finished")
            try? store.recordSyncOutcome(error: failure.code.name)
            // A reject's retry_after_ms comes from the hub: one beyond the longest backoff ends
            // this run instead of sleeping for it (or overflowing the nanosecond count).
            guard failure.retryable, attempt < retry.attempts, failure.retryAfterMillis <= retry.maxDelayMillis else { throw failure }
            let delay = max(retry.delay(after: attempt), failure.retryAfterMillis)
            logger.notice("sync attempt failed; retrying", metadata: ["attempt": "\(attempt)", "code": "\(failure.code.name)",
                                                                     "delay_ms": "\(delay)"])
            try await Task.sleep(nanoseconds: delay * 1_000_000)
        }
        throw SyncFailure(.timeout, "no attempt finished")
    }

    /// One connection: hello, then frames in and out until the session finishes. The session's
    /// deadlines (handshake, request, frame) run on the channel's event loop.
    static func run(_ session: inout ClientSession, host: String, port: Int, maxBody: Int, compressionThreshold: Int?,
                    sessionNanos: inout UInt64, traffic: (Int, Int, SyncSummary) -> Void) async throws {
        let opened = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
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
                    switch await events.next() {
                    case let .frame(frame):
                        traffic(0, frame.payload.count + Frame.headerSize, session.summary)
                        do { pending = session.receive(try codec.decode(frame)) } catch let error as WireError {
                            pending = session.protocolError(error)
                        }
                    case let .ended(error as WireError):
                        pending = session.protocolError(error)
                    case .ended:
                        session.connectionLost("the hub closed the connection")
                        return
                    case let .timer(timer):
                        pending = session.timerFired(timer)
                    case let .frameProgress(inFrame):
                        pending = session.frameProgress(inFrame: inFrame)
                    }
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
    public enum Reason: Sendable { case connectionRefused, hostNotFound }

    public let reason: Reason
    public let host: String
    public let port: Int

    /// Classifies a connect error; nil for anything else (a timeout, a reset), which is retried.
    init?(_ error: any Error, host: String, port: Int) {
        guard let failure = error as? NIOConnectionError else { return nil }
        if failure.connectionErrors.isEmpty, failure.dnsAError != nil || failure.dnsAAAAError != nil {
            reason = .hostNotFound
        } else if !failure.connectionErrors.isEmpty, failure.connectionErrors.allSatisfy({
            ($0.error as? IOError)?.errnoCode == ECONNREFUSED
        }) {
            reason = .connectionRefused
        } else {
            return nil
        }
        self.host = host
        self.port = port
    }

    public var code: String {
        switch reason {
        case .connectionRefused: "CONNECTION_REFUSED"
        case .hostNotFound: "HOST_NOT_FOUND"
        }
    }

    public var description: String {
        switch reason {
        case .connectionRefused: "connection refused by \(host):\(port): no hub is listening there (check --hub host:port, or start the hub)"
        case .hostNotFound: "host \(host) not found (check --hub host:port)"
        }
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
        forkedFrom = other.forkedFrom ?? forkedFrom
    }
}
