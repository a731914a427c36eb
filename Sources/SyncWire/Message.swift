import SyncCore

/// How a replica proves who it is in a hello.
public enum Credential: Equatable, Sendable {
    case none
    /// A one-time enrolment token issued by the hub operator for a team.
    case enrolmentToken(String)
    /// The device secret the hub issued at enrolment.
    case device([UInt8])
}

public struct Hello: Equatable, Sendable {
    public var protocolMin: UInt64
    public var protocolMax: UInt64
    public var schemaVersion: UInt64
    public var replica: ReplicaID
    public var appVersion: String
    public var credential: Credential
    public var maxFrameBody: UInt64

    public init(protocolMin: UInt64, protocolMax: UInt64, schemaVersion: UInt64, replica: ReplicaID, appVersion: String,
                credential: Credential, maxFrameBody: UInt64) {
        self.protocolMin = protocolMin
        self.protocolMax = protocolMax
        self.schemaVersion = schemaVersion
        self.replica = replica
        self.appVersion = appVersion
        self.credential = credential
        self.maxFrameBody = maxFrameBody
    }
}

public struct Welcome: Equatable, Sendable {
    public var protocolVersion: UInt64
    public var schemaVersion: UInt64
    public var hub: ReplicaID
    public var maxFrameBody: UInt64
    /// The device secret, issued once at enrolment; empty otherwise.
    public var issuedCredential: [UInt8]
    public var hubTimeMillis: UInt64
    public var heartbeatIntervalMillis: UInt64
    /// The hub's contiguous durable counter for the hello's replica id: the highest `c` such that
    /// the hub holds changes 1…`c` of that origin. A replica that knows less of its own origin than
    /// this was restored from a backup or copied, and recovers before it writes again.
    public var ownDurable: UInt64

    public init(protocolVersion: UInt64, schemaVersion: UInt64, hub: ReplicaID, maxFrameBody: UInt64, issuedCredential: [UInt8],
                hubTimeMillis: UInt64, heartbeatIntervalMillis: UInt64, ownDurable: UInt64 = 0) {
        self.protocolVersion = protocolVersion
        self.schemaVersion = schemaVersion
        self.hub = hub
        self.maxFrameBody = maxFrameBody
        self.issuedCredential = issuedCredential
        self.hubTimeMillis = hubTimeMillis
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.ownDurable = ownDurable
    }
}

/// The replica's own state, reported to the hub for the operator view. Counts only.
public struct ReplicaHealth: Equatable, Sendable {
    public var pendingChanges: UInt64
    public var oldestUnsyncedAgeMillis: UInt64
    public var openConflicts: UInt64
    public var schemaVersion: UInt64

    public init(pendingChanges: UInt64, oldestUnsyncedAgeMillis: UInt64, openConflicts: UInt64, schemaVersion: UInt64) {
        self.pendingChanges = pendingChanges
        self.oldestUnsyncedAgeMillis = oldestUnsyncedAgeMillis
        self.openConflicts = openConflicts
        self.schemaVersion = schemaVersion
    }
}

/// Every message of protocol version 1 (Protocol/messages.md).
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(code: WireErrorCode, retryAfterMillis: UInt64, message: String)
    /// A batch of changes from a replica; `batch` numbers batches within a session.
    case push(batch: UInt64, changes: [Change])
    /// The hub's contiguous durable counters for the origins of the acknowledged batch.
    case pushAck(batch: UInt64, durable: VersionVector, hubHead: UInt64)
    case pull(cursor: UInt64, byteBudget: UInt64)
    case batch(nextCursor: UInt64, more: Bool, changes: [Change])
    case heartbeat(ReplicaHealth)
    case error(code: WireErrorCode, fatal: Bool, message: String)
    case goodbye(reason: UInt64)
    /// Asks for the hub's changes of one origin with counters above `after`, in counter order: how a
    /// restored or copied replica gets back what the hub holds of its own origin.
    case recover(origin: ReplicaID, after: UInt64, byteBudget: UInt64)
    /// The answer to a recover: changes of `origin` in ascending counter order, contiguous from
    /// the request's `after + 1`; `nextCounter` is the last counter included.
    case recovered(origin: ReplicaID, nextCounter: UInt64, more: Bool, changes: [Change])
    /// Asks for a new identity: this copy of the replica diverged from what the hub holds of its
    /// origin, so its own unsynced writes are re-issued under `newReplica`.
    case fork(newReplica: ReplicaID)
    /// The answer to a fork: the new identity is registered for the same team, with its own secret.
    case forked(newReplica: ReplicaID, issuedCredential: [UInt8])
    /// A batch as the hub relays it: each change is its stored canonical encoding, written to the
    /// wire as it is, never decoded or re-encoded (the bytes are exactly a `batch`'s). Only ever
    /// sent: decoding the frame yields `batch`.
    case relayedBatch(nextCursor: UInt64, more: Bool, encodedChanges: [[UInt8]])
    /// A recovered answer as the hub relays it, as `relayedBatch` is a batch; decodes as `recovered`.
    case relayedRecovered(origin: ReplicaID, nextCounter: UInt64, more: Bool, encodedChanges: [[UInt8]])

    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 0x01
        case welcome = 0x02
        case reject = 0x03
        case push = 0x10
        case pushAck = 0x11
        case fork = 0x12
        case forked = 0x13
        case pull = 0x20
        case batch = 0x21
        case recover = 0x22
        case recovered = 0x23
        case heartbeat = 0x30
        case error = 0x7E
        case goodbye = 0x7F

        /// Only batches of changes may be compressed.
        public var mayCompress: Bool { self == .push || self == .batch || self == .recovered }
    }

    /// The message a peer decodes from this one's frame: a relayed batch or recovered answer with
    /// its changes decoded (nil if a relayed change does not decode); any other message as it is.
    public var decoded: Message? {
        switch self {
        case let .relayedBatch(next, more, encoded):
            guard let changes = Self.decodeChanges(encoded) else { return nil }
            return .batch(nextCursor: next, more: more, changes: changes)
        case let .relayedRecovered(origin, next, more, encoded):
            guard let changes = Self.decodeChanges(encoded) else { return nil }
            return .recovered(origin: origin, nextCounter: next, more: more, changes: changes)
        default:
            return self
        }
    }

    private static func decodeChanges(_ encoded: [[UInt8]]) -> [Change]? {
        var changes: [Change] = []
        changes.reserveCapacity(encoded.count)
        for bytes in encoded {
            var reader = ByteReader(bytes)
            guard let change = try? Change.decode(from: &reader), reader.isAtEnd else { return nil }
            changes.append(change)
        }
        return changes
    }

    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .reject: .reject
        case .push: .push
        case .pushAck: .pushAck
        case .pull: .pull
        case .batch, .relayedBatch: .batch
        case .heartbeat: .heartbeat
        case .error: .error
        case .goodbye: .goodbye
        case .recover: .recover
        case .recovered, .relayedRecovered: .recovered
        case .fork: .fork
        case .forked: .forked
        }
    }
}
