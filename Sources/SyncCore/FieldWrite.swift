/// The version that orders writes for last-writer-wins: a write made after the row was deleted and
/// re-created (larger causal length) beats any write from an earlier life of the row.
public struct WriteVersion: Hashable, Comparable, Sendable {
    /// The row's life: a write from a later life beats any from an earlier one.
    public let causalLength: UInt64
    /// The hybrid timestamp, compared next.
    public let timestamp: HybridTimestamp
    /// The change id, the final tie-break.
    public let id: ChangeID

    /// A version.
    /// - Parameters:
    ///   - causalLength: the row's life the write belongs to.
    ///   - timestamp: the write's hybrid timestamp.
    ///   - id: the write's change id.
    public init(causalLength: UInt64, timestamp: HybridTimestamp, id: ChangeID) {
        self.causalLength = causalLength
        self.timestamp = timestamp
        self.id = id
    }

    /// Ordered by causal length, then timestamp, then change id.
    public static func < (lhs: WriteVersion, rhs: WriteVersion) -> Bool {
        (lhs.causalLength, lhs.timestamp, lhs.id.replica, lhs.id.counter)
            < (rhs.causalLength, rhs.timestamp, rhs.id.replica, rhs.id.counter)
    }
}

/// What a change does to one field.
public enum FieldOperation: Hashable, Sendable {
    /// Set the value (IMM, LWW, MVR, MON).
    case assign(FieldValue)
    /// Add an element to a set (AWS, RWS); the change id is the add's tag.
    case add(FieldValue)
    /// Remove an element from a set.
    case remove(FieldValue)
    /// Add a (possibly negative) amount to a counter.
    case increment(Int64)

    /// The operation's tag in the canonical encoding (Protocol/README.md): 1 assign, 2 add, 3 remove, 4 increment.
    public var code: UInt8 {
        switch self {
        case .assign: 1
        case .add: 2
        case .remove: 3
        case .increment: 4
        }
    }
}

/// One write to one field, with everything a merge needs: who, when, in which life of the row,
/// and which earlier writes its author had seen and meant to replace.
public struct FieldWrite: Hashable, Sendable {
    /// The change that made the write.
    public let id: ChangeID
    /// When, on the origin's hybrid logical clock.
    public let timestamp: HybridTimestamp
    /// The row's life the write belongs to.
    public let causalLength: UInt64
    /// Who made it (a worker id).
    public let author: String
    /// What it does to the field.
    public let operation: FieldOperation
    /// Writes this one replaces: for MVR and MON the candidates its author saw; for an add-wins
    /// remove the add tags it observed; for a remove-wins add the removes it observed.
    public let supersedes: [ChangeID]

    /// One field write.
    /// - Parameters:
    ///   - id: the change that made it.
    ///   - timestamp: its hybrid timestamp.
    ///   - causalLength: the row's life it belongs to.
    ///   - author: who made it.
    ///   - operation: what it does.
    ///   - supersedes: the writes it replaces; sorted here.
    public init(id: ChangeID, timestamp: HybridTimestamp, causalLength: UInt64 = 1, author: String,
                operation: FieldOperation, supersedes: [ChangeID] = []) {
        self.id = id
        self.timestamp = timestamp
        self.causalLength = causalLength
        self.author = author
        self.operation = operation
        self.supersedes = supersedes.sorted()
    }

    /// The version last-writer-wins orders it by.
    public var version: WriteVersion { WriteVersion(causalLength: causalLength, timestamp: timestamp, id: id) }

    /// The value assigned, added or removed; `.integer(delta)` for an increment.
    public var value: FieldValue {
        switch operation {
        case let .assign(value), let .add(value), let .remove(value): value
        case let .increment(delta): .integer(delta)
        }
    }
}
