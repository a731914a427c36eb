/// What one row edit does to one field: the operation, and the earlier writes its author had seen
/// and meant to replace (MVR and MON: the candidates seen; an add-wins remove: the add tags
/// observed; a remove-wins add: the removes observed).
public struct FieldEdit: Hashable, Sendable {
    /// The field's (column's) name.
    public let column: String
    /// What the edit does to the field.
    public let operation: FieldOperation
    /// Sorted ascending, no duplicates.
    public let supersedes: [ChangeID]

    /// One field's edit.
    /// - Parameters:
    ///   - column: the field's name.
    ///   - operation: what the edit does to it.
    ///   - supersedes: the writes of this field the author saw and replaces; sorted and
    ///     de-duplicated here.
    public init(column: String, operation: FieldOperation, supersedes: [ChangeID] = []) {
        self.column = column
        self.operation = operation
        self.supersedes = supersedes.count < 2 ? supersedes : Array(Set(supersedes)).sorted()
    }

    /// The value assigned, added or removed; `.integer(delta)` for an increment.
    public var value: FieldValue {
        switch operation {
        case let .assign(value), let .add(value), let .remove(value): value
        case let .increment(delta): .integer(delta)
        }
    }
}

/// One change as it travels between replicas: one edit of one row. It has one id
/// `(origin, counter)`, one hybrid timestamp and one author, and carries the field operations of
/// that edit (at most one per column, sorted by column name). An edit that creates, deletes or
/// re-creates the row sets the row's causal length (`setsLife`): odd means the row exists, even
/// means it is deleted; causal lengths merge by maximum, so delete / re-create / delete converges.
///
/// Every merge law holds per field: each field operation merges as a `FieldWrite` with the edit's
/// id, timestamp, author and causal length (`write(of:)`).
///
/// Tables and columns travel by name, not by number, so a replica whose schema does not know a
/// column can still keep the change and apply it after it upgrades.
///
/// A change's canonical encoding (Protocol/README.md, "A change") is its identity: the same id
/// with other bytes is an equivocation.
///
/// ```swift
/// let change = Change(id: ChangeID(replica: origin, counter: 1), timestamp: clock.tick(wallMillis: now),
///                     author: "amara.okafor", table: "goal", row: goalID, causalLength: 1, setsLife: true,
///                     fields: [FieldEdit(column: "statement", operation: .assign(.text("Move to own studio")))])
/// let bytes = change.canonicalBytes
/// let back = try Change(canonicalBytes: bytes)   // throws ByteDecodingError on bytes that are not one change
/// assert(back == change)
/// ```
public struct Change: Hashable, Sendable {
    /// The origin replica and its counter: unique for all time.
    public let id: ChangeID
    /// When the edit was made, on the origin's hybrid logical clock.
    public let timestamp: HybridTimestamp
    /// Who made the edit (a worker id, not the replica).
    public let author: String
    /// The record kind, e.g. `goal`.
    public let table: String
    /// The record id.
    public let row: String
    /// The partition the row belongs to (for care records, the young person the record is
    /// about); empty when the row belongs to none. Carried in every edit of the row so a hub can
    /// filter changes without decoding values.
    public let scope: String
    /// The life of the row this edit belongs to (or, with `setsLife`, the life it starts or ends).
    public let causalLength: UInt64
    /// Whether the edit sets the row's causal length: a create, delete or re-create.
    public let setsLife: Bool
    /// Sorted by column name, at most one per column.
    public let fields: [FieldEdit]

    /// One row edit. Field edits are sorted by column here if they are not already.
    /// - Parameters:
    ///   - id: origin and counter.
    ///   - timestamp: the origin's hybrid timestamp for the edit.
    ///   - author: who made it.
    ///   - table: the record kind.
    ///   - row: the record id.
    ///   - scope: the row's partition, empty for none.
    ///   - causalLength: the row's life the edit belongs to (odd exists, even deleted).
    ///   - setsLife: whether the edit creates, deletes or re-creates the row.
    ///   - fields: at most one edit per column.
    public init(id: ChangeID, timestamp: HybridTimestamp, author: String, table: String, row: String, scope: String = "",
                causalLength: UInt64, setsLife: Bool = false, fields: [FieldEdit]) {
        self.id = id
        self.timestamp = timestamp
        self.author = author
        self.table = table
        self.row = row
        self.scope = scope
        self.causalLength = causalLength
        self.setsLife = setsLife
        // Decoded and locally built edits arrive in order already: checked without a copy, sorted
        // only when they are not.
        func precedes(_ a: FieldEdit, _ b: FieldEdit) -> Bool { a.column.utf8.lexicographicallyPrecedes(b.column.utf8) }
        self.fields = zip(fields, fields.dropFirst()).allSatisfy { !precedes($1, $0) } ? fields : fields.sorted(by: precedes)
    }

