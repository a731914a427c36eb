import NIOCore
import ServiceLifecycle
import SyncStore
import SyncWire

/// A lifecycle call the hub's state does not allow (a second `run()`, or `run()` once shutdown
/// has begun), or a configuration it refuses to start with (off loopback without TLS, a
/// certificate or key it cannot read). The hub is not changed by it.
public struct HubServerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable code, e.g. `ALREADY_RUNNING`; match on the static members, show `name`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable {
            case alreadyRunning = "ALREADY_RUNNING"
            case shuttingDown = "SHUTTING_DOWN"
            case shutDown = "SHUT_DOWN"
            case tlsRequired = "TLS_REQUIRED"
            case tlsUnreadable = "TLS_UNREADABLE"
            case tlsWriteFailed = "TLS_WRITE_FAILED"
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// `run()` while the hub is starting or running: a hub runs once.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// `run()` while a graceful shutdown is in progress.
        public static let shuttingDown = Code(.shuttingDown)
        /// `run()` after the hub shut down (or was shut down before it started); also what
        /// `listeningPort()` throws when the hub stopped without listening.
        public static let shutDown = Code(.shutDown)
        /// `run()` with a host that is not loopback and no TLS configuration: the hub never
        /// listens in plaintext beyond loopback.
        public static let tlsRequired = Code(.tlsRequired)
        /// The TLS certificate or private key could not be read or used (`path` says which).
        public static let tlsUnreadable = Code(.tlsUnreadable)
        /// A new certificate or key file could not be created (it exists already, or the
        /// directory is not writable); `path` says which.
        public static let tlsWriteFailed = Code(.tlsWriteFailed)

        /// The code as shown to people and scripts, e.g. `SHUT_DOWN`.
        public var name: String { kind.rawValue }
        /// The code's name.
        public var description: String { name }
    }

    /// Which call was refused, and why.
    public let code: Code
    /// The host the hub was to listen on (`TLS_REQUIRED`).
    public let host: String?
    /// The file that could not be used (`TLS_UNREADABLE`).
    public let path: String?
    /// The TLS library's error underneath, when there was one. Not part of equality.
    public let cause: (any Error)?

    package init(code: Code, host: String? = nil, path: String? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.host = host
        self.path = path
        self.cause = cause
    }

    /// Equal when what a caller acts on is equal; `cause` is not compared.
    public static func == (lhs: HubServerError, rhs: HubServerError) -> Bool {
        lhs.code == rhs.code && lhs.host == rhs.host && lhs.path == rhs.path
    }

    /// One line for a person, without record contents (nor key material).
    public var description: String {
        switch code {
        case .tlsRequired:
            "\(code.name): refusing to listen on \(host ?? "?") without TLS: beyond loopback the hub needs its TLS certificate and private key"
        case .tlsUnreadable:
            "\(code.name): cannot use the TLS certificate or key at \(path ?? "?")\(cause.map { " (\($0))" } ?? "")"
        case .tlsWriteFailed:
            "\(code.name): cannot create \(path ?? "?")\(cause.map { " (\($0))" } ?? ""); an existing file is never replaced"
        case .alreadyRunning: "\(code.name): the hub is already running; a HubServer runs once"
        case .shuttingDown: "\(code.name): the hub is shutting down; make a new HubServer to serve again"
        default: "\(code.name): the hub has shut down; make a new HubServer to serve again"
        }
    }
}

/// The lifecycle, after Hummingbird's `Server`: a `State` enum that only the actor changes, each
/// transition checked again after every `await`, and a graceful shutdown that stops accepting,
/// tells every open session goodbye, waits until the sessions have ended and then closes the store.
///
/// ```
/// initial ──run──▶ starting ──bound──▶ running ──shutdownGracefully──▶ shuttingDown ──drained──▶ shutdown
///    │                │ shutdownGracefully: run closes the listener once bound ──▶ shuttingDown ──▶ shutdown
///    └─ shutdownGracefully ──▶ shutdown (run then throws SHUT_DOWN)
/// ```
extension HubServer {
    enum State {
        case initial
        /// `run()` is binding the listener.
        case starting
        /// Accepting connections on the listening channel.
        case running(listener: any Channel)
        /// No longer accepting; `drained` succeeds once every session has ended and the store is closed.
        case shuttingDown(drained: EventLoopPromise<Void>)
        case shutdown
    }

