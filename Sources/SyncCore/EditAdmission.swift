/// Which local edits a field takes: the rules a replica applies before it makes a change of its
/// own (a change from another replica is always merged, never refused by these). Pure, so the
/// store only loads the field's current resolution, asks here, and writes or refuses.
public enum AssignAdmission: Hashable, Sendable {
    /// The edit may be made.
    case admitted
    /// The field is written once and already holds another value.
    case writtenOnce
    /// The status is not one of the lattice's (or is not text).
    case outsideLattice
    /// The lattice does not allow the move from the current status: it would go backwards or
    /// leave a terminal status.
    case backwards
    /// The policy takes no assignment: sets take add and remove, counters increment.
    case notAnAssignment
}

extension MergePolicy {
    /// Whether a field of this policy takes an assignment at all (sets and counters do not).
    public var takesAssignment: Bool {
        switch self {
        case .immutable, .lastWriterWins, .multiValue, .monotonic: true
        case .addWinsSet, .removeWinsSet, .counter: false
        }
    }

    /// Whether a local assignment of `value` to a field of this policy is admitted over the
    /// field's current resolution.
    ///
    /// - Immutable: only while the field is unset (or null), or to the value it already holds.
    /// - Monotonic: see ``StatusLattice/admits(_:over:)``.
    /// - Last writer wins, multi-value: always.
    /// - Sets and counters: never (``AssignAdmission/notAnAssignment``).
    ///
    /// - Parameters:
    ///   - value: The value the edit assigns.
    ///   - current: The field's merged resolution, or nil if it was never written.
    /// - Returns: ``AssignAdmission/admitted``, or why not.
    ///
    /// ```swift
    /// let status = MergePolicy.monotonic(StatusLattice(["draft", "approved"], terminal: ["approved"]))
    /// status.admitsAssignment(.text("draft"), over: FieldResolution(value: .text("approved")))  // .backwards
    /// ```
    public func admitsAssignment(_ value: FieldValue, over current: FieldResolution?) -> AssignAdmission {
        switch self {
        case .immutable:
            guard let held = current?.value, !held.isNull, held != value else { return .admitted }
            return .writtenOnce
        case let .monotonic(lattice):
            guard let next = value.textValue, lattice.rank(of: next) != nil else { return .outsideLattice }
            return lattice.admits(next, over: current) ? .admitted : .backwards
        case .lastWriterWins, .multiValue:
            return .admitted
        case .addWinsSet, .removeWinsSet, .counter:
            return .notAnAssignment
        }
    }
}

extension StatusLattice {
    /// Whether a local edit may set the status `next` over the field's current resolution.
    ///
    /// A status never moves backwards and never leaves a terminal status (``allows(from:to:)``),
    /// with one exception: while two different terminal statuses conflict (two replicas closed
    /// the record differently), any terminal status is admitted, because choosing one is how a
    /// person resolves the conflict.
    ///
    /// - Parameters:
    ///   - next: The status the edit sets; must be one of ``order`` to be admitted.
    ///   - current: The field's merged resolution, or nil if it was never written.
    /// - Returns: True if the edit may be made.
    public func admits(_ next: String, over current: FieldResolution?) -> Bool {
        if current?.inConflict == true && isTerminal(next) { return true }
        return allows(from: current?.value.textValue, to: next)
    }
}

extension FieldResolution {
    /// Whether the field is an open conflict a person must settle: concurrent values (a
    /// multi-value conflict, or two terminal statuses), or a write kept aside as quarantined (a
    /// differing value for an immutable field). The store flags such fields and lists them.
    public var isOpenConflict: Bool { inConflict || !quarantined.isEmpty }
}

extension WriteVersion {
    /// Whether a replica's own new write to a last-writer-wins field beats the field's stored
    /// version, decided without the stored version's timestamp or replica.
    ///
    /// A local write is timestamped after every timestamp its replica has seen (the hybrid clock
    /// moves past each applied batch), so the comparison ``WriteVersion/<`` makes comes down to
    /// the causal length, which it compares first: the local write wins unless the stored version
    /// is from a later life of the row (a write that arrived before the re-create it follows).
    ///
    /// - Parameters:
    ///   - causalLength: The local write's causal length (the row's life as this replica knows it).
    ///   - stored: The causal length of the field's stored winning version.
    /// - Returns: True if the local write wins.
    public static func localWrite(causalLength: UInt64, beats stored: UInt64) -> Bool { causalLength >= stored }
}
