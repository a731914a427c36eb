import SyncCore
import SyncIdentity
import SyncStore
import SyncWire

/// Storage work a `HubSession` asks its shell for (`SessionAction.store`). The session never calls
/// the store: the shell performs the request on the hub's one writer (grouping concurrent
/// sessions' appends into one commit where it can) and hands the outcome back.
public enum HubStoreRequest: Equatable, Sendable {
    /// Check a hello's credential: redeem an enrolment token (registering `deviceKey`), or
    /// authenticate a device secret (with the registered `deviceKey`; a replica enrolled before
    /// protocol 3 registers it now, once).
    case checkCredential(replica: ReplicaID, credential: Credential, deviceKey: [UInt8], nowMillis: UInt64)
    /// The hello was accepted: spend its replica's enrolment tokens (a device secret proved it
    /// holds its secret), record the session, and read the hub's durable counter of its origin,
    /// the replica's device certificate and the purges owed to it (at most `ScopeList.maxScopes`).
    case openSession(replica: ReplicaID, spendTokens: Bool, appVersion: String, schemaVersion: UInt64, nowMillis: UInt64)
    /// Store a push, durably, before it is acknowledged, once its runs verify against `provenance`.
    case append(changes: [Change], replica: ReplicaID, provenance: Provenance, receivedAtMillis: UInt64)
    /// Answer a pull: the head, and (when `cursor` is not above it) the page after `cursor`.
    case readPage(cursor: UInt64, excludingOrigin: ReplicaID, byteBudget: Int, maxCount: Int)
    /// Answer a recover: one origin's contiguous run after `after`.
    case readOrigin(origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int)
    /// Give `replica`'s session the new identity `into` (the replica diverged from what the hub
    /// holds of it), with a new device secret and `deviceKey` registered for it.
    case fork(replica: ReplicaID, into: ReplicaID, deviceKey: [UInt8], nowMillis: UInt64)
    /// Bookkeeping for the operator view; no answer, and a failure must not break a sync.
    case record(HubSessionEvent, replica: ReplicaID, nowMillis: UInt64)
    /// The enrolling replica showed it received its secret; no answer.
    case spendTokens(replica: ReplicaID, nowMillis: UInt64)
    /// The replica's purge-ack: it purged `scopes`, which the hub owes it no more; no answer (a
    /// failure leaves them owed, and the next welcome names them again: purging twice is harmless).
    case acknowledgePurges(scopes: [String], replica: ReplicaID, nowMillis: UInt64)
    /// A review: record the replica's `decisions` on held writes (durably, audited), then read the
    /// writes held for its review after `after`, within `byteBudget` and `maxCount`.
    case review(decisions: [HeldDecision], after: ChangeID?, replica: ReplicaID, byteBudget: Int, maxCount: Int, nowMillis: UInt64)

    /// Whether the session waits for an outcome (and handles nothing else meanwhile).
    public var expectsAnswer: Bool {
        switch self {
        case .record, .spendTokens, .acknowledgePurges: false
        default: true
        }
    }

    /// The push as the group-commit interface takes it; nil for every other request.
    package var push: HubPush? {
        guard case let .append(changes, replica, provenance, receivedAt) = self else { return nil }
        return HubPush(changes: changes, replica: replica, provenance: provenance, receivedAtMillis: receivedAt)
    }
}

/// What a credential check found.
public enum CredentialCheck: Equatable, Sendable {
    /// An enrolment token was presented: redeemed (with the new secret) or refused, and why.
    case enrolment(EnrolmentResult)
    /// A device secret was presented: authenticated, unknown or revoked.
    case device(AuthenticationResult)
}

/// What the welcome needs from the store once a hello is accepted.
public struct SessionOpening: Equatable, Sendable {
    /// The hub's contiguous durable counter of the replica's own origin.
    public let ownDurable: UInt64
    /// The hub's public key (pinned by the replica at enrolment).
    public let hubKey: [UInt8]
    /// The hub store's incarnation (16 bytes).
    public let incarnation: [UInt8]
    /// The replica's device certificate, if the hub has one for it.
    public let certificate: DeviceCertificate?
    /// The scopes the hub owes the replica a purge of, for the welcome.
    public let purges: [String]

