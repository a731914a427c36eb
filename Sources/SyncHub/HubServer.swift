import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// Where and how the hub listens.
public struct HubServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); `HubServer.boundPort` tells which.
    public var port = 7700
    public var maxConnections = 256
    /// Connections that have not completed a hello (a smaller budget inside `maxConnections`).
    public var maxUnauthenticated = 64
    public var handshake = TimeAmount.milliseconds(Int64(ProtocolLimits.handshakeMillis))
    /// The handshake deadline of connections accepted while over half of `maxUnauthenticated` is in use.
    public var pressuredHandshake = TimeAmount.seconds(2)
    /// How often the store is asked which replicas with open sessions have been revoked (the
    /// file is shared with `caresync hub revoke`, another process).
    public var revocationPoll = TimeAmount.seconds(1)
    /// Failed hellos (authentication or enrolment) allowed per source address per window.
    public var authenticationFailuresPerSource = 10
    public var authenticationFailureWindow = TimeAmount.seconds(60)
    public var frameCompletion = TimeAmount.milliseconds(Int64(ProtocolLimits.frameCompletionMillis))
    public var idle = TimeAmount.milliseconds(Int64(ProtocolLimits.idleMillis))
    public var session = HubConfiguration()
    /// Compress batch payloads at or above this many bytes; nil sends them uncompressed.
    public var compressionThreshold: Int? = 1024

    public init() {}
}

