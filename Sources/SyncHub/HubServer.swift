import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// Where and how the hub listens: its address, its budgets and its deadlines (as `Duration`s:
/// no NIO type in the configuration).
///
/// ```swift
/// var configuration = HubServerConfiguration()
/// configuration.host = "0.0.0.0"
/// configuration.maxConnections = 512
/// ```
public struct HubServerConfiguration: Sendable {
    /// The address to listen on. Beyond loopback (127.0.0.0/8, ::1, localhost) `tls` is required.
    public var host = "127.0.0.1"
    /// TLS 1.3 with client certificates required; nil serves plaintext, which only a loopback
    /// `host` may (`run()` throws `TLS_REQUIRED` otherwise).
    public var tls: HubTLSConfiguration?
    /// 0 picks a free port (tests); `HubServer.listeningPort()` tells which.
    public var port = 7700
    /// Connections served at once; more are refused with `BUSY`.
    public var maxConnections = 256
    /// Connections that have not completed a hello (a smaller budget inside `maxConnections`).
    public var maxUnauthenticated = 64
    /// The handshake deadline: accepted until hello (Protocol/session.md, "Timeouts").
    public var handshake = Duration.milliseconds(ProtocolConstants.handshakeMillis)
    /// The handshake deadline of connections accepted while over half of `maxUnauthenticated` is in use.
    public var pressuredHandshake = Duration.seconds(2)
    /// How often the store is asked which replicas with open sessions have been revoked (the
    /// file may be shared with another process that revokes).
    public var revocationPoll = Duration.seconds(1)
    /// Failed hellos (authentication or enrolment) allowed per source address per window.
    public var authenticationFailuresPerSource = 10
    /// The window of `authenticationFailuresPerSource`.
    public var authenticationFailureWindow = Duration.seconds(60)
    /// The frame deadline: a frame's first byte until its last.
    public var frameCompletion = Duration.milliseconds(ProtocolConstants.frameCompletionMillis)
    /// The idle deadline: a complete frame until the next one.
    public var idle = Duration.milliseconds(ProtocolConstants.idleMillis)
    /// What each session negotiates and enforces (frame limit, batch limits, clock skew).
    public var session = HubConfiguration()
    /// Compress batch payloads at or above this many bytes; nil sends them uncompressed.
    public var compressionThreshold: Int? = 1024

    /// The defaults: 127.0.0.1:7700, 256 connections, the protocol's deadlines.
    public init() {}
}

