/// One change as it travels between replicas: a write to one field of one row, or a change in a
/// row's life (create, delete, re-create) when `column` is empty.
///
/// Tables and columns travel by name, not by number, so a replica whose schema does not know a
/// column can still keep the change and apply it after it upgrades.
public struct Change: Hashable, Sendable {
    public let table: String
    public let row: String
    /// The column written; empty for a row-lifecycle change.
    public let column: String
    public let write: FieldWrite

    public init(table: String, row: String, column: String, write: FieldWrite) {
        self.table = table
        self.row = row
        self.column = column
        self.write = write
    }

    /// A row-lifecycle change sets the row's causal length: odd means the row exists, even means
    /// it is deleted. Causal lengths merge by maximum, so delete / re-create / delete converges.
    public static func rowLife(table: String, row: String, id: ChangeID, timestamp: HybridTimestamp,
                               author: String, causalLength: UInt64) -> Change {
        Change(table: table, row: row, column: "",
               write: FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author,
                                 operation: .assign(.null)))
    }

    public var id: ChangeID { write.id }

    /// The change's canonical bytes: what one id must always mean. Compared as bytes, so a NaN
    /// value (never equal to itself as a Double) is the same change when it comes back.
    public var canonicalBytes: [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Whether `other` is this change, byte for byte.
    public func isSameVersion(as other: Change) -> Bool { canonicalBytes == other.canonicalBytes }
    public var isRowLife: Bool { column.isEmpty }

    public func encode(into writer: inout ByteWriter) {
        writer.string(table)
        writer.string(row)
        writer.string(column)
        write.encode(into: &writer)
    }

    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> Change {
        let table = try reader.string()
        let row = try reader.string()
        let column = try reader.string()
        return Change(table: table, row: row, column: column, write: try FieldWrite.decode(from: &reader))
    }
}

/// For each origin replica, the highest change counter up to which every change has been seen.
/// Counters have no gaps on their origin, so this summarises exactly what a replica knows.
public struct VersionVector: Hashable, Sendable {
    public private(set) var counters: [ReplicaID: UInt64]

    public init(_ counters: [ReplicaID: UInt64] = [:]) { self.counters = counters.filter { $0.value > 0 } }

    public subscript(replica: ReplicaID) -> UInt64 { counters[replica] ?? 0 }

    public func includes(_ id: ChangeID) -> Bool { self[id.replica] >= id.counter }

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

    public func encode(into writer: inout ByteWriter) {
        writer.varint(UInt64(counters.count))
        for (replica, counter) in counters.sorted(by: { $0.key < $1.key }) {
            writer.replica(replica)
            writer.varint(counter)
        }
    }

    /// Strict: entries must be in ascending replica order with no duplicates and counters ≥ 1, so
    /// one vector has exactly one encoding.
    public static func decode(from reader: inout ByteReader) throws(DecodingError) -> VersionVector {
        var counters: [ReplicaID: UInt64] = [:]
        var previous: ReplicaID?
        for _ in 0..<(try reader.count(minimumItemSize: 17)) {
            let start = reader.offset
            let replica = try reader.replica()
            if let previous, !(previous < replica) {
                throw DecodingError(.invalidValue, offset: start, "version vector entries out of order")
            }
            previous = replica
            let counterStart = reader.offset
            let counter = try reader.varint()
            // A zero entry means "nothing seen", the same as no entry: accepting it would give one
            // vector two encodings.
            guard counter > 0 else { throw DecodingError(.invalidValue, offset: counterStart, "version vector counter 0") }
            counters[replica] = counter
        }
        return VersionVector(counters)
    }
}
