/// What a person (or the domain table) sees for a field after merging: the value, and when the
/// field is in conflict, every candidate with its provenance.
public struct FieldResolution: Hashable, Sendable {
    /// The value the domain table shows. For a conflict this is the candidate with the greatest
    /// version, so that every replica shows the same thing while the conflict waits for a person.
    public let value: FieldValue
    /// Non-empty when concurrent writes disagree and a person must choose.
    public let candidates: [FieldWrite]
    /// Writes refused by the policy (a differing value for an immutable field); kept, never adopted.
    public let quarantined: [FieldWrite]

    /// A resolution.
    /// - Parameters:
    ///   - value: what the domain table shows.
    ///   - candidates: the writes in conflict, if any.
    ///   - quarantined: writes the policy refused.
    public init(value: FieldValue, candidates: [FieldWrite] = [], quarantined: [FieldWrite] = []) {
        self.value = value
        self.candidates = candidates
        self.quarantined = quarantined
    }

    /// Whether a person must choose between candidates.
    public var inConflict: Bool { !candidates.isEmpty }
}

/// The merged state of one field. Every case is a join-semilattice: `applying` a write and
/// `merged(with:)` are commutative, associative and idempotent, so replicas that have seen the
/// same writes, in any order and with any duplicates, hold equal states.
///
/// ```swift
/// let policy = MergePolicy.multiValue
/// let ours = change.write(of: change.fields[0])           // a FieldWrite: id, timestamp, author, operation
/// let theirs = concurrent.write(of: concurrent.fields[0])  // neither supersedes the other
/// let state = FieldState.empty(for: policy).applying(ours, policy: policy).applying(theirs, policy: policy)
/// let shown = state.resolution(policy: policy)             // shown.inConflict: a person picks one
/// assert(state == FieldState.empty(for: policy).applying(theirs, policy: policy).applying(ours, policy: policy))
/// ```
public enum FieldState: Hashable, Sendable {
    /// Written once (IMM).
    case immutable(ImmutableRegister)
    /// Last writer wins (LWW).
    case lastWriterWins(LastWriterWinsRegister)
    /// Concurrent writes kept for a person (MVR).
    case multiValue(MultiValueRegister)
    /// A status that only moves forward (MON).
    case monotonic(MonotonicRegister)
    /// Add-wins set (AWS).
    case addWinsSet(AddWinsSet)
    /// Remove-wins set (RWS).
    case removeWinsSet(RemoveWinsSet)
    /// Grow-only set of increments (CTR).
    case counter(GrowOnlyCounter)

    /// The state of a field no write has reached: the identity of `merged(with:policy:)`.
    /// - Parameter policy: the field's merge policy.
    /// - Returns: the empty state of that policy's case.
    public static func empty(for policy: MergePolicy) -> FieldState {
        switch policy {
        case .immutable: .immutable(ImmutableRegister())
        case .lastWriterWins: .lastWriterWins(LastWriterWinsRegister())
        case .multiValue: .multiValue(MultiValueRegister())
        case .monotonic: .monotonic(MonotonicRegister())
        case .addWinsSet: .addWinsSet(AddWinsSet())
        case .removeWinsSet: .removeWinsSet(RemoveWinsSet())
        case .counter: .counter(GrowOnlyCounter())
        }
    }

    /// The state after one more write.
    public func applying(_ write: FieldWrite, policy: MergePolicy) -> FieldState {
        switch (self, policy) {
        case let (.immutable(state), _): .immutable(state.applying(write))
        case let (.lastWriterWins(state), _): .lastWriterWins(state.applying(write))
        case let (.multiValue(state), _): .multiValue(state.applying(write))
        case let (.monotonic(state), .monotonic(lattice)): .monotonic(state.applying(write, lattice: lattice))
        case let (.addWinsSet(state), _): .addWinsSet(state.applying(write))
        case let (.removeWinsSet(state), _): .removeWinsSet(state.applying(write))
        case let (.counter(state), _): .counter(state.applying(write))
        case (.monotonic, _): preconditionFailure("monotonic state needs a monotonic policy")
        }
    }

