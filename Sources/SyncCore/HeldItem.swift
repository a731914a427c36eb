// Quarantine review's values (Protocol/scope.md, "Quarantine review"): shared by the wire,
// the stores and the engine, so they live in the core.

/// What a reviewer decided on a held write (Protocol/scope.md, "Quarantine review").
public enum HeldVerdict: UInt8, Equatable, Sendable {
    /// The edit was re-authored as a new local change by the reviewing worker.
    case accept = 1
    /// The edit was not taken; the reason stays on the replica that decided (it is record content).
    case dismiss = 2
}

/// One decision of a review message: which held change, and what was decided.
public struct HeldDecision: Equatable, Sendable {
    /// The quarantined change, by its id.
    public var change: ChangeID
    /// Accepted or dismissed.
    public var verdict: HeldVerdict

    /// A decision on the held change `change`.
    public init(change: ChangeID, verdict: HeldVerdict) {
        self.change = change
        self.verdict = verdict
    }
}

/// What the hub did with one decision, in a held message.
public enum HeldOutcomeCode: UInt8, Equatable, Sendable {
    /// Recorded: the item is resolved by this decision.
    case recorded = 1
    /// The item was resolved already (by this decision sent before, or by another replica).
    case resolvedAlready = 2
    /// Refused: the item is not held for this replica (outside the scope's audience or
    /// restriction, or unknown); the refusal is audited.
    case refused = 3
}

/// The hub's answer to one decision.
public struct HeldOutcome: Equatable, Sendable {
    /// The held change the decision named.
    public var change: ChangeID
    /// What the hub did.
    public var code: HeldOutcomeCode

    /// The outcome `code` of the decision on `change`.
    public init(change: ChangeID, code: HeldOutcomeCode) {
        self.change = change
        self.code = code
    }
}

/// Why the hub quarantined a held write.
public enum HeldReason: UInt8, Equatable, Sendable {
    /// The writer's team was not in the scope's audience.
    case outOfScope = 1
    /// The scope is restricted and the writer is not on its restriction.
    case restricted = 2

    /// The stable name shown to users and stored on the hub.
    public var name: String {
        switch self {
        case .outOfScope: "OUT_OF_SCOPE"
        case .restricted: "RESTRICTED"
        }
    }

    /// The reason of this name; nil for another.
    public init?(name: String) {
        switch name {
        case "OUT_OF_SCOPE": self = .outOfScope
        case "RESTRICTED": self = .restricted
        default: return nil
        }
    }
}

/// A quarantined write the hub holds for review by the replicas of its scope's audience: the
/// change as its author wrote it, never merged by the receiver.
public struct HeldItem: Equatable, Sendable {
    /// The replica that pushed it (its origin, or a replica that relayed it from a bundle).
    public var fromReplica: ReplicaID
    /// Why it was quarantined.
    public var reason: HeldReason
    /// When the hub received it, ms since 1970.
    public var receivedAtMillis: UInt64
    /// The change, as stored.
    public var change: Change

    /// A held item; every field as `messages.md` gives it.
    public init(fromReplica: ReplicaID, reason: HeldReason, receivedAtMillis: UInt64, change: Change) {
        self.fromReplica = fromReplica
        self.reason = reason
        self.receivedAtMillis = receivedAtMillis
        self.change = change
    }
}