/// The hub: a SwiftNIO listener run as a swift-service-lifecycle `Service`, so SIGTERM/SIGINT
/// stop accepting, let running sessions finish (each bounded by its deadlines) and then return.
///
/// A lifecycle actor, as Hummingbird's `Server` is (`HubServer+Lifecycle.swift`): `run()` once,
/// `shutdownGracefully()` any time; illegal calls throw `HubServerError`. The per-connection work
/// below is `nonisolated`: sessions never wait on the actor.
///
/// Each connection runs the sans-IO `HubSession`: this shell feeds it frames, deadlines and storage
/// outcomes, and performs its actions. Storage runs on `HubWriter`, the store's single writer,
/// which commits pushes of concurrent sessions together.
public actor HubServer: Service {
    /// The hub's store; every call to it runs on the store's one writer.
    public nonisolated let store: any HubStore
    /// Where and how the hub listens, as given.
    public nonisolated let configuration: HubServerConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    /// The store's one writer, which also commits concurrent sessions' pushes together.
    nonisolated let writer: HubWriter
    /// The writer's queue: every store call runs there.
    nonisolated var storeQueue: DispatchQueue { writer.queue }
    /// Open connections: admission, one session per replica, and so that a graceful shutdown
    /// can say goodbye to each.
    let registry: ConnectionRegistry
    let bound = NIOLockedValueBox<Int?>(nil)
    /// The time of day, for what sessions store (session times, token expiry) and the failed-hello budget.
    nonisolated let wallClock: any WallClock
    /// Waits between revocation polls.
    nonisolated let clock: any Clock<Duration>
    /// Called with the bound port once the hub is listening, before the first connection is accepted.
    let onServerRunning: @Sendable (Int) async -> Void
    /// Callers of `listeningPort()` waiting for the hub to listen (or to stop without listening).
    var listeningWaiters: [CheckedContinuation<Int, any Error>] = []
    /// Where the lifecycle is (`HubServer+Lifecycle.swift`); only the actor changes it.
    var state = State.initial

    /// A hub serving `store`. Nothing listens until `run()`.
    ///
    /// ```swift
    /// let hub = HubServer(store: try SQLiteHubStore(path: "hub.db", wallClock: SystemWallClock(), random: &random), configuration: configuration,
    ///                     logger: logger, wallClock: SystemWallClock()) { port in
    ///     print("listening on \(port)")
    /// }
    /// try await ServiceGroup(services: [hub], gracefulShutdownSignals: [.sigterm], logger: logger).run()
    /// ```
    ///
    /// - Parameters:
    ///   - store: The hub's store; the hub closes it when it stops.
    ///   - configuration: Where and how to listen.
    ///   - logger: Ids, codes and counts only; never record contents.
    ///   - group: The event loops for the listener and the connections.
    ///   - wallClock: The time of day (Unix milliseconds), for stored times and the failed-hello budget.
    ///   - clock: The clock that the revocation poll sleeps on.
    ///   - random: Draws the secrets and ids the hub issues.
    ///   - onServerRunning: Called with the bound port once listening (as Hummingbird's
    ///     `onServerRunning`), before any connection is accepted.
    public init(store: any HubStore, configuration: HubServerConfiguration, logger: Logger,
                group: MultiThreadedEventLoopGroup = .singleton, wallClock: any WallClock, clock: any Clock<Duration> = ContinuousClock(),
                random: RandomSource = .system, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.wallClock = wallClock
        self.clock = clock
        self.onServerRunning = onServerRunning
        writer = HubWriter(store: store, random: random)
        registry = ConnectionRegistry(
            limits: AdmissionControl.Limits(maxConnections: configuration.maxConnections, maxUnauthenticated: configuration.maxUnauthenticated,
                                            handshakeMillis: Self.millis(configuration.handshake),
                                            pressuredHandshakeMillis: Self.millis(configuration.pressuredHandshake)),
            failures: AuthenticationFailureBudget(limit: max(1, configuration.authenticationFailuresPerSource),
                                                  windowMillis: Self.millis(configuration.authenticationFailureWindow)))
    }

    /// The port actually bound, once listening; nil before and after. To wait for it, use
    /// `listeningPort()` or `onServerRunning`.
    public nonisolated var boundPort: Int? { bound.withLockedValue { $0 } }

    /// The port the hub listens on: returns at once while running, or waits until `run()` has bound it.
    ///
    /// ```swift
    /// let running = Task { try await hub.run() }
    /// let port = try await hub.listeningPort()
    /// ```
    ///
    /// - Returns: The bound port (the chosen one when the configuration's port is 0).
    /// - Throws: `HubServerError` with code `shutDown` if the hub stopped, or stops, without listening.
    public func listeningPort() async throws -> Int {
        switch state {
        case .running:
            if let port = boundPort { return port }
        case .shuttingDown, .shutdown:
            throw HubServerError(code: .shutDown)
        case .initial, .starting:
            break
        }
        return try await withCheckedThrowingContinuation { listeningWaiters.append($0) }
    }

    /// Tells `listeningPort()`'s callers the outcome: the port once bound, `shutDown` if the hub
    /// stopped first.
    func resumeListeningWaiters(_ outcome: Result<Int, any Error>) {
        let waiters = listeningWaiters
        listeningWaiters = []
        for waiter in waiters { waiter.resume(with: outcome) }
    }

    /// Connections currently open.
    public nonisolated var activeConnections: Int { registry.count }

    /// One accepted connection: its channel, frame limit, session events and the key of the
    /// client certificate its TLS handshake verified.
    typealias Accepted = (NIOAsyncChannel<Frame, Frame>, FrameLimit, SessionEvents<SessionTimer>, PeerCertificateKey)
    /// The listening channel: each accepted connection.
    typealias Listener = NIOAsyncChannel<Accepted, Never>

    /// Whether the hub may serve as configured, and the TLS context if it serves TLS: a host
    /// beyond loopback without TLS is refused before anything listens.
    nonisolated func transport() throws(HubServerError) -> NIOSSLContext? {
        guard let tls = configuration.tls else {
            guard HubTLS.isLoopback(configuration.host) else { throw HubServerError(code: .tlsRequired, host: configuration.host) }
            return nil
        }
        return try HubTLS.serverContext(tls)
    }

    /// The listening channel, with each connection's pipeline: TLS (when configured), deadlines,
    /// the frame decoder, admission, the frame encoder and back-pressure.
    nonisolated func bind(tls: NIOSSLContext?) async throws -> Listener {
        let configuration = self.configuration
        let wallClock = self.wallClock
        let logger = self.logger
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    let peer = PeerCertificateKey()
                    if let tls {
                        // Before the frame handlers: every frame is inside TLS. The handshake is
                        // bounded by the session's handshake deadline, which runs from admission.
                        try pipeline.addHandler(NIOSSLServerHandler(
                            context: tls,
                            customVerificationCallback: HubTLS.clientCertificateVerifier(wallClock: wallClock, peer: peer) { problem in
                                logger.notice("client certificate refused", metadata: ["problem": "\(problem)"])
                            }))
                    }
                    // The session's deadlines run on this loop.
                    let events = SessionEvents<SessionTimer>(eventLoop: channel.eventLoop)
                    // The session lowers the limit to the negotiated one at the welcome.
                    let limit = FrameLimit(configuration.session.maxFrameBody, eventLoop: channel.eventLoop)
                    // The decoder says whether a frame is unfinished; the session keeps the time.
                    let progress = FrameProgress(eventLoop: channel.eventLoop)
                    try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit, progress: progress)))
                    try pipeline.addHandler(FrameProgressHandler(progress: progress) { events.frameProgress(inFrame: $0) })
                    try self.admit(channel, pipeline: pipeline)
                    try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
                    // Back-pressure: the inbound stream stops reading from the socket when the
                    // session falls behind, instead of buffering without bound.
                    return (try NIOAsyncChannel<Frame, Frame>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))), limit, events, peer)
                }
            }
    }

    /// Accepts until the listening channel closes; returns when every session has ended.
    nonisolated func accept(_ server: Listener) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await accepted in connections {
                    let connection = accepted.0
                    switch self.entry(connection.channel) {
                    case let .admitted(id, handshakeMillis):
                        group.addTask { await self.serve(accepted, id: id, handshakeMillis: handshakeMillis) }
                    case .busy:
                        group.addTask { await self.refuseBusy(connection) }
                    }
                }
            }
        }
    }

    private nonisolated func refuseBusy(_ connection: NIOAsyncChannel<Frame, Frame>) async {
        logger.warning("connection refused: at the connection cap", metadata: ["cap": "\(configuration.maxConnections)"])
        let frame = MessageCodec().frame(.reject(code: .busy, retryAfterMillis: 2_000, message: "hub is at its connection limit"))
        try? await connection.executeThenClose { _, outbound in try await outbound.write(frame) }
    }

    /// Runs one session to its end. Every exit path closes the connection.
    private nonisolated func serve(_ accepted: Accepted, id: AdmissionControl.ConnectionID, handshakeMillis: UInt64) async {
        let (connection, limit, events, peer) = accepted
        defer { registry.forget(id) }
        var sessionConfiguration = configuration.session
        sessionConfiguration.idleMillis = Self.millis(configuration.idle)
        sessionConfiguration.frameCompletionMillis = Self.millis(configuration.frameCompletion)
        var connectionState = ConnectionState(session: HubSession(hub: store.hubID, configuration: sessionConfiguration),
                                              codec: MessageCodec(maxBody: configuration.session.maxFrameBody,
                                                                  compressionThreshold: configuration.compressionThreshold),
                                              id: id, source: connection.channel.remoteAddress?.ipAddress ?? "unknown",
                                              channel: connection.channel, peer: peer)
        do {
            try await connection.executeThenClose { inbound, outbound in
                // Frames are handed over one at a time: while the session waits for storage, reading
                // stops and the channel's back-pressure holds the socket.
                try await events.feeding(from: inbound) {
                    try await drive(&connectionState, events: events, limit: limit, outbound: outbound,
                                    start: connectionState.session.start(handshakeMillis: handshakeMillis))
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["reason": "\(type(of: error))"])
        }
        // The session is closed by now, and says no replica: the one it served was kept on the way.
        if let replica = connectionState.served { logger.info("session ended", metadata: ["replica": "\(replica.short)"]) }
    }

    /// What one connection's loop keeps between events.
    struct ConnectionState {
        var session: HubSession
        var codec: MessageCodec
        let id: AdmissionControl.ConnectionID
        let source: String
        let channel: any Channel
        /// The key of the client certificate the TLS handshake verified (nil in plaintext): the
        /// session layer requires it to equal the hello's device key (Protocol/identity.md).
        let peer: PeerCertificateKey
        /// The frame being handled, for the admission bookkeeping on its answer.
        var handling: Message?
        /// The replica the session last served (after a fork, the new one), for the log.
        var served: ReplicaID?
    }

    /// Feeds the session its events until it closes or the connection ends.
    private nonisolated func drive(_ state: inout ConnectionState, events: SessionEvents<SessionTimer>, limit: FrameLimit,
                       outbound: NIOAsyncChannelOutboundWriter<Frame>, start: [SessionAction]) async throws {
        var actions = start
        while true {
            let open = try await perform(actions, &state, events: events, limit: limit, outbound: outbound)
            if let replica = state.session.replica { state.served = replica }
            guard open else { return }
            let now = wallClock.nowMillis()
            state.handling = nil
            switch await events.next() {
            case let .frame(frame):
                if registry.wasEnded(state.id) {
                    // Ended by the hub (revoked, replaced): whoever ended it says why and closes;
                    // closing here could cut that short. Frames still queued are not handled.
                    try? await state.channel.closeFuture.get()
                    return
                }
                do {
                    let message = try state.codec.decode(frame)
                    state.handling = message
                    if case .hello = message, let wait = registry.retryAfter(source: state.source, nowMillis: now) {
                        actions = Self.failureBudgetRefusal(retryAfterMillis: wait)
                    } else {
                        actions = state.session.receive(message, nowMillis: now)
                    }
                } catch {
                    actions = state.session.protocolError(error, nowMillis: now)
                    logger.notice("protocol error", metadata: ["code": "\(error.code.name)"])
                }
            case let .ended(error as WireError):
                // Raised by the frame decoder (e.g. a frame over the limit): say why, then close.
                logger.notice("framing error", metadata: ["code": "\(error.code.name)"])
                actions = state.session.protocolError(error, nowMillis: now)
            case .ended:
                return
            case let .timer(timer):
                actions = state.session.timerFired(timer, nowMillis: now)
            case let .frameProgress(inFrame):
                actions = state.session.frameProgress(inFrame: inFrame)
            }
        }
    }

    /// Executes the session's actions in order; storage outcomes feed the session at once, and
    /// their actions run before anything else. Returns false once the connection is to close.
    private nonisolated func perform(_ actions: [SessionAction], _ state: inout ConnectionState, events: SessionEvents<SessionTimer>, limit: FrameLimit,
                         outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws -> Bool {
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case let .send(message):
                if state.session.maxFrameBody != state.codec.maxBody {
                    // Negotiated at the welcome, applied before it is sent: every later frame
                    // either way is held to it (Protocol/framing.md, "The limit").
                    state.codec.maxBody = state.session.maxFrameBody
                    try await limit.set(state.session.maxFrameBody).get()
                }
                if let handling = state.handling { afterAnswer(state.session, to: handling, answer: message, id: state.id, source: state.source) }
                try await outbound.write(state.codec.frame(message))
            case .close:
                return false
            case let .schedule(timer, afterMillis):
                events.schedule(timer, afterMillis: afterMillis)
            case let .cancel(timer):
                events.cancel(timer)
            case let .store(request):
                guard request.expectsAnswer else {
                    writer.enqueue(request)
                    continue
                }
                let id = state.id
                guard let outcome = await writer.perform(request, unless: { [registry] in registry.wasEnded(id) }) else {
                    // Ended by the hub while the request waited: nothing of it was stored, and
                    // whoever ended the session says why and closes.
                    try? await state.channel.closeFuture.get()
                    return false
                }
                if let error = outcome.error { logStorageFailure(error) }
                queue = state.session.storageCompleted(outcome, nowMillis: wallClock.nowMillis())[...] + queue
            }
        }
        return true
    }

    /// A storage failure the session will answer with `STORAGE_FAILURE`: the operator sees the
    /// store's code and SQLite's extended result code, never record contents.
    private nonisolated func logStorageFailure(_ error: any Error) {
        if let error = error as? StoreError {
            logger.error("storage failed", metadata: ["code": "\(error.code.name)",
                                                      "sqlite": "\(error.sqliteExtendedCode.map(String.init) ?? "-")"])
        } else {
            logger.error("storage failed", metadata: ["error": "\(type(of: error))"])
        }
    }

    /// Whole milliseconds of a configured duration; 0 for a negative one.
    static func millis(_ amount: Duration) -> UInt64 {
        let (seconds, attoseconds) = amount.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return UInt64(seconds).multipliedReportingOverflow(by: 1000).partialValue + UInt64(attoseconds / 1_000_000_000_000_000)
    }
}

/// A wall clock read through a closure, for `HubServer`'s closure initialiser.