    /// The join of two states of the same field.
    public func merged(with other: FieldState, policy: MergePolicy) -> FieldState {
        switch (self, other, policy) {
        case let (.immutable(a), .immutable(b), _): .immutable(a.merged(with: b))
        case let (.lastWriterWins(a), .lastWriterWins(b), _): .lastWriterWins(a.merged(with: b))
        case let (.multiValue(a), .multiValue(b), _): .multiValue(a.merged(with: b))
        case let (.monotonic(a), .monotonic(b), .monotonic(lattice)): .monotonic(a.merged(with: b, lattice: lattice))
        case let (.addWinsSet(a), .addWinsSet(b), _): .addWinsSet(a.merged(with: b))
        case let (.removeWinsSet(a), .removeWinsSet(b), _): .removeWinsSet(a.merged(with: b))
        case let (.counter(a), .counter(b), _): .counter(a.merged(with: b))
        default: preconditionFailure("merging states of different policies")
        }
    }

    /// What a person and the domain table see: the value, and candidates when in conflict.
    /// - Parameter policy: the field's merge policy (a monotonic state needs its lattice).
    /// - Returns: the field's resolution.
    public func resolution(policy: MergePolicy) -> FieldResolution {
        switch (self, policy) {
        case let (.immutable(state), _): state.resolution
        case let (.lastWriterWins(state), _): FieldResolution(value: state.winner?.value ?? .null)
        case let (.multiValue(state), _): state.resolution
        case let (.monotonic(state), .monotonic(lattice)): state.resolution(lattice: lattice)
        case let (.addWinsSet(state), _): FieldResolution(value: SetRendering.value(of: state.elements))
        case let (.removeWinsSet(state), _): FieldResolution(value: SetRendering.value(of: state.elements))
        case let (.counter(state), _): FieldResolution(value: .integer(state.total))
        case (.monotonic, _): preconditionFailure("monotonic state needs a monotonic policy")
        }
    }

    /// The writes a new local write should supersede: everything its author can see, so that a
    /// local write resolves a conflict and a local remove removes what was observed.
    public func supersededByLocalWrite(_ operation: FieldOperation, policy: MergePolicy) -> [ChangeID] {
        switch (self, operation) {
        case let (.multiValue(state), .assign): state.candidates.map(\.id)
        case let (.monotonic(state), .assign(value)):
            if case let .monotonic(lattice) = policy, let text = value.textValue, lattice.isTerminal(text) {
                state.terminals.candidates.map(\.id)
            } else {
                []
            }
        case let (.addWinsSet(state), .remove(element)): state.adds.filter { $0.value == element }.map(\.id)
        case let (.removeWinsSet(state), .add(element)): state.removes.filter { $0.value == element }.map(\.id)
        default: []
        }
    }
}

/// Last writer wins by `WriteVersion`.
public struct LastWriterWinsRegister: Hashable, Sendable {
    /// The write with the greatest `WriteVersion`, nil before any.
    public private(set) var winner: FieldWrite?

    /// A register holding `winner`.
    public init(winner: FieldWrite? = nil) { self.winner = winner }

    /// Whether `candidate` replaces `current`: the greater version wins; anything beats nothing.
    /// - Parameters:
    ///   - candidate: the arriving write's version.
    ///   - current: the held winner's version, if any.
    /// - Returns: true if the candidate becomes the winner.
    public static func wins(_ candidate: WriteVersion, over current: WriteVersion?) -> Bool {
        guard let current else { return true }
        return candidate > current
    }

    /// The register after `write`.
    public func applying(_ write: FieldWrite) -> LastWriterWinsRegister {
        Self.wins(write.version, over: winner?.version) ? LastWriterWinsRegister(winner: write) : self
    }

