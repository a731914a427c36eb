import SyncCore
import SyncIdentity

/// The hub's storage, behind an interface of its own so that a PostgreSQL store can stand beside
/// the embedded SQLite default (`SQLiteHubStore`) when one machine is outgrown.
///
/// Every method is synchronous and, but for `recordSession`, durable on return: `append` returns
/// only after its transaction has committed with `synchronous=FULL`, which is what lets the hub
/// acknowledge. Methods throw ``StoreError`` (`.database` for a storage failure or a closed store;
/// `.limitExceeded` for a change no store can hold; `.signatureInvalid`, `.chainGap`,
/// `.unsignedChanges`, `.unknownDevice` for a push whose runs do not verify, which the session
/// sends as the wire codes of the same names); none of them names record contents.
///
/// Protocol/identity.md is the store's part of device identity: every change is kept with its
/// origin's chain hash and every signed head received, device keys are registered at enrolment
/// and vouched for by certificates the hub key signs, and pages carry the heads and certificates
/// that let any replica verify what it is relayed.
///
/// ```swift
/// let store: any HubStore = try SQLiteHubStore(path: "hub.db", wallClock: SystemWallClock(), random: &random)
/// let result = try store.append(changes, from: replica, provenance: push.provenance, receivedAtMillis: now)   // verified, durable on return
/// let page = try store.changes(after: cursor, excludingOrigin: replica, byteBudget: 1 << 20, maxCount: 1_000)
/// send(page.encoded, page.provenance)   // ends at a valid cut: every origin in it has a head at its last change
/// cursor = page.nextCursor
/// ```
public protocol HubStore: Sendable {
    /// The hub's own id (sent in the welcome).
    var hubID: ReplicaID { get }

    /// The hub's Ed25519 public key (sent in the welcome, pinned by replicas at enrolment).
    var hubKey: [UInt8] { get }

    /// The hub's incarnation: 16 bytes, new when the store is found restored from a backup.
    var incarnation: [UInt8] { get }

    /// Stores a batch in one transaction, idempotent by change id, and returns the hub's
    /// contiguous durable counter for each origin in the batch and the new head sequence. Each
    /// origin's run is verified against the heads first (Protocol/identity.md, "Verifying a run
    /// of changes"): a run that does not verify refuses the whole batch with ``StoreError`` code
    /// `.signatureInvalid`, `.chainGap`, `.unsignedChanges` or `.unknownDevice`.
    func append(_ changes: [Change], from replica: ReplicaID, provenance: Provenance, receivedAtMillis: UInt64) throws -> HubAppendResult

