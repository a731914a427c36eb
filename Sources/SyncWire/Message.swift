import SyncCore

/// How a replica proves who it is in a hello.
public enum Credential: Equatable, Sendable {
    /// No credential (refused by a hub).
    case none
    /// A one-time enrolment token issued by the hub operator for a team.
    case enrolmentToken(String)
    /// The device secret the hub issued at enrolment.
    case device([UInt8])
}

/// The client's first message (Protocol/messages.md, "hello").
public struct Hello: Equatable, Sendable {
    /// The lowest protocol version the client speaks.
    public var protocolMin: UInt64
    /// The highest protocol version the client speaks.
    public var protocolMax: UInt64
    /// The replica's schema version.
    public var schemaVersion: UInt64
    /// The replica's id.
    public var replica: ReplicaID
    /// The client software's name and version, for the operator.
    public var appVersion: String
    /// How the replica proves who it is.
    public var credential: Credential
    /// The largest frame body the client accepts (at least 65,536).
    public var maxFrameBody: UInt64
    /// The replica's Ed25519 public key: to register (with an enrolment token) or the registered
    /// one (with a device secret); empty with no credential. Empty or 32 bytes; always empty when
    /// `protocolMax` is below 3 (see ``carriesDeviceKey(protocolMax:)``).
    public var deviceKey: [UInt8]

    /// Whether a hello of this `protocol_max` has a `device_key` field: only from version 3 on. A
    /// hello of an older client ends at `max_frame_body`, as it did in version 2, so that it still
    /// decodes and the hub can answer it with `UNSUPPORTED_VERSION` rather than a decoding error.
    public static func carriesDeviceKey(protocolMax: UInt64) -> Bool { protocolMax >= 3 }

    /// A hello; every field as `messages.md` gives it. `deviceKey` is empty or 32 bytes, and empty
    /// for a `protocolMax` below 3 (preconditions: the decoder never yields anything else).
    public init(protocolMin: UInt64, protocolMax: UInt64, schemaVersion: UInt64, replica: ReplicaID, appVersion: String,
                credential: Credential, maxFrameBody: UInt64, deviceKey: [UInt8]) {
        precondition(deviceKey.isEmpty || deviceKey.count == DeviceCertificate.publicKeySize, "a device key is empty or 32 bytes")
        precondition(deviceKey.isEmpty || Self.carriesDeviceKey(protocolMax: protocolMax), "a hello below protocol version 3 has no device key")
        self.protocolMin = protocolMin
        self.protocolMax = protocolMax
        self.schemaVersion = schemaVersion
        self.replica = replica
        self.appVersion = appVersion
        self.credential = credential
        self.maxFrameBody = maxFrameBody
        self.deviceKey = deviceKey
    }
}

/// The hub's answer to an accepted hello (Protocol/messages.md, "welcome").
public struct Welcome: Equatable, Sendable {
    /// The protocol version both ends now speak.
    public var protocolVersion: UInt64
    /// The hub's schema version.
    public var schemaVersion: UInt64
    /// The hub's replica id.
    public var hub: ReplicaID
    /// The frame limit both ends use from now on.
    public var maxFrameBody: UInt64
    /// The device secret, issued once at enrolment; empty otherwise.
    public var issuedCredential: [UInt8]
    /// The hub's wall clock, so a client can see its own skew.
    public var hubTimeMillis: UInt64
    /// How often the client sends a heartbeat.
    public var heartbeatIntervalMillis: UInt64
    /// The hub's contiguous durable counter for the hello's replica id: the highest `c` such that
    /// the hub holds changes 1…`c` of that origin. A replica that knows less of its own origin than
    /// this was restored from a backup or copied, and recovers before it writes again.
    public var ownDurable: UInt64
    /// The hub's Ed25519 public key (32 bytes): pinned at enrolment, and any later welcome with
    /// another is refused (`HUB_KEY_CHANGED`).
    public var hubKey: [UInt8]
    /// The hub store's incarnation (16 bytes): it changes when the hub is restored from a backup.
    public var incarnation: [UInt8]
    /// The replica's own device certificate, when the hub has one to give.
    public var certificate: DeviceCertificate?
    /// The scopes the hub owes this replica a purge of (Protocol/scope.md, "Purge"): non-empty,
    /// strictly ascending by their UTF-8 bytes, at most ``ScopeList/maxScopes``, each at most
    /// ``ScopeList/maxScopeBytes``. The client purges each after pushing and before pulling.
    public var purges: [String]