    /// Listens and serves until a graceful shutdown (or cancellation), then closes the store. Runs
    /// once: a second call, or one after shutdown, throws `HubServerError` and changes nothing.
    public func run() async throws {
        switch state {
        case .initial: state = .starting
        case .starting, .running: throw HubServerError(code: .alreadyRunning)
        case .shuttingDown: throw HubServerError(code: .shuttingDown)
        case .shutdown: throw HubServerError(code: .shutDown)
        }
        let server: Listener
        do {
            server = try await bind(tls: try transport())
        } catch {
            await finish()
            throw error
        }
        // Checked again after the await: a shutdown asked for while binding ends the run here.
        guard case .starting = state else {
            try? await server.channel.close()
            await finish()
            return
        }
        state = .running(listener: server.channel)
        let port = server.channel.localAddress?.port ?? configuration.port
        bound.withLockedValue { $0 = port }
        logger.info("hub listening", metadata: ["address": "\(configuration.host):\(server.channel.localAddress?.port ?? 0)",
                                                "hub": "\(store.hubID.short)",
                                                "transport": "\(configuration.tls == nil ? "plaintext: loopback only" : "TLS 1.3, client certificates required")"])
        await onServerRunning(port)
        resumeListeningWaiters(.success(port))
        let revocations = Task { await self.pollRevocations() }
        do {
            try await withGracefulShutdownHandler {
                try await self.accept(server)
            } onGracefulShutdown: {
                Task { await self.shutdownGracefully() }
            }
        } catch {
            revocations.cancel()
            await revocations.value
            await finish()
            throw error
        }
        revocations.cancel()
        await revocations.value
        await finish()
    }

    /// Stops accepting, tells every open session goodbye, and returns once the sessions have
    /// ended and the store is closed. Before `run()`, the hub goes straight to `shutdown` (closing
    /// the store; a later `run()` throws); while starting, `run()` stops as soon as it is bound; a
    /// second call waits for the first to finish.
    public func shutdownGracefully() async {
        switch state {
        case .initial:
            state = .shutdown
            await closeStore()
        case .starting:
            let drained = group.next().makePromise(of: Void.self)
            state = .shuttingDown(drained: drained)
            try? await drained.futureResult.get()
        case let .running(listener):
            let drained = listener.eventLoop.makePromise(of: Void.self)
            state = .shuttingDown(drained: drained)
            logger.info("hub shutting down: no new connections; sessions are told goodbye")
            listener.close(promise: nil)
            // A request being stored still commits; its acknowledgement may be lost, and the
            // replica's next sync re-sends it (the hub ignores changes it holds).
            let goodbye = MessageCodec().frame(.goodbye(reason: 1))
            for channel in registry.channels { channel.sayThenClose(goodbye) }
            try? await drained.futureResult.get()
        case let .shuttingDown(drained):
            try? await drained.futureResult.get()
        case .shutdown:
            return
        }
    }

    /// The end of every run: no session is left, so the store is closed, and whoever waits for
    /// the shutdown is told.
    private func finish() async {
        await closeStore()
        let previous = state
        state = .shutdown
        resumeListeningWaiters(.failure(HubServerError(code: .shutDown)))
        if case let .shuttingDown(drained) = previous { drained.succeed() }
        logger.info("hub stopped")
    }

    /// On the store queue, its single writer: anything still queued there (nothing should be) runs first.
    private func closeStore() async {
        let store = self.store
        let closed: Result<Void, any Error> = await withCheckedContinuation { continuation in
            storeQueue.async { continuation.resume(returning: Result { try store.close() }) }
        }
        if case let .failure(error) = closed {
            logger.error("hub store did not close cleanly", metadata: ["error": "\(type(of: error))"])
        }
    }
}
