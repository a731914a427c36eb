import SyncCore

/// The hub's storage, behind an interface of its own so that a PostgreSQL store can stand beside
/// the embedded SQLite default (`SQLiteHubStore`) when one machine is outgrown.
///
/// Every method is synchronous and, but for `recordSession`, durable on return: `append` returns
/// only after its transaction has committed with `synchronous=FULL`, which is what lets the hub
/// acknowledge.
public protocol HubStore: Sendable {
    /// The hub's own id (sent in the welcome).
    var hubID: ReplicaID { get }

    /// Stores a batch in one transaction, idempotent by change id, and returns the hub's
    /// contiguous durable counter for each origin in the batch and the new head sequence.
    func append(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64) throws -> HubAppendResult

    /// Group commit: several sessions' pushes, one result each (see the default below).
    func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>]

    /// Changes with hub sequence above `cursor`, in sequence order, excluding `excludedOrigin`,
    /// until `byteBudget` (at least one change is returned if any is pending) or `maxCount`.
    func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage

    /// The highest hub sequence.
    func head() throws -> UInt64

    /// The contiguous durable counter of one origin: the highest `c` such that the hub holds changes
    /// 1…`c` of it (0 if none). Sent in the welcome, so a restored or copied replica learns that the
    /// hub holds more of its own origin than it does.
    func ownDurable(_ origin: ReplicaID) throws -> UInt64

    /// Changes of one origin with counters above `after`, ascending and contiguous (stopping at a
    /// gap), until `byteBudget` (at least one change if any) or `maxCount`.
    func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage

    /// Registers `newReplica` for the team of `replica` with a new device secret, recording where it
    /// came from: a copy of `replica` that diverged from what the hub holds is re-identified.
    func fork(_ replica: ReplicaID, into newReplica: ReplicaID, nowMillis: UInt64,
              random: inout some RandomNumberGenerator) throws -> ForkResult

    /// Every equivocation the hub refused: a change id it holds that arrived again with other bytes.
    func equivocations() throws -> [EquivocationRecord]

    /// Issues a one-time enrolment token for a team; only its hash is stored. A token bound to a
    /// replica id (`replica`) can be redeemed only by that id, and may re-enrol it (new secret,
    /// revocation lifted); an unbound token enrols only a replica id the hub does not know.
    func issueEnrolmentToken(team: String, replica: ReplicaID?, expiresAtMillis: UInt64,
                             random: inout some RandomNumberGenerator) throws -> String

    /// Exchanges an unused, unexpired enrolment token for a device secret bound to the replica.
    /// The same replica may redeem it again only until `spendEnrolmentTokens` (the lost welcome).
    func redeemEnrolmentToken(_ token: String, replica: ReplicaID, nowMillis: UInt64,
                              random: inout some RandomNumberGenerator) throws -> EnrolmentResult

    /// The replica has shown it holds its issued secret: the tokens it redeemed are spent for good.
    func spendEnrolmentTokens(of replica: ReplicaID, nowMillis: UInt64) throws

    /// Which of these replicas are revoked now (polled by the hub to end their open sessions).
    func revokedReplicas(among replicas: [ReplicaID]) throws -> Set<ReplicaID>

    /// Checks a device secret; returns the replica's team, or why it was refused.
    func authenticate(replica: ReplicaID, secret: [UInt8]) throws -> AuthenticationResult

    /// Revokes a replica's credential: later hellos are refused.
    func revoke(replica: ReplicaID, nowMillis: UInt64) throws -> Bool

    /// Operator-view bookkeeping: counts, times, versions and error codes, never contents. One
    /// write per event, which no acknowledgement depends on: a store may commit it without a sync
    /// of its own (it becomes durable with the next synced commit), so a power cut may lose it.
    func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws

    /// One row per known replica for the operator view.
    func replicaSummaries() throws -> [ReplicaSummary]

    /// Closes the store; every later call fails with a storage error. The hub shell calls it once,
    /// after its last session has ended (`HubServer`'s graceful shutdown).
    func close() throws
}

/// One session's push, for a group commit (`append(_ pushes:)`).
public struct HubPush: Sendable {
    public let changes: [Change]
    public let replica: ReplicaID
    public let receivedAtMillis: UInt64

    public init(changes: [Change], replica: ReplicaID, receivedAtMillis: UInt64) {
        self.changes = changes
        self.replica = replica
        self.receivedAtMillis = receivedAtMillis
    }
}

extension HubStore {
    /// Stores several sessions' pushes; the result for each, in order. A store commits them
    /// together (one transaction, one fsync) where it can: one push's failure never fails another,
    /// and each result is durable when this returns. This default commits them one by one.
    public func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>] {
        pushes.map { push in Result { try append(push.changes, from: push.replica, receivedAtMillis: push.receivedAtMillis) } }
    }
}

public struct HubAppendResult: Equatable, Sendable {
    public let durable: VersionVector
    public let head: UInt64
    public let stored: Int
    public let duplicates: Int
    /// Change ids the hub holds with other content. When not empty, nothing of the batch was
    /// stored (the second contents are kept as evidence, see `equivocations()`).
    public let equivocations: [ChangeID]

    public init(durable: VersionVector, head: UInt64, stored: Int, duplicates: Int, equivocations: [ChangeID] = []) {
        self.durable = durable
        self.head = head
        self.stored = stored
        self.duplicates = duplicates
        self.equivocations = equivocations
    }
}