    /// Bytes of a welcome's `incarnation`.
    public static let incarnationSize = 16

    /// A welcome; every field as `messages.md` gives it. `hubKey` is 32 bytes and `incarnation` 16
    /// (preconditions).
    public init(protocolVersion: UInt64, schemaVersion: UInt64, hub: ReplicaID, maxFrameBody: UInt64, issuedCredential: [UInt8],
                hubTimeMillis: UInt64, heartbeatIntervalMillis: UInt64, ownDurable: UInt64 = 0, hubKey: [UInt8], incarnation: [UInt8],
                certificate: DeviceCertificate?, purges: [String] = []) {
        precondition(hubKey.count == DeviceCertificate.publicKeySize && incarnation.count == Self.incarnationSize,
                     "a welcome's hub key is 32 bytes, its incarnation 16")
        precondition(ScopeList.violation(of: purges) == nil, "a welcome's purges are a valid scope list")
        self.protocolVersion = protocolVersion
        self.schemaVersion = schemaVersion
        self.hub = hub
        self.maxFrameBody = maxFrameBody
        self.issuedCredential = issuedCredential
        self.hubTimeMillis = hubTimeMillis
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.ownDurable = ownDurable
        self.hubKey = hubKey
        self.incarnation = incarnation
        self.certificate = certificate
        self.purges = purges
    }
}

/// The replica's own state, reported to the hub for the operator view. Counts only.
public struct ReplicaHealth: Equatable, Sendable {
    /// Local changes the hub has not acknowledged.
    public var pendingChanges: UInt64
    /// How long the oldest of them has waited.
    public var oldestUnsyncedAgeMillis: UInt64
    /// Fields waiting for a person to resolve.
    public var openConflicts: UInt64
    /// The replica's schema version.
    public var schemaVersion: UInt64

    /// A health report; every field as `messages.md` gives it.
    public init(pendingChanges: UInt64, oldestUnsyncedAgeMillis: UInt64, openConflicts: UInt64, schemaVersion: UInt64) {
        self.pendingChanges = pendingChanges
        self.oldestUnsyncedAgeMillis = oldestUnsyncedAgeMillis
        self.openConflicts = openConflicts
        self.schemaVersion = schemaVersion
    }
}