    /// Group commit: several sessions' pushes, one result each (see the default below).
    func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>]

    /// Changes with hub sequence above `cursor`, in sequence order, excluding `excludedOrigin`,
    /// until `byteBudget` (at least one change is returned if any is pending) or `maxCount`.
    func changes(after cursor: UInt64, excludingOrigin excludedOrigin: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage

    /// The highest hub sequence.
    func head() throws -> UInt64

    /// The end of what `replica` pulls: with team-scoped replication, its team feed's
    /// (Protocol/scope.md); otherwise ``head()``. A pull's cursor never passes it.
    func head(for replica: ReplicaID) throws -> UInt64

    /// The contiguous durable counter of one origin: the highest `c` such that the hub holds changes
    /// 1…`c` of it (0 if none). Sent in the welcome, so a restored or copied replica learns that the
    /// hub holds more of its own origin than it does.
    func ownDurable(_ origin: ReplicaID) throws -> UInt64

    /// Changes of one origin with counters above `after`, ascending and contiguous (stopping at a
    /// gap), until `byteBudget` (at least one change if any) or `maxCount`.
    func changes(ofOrigin origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int) throws -> HubOriginPage

    /// Registers `newReplica` for the team of `replica` with a new device secret, recording where it
    /// came from: a copy of `replica` that diverged from what the hub holds is re-identified.
    /// `deviceKey` is the new identity's public key: registered, with a certificate issued
    /// (``certificate(for:)``); a key revoked or another replica's is refused as `.idTaken`.
    func fork(_ replica: ReplicaID, into newReplica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
              random: inout some RandomNumberGenerator) throws -> ForkResult

    /// The device certificate the hub issued for `replica` (nil if it has none).
    func certificate(for replica: ReplicaID) throws -> DeviceCertificate?

    /// Every equivocation the hub refused: a change id it holds that arrived again with other bytes.
    func equivocations() throws -> [EquivocationRecord]

    /// Issues a one-time enrolment token for a team; only its hash is stored. A token bound to a
    /// replica id (`replica`) can be redeemed only by that id, and may re-enrol it with a new secret
    /// unless it was revoked (revocation is final); an unbound token enrols only a replica id the hub
    /// does not know.
    func issueEnrolmentToken(team: String, replica: ReplicaID?, expiresAtMillis: UInt64,
                             random: inout some RandomNumberGenerator) throws -> String

    /// Exchanges an unused, unexpired enrolment token for a device secret bound to the replica.
    /// The same replica may redeem it again only until `spendEnrolmentTokens` (the lost welcome).
    /// The token authorises `deviceKey` (32 bytes) as the replica's device key, once; a key that
    /// was revoked or is another replica's is refused as `.alreadyUsed`.
    func redeemEnrolmentToken(_ token: String, replica: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64,
                              random: inout some RandomNumberGenerator) throws -> EnrolmentResult

    /// The replica has shown it holds its issued secret: the tokens it redeemed are spent for good.
    func spendEnrolmentTokens(of replica: ReplicaID, nowMillis: UInt64) throws

    /// Which of these replicas are revoked now (polled by the hub to end their open sessions).
    func revokedReplicas(among replicas: [ReplicaID]) throws -> Set<ReplicaID>

    /// Checks a device secret and the device key; returns the replica's team, or why it was
    /// refused (another key than the registered one: `.unknown`). A replica with no registered key
    /// (enrolled under protocol 2) has `deviceKey` registered now, once.
    func authenticate(replica: ReplicaID, secret: [UInt8], deviceKey: [UInt8], nowMillis: UInt64) throws -> AuthenticationResult

    /// Revokes a replica's credential: later hellos are refused.
    func revoke(replica: ReplicaID, nowMillis: UInt64) throws -> Bool

    /// Operator-view bookkeeping: counts, times, versions and error codes, never contents. One
    /// write per event, which no acknowledgement depends on: a store may commit it without a sync
    /// of its own (it becomes durable with the next synced commit), so a power cut may lose it.
    func recordSession(_ event: HubSessionEvent, replica: ReplicaID, nowMillis: UInt64) throws

    /// One row per known replica for the operator view.
    func replicaSummaries() throws -> [ReplicaSummary]

    /// The scopes the hub owes `replica` a purge of and it has not acknowledged (Protocol/scope.md,
    /// "Purge"): at most `limit`, ascending by their UTF-8 bytes (the order a welcome carries them in).
    func purgesOwed(replica: ReplicaID, limit: Int) throws -> [String]

    /// Records that `replica` purged `scopes` (its purge-ack): each purge owed to it is marked
    /// acknowledged at `nowMillis` and owed no more. A scope not owed to it is ignored.
    func acknowledgePurges(_ scopes: [String], replica: ReplicaID, nowMillis: UInt64) throws

    /// The quarantined writes held for `replica`'s review (Protocol/scope.md, "Quarantine
    /// review"): held items of scopes in its team's audience (a restricted scope's only when it is
    /// on the restriction), ascending by change id after `after`, within `byteBudget` (at least one
    /// item) and `maxCount`.
    func heldItems(for replica: ReplicaID, after: ChangeID?, byteBudget: Int, maxCount: Int) throws -> HeldPage

    /// Records `replica`'s decisions on held writes, durably and audited, and says what became of
    /// each, in their order: recorded, resolved already (idempotent), or refused (not held for
    /// this replica: the refusal is audited).
    func resolveHeld(_ decisions: [HeldDecision], replica: ReplicaID, nowMillis: UInt64) throws -> [HeldOutcome]

    /// Closes the store; every later call fails with a storage error. The hub shell calls it once,
    /// after its last session has ended (`HubServer`'s graceful shutdown).
    func close() throws
}

/// One session's push, for a group commit (`append(_ pushes:)`).
public struct HubPush: Sendable {
    /// The batch, as the session received it.
    public let changes: [Change]
    /// The authenticated replica that pushed it.
    public let replica: ReplicaID
    /// When the hub received it (stored with each change).
    public let receivedAtMillis: UInt64
    /// The push's signed heads (each run ends at one) and certificates (Protocol/identity.md).
    public let provenance: Provenance