    /// The join: the greater winner.
    public func merged(with other: LastWriterWinsRegister) -> LastWriterWinsRegister {
        guard let theirs = other.winner else { return self }
        return applying(theirs)
    }
}

/// Written once. The earliest write stays visible; a write with a different value is kept in
/// quarantine (one per distinct value, its earliest write) so nothing is dropped and a person can
/// see the bug.
public struct ImmutableRegister: Hashable, Sendable {
    /// Sorted by version; at most one write per distinct value.
    public private(set) var writes: [FieldWrite] = []

    /// An empty register.
    public init() {}

    /// The register after `write`: kept first if it is the earliest, else quarantined per distinct value.
    public func applying(_ write: FieldWrite) -> ImmutableRegister {
        var next = self
        if let index = writes.firstIndex(where: { $0.value == write.value }) {
            guard write.version < writes[index].version else { return self }
            next.writes.remove(at: index)
        }
        next.writes.insert(write, at: next.writes.firstIndex { write.version < $0.version } ?? next.writes.endIndex)
        return next
    }

    /// The join of both registers' writes.
    public func merged(with other: ImmutableRegister) -> ImmutableRegister {
        other.writes.reduce(self) { $0.applying($1) }
    }

    /// The earliest write's value, with the other values quarantined.
    public var resolution: FieldResolution {
        FieldResolution(value: writes.first?.value ?? .null, quarantined: Array(writes.dropFirst()))
    }
}

/// Multi-value register: keeps every write not superseded by another.
public struct MultiValueRegister: Hashable, Sendable {
    /// Live candidates, sorted by version.
    public private(set) var candidates: [FieldWrite] = []
    /// Ids of writes replaced by a later write; sorted. Kept so that a replaced write arriving late
    /// stays replaced. (Compaction below a hub watermark will prune it.)
    public private(set) var superseded: [ChangeID] = []

    /// An empty register.
    public init() {}

    init(candidates: [FieldWrite], superseded: [ChangeID]) {
        self.candidates = candidates
        self.superseded = superseded
    }

    /// The register after `write`: it replaces what it supersedes, unless it was itself superseded.
    public func applying(_ write: FieldWrite) -> MultiValueRegister {
        if candidates.contains(where: { $0.id == write.id }) { return self }
        // A write that arrives already replaced still replaces what it superseded: when C replaced
        // B and B replaced A, C's author saw only B, so A is gone only through B. Ignoring B here
        // left A live on a replica that received C, A, B, while one that received A, B, C did not.
        let replaced = SortedIDs.union(superseded, write.supersedes)
        if replaced == superseded && SortedIDs.contains(superseded, write.id) { return self }
        var live = candidates.filter { !SortedIDs.contains(replaced, $0.id) }
        if !SortedIDs.contains(replaced, write.id) {
            live.insert(write, at: live.firstIndex { write.version < $0.version } ?? live.endIndex)
        }
        return MultiValueRegister(candidates: live, superseded: replaced)
    }

    /// The join: the union of superseded ids, and the candidates neither side has superseded.
    public func merged(with other: MultiValueRegister) -> MultiValueRegister {
        let replaced = SortedIDs.union(superseded, other.superseded)
        var byID: [ChangeID: FieldWrite] = [:]
        for write in candidates + other.candidates where !SortedIDs.contains(replaced, write.id) {
            byID[write.id] = write
        }
        return MultiValueRegister(candidates: byID.values.sorted { $0.version < $1.version }, superseded: replaced)
    }

    /// The newest candidate's value, and every candidate while their values differ.
    public var resolution: FieldResolution {
        guard let newest = candidates.last else { return FieldResolution(value: .null) }
        let distinct = Set(candidates.map(\.value))
        return FieldResolution(value: newest.value, candidates: distinct.count > 1 ? candidates : [])
    }
}