    /// Whether the edit deletes the row (sets an even causal length).
    public var deletesRow: Bool { setsLife && !CausalLength.isAlive(causalLength) }

    /// The edit's operation on one field, as the merge algebra sees it.
    public func write(of field: FieldEdit) -> FieldWrite {
        FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author, operation: field.operation,
                   supersedes: field.supersedes)
    }

    /// The edit of one column, if this change has one.
    public func field(_ column: String) -> FieldEdit? { fields.first { $0.column.utf8.elementsEqual(column.utf8) } }

    /// The change's canonical bytes: what one id must always mean. Compared as bytes, so a NaN
    /// value (never equal to itself as a Double) is the same change when it comes back.
    public var canonicalBytes: [UInt8] {
        var writer = ByteWriter(capacity: 128)
        encode(into: &writer)
        return writer.bytes
    }

    /// Whether `other` is this change, byte for byte.
    public func isSameVersion(as other: Change) -> Bool { canonicalBytes == other.canonicalBytes }

    /// Decodes one change from exactly `bytes`, strictly (see `decode(from:)`): what
    /// `canonicalBytes` gives decodes to an equal change, and nothing else decodes at all.
    /// - Parameter bytes: one change's canonical encoding, with nothing after it.
    /// - Throws: ``ByteDecodingError`` with the offset of the first byte that breaks a rule.
    public init(canonicalBytes bytes: [UInt8]) throws(ByteDecodingError) {
        var reader = ByteReader(bytes)
        self = try Self.decode(from: &reader)
        try reader.expectEnd()
    }

    /// Flag bits of the encoding; any other bit set is refused.
    static let setsLifeFlag: UInt8 = 1

    /// The smallest encoding of a change (Protocol/README.md, "A change"): a 17-byte id, one byte
    /// each for the timestamp, the four empty strings, the causal length, the flags and the field
    /// count (a create with no field). Lists of changes refuse a count that could not fit.
    public static let minimumEncodedSize = 25

    /// Protocol/README.md, "A change": id, timestamp, author, table, row, scope, causal length,
    /// flags, then the field edits in ascending column order.
    package func encode(into writer: inout ByteWriter) {
        id.encode(into: &writer)
        writer.varint(timestamp.rawValue)
        writer.string(author)
        writer.string(table)
        writer.string(row)
        writer.string(scope)
        writer.varint(causalLength)
        writer.byte(setsLife ? Self.setsLifeFlag : 0)
        writer.varint(UInt64(fields.count))
        for field in fields {
            writer.string(field.column)
            field.operation.encode(into: &writer)
            writer.varint(UInt64(field.supersedes.count))
            for id in field.supersedes { id.encode(into: &writer) }
        }
    }

    /// Strict: one change has exactly one encoding. Columns strictly ascending, supersedes strictly
    /// ascending, no unknown flag, causal length ≥ 1, a delete carries no fields, and an edit that
    /// neither sets the row's life nor edits a field is refused (it would do nothing).
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> Change {
        let start = reader.offset
        let id = try ChangeID.decode(from: &reader)
        let timestamp = HybridTimestamp(rawValue: try reader.varint())
        let author = try reader.string()
        let table = try reader.string()
        let row = try reader.string()
        let scope = try reader.string()
        let lengthAt = reader.offset
        let causalLength = try reader.varint()
        guard causalLength >= 1 else { throw ByteDecodingError(.invalidValue, offset: lengthAt, field: "causal length", "causal length 0") }
        let flagsAt = reader.offset
        let flags = try reader.byte()
        guard flags & ~setsLifeFlag == 0 else { throw ByteDecodingError(.invalidValue, offset: flagsAt, field: "flags", "unknown change flags \(flags)") }
        let setsLife = flags & setsLifeFlag != 0
        var fields: [FieldEdit] = []
        // A field is at least a 1-byte column length, an operation tag, a value tag and a count.
        for _ in 0..<(try reader.count(minimumItemSize: 4)) {
            let columnAt = reader.offset
            let column = try reader.string()
            // A field edit names a column; an empty name meant a row-life change in v1 and means
            // nothing now.
            guard !column.isEmpty else { throw ByteDecodingError(.invalidValue, offset: columnAt, field: "column", "a field edit with an empty column name") }
            if let previous = fields.last, !previous.column.utf8.lexicographicallyPrecedes(column.utf8) {
                throw ByteDecodingError(.invalidValue, offset: columnAt, field: "column", "field columns not strictly ascending")
            }
            let operation = try FieldOperation.decode(from: &reader)
            let supersedes = try ChangeID.decodeSupersedes(from: &reader)
            fields.append(FieldEdit(column: column, operation: operation, supersedes: supersedes))
        }
        if setsLife && !CausalLength.isAlive(causalLength) && !fields.isEmpty {
            throw ByteDecodingError(.invalidValue, offset: start, field: "fields", "a delete carries field edits")
        }
        if !setsLife && fields.isEmpty { throw ByteDecodingError(.invalidValue, offset: start, field: "fields", "an edit with no field and no row life") }
        return Change(id: id, timestamp: timestamp, author: author, table: table, row: row, scope: scope,
                      causalLength: causalLength, setsLife: setsLife, fields: fields)
    }
}