    /// A push.
    ///
    /// - Parameters:
    ///   - changes: The batch.
    ///   - replica: The replica that pushed it.
    ///   - provenance: The heads of its runs, and certificates.
    ///   - receivedAtMillis: When the hub received it.
    public init(changes: [Change], replica: ReplicaID, provenance: Provenance = Provenance(heads: [], certificates: []), receivedAtMillis: UInt64) {
        self.changes = changes
        self.replica = replica
        self.provenance = provenance
        self.receivedAtMillis = receivedAtMillis
    }
}

extension HubStore {
    /// The hub log's head: a store without team feeds.
    public func head(for replica: ReplicaID) throws -> UInt64 { try head() }

    /// Stores several sessions' pushes; the result for each, in order. A store commits them
    /// together (one transaction, one fsync) where it can: one push's failure never fails another,
    /// and each result is durable when this returns. This default commits them one by one.
    public func append(_ pushes: [HubPush]) -> [Result<HubAppendResult, any Error>] {
        pushes.map { push in Result { try append(push.changes, from: push.replica, provenance: push.provenance, receivedAtMillis: push.receivedAtMillis) } }
    }
}

// Transitional: the protocol-2 shapes of the calls, until the sessions pass heads and device keys
// (the engine's part of issue 9). Without heads a push is refused (`.unsignedChanges`), and
// without a device key an enrolment is refused.
extension HubStore {
    /// A push without heads (refused unless empty: every run must end at a head).
    public func append(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append(changes, from: replica, provenance: Provenance(heads: [], certificates: []), receivedAtMillis: receivedAtMillis)
    }

    /// A fork without a device key (refused as `.idTaken`).
    public func fork(_ replica: ReplicaID, into newReplica: ReplicaID, nowMillis: UInt64,
                     random: inout some RandomNumberGenerator) throws -> ForkResult {
        try fork(replica, into: newReplica, deviceKey: [], nowMillis: nowMillis, random: &random)
    }

    /// An enrolment without a device key (refused as `.alreadyUsed`).
    public func redeemEnrolmentToken(_ token: String, replica: ReplicaID, nowMillis: UInt64,
                                     random: inout some RandomNumberGenerator) throws -> EnrolmentResult {
        try redeemEnrolmentToken(token, replica: replica, deviceKey: [], nowMillis: nowMillis, random: &random)
    }

    /// An authentication without a device key: accepted only for a replica with no key registered.
    public func authenticate(replica: ReplicaID, secret: [UInt8]) throws -> AuthenticationResult {
        try authenticate(replica: replica, secret: secret, deviceKey: [], nowMillis: 0)
    }
}

/// What storing one push did: what the hub now holds durably, and what was new.
public struct HubAppendResult: Equatable, Sendable {
    /// For each origin in the push, the hub's contiguous durable counter (what it acknowledges).
    public let durable: VersionVector
    /// The hub's highest sequence after the push.
    public let head: UInt64
    /// Changes new to the hub.
    public let stored: Int
    /// Changes the hub already held with the same bytes.
    public let duplicates: Int
    /// Change ids the hub holds with other content. When not empty, nothing of the batch was
    /// stored (the second contents are kept as evidence, see `equivocations()`).
    public let equivocations: [ChangeID]
    /// Stored changes outside the pusher's scope: held in quarantine, in no team's feed
    /// (Protocol/scope.md, "Writes outside scope"). Acknowledged like any stored change.
    public let quarantined: Int

    /// A result; for stores other than ``SQLiteHubStore`` and for tests.
    ///
    /// - Parameters:
    ///   - durable: The contiguous durable counter per origin of the push.
    ///   - head: The highest sequence after the push.
    ///   - stored: Changes new to the hub.
    ///   - duplicates: Changes already held.
    ///   - equivocations: Ids held with other content (then nothing was stored).
    ///   - quarantined: Stored changes held in quarantine.
    public init(durable: VersionVector, head: UInt64, stored: Int, duplicates: Int, equivocations: [ChangeID] = [], quarantined: Int = 0) {
        self.durable = durable
        self.head = head
        self.stored = stored
        self.duplicates = duplicates
        self.equivocations = equivocations
        self.quarantined = quarantined
    }
}