/// Monotonic status: the greatest non-terminal status seen, and the terminal statuses reached
/// (a multi-value register, so two different terminals are a conflict a person resolves).
public struct MonotonicRegister: Hashable, Sendable {
    /// The greatest non-terminal status write seen.
    public private(set) var best: FieldWrite?
    /// The terminal statuses reached, as a multi-value register.
    public private(set) var terminals = MultiValueRegister()

    /// An empty register.
    public init() {}

    init(best: FieldWrite?, terminals: MultiValueRegister) {
        self.best = best
        self.terminals = terminals
    }

    /// Unknown statuses (from a newer schema) rank below every known one: kept, never winning.
    private static func rank(_ write: FieldWrite, _ lattice: StatusLattice) -> Int {
        write.value.textValue.flatMap(lattice.rank(of:)) ?? -1
    }

    private static func greater(_ a: FieldWrite, than b: FieldWrite, _ lattice: StatusLattice) -> Bool {
        (rank(a, lattice), a.version) > (rank(b, lattice), b.version)
    }

    /// The register after `write`, ordered by `lattice`.
    public func applying(_ write: FieldWrite, lattice: StatusLattice) -> MonotonicRegister {
        if let text = write.value.textValue, lattice.isTerminal(text) {
            return MonotonicRegister(best: best, terminals: terminals.applying(write))
        }
        guard let best else { return MonotonicRegister(best: write, terminals: terminals) }
        return Self.greater(write, than: best, lattice) ? MonotonicRegister(best: write, terminals: terminals) : self
    }

    /// The join of two registers under `lattice`.
    public func merged(with other: MonotonicRegister, lattice: StatusLattice) -> MonotonicRegister {
        var next = MonotonicRegister(best: best, terminals: terminals.merged(with: other.terminals))
        if let theirs = other.best { next = next.applying(theirs, lattice: lattice) }
        return next
    }

    /// A reached terminal status (a conflict if two differ), else the best status.
    public func resolution(lattice: StatusLattice) -> FieldResolution {
        let reached = terminals.candidates
        if reached.isEmpty { return FieldResolution(value: best?.value ?? .null) }
        let top = reached.max { Self.greater($1, than: $0, lattice) }!
        let distinct = Set(reached.map(\.value))
        return FieldResolution(value: top.value, candidates: distinct.count > 1 ? reached : [])
    }
}

/// Add-wins (observed-remove) set: a remove takes away only the add tags its author saw.
public struct AddWinsSet: Hashable, Sendable {
    /// Live add writes, sorted by id.
    public private(set) var adds: [FieldWrite] = []
    /// Add ids removed by an observed remove; sorted.
    public private(set) var removedTags: [ChangeID] = []

    /// An empty set.
    public init() {}

    init(adds: [FieldWrite], removedTags: [ChangeID]) {
        self.adds = adds
        self.removedTags = removedTags
    }

    /// The set after an add or remove; other operations change nothing.
    public func applying(_ write: FieldWrite) -> AddWinsSet {
        switch write.operation {
        case .add:
            if SortedIDs.contains(removedTags, write.id) || adds.contains(where: { $0.id == write.id }) { return self }
            return AddWinsSet(adds: (adds + [write]).sorted { $0.id < $1.id }, removedTags: removedTags)
        case .remove:
            let removed = SortedIDs.union(removedTags, write.supersedes)
            return AddWinsSet(adds: adds.filter { !SortedIDs.contains(removed, $0.id) }, removedTags: removed)
        case .assign, .increment:
            return self
        }
    }

    /// The join: removed tags united, live adds neither side removed.
    public func merged(with other: AddWinsSet) -> AddWinsSet {
        let removed = SortedIDs.union(removedTags, other.removedTags)
        var byID: [ChangeID: FieldWrite] = [:]
        for add in adds + other.adds where !SortedIDs.contains(removed, add.id) { byID[add.id] = add }
        return AddWinsSet(adds: byID.values.sorted { $0.id < $1.id }, removedTags: removed)
    }

    /// The distinct values present, sorted.
    public var elements: [FieldValue] { Set(adds.map(\.value)).sorted() }
}

