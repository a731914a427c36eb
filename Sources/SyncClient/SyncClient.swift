import Dispatch
import Logging
import NIOConcurrencyHelpers
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
        try store.setHubAddress("\(host):\(port)")
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
            var session = ClientSession(store: store, credential: credential, configuration: configuration)
            do {
                try await run(&session, host: host, port: port, maxBody: configuration.maxFrameBody,
                              compressionThreshold: configuration.compressionThreshold, sessionNanos: &sessionNanos) { sent, received, current in
                    bytesSent += sent
                    bytesReceived += received
                    progress(SyncProgress(attempt: attempt, pushed: total.pushed + current.pushed,
                                          pulled: total.pulled + current.pulled, bytesSent: bytesSent, bytesReceived: bytesReceived))
                }
            } catch {
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
            guard failure.retryable, attempt < retry.attempts else { throw failure }
            let delay = max(retry.delay(after: attempt), failure.retryAfterMillis)
            logger.notice("sync attempt failed; retrying", metadata: ["attempt": "\(attempt)", "code": "\(failure.code.name)",
                                                                     "delay_ms": "\(delay)"])
            try await Task.sleep(nanoseconds: delay * 1_000_000)
        }
        throw SyncFailure(.timeout, "no attempt finished")
    }

    /// One connection: hello, then frames in and out until the session finishes.
    static func run(_ session: inout ClientSession, host: String, port: Int, maxBody: Int, compressionThreshold: Int?,
                    sessionNanos: inout UInt64, traffic: (Int, Int, SyncSummary) -> Void) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: .milliseconds(Int64(ProtocolLimits.responseMillis))))
                    try pipeline.addHandler(IdleCloseHandler(farewell: nil))
                    try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(maxBody: maxBody)))
                    try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
                    return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                }
            }
        let codec = MessageCodec(maxBody: maxBody, compressionThreshold: compressionThreshold)
        let connected = DispatchTime.now().uptimeNanoseconds
        defer { sessionNanos += DispatchTime.now().uptimeNanoseconds - connected }
        // Handshake deadline (Protocol/session.md): no welcome or reject in time, close.
        let welcomed = NIOLockedValueBox(false)
        let underlying = channel.channel
        let handshake = underlying.eventLoop.scheduleTask(in: .milliseconds(Int64(ProtocolLimits.handshakeMillis))) {
            if !welcomed.withLockedValue({ $0 }) { underlying.close(promise: nil) }
        }
        defer { handshake.cancel() }
        try await channel.executeThenClose { inbound, outbound in
            var pending = session.start()
            var iterator = inbound.makeAsyncIterator()
            while true {
                for action in pending {
                    switch action {
                    case let .send(message):
                        let frame = codec.frame(message)
                        try await outbound.write(frame)
                        traffic(frame.payload.count + Frame.headerSize, 0, session.summary)
                    case .close:
                        return
                    }
                }
                guard !session.isFinished else { return }
                do {
                    guard let frame = try await iterator.next() else {
                        session.connectionLost("the hub closed the connection")
                        return
                    }
                    traffic(0, frame.payload.count + Frame.headerSize, session.summary)
                    welcomed.withLockedValue { $0 = true }
                    pending = session.receive(try codec.decode(frame))
                } catch let error as WireError {
                    pending = session.protocolError(error)
                }
            }
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