/// For each origin replica, the highest change counter up to which every change has been seen.
/// Counters have no gaps on their origin, so this summarises exactly what a replica knows.
public struct VersionVector: Hashable, Sendable {
    /// Per origin, the highest contiguous counter held; origins with nothing held are absent.
    public private(set) var counters: [ReplicaID: UInt64]

    /// A vector of these counters; zero entries are dropped (a zero means nothing seen).
    /// - Parameter counters: per origin, the highest contiguous counter held.
    public init(_ counters: [ReplicaID: UInt64] = [:]) { self.counters = counters.filter { $0.value > 0 } }

    /// The counter held for `replica`, 0 if none.
    public subscript(replica: ReplicaID) -> UInt64 { counters[replica] ?? 0 }

    /// Whether the change `id` is covered.
    public func includes(_ id: ChangeID) -> Bool { self[id.replica] >= id.counter }

    /// Takes the larger counter per origin (the join of the two vectors).
    public mutating func merge(_ other: VersionVector) {
        counters.merge(other.counters) { max($0, $1) }
    }

    /// The sum of the counters, saturated: counters come from peers and may be near 2^64.
    public var total: UInt64 {
        counters.values.reduce(0) { sum, counter in
            let (next, overflow) = sum.addingReportingOverflow(counter)
            return overflow ? .max : next
        }
    }

    /// Protocol/README.md, "A version vector": a count, then (replica, counter) in ascending replica order.
    package func encode(into writer: inout ByteWriter) {
        writer.varint(UInt64(counters.count))
        for (replica, counter) in counters.sorted(by: { $0.key < $1.key }) {
            writer.replica(replica)
            writer.varint(counter)
        }
    }

    /// Strict: entries must be in ascending replica order with no duplicates and counters ≥ 1, so
    /// one vector has exactly one encoding.
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> VersionVector {
        var counters: [ReplicaID: UInt64] = [:]
        var previous: ReplicaID?
        for _ in 0..<(try reader.count(minimumItemSize: 17)) {
            let start = reader.offset
            let replica = try reader.replica()
            if let previous, !(previous < replica) {
                throw ByteDecodingError(.invalidValue, offset: start, field: "entries", "version vector entries out of order")
            }
            previous = replica
            let counterStart = reader.offset
            let counter = try reader.varint()
            // A zero entry means "nothing seen", the same as no entry: accepting it would give one
            // vector two encodings.
            guard counter > 0 else { throw ByteDecodingError(.invalidValue, offset: counterStart, field: "entries", "version vector counter 0") }
            counters[replica] = counter
        }
        return VersionVector(counters)
    }
}