    /// - Parameters:
    ///   - ownDurable: The hub's durable counter of the replica's origin.
    ///   - hubKey: The hub's public key.
    ///   - incarnation: The hub store's incarnation.
    ///   - certificate: The replica's device certificate, if any.
    ///   - purges: The scopes owed a purge: a valid `ScopeList`.
    public init(ownDurable: UInt64, hubKey: [UInt8], incarnation: [UInt8], certificate: DeviceCertificate?, purges: [String] = []) {
        self.ownDurable = ownDurable
        self.hubKey = hubKey
        self.incarnation = incarnation
        self.certificate = certificate
        self.purges = purges
    }
}

/// What a review did: each decision's outcome, and the page of held items.
public struct HeldReview: Equatable, Sendable {
    /// What became of each decision, in their order.
    public let outcomes: [HeldOutcome]
    /// The writes held for the replica's review after the review's `after`.
    public let page: HeldPage

    /// The outcomes of a review's decisions and its page.
    public init(outcomes: [HeldOutcome], page: HeldPage) {
        self.outcomes = outcomes
        self.page = page
    }
}

/// What a pull read: the head, and the page unless the cursor is above the head.
public struct HubPullRead: Sendable {
    /// The hub log's head when the page was read.
    public let head: UInt64
    /// The changes after the cursor; nil when the cursor is above the head (`CURSOR_AHEAD`).
    public let page: HubPage?

    /// - Parameters:
    ///   - head: The hub log's head.
    ///   - page: The page after the cursor, or nil when the cursor is above `head`.
    public init(head: UInt64, page: HubPage?) {
        self.head = head
        self.page = page
    }
}

/// The outcome of a `HubStoreRequest`, reported through `HubSession.storageCompleted`. Each
/// failure is the store's error; the session answers it with `STORAGE_FAILURE`.
public enum HubStoreOutcome: Sendable {
    /// For `checkCredential`.
    case credential(Result<CredentialCheck, any Error>)
    /// For `openSession`: the hub's durable counter of the replica's own origin, its key,
    /// incarnation and the replica's certificate.
    case opened(Result<SessionOpening, any Error>)
    /// For `append`: what was stored, and the durable counters to acknowledge.
    case appended(Result<HubAppendResult, any Error>)
    /// For `readPage`.
    case page(Result<HubPullRead, any Error>)
    /// For `readOrigin`.
    case originPage(Result<HubOriginPage, any Error>)
    /// For `fork`: the new identity's secret, and its device certificate once forked.
    case forked(Result<ForkResult, any Error>, certificate: DeviceCertificate? = nil)
    /// For `review`.
    case reviewed(Result<HeldReview, any Error>)

    /// The same kind of outcome, as a failure: what a shell reports when the store could not be
    /// reached at all (or, in the simulator, an injected fault).
    package static func failure(of request: HubStoreRequest, _ error: any Error) -> HubStoreOutcome? {
        switch request {
        case .checkCredential: .credential(.failure(error))
        case .openSession: .opened(.failure(error))
        case .append: .appended(.failure(error))
        case .readPage: .page(.failure(error))
        case .readOrigin: .originPage(.failure(error))
        case .fork: .forked(.failure(error), certificate: nil)
        case .review: .reviewed(.failure(error))
        case .record, .spendTokens, .acknowledgePurges: nil
        }
    }

    /// The store's error, if the request failed: for the shell to log (its code, never contents)
    /// before the session answers `STORAGE_FAILURE`, which carries no detail to the peer.
    package var error: (any Error)? {
        func failed<T>(_ result: Result<T, any Error>) -> (any Error)? {
            if case let .failure(error) = result { error } else { nil }
        }
        return switch self {
        case let .credential(result): failed(result)
        case let .opened(result): failed(result)
        case let .appended(result): failed(result)
        case let .page(result): failed(result)
        case let .originPage(result): failed(result)
        case let .forked(result, _): failed(result)
        case let .reviewed(result): failed(result)
        }
    }
}

