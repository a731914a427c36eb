import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// A `HubSession` with a shell of the simplest kind, for tests and fuzzing: every storage request
/// is performed on `store` at once, in line, and its outcome fed straight back. What it returns
/// are the actions left for a network: sends (relayed batches as a client decodes them) and closes
/// (deadlines are dropped; tests of deadlines drive `HubSession` itself).
public struct InlineHubSession {
    /// The production session it drives.
    public private(set) var session: HubSession
    /// The hub store every storage request is performed on.
    public let store: any HubStore
    var random: RandomSource

    /// A session of the hub `store` serves.
    ///
    /// - Parameters:
    ///   - store: The hub store, which names the hub.
    ///   - configuration: The session's limits and deadlines.
    ///   - random: The source of issued secrets.
    public init(store: any HubStore, configuration: HubConfiguration = HubConfiguration(), random: RandomSource = .system) {
        session = HubSession(hub: store.hubID, configuration: configuration)
        self.store = store
        self.random = random
    }

    /// The session's state.
    public var state: HubSession.State { session.state }
    /// The replica the session authenticated, once it has.
    public var replica: ReplicaID? { session.replica }
    /// The frame body limit the session agreed.
    public var maxFrameBody: Int { session.maxFrameBody }

    /// A message from the client; returns the sends and closes left after storage was performed.
    public mutating func receive(_ message: Message, nowMillis: UInt64) -> [SessionAction] {
        run(session.receive(message, nowMillis: nowMillis), nowMillis: nowMillis)
    }

    /// Bytes from the client that did not decode; returns the sends and closes for the network.
    public mutating func protocolError(_ error: WireError, nowMillis: UInt64) -> [SessionAction] {
        run(session.protocolError(error, nowMillis: nowMillis), nowMillis: nowMillis)
    }

    /// A deadline passed; returns the sends and closes for the network.
    public mutating func timerFired(_ timer: SessionTimer, nowMillis: UInt64) -> [SessionAction] {
        run(session.timerFired(timer, nowMillis: nowMillis), nowMillis: nowMillis)
    }

    /// Performs storage requests in order, feeding each outcome back, until only network actions remain.
    mutating func run(_ actions: [SessionAction], nowMillis: UInt64) -> [SessionAction] {
        var output: [SessionAction] = []
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case let .send(message):
                // A relayed batch holds stored bytes: handed back as the peer decodes it.
                output.append(.send(message.decoded ?? message))
            case .close:
                output.append(action)
            case .schedule, .cancel:
                break
            case let .store(request):
                guard let outcome = request.perform(on: store, random: &random) else { continue }
                queue = session.storageCompleted(outcome, nowMillis: nowMillis)[...] + queue
            }
        }
        return output
    }
}