/// A page of one origin's changes (a recovery), as the hub stores and relays them.
public struct HubOriginPage: Sendable {
    /// Each change's canonical encoding (Protocol/messages.md, "Change"), in counter order:
    /// the bytes are relayed as they are, never decoded or re-encoded by the hub.
    public let encoded: [[UInt8]]
    /// The last counter included (`after` when nothing is).
    public let nextCounter: UInt64
    /// Whether more of the origin's changes follow (the budget ran out before them).
    public let more: Bool
    /// Encoded bytes of the changes.
    public let bytes: Int
    /// The heads the hub holds inside the page's run, ascending (the last at `nextCounter`), and the
    /// origin's device certificate when it has one (hub-keyed origins have none).
    public let provenance: Provenance

    /// A page; for stores other than ``SQLiteHubStore`` and for tests.
    ///
    /// - Parameters:
    ///   - encoded: The changes' canonical encodings, in counter order.
    ///   - nextCounter: The last counter included.
    ///   - more: Whether more follow.
    ///   - bytes: The encodings' total size.
    ///   - provenance: The heads inside the run, and the origin's certificate.
    public init(encoded: [[UInt8]], nextCounter: UInt64, more: Bool, bytes: Int, provenance: Provenance = Provenance(heads: [], certificates: [])) {
        self.encoded = encoded
        self.nextCounter = nextCounter
        self.more = more
        self.bytes = bytes
        self.provenance = provenance
    }

    /// The changes, decoded strictly (for callers that need them as values).
    ///
    /// - Returns: The changes, in counter order.
    /// - Throws: The first change's ``ByteDecodingError`` that is not canonical.
    public func decodeChanges() throws(ByteDecodingError) -> [Change] { try HubPage.decode(encoded) }
}

/// What a fork request came to (``HubStore/fork(_:into:nowMillis:random:)``).
public enum ForkResult: Equatable, Sendable {
    /// The new identity is registered; the device secret for it.
    case forked(secret: [UInt8])
    /// The new id is already known to the hub (as a replica or an origin).
    case idTaken
    /// The replica's lineage has forked as often as a hub allows (`SQLiteHubStore.maxForks`).
    case tooManyForks
    /// The replica asking is not enrolled, or revoked.
    case unknownReplica
}

/// A refused second version of a change id. Only ids, sizes and digests: never contents.
public struct EquivocationRecord: Sendable, Equatable {
    /// The change id pushed again with other content.
    public let change: ChangeID
    /// The replica whose push carried the second version.
    public let from: ReplicaID
    /// When the hub refused it.
    public let receivedAtMillis: UInt64
    /// SHA-256 of the version the hub holds and relays, and of the refused one (both kept).
    public let heldDigest: String
    /// SHA-256 (hex) of the refused version.
    public let refusedDigest: String
    /// Size of the refused version's encoding.
    public let refusedBytes: Int
    /// The signed head covering the held version, when the hub holds one.
    public var heldHead: SignedHead?
    /// The signed head that came with the refused version: with `heldHead`, proof that the origin
    /// signed two histories.
    public var refusedHead: SignedHead?

    /// A record; for stores other than ``SQLiteHubStore`` and for tests.
    ///
    /// - Parameters:
    ///   - change: The id pushed again with other content.
    ///   - from: The replica whose push carried it.
    ///   - receivedAtMillis: When it was refused.
    ///   - heldDigest: SHA-256 (hex) of the held version.
    ///   - refusedDigest: SHA-256 (hex) of the refused version.
    ///   - refusedBytes: Size of the refused version.
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
    /// The sequence of the last change included (the next pull's cursor).
    public let nextCursor: UInt64
    /// Whether more changes follow (the budget ran out before them).
    public let more: Bool
    /// Encoded bytes of the changes.
    public let bytes: Int
    /// The heads the hub holds inside the page's runs, ascending by origin then counter (the page
    /// ends at a valid cut, so every origin's last change in it has one), and the device
    /// certificates of the page's origins that have one, ascending by replica.
    public let provenance: Provenance

