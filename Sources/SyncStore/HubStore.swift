import SyncCore

/// The hub's storage, behind an interface of its own so that a PostgreSQL store can stand beside
/// the embedded SQLite default (`SQLiteHubStore`) when one machine is outgrown.
///
/// Every method is synchronous and durable on return: `append` returns only after its
/// transaction has committed with `synchronous=FULL`, which is what lets the hub acknowledge.
public protocol HubStore: Sendable {
    /// The hub's own id (sent in the welcome).
    var hubID: ReplicaID { get }

    /// Stores a batch in one transaction, idempotent by change id, and returns the hub's
    /// contiguous durable counter for each origin in the batch and the new head sequence.
    func append(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64) throws -> HubAppendResult

    /// Changes with hub sequence above `cursor`, in sequence order, excluding `excludedOrigin`,
    /// until `byteBudget` (at least one change is returned if any is pending) or `maxCount`.
    func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage

    /// The highest hub sequence.
    func head() throws -> UInt64

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

    /// Operator-view bookkeeping: counts, times, versions and error codes, never contents.
    func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws

    /// One row per known replica for the operator view.
    func replicaSummaries() throws -> [ReplicaSummary]
}

public struct HubAppendResult: Equatable, Sendable {
    public let durable: VersionVector
    public let head: UInt64
    public let stored: Int
    public let duplicates: Int

    public init(durable: VersionVector, head: UInt64, stored: Int, duplicates: Int) {
        self.durable = durable
        self.head = head
        self.stored = stored
        self.duplicates = duplicates
    }
}

public struct HubPage: Sendable {
    public let changes: [Change]
    public let nextCursor: UInt64
    public let more: Bool
    public let bytes: Int

    public init(changes: [Change], nextCursor: UInt64, more: Bool, bytes: Int) {
        self.changes = changes
        self.nextCursor = nextCursor
        self.more = more
        self.bytes = bytes
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
public enum HubSessionEvent: Sendable {
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
}
