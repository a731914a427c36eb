import NIOConcurrencyHelpers
import NIOCore
import SyncCore
import SyncWire

/// The hub's live connections: admission decisions (`AdmissionControl`), the channel of each
/// connection (to end it from outside its task: replaced, revoked, evicted, shutting down) and
/// the failed-authentication budget per source address. One lock; nothing blocks under it.
package final class ConnectionRegistry: Sendable {
    private struct State {
        var admission: AdmissionControl
        var channels: [AdmissionControl.ConnectionID: any Channel] = [:]
        /// Decisions taken in the channel initializer, until the accept loop picks them up.
        var decisions: [ObjectIdentifier: AdmissionControl.Admission] = [:]
        /// Ended by the hub (replaced, revoked, evicted) and not yet finished by their task: a frame
        /// still queued for one of them is not handled.
        var ended: Set<AdmissionControl.ConnectionID> = []
        var failures: AuthenticationFailureBudget
    }

    private let state: NIOLockedValueBox<State>

    package init(limits: AdmissionControl.Limits, failures: AuthenticationFailureBudget) {
        state = NIOLockedValueBox(State(admission: AdmissionControl(limits: limits), failures: failures))
    }

    var count: Int { state.withLockedValue { $0.admission.count } }
    var liveReplicas: [ReplicaID] { state.withLockedValue { $0.admission.liveReplicas } }
    var channels: [any Channel] { state.withLockedValue { Array($0.channels.values) } }

    /// Decides on a new connection, in its channel initializer (on its event loop, before the
    /// first read). Returns the channel of an unauthenticated connection to end for it, if any.
    /// An admitted connection's slot is released when its channel closes, not when its task has
    /// finished with the store: a client that has gone must not hold a slot while its goodbye
    /// waits behind other sessions' commits.
    package func admit(_ channel: any Channel) -> AdmissionControl.Admission {
        let key = ObjectIdentifier(channel)
        let admission = state.withLockedValue { state in
            let admission = state.admission.admit()
            state.decisions[key] = admission
            if case let .admitted(id, _, _) = admission { state.channels[id] = channel }
            return admission
        }
        channel.closeFuture.whenComplete { _ in
            self.state.withLockedValue { state in
                // The decision stays until the accept loop takes it: a peer that writes and closes
                // at once can close the channel before the loop gets to it, and a decision dropped
                // here made `decision(for:)` answer busy (a false "connection cap" refusal, its
                // bytes never read). The loop takes every accepted channel, holding it till then,
                // so the key is not reused before it is removed.
                if case let .admitted(id, _, _) = admission {
                    state.admission.end(id)
                    state.channels[id] = nil
                }
            }
        }
        return admission
    }

    /// The decision `admit` took for this channel (once).
    package func decision(for channel: any Channel) -> AdmissionControl.Admission {
        state.withLockedValue { $0.decisions.removeValue(forKey: ObjectIdentifier(channel)) } ?? .busy
    }

    /// Ends `id` on the hub's decision; returns its channel for the caller to say why and close.
    func end(_ id: AdmissionControl.ConnectionID) -> (any Channel)? {
        state.withLockedValue { state in
            state.admission.end(id)
            state.ended.insert(id)
            return state.channels.removeValue(forKey: id)
        }
    }

    func wasEnded(_ id: AdmissionControl.ConnectionID) -> Bool { state.withLockedValue { $0.ended.contains(id) } }

    /// The connection's task has finished.
    func forget(_ id: AdmissionControl.ConnectionID) {
        _ = state.withLockedValue { $0.ended.remove(id) }
    }

    func helloReceived(_ id: AdmissionControl.ConnectionID) {
        state.withLockedValue { $0.admission.helloReceived(id) }
    }

    /// The connection completed its hello as `replica`; returns the channel of the session it replaces.
    func authenticated(_ id: AdmissionControl.ConnectionID, as replica: ReplicaID) -> (any Channel)? {
        state.withLockedValue { state in
            guard let previous = state.admission.authenticated(id, as: replica) else { return nil }
            state.ended.insert(previous)
            return state.channels.removeValue(forKey: previous)
        }
    }

    /// Ends the replica's live session, if any: returns its channel for the caller to close.
    func endSession(of replica: ReplicaID) -> (any Channel)? {
        guard let id = state.withLockedValue({ $0.admission.connection(of: replica) }) else { return nil }
        return end(id)
    }

    func retryAfter(source: String, nowMillis: UInt64) -> UInt64? {
        state.withLockedValue { $0.failures.retryAfter(source, nowMillis: nowMillis) }
    }

    func recordFailure(source: String, nowMillis: UInt64) {
        state.withLockedValue { $0.failures.recordFailure(source, nowMillis: nowMillis) }
    }
}

/// Tells the registry when a connection's first frame has arrived: from then on it no longer
/// counts against the unauthenticated budget (the first frame is its hello, or it is refused).
/// In the pipeline, because the session task that decodes the hello may run much later under load.
final class FirstFrameHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame

    private let arrived: @Sendable () -> Void
    private var seen = false

    init(arrived: @escaping @Sendable () -> Void) { self.arrived = arrived }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !seen {
            seen = true
            arrived()
        }
        context.fireChannelRead(data)
    }
}

extension Channel {
    /// Writes an encoded frame, then closes, whether or not the write succeeded.
    func sayThenClose(_ frame: Frame) {
        writeAndFlush(frame).whenComplete { _ in self.close(promise: nil) }
    }
}
