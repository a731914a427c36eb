import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// One whole sync of a replica with a hub store, without a network: the production
/// `ClientSession` against an `InlineHubSession`, message by message, until the client is done.
/// For tests that drive real replicas through real sessions in process (the authorisation matrix,
/// recovery, scope changes).
///
/// ```swift
/// let session = try InlineSync.run(replica.store, hub: hub, token: token, nowMillis: now)
/// #expect(session.failure == nil && session.summary.purged == 1)
/// ```
public enum InlineSync {
    /// Runs one sync of `replica` with `hub`.
    ///
    /// - Parameters:
    ///   - replica: The replica; it presents `token` if given, else its device secret.
    ///   - hub: The hub store the hub session performs its storage on.
    ///   - token: An enrolment token, for the first sync.
    ///   - nowMillis: The hub session's time.
    ///   - configuration: The client's limits and budgets.
    /// - Returns: The finished client session (its `summary`, its `failure`) and the messages the hub sent.
    /// - Throws: `StoreError` when the replica has no credential to present or cannot be written.
    @discardableResult
    public static func run(_ replica: ReplicaStore, hub: any HubStore, token: String? = nil, nowMillis: UInt64,
                           configuration: ClientConfiguration = ClientConfiguration()) throws -> (session: ClientSession, fromHub: [Message]) {
        let credential: Credential
        if let token {
            credential = .enrolmentToken(token)
        } else if let secret = try replica.hubLink()?.credential {
            credential = .device(secret)
        } else {
            throw StoreError(.identityMissing, "replica \(replica.replicaID.short) has no device secret: give an enrolment token")
        }
        try replica.setHubAddress("inline")
        var client = ClientSession(store: replica, credential: credential, configuration: configuration, random: RandomSource { 99 })
        var server = InlineHubSession(store: hub, random: RandomSource { 7 })
        var toHub = client.start()
        var fromHub: [Message] = []
        for _ in 0..<10_000 {
            var toClient: [Message] = []
            for case let .send(message) in toHub {
                for case let .send(reply) in server.receive(message, nowMillis: nowMillis) { toClient.append(reply) }
            }
            fromHub += toClient
            toHub = toClient.flatMap { client.receive($0) }
            if client.isFinished || toHub.isEmpty { break }
        }
        return (client, fromHub)
    }
}