extension HubStoreRequest {
    /// Performs the request on `store`, synchronously (the caller runs it on the writer). Appends
    /// are grouped by the caller through `HubStore.append(_ pushes:)`; performed here one alone.
    /// Returns nil for requests that expect no answer. For the shells (`HubWriter`, the simulator's
    /// inline hub), hence `package`.
    package func perform(on store: any HubStore, random: inout RandomSource) -> HubStoreOutcome? {
        switch self {
        case let .checkCredential(replica, credential, deviceKey, now):
            return .credential(Result {
                switch credential {
                case let .enrolmentToken(token):
                    return .enrolment(try store.redeemEnrolmentToken(token, replica: replica, deviceKey: deviceKey, nowMillis: now,
                                                                     random: &random))
                case let .device(secret):
                    return .device(try store.authenticate(replica: replica, secret: secret, deviceKey: deviceKey, nowMillis: now))
                case .none:
                    // The session refuses a missing credential before asking.
                    return .device(.unknown)
                }
            })
        case let .openSession(replica, spend, appVersion, schemaVersion, now):
            return .opened(Result {
                if spend { try store.spendEnrolmentTokens(of: replica, nowMillis: now) }
                try store.recordSession(.hello(appVersion: appVersion, schemaVersion: schemaVersion), replica: replica, nowMillis: now)
                // A store's scopes are a row's scopes, within a scope list's limits; the canonical
                // order is kept even if a store sorted otherwise.
                let purges = ScopeList.canonical(try store.purgesOwed(replica: replica, limit: ScopeList.maxScopes))
                    .filter { ScopeList.violation(of: [$0]) == nil }
                return SessionOpening(ownDurable: try store.ownDurable(replica), hubKey: store.hubKey, incarnation: store.incarnation,
                                      certificate: try store.certificate(for: replica), purges: purges)
            })
        case let .append(changes, replica, provenance, receivedAt):
            let results = store.append([HubPush(changes: changes, replica: replica, provenance: provenance, receivedAtMillis: receivedAt)])
            return .appended(results.first ?? .failure(StoreError(.database, "the store answered no result for a push")))
        case let .readPage(cursor, excluded, budget, maxCount):
            return .page(Result {
                let head = try store.head(for: excluded)
                guard cursor <= head else { return HubPullRead(head: head, page: nil) }
                return HubPullRead(head: head, page: try store.changes(after: cursor, excludingOrigin: excluded,
                                                                       byteBudget: budget, maxCount: maxCount))
            })
        case let .readOrigin(origin, after, budget, maxCount):
            return .originPage(Result { try store.changes(ofOrigin: origin, after: after, byteBudget: budget, maxCount: maxCount) })
        case let .fork(replica, newReplica, deviceKey, now):
            let result = Result { try store.fork(replica, into: newReplica, deviceKey: deviceKey, nowMillis: now, random: &random) }
            guard case .success(.forked) = result else { return .forked(result, certificate: nil) }
            return .forked(result, certificate: try? store.certificate(for: newReplica))
        case let .record(event, replica, now):
            // Bookkeeping for the operator view must not break a sync.
            try? store.recordSession(event, replica: replica, nowMillis: now)
            return nil
        case let .spendTokens(replica, now):
            try? store.spendEnrolmentTokens(of: replica, nowMillis: now)
            return nil
        case let .acknowledgePurges(scopes, replica, now):
            try? store.acknowledgePurges(scopes, replica: replica, nowMillis: now)
            return nil
        case let .review(decisions, after, replica, budget, maxCount, now):
            return .reviewed(Result {
                let outcomes = try store.resolveHeld(decisions, replica: replica, nowMillis: now)
                return HeldReview(outcomes: outcomes, page: try store.heldItems(for: replica, after: after, byteBudget: budget, maxCount: maxCount))
            })
        }
    }
}
