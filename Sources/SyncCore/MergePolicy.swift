/// How a field merges concurrent writes. Which field has which policy is the domain's to declare,
/// in the schema it gives the store.
public enum MergePolicy: Hashable, Sendable {
    /// Written once at creation; a differing value is a bug and is quarantined, never adopted
    /// silently (the earliest write stays visible).
    case immutable
    /// Last writer wins by (causal length, hybrid timestamp, replica id).
    case lastWriterWins
    /// Every concurrent value is kept with its author, replica and time; a conflict is raised for a
    /// person to resolve with a write that supersedes all candidates.
    case multiValue
    /// Monotonic status: moves forward only in a declared order; terminal states absorb; two
    /// different terminal states escalate to a multi-value conflict.
    case monotonic(StatusLattice)
    /// Add-wins set: a concurrent add survives a remove.
    case addWinsSet
    /// Remove-wins set: a concurrent remove beats an add (withdrawal of consent).
    case removeWinsSet
    /// A grow-only set of increments; only for non-authoritative tallies.
    case counter
    // `boundedCounter` (escrow rights under a cap) arrives with the entitlements work: it is a
    // counter whose local increments are admitted only within rights the replica holds, so it will
    // reuse `GrowOnlyCounter`'s state plus a rights ledger.

    /// A stable one-byte code, used in storage and on the wire.
    public var code: UInt8 {
        switch self {
        case .immutable: 1
        case .lastWriterWins: 2
        case .multiValue: 3
        case .monotonic: 4
        case .addWinsSet: 5
        case .removeWinsSet: 6
        case .counter: 7
        }
    }

    /// The short name the schema and the CLI show (`IMM`, `LWW`, `MVR`, `MON`, `AWS`, `RWS`, `CTR`).
    public var name: String {
        switch self {
        case .immutable: "IMM"
        case .lastWriterWins: "LWW"
        case .multiValue: "MVR"
        case .monotonic: "MON"
        case .addWinsSet: "AWS"
        case .removeWinsSet: "RWS"
        case .counter: "CTR"
        }
    }

    /// True when the field keeps a full state (candidates, tags) rather than one winning version.
    public var keepsState: Bool {
        switch self {
        case .lastWriterWins: false
        default: true
        }
    }
}

/// A declared order of status values. Terminal states absorb: once one is reached, no
/// non-terminal state shows again.
public struct StatusLattice: Hashable, Sendable {
    /// The non-terminal and terminal statuses in their forward order.
    public let order: [String]
    /// The statuses that absorb: once reached, no non-terminal status shows again.
    public let terminal: Set<String>

    /// A lattice.
    /// - Parameters:
    ///   - order: every status, in forward order.
    ///   - terminal: which of them are terminal.
    public init(_ order: [String], terminal: Set<String>) {
        precondition(terminal.isSubset(of: Set(order)), "terminal states must be in the order")
        precondition(Set(order).count == order.count, "status values must be distinct")
        self.order = order
        self.terminal = terminal
    }

    /// Position in the declared order; nil for a value this lattice does not know.
    public func rank(of value: String) -> Int? { order.firstIndex(of: value) }

    /// Whether `value` is a terminal status.
    public func isTerminal(_ value: String) -> Bool { terminal.contains(value) }

    /// True if moving from `current` to `next` does not go backwards and does not leave a terminal.
    public func allows(from current: String?, to next: String) -> Bool {
        guard let nextRank = rank(of: next) else { return false }
        guard let current, let currentRank = rank(of: current) else { return true }
        if isTerminal(current) { return current == next }
        return nextRank >= currentRank
    }
}