/// A page of one origin's changes (a recovery), as the hub stores and relays them.
public struct HubOriginPage: Sendable {
    /// Each change's canonical encoding (Protocol/messages.md, "Change"), in counter order:
    /// the bytes are relayed as they are, never decoded or re-encoded by the hub.
    public let encoded: [[UInt8]]
    /// The last counter included (`after` when nothing is).
    public let nextCounter: UInt64
    public let more: Bool
    /// Encoded bytes of the changes.
    public let bytes: Int

    public init(encoded: [[UInt8]], nextCounter: UInt64, more: Bool, bytes: Int) {
        self.encoded = encoded
        self.nextCounter = nextCounter
        self.more = more
        self.bytes = bytes
    }

    /// The changes, decoded strictly (for callers that need them as values).
    public func decodeChanges() throws(ByteDecodingError) -> [Change] { try HubPage.decode(encoded) }
}

public enum ForkResult: Equatable, Sendable {
    case forked(secret: [UInt8])
    /// The new id is already known to the hub (as a replica or an origin).
    case idTaken
    /// The replica's lineage has forked as often as a hub allows (`SQLiteHubStore.maxForks`).
    case tooManyForks
    case unknownReplica
}

/// A refused second version of a change id. Only ids, sizes and digests: never contents.
public struct EquivocationRecord: Sendable, Equatable {
    public let change: ChangeID
    /// The replica whose push carried the second version.
    public let from: ReplicaID
    public let receivedAtMillis: UInt64
    /// SHA-256 of the version the hub holds and relays, and of the refused one (both kept).
    public let heldDigest: String
    public let refusedDigest: String
    public let refusedBytes: Int

    public init(change: ChangeID, from: ReplicaID, receivedAtMillis: UInt64, heldDigest: String, refusedDigest: String, refusedBytes: Int) {
        self.change = change
        self.from = from
        self.receivedAtMillis = receivedAtMillis
        self.heldDigest = heldDigest
        self.refusedDigest = refusedDigest
        self.refusedBytes = refusedBytes
    }
}

/// A page of a pull, as the hub stores and relays it.
public struct HubPage: Sendable {
    /// Each change's canonical encoding (Protocol/messages.md, "Change"), in hub sequence order:
    /// the bytes are relayed as they are, never decoded or re-encoded by the hub.
    public let encoded: [[UInt8]]
    public let nextCursor: UInt64
    public let more: Bool
    /// Encoded bytes of the changes.
    public let bytes: Int

    public init(encoded: [[UInt8]], nextCursor: UInt64, more: Bool, bytes: Int) {
        self.encoded = encoded
        self.nextCursor = nextCursor
        self.more = more
        self.bytes = bytes
    }

    /// The changes, decoded strictly (for callers that need them as values).
    public func decodeChanges() throws(ByteDecodingError) -> [Change] { try Self.decode(encoded) }

    static func decode(_ encoded: [[UInt8]]) throws(ByteDecodingError) -> [Change] {
        var changes: [Change] = []
        changes.reserveCapacity(encoded.count)
        for bytes in encoded {
            var reader = ByteReader(bytes)
            changes.append(try Change.decode(from: &reader))
            try reader.expectEnd()
        }
        return changes
    }
}

public enum EnrolmentResult: Equatable, Sendable {
    case enrolled(team: String, secret: [UInt8])
    case unknownToken
    /// Used (by another replica, or spent), bound to another replica id, or presented with a
    /// replica id the hub already knows.
    case alreadyUsed
    case expired
}

extension HubStore {
    /// Issues a token for a new replica.
    public func issueEnrolmentToken(team: String, expiresAtMillis: UInt64, random: inout some RandomNumberGenerator) throws -> String {
        try issueEnrolmentToken(team: team, replica: nil, expiresAtMillis: expiresAtMillis, random: &random)
    }
}

public enum AuthenticationResult: Equatable, Sendable {
    case accepted(team: String)
    case unknown
    case revoked
}

/// What the hub records about sessions for the operator view.
public enum HubSessionEvent: Equatable, Sendable {
    case hello(appVersion: String, schemaVersion: UInt64)
    case pulled(cursor: UInt64)
    case health(pendingChanges: UInt64, oldestUnsyncedAgeMillis: UInt64, openConflicts: UInt64, schemaVersion: UInt64)
    case error(code: String)
}

/// The operator's view of one replica: team, times, lag, health as last reported, versions and
/// the last error code. No record contents, names or dates of birth.
public struct ReplicaSummary: Sendable {
    public let replica: ReplicaID
    public let team: String
    public let firstSeenMillis: UInt64?
    public let lastSeenMillis: UInt64?
    /// Hub changes from other replicas not yet pulled by this one.
    public let lagChanges: UInt64
    public let pendingChanges: UInt64?
    public let oldestUnsyncedAgeMillis: UInt64?
    public let openConflicts: UInt64?
    public let schemaVersion: UInt64?
    public let appVersion: String?
    public let lastError: String?
    public let revoked: Bool
    public let changesStored: UInt64
    /// The replica this one was forked from (a copy or a restored backup that diverged).
    public let forkedFrom: ReplicaID?
    /// Pushes of this replica refused as equivocations.
    public let equivocations: UInt64
}
