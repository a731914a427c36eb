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
    public var handshake = TimeAmount.milliseconds(Int64(ProtocolLimits.handshakeMillis))
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
/// Each connection runs the sans-IO `HubSession`; storage calls (SQLite with fsync) run on one
/// serial queue, which is also the store's single writer.
public final class HubServer: Service, Sendable {
    public let store: any HubStore
    public let configuration: HubServerConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let storeQueue = DispatchQueue(label: "caresync.hub.store")
    let active = NIOLockedValueBox(0)
    /// Open connections, so a graceful shutdown can say goodbye to each.
    let open = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    let bound = NIOLockedValueBox<Int?>(nil)
    let clock: @Sendable () -> UInt64

    public init(store: any HubStore, configuration: HubServerConfiguration, logger: Logger,
                group: MultiThreadedEventLoopGroup = .singleton, clock: @escaping @Sendable () -> UInt64) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.clock = clock
    }

    /// The port actually bound, once listening.
    public var boundPort: Int? { bound.withLockedValue { $0 } }

    /// Connections currently open.
    public var activeConnections: Int { active.withLockedValue { $0 } }

    public func run() async throws {
        let configuration = self.configuration
        // What a peer is told before a deadline closes its connection (Protocol/session.md).
        let idleFarewell = MessageCodec().encode(.error(code: .timeout, fatal: true, message: "idle deadline passed"))
        let frameFarewell = MessageCodec().encode(.error(code: .timeout, fatal: true, message: "frame was not completed in time"))
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: configuration.idle))
                    try pipeline.addHandler(IdleCloseHandler(farewell: idleFarewell))
                    try pipeline.addHandler(FrameDeadlineHandler(deadline: configuration.frameCompletion, farewell: frameFarewell))
                    // The session lowers the limit to the negotiated one at the welcome.
                    let limit = FrameLimit(configuration.session.maxFrameBody, eventLoop: channel.eventLoop)
                    try pipeline.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
                    try pipeline.addHandler(MessageToByteHandler(FrameEncoder()))
                    // Back-pressure: the inbound stream stops reading from the socket when the
                    // session falls behind, instead of buffering without bound.
                    return (try NIOAsyncChannel<Frame, Frame>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8))), limit)
                }
            }
        bound.withLockedValue { $0 = server.channel.localAddress?.port }
        logger.info("hub listening", metadata: ["address": "\(configuration.host):\(server.channel.localAddress?.port ?? 0)",
                                                "hub": "\(store.hubID.short)"])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await (connection, limit) in connections {
                        let admitted = active.withLockedValue { count -> Bool in
                            guard count < configuration.maxConnections else { return false }
                            count += 1
                            return true
                        }
                        group.addTask {
                            if admitted {
                                await self.serve(connection, limit: limit)
                                self.active.withLockedValue { $0 -= 1 }
                            } else {
                                await self.refuseBusy(connection)
                            }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            self.logger.info("hub shutting down: no new connections; sessions are told goodbye")
            server.channel.close(promise: nil)
            // A request being stored still commits; its acknowledgement may be lost, and the
            // replica's next sync re-sends it (the hub ignores changes it holds).
            let goodbye = MessageCodec().frame(.goodbye(reason: 1))
            for channel in self.open.withLockedValue({ Array($0.values) }) {
                channel.writeAndFlush(goodbye).whenComplete { _ in channel.close(promise: nil) }
            }
        }
        logger.info("hub stopped")
    }

    private func refuseBusy(_ connection: NIOAsyncChannel<Frame, Frame>) async {
        logger.warning("connection refused: at the connection cap", metadata: ["cap": "\(configuration.maxConnections)"])
        let frame = MessageCodec().frame(.reject(code: .busy, retryAfterMillis: 2_000, message: "hub is at its connection limit"))
        try? await connection.executeThenClose { _, outbound in try await outbound.write(frame) }
    }

    /// Runs one session to its end. Every exit path closes the connection.
    private func serve(_ connection: NIOAsyncChannel<Frame, Frame>, limit: FrameLimit) async {
        let key = ObjectIdentifier(connection.channel)
        open.withLockedValue { $0[key] = connection.channel }
        defer { open.withLockedValue { _ = $0.removeValue(forKey: key) } }
        var session = HubSession(store: store, configuration: configuration.session)
        var codec = MessageCodec(maxBody: configuration.session.maxFrameBody, compressionThreshold: configuration.compressionThreshold)
        let greeted = NIOLockedValueBox(false)
        let channel = connection.channel
        let farewell = codec.frame(.error(code: .timeout, fatal: true, message: "no hello within the handshake deadline"))
        let handshake = channel.eventLoop.scheduleTask(in: configuration.handshake) {
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
                            (session, actions) = await onStoreQueue(session) { session in session.receive(message, nowMillis: now) }
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
    private func onStoreQueue(_ session: HubSession,
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