/// The hub: a SwiftNIO listener run as a swift-service-lifecycle `Service`, so SIGTERM/SIGINT
/// stop accepting, let running sessions finish (each bounded by its deadlines) and then return.
///
/// A lifecycle actor, as Hummingbird's `Server` is (`HubServer+Lifecycle.swift`): `run()` once,
/// `shutdownGracefully()` any time; illegal calls throw `HubServerError`. The per-connection work
/// below is `nonisolated`: sessions never wait on the actor.
///
/// Each connection runs the sans-IO `HubSession`; storage calls (SQLite with fsync) run on one
/// serial queue, which is also the store's single writer.
public actor HubServer: Service {
    public nonisolated let store: any HubStore
    public nonisolated let configuration: HubServerConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let storeQueue = DispatchQueue(label: "caresync.hub.store")
    /// Open connections: admission, one session per replica, and so that a graceful shutdown
    /// can say goodbye to each.
    let registry: ConnectionRegistry
    let bound = NIOLockedValueBox<Int?>(nil)
    let clock: @Sendable () -> UInt64
    /// Where the lifecycle is (`HubServer+Lifecycle.swift`); only the actor changes it.
    var state = State.initial

    public init(store: any HubStore, configuration: HubServerConfiguration, logger: Logger,
                group: MultiThreadedEventLoopGroup = .singleton, clock: @escaping @Sendable () -> UInt64) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.clock = clock
        registry = ConnectionRegistry(
            limits: AdmissionControl.Limits(maxConnections: configuration.maxConnections, maxUnauthenticated: configuration.maxUnauthenticated,
                                            handshakeMillis: UInt64(max(0, configuration.handshake.nanoseconds / 1_000_000)),
                                            pressuredHandshakeMillis: UInt64(max(0, configuration.pressuredHandshake.nanoseconds / 1_000_000))),
            failures: AuthenticationFailureBudget(limit: max(1, configuration.authenticationFailuresPerSource),
                                                  windowMillis: UInt64(max(0, configuration.authenticationFailureWindow.nanoseconds / 1_000_000))))
    }

    /// The port actually bound, once listening.
    public nonisolated var boundPort: Int? { bound.withLockedValue { $0 } }

    /// Connections currently open.
    public nonisolated var activeConnections: Int { registry.count }

    /// The listening channel: each accepted connection with its frame limit.
    typealias Listener = NIOAsyncChannel<(NIOAsyncChannel<Frame, Frame>, FrameLimit), Never>

    /// The listening channel, with each connection's pipeline: deadlines, the frame decoder,
    /// admission, the frame encoder and back-pressure.
    nonisolated func bind() async throws -> Listener {
        let configuration = self.configuration
        // What a peer is told before a deadline closes its connection (Protocol/session.md).
        let idleFarewell = MessageCodec().encode(.error(code: .timeout, fatal: true, message: "idle deadline passed"))
        let frameFarewell = MessageCodec().encode(.error(code: .timeout, fatal: true, message: "frame was not completed in time"))
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: configuration.idle))
                    try pipeline.addHandler(IdleCloseHandler(farewell: idleFarewell))
                    // The session lowers the limit to the negotiated one at the welcome.
                    let limit = FrameLimit(configuration.session.maxFrameBody, eventLoop: channel.eventLoop)
                    // The decoder says whether a frame is unfinished; the deadline handler keeps the time.
                    let progress = FrameProgress(eventLoop: channel.eventLoop)
                    try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit, progress: progress)))
                    try pipeline.addHandler(FrameDeadlineHandler(deadline: configuration.frameCompletion, progress: progress,
                                                                 farewell: frameFarewell))
                    try self.admit(channel, pipeline: pipeline)
                    try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
                    // Back-pressure: the inbound stream stops reading from the socket when the
                    // session falls behind, instead of buffering without bound.
                    return (try NIOAsyncChannel<Frame, Frame>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))), limit)
                }
            }
    }

    /// Accepts until the listening channel closes; returns when every session has ended.
    nonisolated func accept(_ server: Listener) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await (connection, limit) in connections {
                    switch self.entry(connection.channel) {
                    case let .admitted(id, handshake):
                        group.addTask { await self.serve(connection, limit: limit, id: id, handshake: handshake) }
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
    private nonisolated func serve(_ connection: NIOAsyncChannel<Frame, Frame>, limit: FrameLimit, id: AdmissionControl.ConnectionID,
                       handshake deadline: TimeAmount) async {
        defer { registry.forget(id) }
        var session = HubSession(store: store, configuration: configuration.session)
        var codec = MessageCodec(maxBody: configuration.session.maxFrameBody, compressionThreshold: configuration.compressionThreshold)
        let greeted = NIOLockedValueBox(false)
        let channel = connection.channel
        let farewell = codec.frame(.error(code: .timeout, fatal: true, message: "no hello within the handshake deadline"))
        let source = channel.remoteAddress?.ipAddress ?? "unknown"
        let handshake = channel.eventLoop.scheduleTask(in: deadline) {
            guard !greeted.withLockedValue({ $0 }) else { return }
            channel.writeAndFlush(farewell).whenComplete { _ in channel.close(promise: nil) }
        }
        defer { handshake.cancel() }
        do {
            try await connection.executeThenClose { inbound, outbound in
                do {
                    for try await frame in inbound {
                        let now = clock()
                        var actions: [SessionAction]
                        do {
                            let message = try codec.decode(frame)
                            greeted.withLockedValue { $0 = true }
                            if case .hello = message, let wait = registry.retryAfter(source: source, nowMillis: now) {
                                actions = Self.failureBudgetRefusal(retryAfterMillis: wait)
                            } else {
                                (session, actions) = await onStoreQueue(session) { [registry] session in
                                    // Ended by the hub (revoked, replaced) while this frame waited:
                                    // checked on the store queue, where the revocation poll runs too.
                                    guard !registry.wasEnded(id) else { return [] }
                                    return session.receive(message, nowMillis: now)
                                }
                                if registry.wasEnded(id) {
                                    // Whoever ended it says why and closes; closing here could cut that short.
                                    try? await channel.closeFuture.get()
                                    return
                                }
                                afterHello(session, message, actions, id: id, source: source, nowMillis: now)
                            }
                        } catch let error as WireError {
                            actions = session.protocolError(error, nowMillis: now)
                            logger.notice("protocol error", metadata: ["code": "\(error.code.name)"])
                        }
                        if session.maxFrameBody != codec.maxBody {
                            // Negotiated at the welcome, applied before it is sent: every later
                            // frame either way is held to it (Protocol/framing.md, "The limit").
                            codec.maxBody = session.maxFrameBody
                            try await limit.set(session.maxFrameBody).get()
                        }
                        for action in actions {
                            switch action {
                            case let .send(message): try await outbound.write(codec.frame(message))
                            case .close: return
                            }
                        }
                    }
                } catch let error as WireError {
                    // Raised by the frame decoder (e.g. a frame over the limit): say why, then close.
                    logger.notice("framing error", metadata: ["code": "\(error.code.name)"])
                    for case let .send(message) in session.protocolError(error, nowMillis: clock()) {
                        try? await outbound.write(codec.frame(message))
                    }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["reason": "\(type(of: error))"])
        }
        if let replica = session.replica { logger.info("session ended", metadata: ["replica": "\(replica.short)"]) }
    }

    /// Runs a session step on the store's serial queue: SQLite calls (with fsync) must not block
    /// the cooperative thread pool, and the store has one writer.
    private nonisolated func onStoreQueue(_ session: HubSession,
                              _ body: @escaping @Sendable (inout HubSession) -> [SessionAction]) async -> (HubSession, [SessionAction]) {
        await withCheckedContinuation { continuation in
            storeQueue.async {
                var session = session
                let actions = body(&session)
                continuation.resume(returning: (session, actions))
            }
        }
    }
}