    /// A page; for stores other than ``SQLiteHubStore`` and for tests.
    ///
    /// - Parameters:
    ///   - encoded: The changes' canonical encodings, in sequence order.
    ///   - nextCursor: The last sequence included.
    ///   - more: Whether more follow.
    ///   - bytes: The encodings' total size.
    ///   - provenance: The heads inside the page's runs, and the certificates of its origins.
    public init(encoded: [[UInt8]], nextCursor: UInt64, more: Bool, bytes: Int, provenance: Provenance = Provenance(heads: [], certificates: [])) {
        self.encoded = encoded
        self.nextCursor = nextCursor
        self.more = more
        self.bytes = bytes
        self.provenance = provenance
    }

    /// The changes, decoded strictly (for callers that need them as values).
    ///
    /// - Returns: The changes, in sequence order.
    /// - Throws: The first change's ``ByteDecodingError`` that is not canonical.
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

/// What redeeming an enrolment token came to.
public enum EnrolmentResult: Equatable, Sendable {
    /// Enrolled into `team`, with the device secret the replica authenticates with from now on.
    case enrolled(team: String, secret: [UInt8])
    /// No such token was issued.
    case unknownToken
    /// Used (by another replica, or spent), bound to another replica id, or presented with a
    /// replica id the hub already knows.
    case alreadyUsed
    /// Past its expiry time.
    case expired
}

extension HubStore {
    /// Issues a token for a new replica (bound to no replica id).
    ///
    /// - Parameters:
    ///   - team: The team the enrolled replica joins.
    ///   - expiresAtMillis: When the token stops being accepted.
    ///   - random: Draws the token.
    /// - Returns: The token, to hand to the replica's operator; the hub keeps only its hash.
    /// - Throws: ``StoreError`` if it cannot be stored.
    public func issueEnrolmentToken(team: String, expiresAtMillis: UInt64, random: inout some RandomNumberGenerator) throws -> String {
        try issueEnrolmentToken(team: team, replica: nil, expiresAtMillis: expiresAtMillis, random: &random)
    }
}

/// What checking a device secret found.
public enum AuthenticationResult: Equatable, Sendable {
    /// The secret is the replica's; its team.
    case accepted(team: String)
    /// No such replica, or another secret.
    case unknown
    /// The replica's credential was revoked.
    case revoked
}

/// What the hub records about sessions for the operator view.
public enum HubSessionEvent: Equatable, Sendable {
    /// A session began: the replica's program version and schema version.
    case hello(appVersion: String, schemaVersion: UInt64)
    /// The replica pulled up to `cursor`.
    case pulled(cursor: UInt64)
    /// The replica's health report (counts and ages, never contents).
    case health(pendingChanges: UInt64, oldestUnsyncedAgeMillis: UInt64, openConflicts: UInt64, schemaVersion: UInt64)
    /// A session ended with an error code.
    case error(code: String)
}

/// The operator's view of one replica: team, times, lag, health as last reported, versions and
/// the last error code. No record contents, names or dates of birth.
public struct ReplicaSummary: Sendable {
    /// The replica.
    public let replica: ReplicaID
    /// Its team.
    public let team: String
    /// Its first session.
    public let firstSeenMillis: UInt64?
    /// Its latest session.
    public let lastSeenMillis: UInt64?
    /// Hub changes from other replicas not yet pulled by this one.
    public let lagChanges: UInt64
    /// As last reported: its changes not yet on the hub.
    public let pendingChanges: UInt64?
    /// As last reported: the age of its oldest change not yet on the hub.
    public let oldestUnsyncedAgeMillis: UInt64?
    /// As last reported: its open conflicts.
    public let openConflicts: UInt64?
    /// As last reported: its schema version.
    public let schemaVersion: UInt64?
    /// Its program's version, as its hello named it (sanitised).
    public let appVersion: String?
    /// The code of the error its last failed session ended with.
    public let lastError: String?
    /// Whether its credential is revoked.
    public let revoked: Bool
    /// Changes of its pushes the hub stored.
    public let changesStored: UInt64
    /// The replica this one was forked from (a copy or a restored backup that diverged).
    public let forkedFrom: ReplicaID?
    /// Pushes of this replica refused as equivocations.
    public let equivocations: UInt64
    /// Purges the hub owes this replica that it has not acknowledged.
    public let purgesOwed: UInt64
    /// Purges this replica has acknowledged.
    public let purgesAcknowledged: UInt64
    /// Changes of its pushes held in quarantine: writes outside its team's scope (Protocol/scope.md).
    public var quarantined: UInt64 = 0
}
