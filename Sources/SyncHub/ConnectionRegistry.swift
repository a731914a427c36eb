import NIOConcurrencyHelpers
import NIOCore
import SyncCore
import SyncWire

/// The hub's live connections: admission decisions (`AdmissionControl`), the channel of each
/// connection (to end it from outside its task: replaced, revoked, evicted, shutting down) and
/// the failed-authentication budget per source address. One lock; nothing blocks under it.
final class ConnectionRegistry: Sendable {
    private struct State {
        var admission: AdmissionControl
        var channels: [AdmissionControl.ConnectionID: any Channel] = [:]
        var failures: AuthenticationFailureBudget
    }

    private let state: NIOLockedValueBox<State>

    init(limits: AdmissionControl.Limits, failures: AuthenticationFailureBudget) {
        state = NIOLockedValueBox(State(admission: AdmissionControl(limits: limits), failures: failures))
    }

    var count: Int { state.withLockedValue { $0.admission.count } }
    var liveReplicas: [ReplicaID] { state.withLockedValue { $0.admission.liveReplicas } }
    var channels: [any Channel] { state.withLockedValue { Array($0.channels.values) } }

    func isOpen(_ id: AdmissionControl.ConnectionID) -> Bool { state.withLockedValue { $0.admission.isOpen(id) } }

    /// Decides on an accepted connection. An admitted connection's slot is released when its
    /// channel closes, not when its task has finished with the store: a client that has gone must
    /// not hold a slot while its goodbye waits behind other sessions' commits.
    func admit(_ channel: any Channel) -> (admission: AdmissionControl.Admission, evicted: (any Channel)?) {
        let (admission, evicted) = state.withLockedValue { state -> (AdmissionControl.Admission, (any Channel)?) in
            let admission = state.admission.admit()
            guard case let .admitted(id, _, evicting) = admission else { return (admission, nil) }
            state.channels[id] = channel
            return (admission, evicting.flatMap { state.channels.removeValue(forKey: $0) })
        }
        if case let .admitted(id, _, _) = admission {
            channel.closeFuture.whenComplete { _ in self.end(id) }
        }
        return (admission, evicted)
    }

    func helloReceived(_ id: AdmissionControl.ConnectionID) {
        state.withLockedValue { $0.admission.helloReceived(id) }
    }

    /// The connection completed its hello as `replica`; returns the channel of the session it replaces.
    func authenticated(_ id: AdmissionControl.ConnectionID, as replica: ReplicaID) -> (any Channel)? {
        state.withLockedValue { state in
            state.admission.authenticated(id, as: replica).flatMap { state.channels.removeValue(forKey: $0) }
        }
    }

    /// Ends the replica's live session, if any: returns its channel for the caller to close.
    func endSession(of replica: ReplicaID) -> (any Channel)? {
        state.withLockedValue { state in
            guard let id = state.admission.connection(of: replica) else { return nil }
            state.admission.end(id)
            return state.channels.removeValue(forKey: id)
        }
    }

    func end(_ id: AdmissionControl.ConnectionID) {
        state.withLockedValue { state in
            state.admission.end(id)
            state.channels[id] = nil
        }
    }

    func retryAfter(source: String, nowMillis: UInt64) -> UInt64? {
        state.withLockedValue { $0.failures.retryAfter(source, nowMillis: nowMillis) }
    }

    func recordFailure(source: String, nowMillis: UInt64) {
        state.withLockedValue { $0.failures.recordFailure(source, nowMillis: nowMillis) }
    }
}

extension Channel {
    /// Writes an encoded frame, then closes, whether or not the write succeeded.
    func sayThenClose(_ frame: Frame) {
        writeAndFlush(frame).whenComplete { _ in self.close(promise: nil) }
    }
}
