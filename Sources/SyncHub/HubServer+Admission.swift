import NIOCore
import SyncCore
import SyncEngine
import SyncWire

/// Admission, one session per replica, revocation of open sessions and the failed-hello budget:
/// the shell around `ConnectionRegistry`'s decisions (Protocol/session.md, "Admission").
extension HubServer {
    enum Entry {
        case admitted(AdmissionControl.ConnectionID, handshakeMillis: UInt64)
        case busy
    }

    /// What a replaced session is told: another session of its replica id began.
    static let replacedReason: UInt64 = 2

    /// In the channel initializer: the admission decision, the handler that reports the first
    /// frame, and the end of the unauthenticated connection this one displaces.
    nonisolated func admit(_ channel: any Channel, pipeline: ChannelPipeline.SynchronousOperations) throws {
        let admission = registry.admit(channel)
        guard case let .admitted(id, _, evicting) = admission else { return }
        let registry = self.registry
        try pipeline.addHandler(FirstFrameHandler { registry.helloReceived(id) })
        if let evicting, let evicted = registry.end(evicting) {
            logger.notice("unauthenticated connection ended to admit a newer one", metadata: ["budget": "\(configuration.maxUnauthenticated)"])
            evicted.sayThenClose(MessageCodec().frame(.error(code: .timeout, fatal: true, message: "no hello in time while the hub is admitting newer connections")))
        }
    }

    /// In the accept loop: what `admit` decided for this connection.
    nonisolated func entry(_ channel: any Channel) -> Entry {
        switch registry.decision(for: channel) {
        case let .admitted(id, handshakeMillis, _): .admitted(id, handshakeMillis: handshakeMillis)
        case .busy: .busy
        }
    }

    /// Bookkeeping before a hello's or fork's answer is sent: a refused credential counts
    /// against its source; an accepted one makes this connection its replica's only session.
    nonisolated func afterAnswer(_ session: HubSession, to message: Message, answer: Message, id: AdmissionControl.ConnectionID, source: String) {
        switch (message, answer) {
        case let (.fork, .forked(newReplica, _, _)):
            // The session goes on as the forked identity: one live session per replica holds for it.
            if let previous = registry.authenticated(id, as: newReplica) {
                previous.sayThenClose(MessageCodec().frame(.goodbye(reason: Self.replacedReason)))
            }
        case let (.hello(hello), .reject(code, _, _)) where code == .authenticationFailed || code == .enrolmentInvalid:
            // The operator sees which replica id was refused and why; never the token or secret
            // it tried. Failed hellos are budgeted per address, and so are these lines.
            logger.notice("hello refused", metadata: ["replica": "\(hello.replica.short)", "code": "\(code.name)"])
            registry.recordFailure(source: source, nowMillis: wallClock.nowMillis())
        case (.hello, .welcome):
            if let replica = session.replica, let previous = registry.authenticated(id, as: replica) {
                logger.notice("session replaced by a newer one of the same replica", metadata: ["replica": "\(replica.short)"])
                previous.sayThenClose(MessageCodec().frame(.goodbye(reason: Self.replacedReason)))
            }
        default:
            break
        }
    }

    /// A hello from a source past its failed-hello budget: refused before the store is touched.
    static func failureBudgetRefusal(retryAfterMillis: UInt64) -> [SessionAction] {
        [.send(.reject(code: .busy, retryAfterMillis: retryAfterMillis, message: "too many failed hellos from this address; retry later")), .close]
    }

    /// Until cancelled: asks the store which replicas with a live session are revoked (another
    /// process may have revoked them) and ends those sessions with `AUTHENTICATION_FAILED`.
    nonisolated func pollRevocations() async {
        let farewell = MessageCodec().frame(.error(code: .authenticationFailed, fatal: true, message: "this replica's credential has been revoked"))
        while true {
            do { try await clock.sleep(for: max(.milliseconds(1), configuration.revocationPoll)) } catch { return }
            let live = registry.liveReplicas
            guard !live.isEmpty else { continue }
            let ended: [(ReplicaID, any Channel)] = await withCheckedContinuation { continuation in
                // On the store queue: a frame of the session that waits behind this check finds
                // its connection ended and is not handled (HubServer.serve).
                writer.queue.async {
                    let revoked = (try? self.store.revokedReplicas(among: live)) ?? []
                    continuation.resume(returning: revoked.compactMap { replica in self.registry.endSession(of: replica).map { (replica, $0) } })
                }
            }
            for (replica, channel) in ended {
                logger.notice("session ended: the replica's credential was revoked", metadata: ["replica": "\(replica.short)"])
                channel.sayThenClose(farewell)
            }
        }
    }
}
