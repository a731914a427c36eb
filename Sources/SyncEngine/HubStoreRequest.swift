import SyncCore
import SyncStore
import SyncWire

/// Storage work a `HubSession` asks its shell for (`SessionAction.store`). The session never calls
/// the store: the shell performs the request on the hub's one writer (grouping concurrent
/// sessions' appends into one commit where it can) and hands the outcome back.
public enum HubStoreRequest: Equatable, Sendable {
    /// Check a hello's credential: redeem an enrolment token, or authenticate a device secret.
    case checkCredential(replica: ReplicaID, credential: Credential, nowMillis: UInt64)
    /// The hello was accepted: spend its replica's enrolment tokens (a device secret proved it
    /// holds its secret), record the session, and read the hub's durable counter of its origin.
    case openSession(replica: ReplicaID, spendTokens: Bool, appVersion: String, schemaVersion: UInt64, nowMillis: UInt64)
    /// Store a push, durably, before it is acknowledged.
    case append(changes: [Change], replica: ReplicaID, receivedAtMillis: UInt64)
    /// Answer a pull: the head, and (when `cursor` is not above it) the page after `cursor`.
    case readPage(cursor: UInt64, excludingOrigin: ReplicaID, byteBudget: Int, maxCount: Int)
    /// Answer a recover: one origin's contiguous run after `after`.
    case readOrigin(origin: ReplicaID, after: UInt64, byteBudget: Int, maxCount: Int)
    /// Give `replica`'s session the new identity `into` (the replica diverged from what the hub
    /// holds of it), with a new device secret.
    case fork(replica: ReplicaID, into: ReplicaID, nowMillis: UInt64)
    /// Bookkeeping for the operator view; no answer, and a failure must not break a sync.
    case record(HubSessionEvent, replica: ReplicaID, nowMillis: UInt64)
    /// The enrolling replica showed it received its secret; no answer.
    case spendTokens(replica: ReplicaID, nowMillis: UInt64)

    /// Whether the session waits for an outcome (and handles nothing else meanwhile).
    public var expectsAnswer: Bool {
        switch self {
        case .record, .spendTokens: false
        default: true
        }
    }

    /// The push as the group-commit interface takes it; nil for every other request.
    package var push: HubPush? {
        guard case let .append(changes, replica, receivedAt) = self else { return nil }
        return HubPush(changes: changes, replica: replica, receivedAtMillis: receivedAt)
    }
}

/// What a credential check found.
public enum CredentialCheck: Equatable, Sendable {
    /// An enrolment token was presented: redeemed (with the new secret) or refused, and why.
    case enrolment(EnrolmentResult)
    /// A device secret was presented: authenticated, unknown or revoked.
    case device(AuthenticationResult)
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
    /// For `openSession`: the hub's durable counter of the replica's own origin.
    case opened(Result<UInt64, any Error>)
    /// For `append`: what was stored, and the durable counters to acknowledge.
    case appended(Result<HubAppendResult, any Error>)
    /// For `readPage`.
    case page(Result<HubPullRead, any Error>)
    /// For `readOrigin`.
    case originPage(Result<HubOriginPage, any Error>)
    /// For `fork`: the new identity's secret.
    case forked(Result<ForkResult, any Error>)

    /// The same kind of outcome, as a failure: what a shell reports when the store could not be
    /// reached at all (or, in the simulator, an injected fault).
    package static func failure(of request: HubStoreRequest, _ error: any Error) -> HubStoreOutcome? {
        switch request {
        case .checkCredential: .credential(.failure(error))
        case .openSession: .opened(.failure(error))
        case .append: .appended(.failure(error))
        case .readPage: .page(.failure(error))
        case .readOrigin: .originPage(.failure(error))
        case .fork: .forked(.failure(error))
        case .record, .spendTokens: nil
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
        case let .forked(result): failed(result)
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
        case let .checkCredential(replica, credential, now):
            return .credential(Result {
                switch credential {
                case let .enrolmentToken(token):
                    return .enrolment(try store.redeemEnrolmentToken(token, replica: replica, nowMillis: now, random: &random))
                case let .device(secret):
                    return .device(try store.authenticate(replica: replica, secret: secret))
                case .none:
                    // The session refuses a missing credential before asking.
                    return .device(.unknown)
                }
            })
        case let .openSession(replica, spend, appVersion, schemaVersion, now):
            return .opened(Result {
                if spend { try store.spendEnrolmentTokens(of: replica, nowMillis: now) }
                try store.recordSession(.hello(appVersion: appVersion, schemaVersion: schemaVersion), replica: replica, nowMillis: now)
                return try store.ownDurable(replica)
            })
        case let .append(changes, replica, receivedAt):
            let results = store.append([HubPush(changes: changes, replica: replica, receivedAtMillis: receivedAt)])
            return .appended(results.first ?? .failure(StoreError(.database, "the store answered no result for a push")))
        case let .readPage(cursor, excluded, budget, maxCount):
            return .page(Result {
                let head = try store.head()
                guard cursor <= head else { return HubPullRead(head: head, page: nil) }
                return HubPullRead(head: head, page: try store.changes(after: cursor, excludingOrigin: excluded,
                                                                       byteBudget: budget, maxCount: maxCount))
            })
        case let .readOrigin(origin, after, budget, maxCount):
            return .originPage(Result { try store.changes(ofOrigin: origin, after: after, byteBudget: budget, maxCount: maxCount) })
        case let .fork(replica, newReplica, now):
            return .forked(Result { try store.fork(replica, into: newReplica, nowMillis: now, random: &random) })
        case let .record(event, replica, now):
            // Bookkeeping for the operator view must not break a sync.
            try? store.recordSession(event, replica: replica, nowMillis: now)
            return nil
        case let .spendTokens(replica, now):
            try? store.spendEnrolmentTokens(of: replica, nowMillis: now)
            return nil
        }
    }
}
