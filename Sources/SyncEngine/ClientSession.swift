import SyncCore
import SyncStore
import SyncWire

/// How a replica syncs.
public struct ClientConfiguration: Sendable {
    public var appVersion = "caresync/0.2"
    public var maxFrameBody: Int = Frame.defaultMaxBody
    public var pushBatchChanges = 5_000
    /// Push batches are cut below this many encoded bytes (well under the frame limit).
    public var pushBatchBytes = 1024 * 1024
    /// Kept at 512 KiB: a pulled batch is buffered whole before its transaction commits, and the
    /// client's peak memory follows it.
    public var pullBudget: UInt64 = 512 * 1024
    /// Compress push payloads at or above this many bytes; nil sends them uncompressed.
    public var compressionThreshold: Int? = 1024

    public init() {}
}

/// Totals of one sync, for the summary the CLI prints.
public struct SyncSummary: Equatable, Sendable {
    public var pushed = 0
    public var pushBatches = 0
    public var pulled = 0
    public var pullBatches = 0
    public var applied = 0
    public var duplicates = 0
    public var conflictsOpened = 0
    public var roundTrips = 0
    public var enrolled = false
    public var hub: ReplicaID?

    public init() {}
}

/// Why a sync stopped early. `retryable` failures are retried by the shell with backoff; the
/// next attempt resumes from the last acknowledged push and the last applied pull.
public struct SyncFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: WireErrorCode
    public let message: String
    /// The least wait the hub asked for before reconnecting (from a reject).
    public let retryAfterMillis: UInt64

    public init(_ code: WireErrorCode, _ message: String, retryAfterMillis: UInt64 = 0) {
        self.code = code
        self.message = message
        self.retryAfterMillis = retryAfterMillis
    }

    public var retryable: Bool { code.retryable }
    public var description: String { "\(message) [\(code.name)]" }
}

/// The replica's side of a sync, as a state machine: push until every local change is
/// acknowledged as durable, then pull until caught up, then report health and say goodbye.
public struct ClientSession {
    public enum State: Equatable, Sendable {
        case idle
        case awaitingWelcome
        case pushing(batch: UInt64, until: [ReplicaID: UInt64])
        case pulling(cursor: UInt64)
        case done
        case failed
    }

    public private(set) var state: State = .idle
    public private(set) var summary = SyncSummary()
    public private(set) var failure: SyncFailure?
    let store: ReplicaStore
    let credential: Credential
    let configuration: ClientConfiguration
    /// Where the hub was reached; recorded with the hub's id once it has welcomed this replica.
    let hubAddress: String?
    private var hub: ReplicaID?
    private var nextBatch: UInt64 = 1

    public init(store: ReplicaStore, credential: Credential, configuration: ClientConfiguration = ClientConfiguration(),
                hubAddress: String? = nil) {
        self.store = store
        self.credential = credential
        self.configuration = configuration
        self.hubAddress = hubAddress
    }

    public var isFinished: Bool { state == .done || state == .failed }

    public mutating func start() -> [SessionAction] {
        state = .awaitingWelcome
        return [.send(.hello(Hello(protocolMin: ProtocolLimits.version, protocolMax: ProtocolLimits.version,
                                   schemaVersion: UInt64(store.schema.version), replica: store.replicaID,
                                   appVersion: configuration.appVersion, credential: credential,
                                   maxFrameBody: UInt64(configuration.maxFrameBody))))]
    }

    public mutating func receive(_ message: Message) -> [SessionAction] {
        do {
            return try handle(message)
        } catch let failure as SyncFailure {
            return fail(failure)
        } catch let error as StoreError {
            let code: WireErrorCode = error.code == .clockSkew ? .clockSkew : .storageFailure
            return fail(SyncFailure(code, "local replica: \(error.message)"))
        } catch {
            return fail(SyncFailure(.storageFailure, "local replica: \(error)"))
        }
    }

    /// The connection broke or a deadline passed before the sync finished.
    public mutating func connectionLost(_ reason: String) {
        guard !isFinished else { return }
        failure = SyncFailure(.timeout, reason)
        state = .failed
    }

    public mutating func protocolError(_ error: WireError) -> [SessionAction] {
        fail(SyncFailure(error.code, "hub sent bad bytes: \(error.detail)"), tell: error.code)
    }