/// Remove-wins set: an element is present only if some add has seen every remove of it.
public struct RemoveWinsSet: Hashable, Sendable {
    /// Add writes, sorted by id.
    public private(set) var adds: [FieldWrite] = []
    /// Remove writes, sorted by id.
    public private(set) var removes: [FieldWrite] = []

    /// An empty set.
    public init() {}

    init(adds: [FieldWrite], removes: [FieldWrite]) {
        self.adds = adds
        self.removes = removes
    }

    /// The set after an add or remove; other operations change nothing.
    public func applying(_ write: FieldWrite) -> RemoveWinsSet {
        switch write.operation {
        case .add where !adds.contains { $0.id == write.id }:
            return RemoveWinsSet(adds: (adds + [write]).sorted { $0.id < $1.id }, removes: removes)
        case .remove where !removes.contains { $0.id == write.id }:
            return RemoveWinsSet(adds: adds, removes: (removes + [write]).sorted { $0.id < $1.id })
        default:
            return self
        }
    }

    /// The join of both sets' adds and removes.
    public func merged(with other: RemoveWinsSet) -> RemoveWinsSet {
        other.removes.reduce(other.adds.reduce(self) { $0.applying($1) }) { $0.applying($1) }
    }

    /// The values some add has seen every remove of, distinct and sorted.
    public var elements: [FieldValue] {
        let present = adds.filter { add in
            removes.allSatisfy { $0.value != add.value || SortedIDs.contains(add.supersedes, $0.id) }
        }
        return Set(present.map(\.value)).sorted()
    }
}

/// A grow-only set of increments, keyed by change id so a duplicate counts once.
public struct GrowOnlyCounter: Hashable, Sendable {
    /// Each increment's delta by the change id that made it.
    public private(set) var increments: [ChangeID: Int64] = [:]

    /// A counter at zero.
    public init() {}

    /// The counter after an increment (a duplicate id counts once).
    public func applying(_ write: FieldWrite) -> GrowOnlyCounter {
        guard case let .increment(delta) = write.operation, increments[write.id] == nil else { return self }
        var next = self
        next.increments[write.id] = delta
        return next
    }

    /// The join: every increment of either side, once.
    public func merged(with other: GrowOnlyCounter) -> GrowOnlyCounter {
        var next = self
        next.increments.merge(other.increments) { mine, _ in mine }
        return next
    }

    /// The sum of the increments (wrapping, as every replica wraps alike).
    public var total: Int64 { increments.values.reduce(0, &+) }
}

/// Sorted arrays of change ids used as small sets with a canonical order (for equality and storage).
enum SortedIDs {
    static func contains(_ ids: [ChangeID], _ id: ChangeID) -> Bool {
        var low = 0
        var high = ids.count
        while low < high {
            let mid = (low + high) / 2
            if ids[mid] == id { return true }
            if ids[mid] < id { low = mid + 1 } else { high = mid }
        }
        return false
    }

    static func union(_ a: [ChangeID], _ b: [ChangeID]) -> [ChangeID] {
        if b.isEmpty { return a }
        return Array(Set(a).union(b)).sorted()
    }
}

/// Sets are shown in the domain table as a JSON array, so `sqlite3` (and its json functions) can
/// read them.
enum SetRendering {
    /// The elements as one JSON array in a text value.
    static func value(of elements: [FieldValue]) -> FieldValue {
        .text("[" + elements.map(json).joined(separator: ",") + "]")
    }

    static func json(_ value: FieldValue) -> String {
        switch value {
        case .null: return "null"
        case let .integer(number): return String(number)
        case let .real(number): return number.isFinite ? String(number) : "null"
        case let .blob(bytes): return "\"" + bytes.hexString + "\""
        case let .text(text):
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if scalar.value < 0x20 {
                        out += "\\u00" + HexDigits.string(UInt64(scalar.value), width: 2)
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            return out + "\""
        }
    }
}