/// Every message of protocol version 4 (Protocol/messages.md).
public enum Message: Equatable, Sendable {
    /// Client → hub: who it is and what it speaks.
    case hello(Hello)
    /// Hub → client: the hello is accepted.
    case welcome(Welcome)
    /// Hub → client, instead of a welcome: the hello is refused.
    case reject(code: WireError.Code, retryAfterMillis: UInt64, message: String)
    /// A batch of changes from a replica; `batch` numbers batches within a session; `provenance`
    /// holds the heads of its runs and certificates the hub may lack.
    case push(batch: UInt64, changes: [Change], provenance: Provenance)
    /// The hub's contiguous durable counters for the origins of the acknowledged batch.
    case pushAck(batch: UInt64, durable: VersionVector, hubHead: UInt64)
    /// Client → hub: changes after `cursor`, within `byteBudget` bytes.
    case pull(cursor: UInt64, byteBudget: UInt64)
    /// Hub → client, answering a pull: changes up to hub sequence `nextCursor`; `more` if the
    /// budget cut the answer short; `provenance` holds the heads of its runs and certificates
    /// for their origins.
    case batch(nextCursor: UInt64, more: Bool, changes: [Change], provenance: Provenance)
    /// Client → hub: the replica's health, counts only.
    case heartbeat(ReplicaHealth)
    /// Client → hub: the scopes of the welcome's purges this replica has purged (Protocol/scope.md,
    /// "Purge"), as a ``ScopeList``; not answered, like a heartbeat.
    case purgeAck(scopes: [String])
    /// Client → hub: decisions on held writes (ascending by change id), and a request for the
    /// writes held for review by this replica after `after` (Protocol/scope.md, "Quarantine review").
    case review(decisions: [HeldDecision], after: ChangeID?)
    /// Hub → client, answering a review: what became of each decision (in its order), whether
    /// more items follow, and the held items after the review's `after`, ascending by change id.
    case held(outcomes: [HeldOutcome], more: Bool, items: [HeldItem])
    /// Either way: a failure; `fatal` ends the connection.
    case error(code: WireError.Code, fatal: Bool, message: String)
    /// Either way: the sender is closing.
    case goodbye(reason: UInt64)
    /// Asks for the hub's changes of one origin with counters above `after`, in counter order: how a
    /// restored or copied replica gets back what the hub holds of its own origin.
    case recover(origin: ReplicaID, after: UInt64, byteBudget: UInt64)
    /// The answer to a recover: changes of `origin` in ascending counter order, contiguous from
    /// the request's `after + 1`; `nextCounter` is the last counter included; `provenance` holds
    /// the heads of the run.
    case recovered(origin: ReplicaID, nextCounter: UInt64, more: Bool, changes: [Change], provenance: Provenance)
    /// Asks for a new identity: this copy of the replica diverged from what the hub holds of its
    /// origin, so its own unsynced writes are re-issued under `newReplica`, whose public key is
    /// `deviceKey` (32 bytes).
    case fork(newReplica: ReplicaID, deviceKey: [UInt8])
    /// The answer to a fork: the new identity is registered for the same team, with its own secret
    /// and, when the hub has one to give, its device certificate.
    case forked(newReplica: ReplicaID, issuedCredential: [UInt8], certificate: DeviceCertificate?)
    /// A batch as the hub relays it: each change is its stored canonical encoding, written to the
    /// wire as it is, never decoded or re-encoded (the bytes are exactly a `batch`'s). Only ever
    /// sent: decoding the frame yields `batch`. The provenance is encoded as a batch's is.
    case relayedBatch(nextCursor: UInt64, more: Bool, encodedChanges: [[UInt8]], provenance: Provenance)
    /// A recovered answer as the hub relays it, as `relayedBatch` is a batch; decodes as `recovered`.
    case relayedRecovered(origin: ReplicaID, nextCounter: UInt64, more: Bool, encodedChanges: [[UInt8]], provenance: Provenance)

    /// The message type byte: one case per message, its raw value the byte framing.md's table
    /// gives it (relayed answers travel as `batch` and `recovered`).
    public enum Kind: UInt8, Sendable, CaseIterable {
        // The rows of framing.md's message-type table.
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
        case purgeAck = 0x31
        case review = 0x32
        case held = 0x33
        case error = 0x7E
        case goodbye = 0x7F

        /// Only batches of changes may be compressed.
        public var mayCompress: Bool { self == .push || self == .batch || self == .recovered }
    }

    /// The message a peer decodes from this one's frame: a relayed batch or recovered answer with
    /// its changes decoded (nil if a relayed change does not decode); any other message as it is.
    public var decoded: Message? {
        switch self {
        case let .relayedBatch(next, more, encoded, provenance):
            guard let changes = Self.decodeChanges(encoded) else { return nil }
            return .batch(nextCursor: next, more: more, changes: changes, provenance: provenance)
        case let .relayedRecovered(origin, next, more, encoded, provenance):
            guard let changes = Self.decodeChanges(encoded) else { return nil }
            return .recovered(origin: origin, nextCounter: next, more: more, changes: changes, provenance: provenance)
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

    /// The type byte this message travels under.
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
        case .purgeAck: .purgeAck
        case .review: .review
        case .held: .held
        case .error: .error
        case .goodbye: .goodbye
        case .recover: .recover
        case .recovered, .relayedRecovered: .recovered
        case .fork: .fork
        case .forked: .forked
        }
    }
}