    private mutating func handle(_ message: Message) throws -> [SessionAction] {
        switch (state, message) {
        case let (_, .reject(code, retryAfter, text)):
            failure = SyncFailure(code, "hub refused: \(text.prefix(200))", retryAfterMillis: retryAfter)
            state = .failed
            try? store.recordSyncOutcome(error: code.name)
            return [.close]
        case let (_, .error(code, _, text)):
            // Fatal or not, the attempt ends here; the shell retries retryable codes with backoff,
            // and the next attempt resumes from what the hub acknowledged.
            failure = SyncFailure(code, "hub refused: \(text.prefix(200))")
            state = .failed
            try? store.recordSyncOutcome(error: code.name)
            return [.send(.goodbye(reason: 0)), .close]
        case let (.awaitingWelcome, .welcome(welcome)):
            guard welcome.protocolVersion == ProtocolLimits.version else {
                throw SyncFailure(.unsupportedVersion, "hub chose protocol version \(welcome.protocolVersion)")
            }
            hub = welcome.hub
            summary.hub = welcome.hub
            summary.enrolled = !welcome.issuedCredential.isEmpty
            try store.recordHub(welcome.hub, address: hubAddress,
                                credential: welcome.issuedCredential.isEmpty ? nil : welcome.issuedCredential)
            return [.send(.heartbeat(try health()))] + (try nextPush())
        case let (.pushing(batch, until), .pushAck(acked, durable, _)):
            guard acked == batch, let hub else { throw SyncFailure(.unexpectedMessage, "acknowledgement for batch \(acked), expected \(batch)") }
            for (origin, counter) in until where durable[origin] < counter {
                throw SyncFailure(.storageFailure, "hub acknowledged batch \(batch) without storing all of it")
            }
            try store.recordPeerKnowledge(hub, durable)
            return try nextPush()
        case let (.pulling(cursor), .batch(next, more, changes)):
            guard let hub else { throw SyncFailure(.unexpectedMessage, "batch before welcome") }
            guard next >= cursor else { throw SyncFailure(.malformedMessage, "hub cursor went backwards") }
            let result = try store.applyFromHub(changes, hub: hub, nextCursor: next)
            summary.pulled += changes.count
            summary.pullBatches += 1
            summary.roundTrips += 1
            summary.applied += result.applied
            summary.duplicates += result.duplicates
            summary.conflictsOpened += result.conflictsOpened
            if more && !changes.isEmpty {
                state = .pulling(cursor: next)
                return [.send(.pull(cursor: next, byteBudget: configuration.pullBudget))]
            }
            try store.recordSyncOutcome(error: nil)
            state = .done
            return [.send(.heartbeat(try health())), .send(.goodbye(reason: 0)), .close]
        default:
            throw SyncFailure(.unexpectedMessage, "unexpected \(message.kind) from the hub")
        }
    }

    private mutating func nextPush() throws -> [SessionAction] {
        guard let hub else { throw SyncFailure(.unexpectedMessage, "push before welcome") }
        let known = try store.peerKnowledge(hub)
        var changes = try store.changes(notIn: known, limit: configuration.pushBatchChanges)
        var bytes = 0
        if let cut = changes.firstIndex(where: { change in
            var writer = ByteWriter()
            change.encode(into: &writer)
            bytes += writer.bytes.count
            return bytes > configuration.pushBatchBytes
        }) {
            changes.removeSubrange(max(cut, 1)...)
        }
        guard !changes.isEmpty else {
            let cursor = try store.hubLink()?.pullCursor ?? 0
            state = .pulling(cursor: cursor)
            return [.send(.pull(cursor: cursor, byteBudget: configuration.pullBudget))]
        }
        var until: [ReplicaID: UInt64] = [:]
        for change in changes { until[change.id.replica] = max(until[change.id.replica] ?? 0, change.id.counter) }
        let batch = nextBatch
        nextBatch += 1
        state = .pushing(batch: batch, until: until)
        summary.pushed += changes.count
        summary.pushBatches += 1
        summary.roundTrips += 1
        return [.send(.push(batch: batch, changes: changes))]
    }

    private func health() throws -> ReplicaHealth {
        let health = try store.health(hub: hub)
        return ReplicaHealth(pendingChanges: health.pendingChanges, oldestUnsyncedAgeMillis: health.oldestUnsyncedAgeMillis,
                             openConflicts: health.openConflicts, schemaVersion: health.schemaVersion)
    }

    private mutating func fail(_ failure: SyncFailure, tell code: WireErrorCode? = nil) -> [SessionAction] {
        self.failure = failure
        state = .failed
        try? store.recordSyncOutcome(error: failure.code.name)
        let notice = code ?? failure.code
        return [.send(.error(code: notice, fatal: true, message: String(failure.message.prefix(200)))), .close]
    }
}
