// SyncCore: the pure merge algebra (ids, the hybrid logical clock, typed values, field policies as
// join-semilattices, changes, version vectors). Swift stdlib only; time and randomness are passed in.
//
// The canonical encoding of values, field operations, field writes and stored field states lives
// here, in SyncCore/ByteCoding.swift, and that of changes and version vectors beside their types in
// SyncCore/Change.swift: the same bytes go into the hub's log (`hub_change`), the replica's
// `sync_field.state`, change bundles and the wire. SyncWire owns only framing and messages; the
// change bytes inside a message are these. Protocol/README.md specifies them.

/// Why bytes could not be decoded: a stable ``code``, the byte ``offset`` where the failing item
/// starts, the ``field`` (as Protocol/README.md names it) when the decoder knows it, and a
/// ``detail`` for people. Content-free: positions, sizes and names only, never a decoded value.
///
/// ```swift
/// do { _ = try Change(canonicalBytes: [0x00]) } catch {
///     // error.code == .truncated, error.offset == 1: the replica id needs 16 bytes
/// }
/// ```
public struct ByteDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure: a struct over a private enum, so codes can be added without breaking
    /// a `switch` in another module.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case truncated = "TRUNCATED"
            case overlongVarint = "OVERLONG_VARINT"
            case varintOverflow = "VARINT_OVERFLOW"
            case invalidTag = "INVALID_TAG"
            case invalidUTF8 = "INVALID_UTF8"
            case limitExceeded = "LIMIT_EXCEEDED"
            case trailingBytes = "TRAILING_BYTES"
            case invalidValue = "INVALID_VALUE"
        }

        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The input ends before the item does.
        public static let truncated = Code(.truncated)
        /// A varint with redundant trailing zero groups (not canonical).
        public static let overlongVarint = Code(.overlongVarint)
        /// A varint above 64 bits or longer than 10 bytes.
        public static let varintOverflow = Code(.varintOverflow)
        /// An unknown value tag, operation or stored-state tag.
        public static let invalidTag = Code(.invalidTag)
        /// A string that is not well-formed UTF-8.
        public static let invalidUTF8 = Code(.invalidUTF8)
        /// A length or count over its limit, or one that cannot fit in what is left.
        public static let limitExceeded = Code(.limitExceeded)
        /// Bytes after the last item.
        public static let trailingBytes = Code(.trailingBytes)
        /// A well-formed item whose value a rule refuses (a counter of 0, a list out of order).
        public static let invalidValue = Code(.invalidValue)

        /// A stable upper-case name, e.g. `TRUNCATED`.
        public var name: String { wrapped.rawValue }
        /// The name.
        public var description: String { name }
    }

    /// What kind of failure.
    public let code: Code
    /// The byte offset, from the start of the decoded input, where the failing item starts.
    public let offset: Int
    /// The failing field's name as Protocol/README.md spells it (`causal length`, `supersedes`),
    /// when the decoder knows it.
    public let field: String?
    /// One line for people: sizes and positions, never a decoded value.
    public let detail: String

    /// A decoding error.
    /// - Parameters:
    ///   - code: what kind of failure.
    ///   - offset: where the failing item starts.
    ///   - field: the failing field's name, if known.
    ///   - detail: one line for people, without decoded values.
    public init(_ code: Code, offset: Int, field: String? = nil, _ detail: String) {
        self.code = code
        self.offset = offset
        self.field = field
        self.detail = detail
    }

    /// `CODE at byte N: detail`, with the field when known.
    public var description: String {
        if let field { return "\(code.name) at byte \(offset) (\(field)): \(detail)" }
        return "\(code.name) at byte \(offset): \(detail)"
    }
}

/// Appends canonical encodings: unsigned LEB128 varints, length-prefixed strings and bytes.
package struct ByteWriter: Sendable {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    package mutating func byte(_ value: UInt8) { bytes.append(value) }

    package mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// Zig-zag, so small negative numbers stay small.
    package mutating func signedVarint(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    package mutating func fixed64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    package mutating func raw(_ data: [UInt8]) { bytes.append(contentsOf: data) }

    package mutating func lengthPrefixed(_ data: [UInt8]) {
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }

    package mutating func string(_ text: String) { lengthPrefixed(Array(text.utf8)) }

    package mutating func replica(_ id: ReplicaID) {
        fixed64(id.high)
        fixed64(id.low)
    }
}

/// Reads what `ByteWriter` writes, strictly: overlong varints, overflow, invalid UTF-8 and
/// lengths past the end or past a limit are errors, never guesses.
package struct ByteReader: Sendable {
    package let bytes: [UInt8]
    package private(set) var offset: Int
    /// The largest string or byte field accepted.
    package let maxFieldLength: Int

    package init(_ bytes: [UInt8], maxFieldLength: Int = 16 << 20) {
        self.bytes = bytes
        self.offset = 0
        self.maxFieldLength = maxFieldLength
    }

    package var isAtEnd: Bool { offset == bytes.count }
    package var remaining: Int { bytes.count - offset }

    package mutating func byte() throws(ByteDecodingError) -> UInt8 {
        guard offset < bytes.count else { throw ByteDecodingError(.truncated, offset: offset, "expected 1 more byte") }
        defer { offset += 1 }
        return bytes[offset]
    }

    package mutating func varint() throws(ByteDecodingError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            if shift == 63 && next > 1 { throw ByteDecodingError(.varintOverflow, offset: start, "varint exceeds 64 bits") }
            result |= UInt64(next & 0x7F) << shift
            if next & 0x80 == 0 {
                // Canonical: the last byte may be zero only when it is the only byte.
                if next == 0 && offset - start > 1 {
                    throw ByteDecodingError(.overlongVarint, offset: start, "varint has redundant trailing zero bytes")
                }
                return result
            }
            shift += 7
            if shift > 63 { throw ByteDecodingError(.varintOverflow, offset: start, "varint longer than 10 bytes") }
        }
    }

    package mutating func signedVarint() throws(ByteDecodingError) -> Int64 {
        let raw = try varint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    package mutating func fixed64() throws(ByteDecodingError) -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(try byte()) }
        return value
    }

    package mutating func raw(count: Int) throws(ByteDecodingError) -> [UInt8] {
        guard count >= 0, count <= remaining else {
            throw ByteDecodingError(.truncated, offset: offset, "expected \(count) bytes, \(remaining) left")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    package mutating func lengthPrefixed() throws(ByteDecodingError) -> [UInt8] {
        let start = offset
        let length = try varint()
        guard length <= UInt64(maxFieldLength) else {
            throw ByteDecodingError(.limitExceeded, offset: start, "field of \(length) bytes exceeds limit \(maxFieldLength)")
        }
        return try raw(count: Int(length))
    }

    package mutating func string() throws(ByteDecodingError) -> String {
        let start = offset
        let data = try lengthPrefixed()
        guard let text = String(validating: data, as: UTF8.self) else {
            throw ByteDecodingError(.invalidUTF8, offset: start, "string is not valid UTF-8")
        }
        return text
    }

    package mutating func replica() throws(ByteDecodingError) -> ReplicaID {
        let high = try fixed64()
        return ReplicaID(high: high, low: try fixed64())
    }

    /// A count of list items, refused if it could not possibly fit in what is left.
    package mutating func count(minimumItemSize: Int = 1, limit: Int = 1 << 24) throws(ByteDecodingError) -> Int {
        let start = offset
        let value = try varint()
        guard value <= UInt64(limit), value * UInt64(max(minimumItemSize, 1)) <= UInt64(remaining) else {
            throw ByteDecodingError(.limitExceeded, offset: start, "list of \(value) items cannot fit")
        }
        return Int(value)
    }

    package func expectEnd() throws(ByteDecodingError) {
        guard isAtEnd else { throw ByteDecodingError(.trailingBytes, offset: offset, "\(remaining) unexpected trailing bytes") }
    }
}

extension FieldValue {
    /// Tag byte then payload: 0 null, 1 integer (zig-zag varint), 2 real (IEEE-754 big-endian),
    /// 3 text, 4 blob.
    package func encode(into writer: inout ByteWriter) {
        switch self {
        case .null: writer.byte(0)
        case let .integer(value): writer.byte(1); writer.signedVarint(value)
        case let .real(value): writer.byte(2); writer.fixed64(value.bitPattern)
        case let .text(text): writer.byte(3); writer.string(text)
        case let .blob(bytes): writer.byte(4); writer.lengthPrefixed(bytes)
        }
    }

    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> FieldValue {
        let start = reader.offset
        switch try reader.byte() {
        case 0: return .null
        case 1: return .integer(try reader.signedVarint())
        case 2: return .real(Double(bitPattern: try reader.fixed64()))
        case 3: return .text(try reader.string())
        case 4: return .blob(try reader.lengthPrefixed())
        case let tag: throw ByteDecodingError(.invalidTag, offset: start, field: "value tag", "unknown value tag \(tag)")
        }
    }
}

extension ChangeID {
    package func encode(into writer: inout ByteWriter) {
        writer.replica(replica)
        writer.varint(counter)
    }

    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> ChangeID {
        let replica = try reader.replica()
        let start = reader.offset
        let counter = try reader.varint()
        guard counter > 0 else { throw ByteDecodingError(.invalidValue, offset: start, field: "counter", "change counter 0") }
        return ChangeID(replica: replica, counter: counter)
    }
}

extension FieldOperation {
    package func encode(into writer: inout ByteWriter) {
        writer.byte(code)
        switch self {
        case let .assign(value), let .add(value), let .remove(value): value.encode(into: &writer)
        case let .increment(delta): writer.signedVarint(delta)
        }
    }

    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> FieldOperation {
        let start = reader.offset
        switch try reader.byte() {
        case 1: return .assign(try FieldValue.decode(from: &reader))
        case 2: return .add(try FieldValue.decode(from: &reader))
        case 3: return .remove(try FieldValue.decode(from: &reader))
        case 4: return .increment(try reader.signedVarint())
        case let tag: throw ByteDecodingError(.invalidTag, offset: start, field: "operation", "unknown operation \(tag)")
        }
    }
}

extension ChangeID {
    /// A `supersedes` list: a count, then ids strictly ascending, so one list has one encoding
    /// (an initialiser would otherwise sort a list sent out of order and the bytes would not
    /// survive a round trip).
    package static func decodeSupersedes(from reader: inout ByteReader) throws(ByteDecodingError) -> [ChangeID] {
        var supersedes: [ChangeID] = []
        for _ in 0..<(try reader.count(minimumItemSize: 17)) {
            let start = reader.offset
            let superseded = try ChangeID.decode(from: &reader)
            if let previous = supersedes.last, !(previous < superseded) {
                throw ByteDecodingError(.invalidValue, offset: start, field: "supersedes", "supersedes not strictly ascending")
            }
            supersedes.append(superseded)
        }
        return supersedes
    }
}

extension FieldWrite {
    package func encode(into writer: inout ByteWriter) {
        id.encode(into: &writer)
        writer.varint(timestamp.rawValue)
        writer.varint(causalLength)
        writer.string(author)
        operation.encode(into: &writer)
        writer.varint(UInt64(supersedes.count))
        for id in supersedes { id.encode(into: &writer) }
    }

    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> FieldWrite {
        let id = try ChangeID.decode(from: &reader)
        let timestamp = HybridTimestamp(rawValue: try reader.varint())
        let causalLength = try reader.varint()
        let author = try reader.string()
        let operation = try FieldOperation.decode(from: &reader)
        let supersedes = try ChangeID.decodeSupersedes(from: &reader)
        return FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author,
                          operation: operation, supersedes: supersedes)
    }
}

extension FieldState {
    /// Storage encoding of a field's merged state (the `state` column of `sync_field`): a tag
    /// byte (1 IMM … 7 CTR), then the state's lists of field writes and change ids.
    /// - Returns: bytes that `decode(_:policy:)` reads back to an equal state.
    package func encoded() -> [UInt8] {
        var writer = ByteWriter()
        func writes(_ list: [FieldWrite]) {
            writer.varint(UInt64(list.count))
            for write in list { write.encode(into: &writer) }
        }
        func ids(_ list: [ChangeID]) {
            writer.varint(UInt64(list.count))
            for id in list { id.encode(into: &writer) }
        }
        switch self {
        case let .immutable(state): writer.byte(1); writes(state.writes)
        case let .lastWriterWins(state): writer.byte(2); writes(state.winner.map { [$0] } ?? [])
        case let .multiValue(state): writer.byte(3); writes(state.candidates); ids(state.superseded)
        case let .monotonic(state):
            writer.byte(4); writes(state.best.map { [$0] } ?? [])
            writes(state.terminals.candidates); ids(state.terminals.superseded)
        case let .addWinsSet(state): writer.byte(5); writes(state.adds); ids(state.removedTags)
        case let .removeWinsSet(state): writer.byte(6); writes(state.adds); writes(state.removes)
        case let .counter(state):
            writer.byte(7)
            writer.varint(UInt64(state.increments.count))
            for (id, delta) in state.increments.sorted(by: { $0.key < $1.key }) {
                id.encode(into: &writer)
                writer.signedVarint(delta)
            }
        }
        return writer.bytes
    }

    /// Reads what `encoded()` wrote, strictly (no trailing bytes, a tag matching `policy`).
    ///
    /// ```swift
    /// let stored = state.encoded()
    /// let back = try FieldState.decode(stored, policy: .multiValue)   // == state
    /// ```
    /// - Parameters:
    ///   - bytes: one stored state.
    ///   - policy: the field's policy; a state of another policy's tag is refused.
    /// - Returns: the state.
    /// - Throws: ``ByteDecodingError`` at the first byte that breaks the encoding.
    package static func decode(_ bytes: [UInt8], policy: MergePolicy) throws(ByteDecodingError) -> FieldState {
        var reader = ByteReader(bytes)
        func writes() throws(ByteDecodingError) -> [FieldWrite] {
            var list: [FieldWrite] = []
            for _ in 0..<(try reader.count(minimumItemSize: 20)) { list.append(try FieldWrite.decode(from: &reader)) }
            return list
        }
        func ids() throws(ByteDecodingError) -> [ChangeID] {
            var list: [ChangeID] = []
            for _ in 0..<(try reader.count(minimumItemSize: 17)) { list.append(try ChangeID.decode(from: &reader)) }
            return list
        }
        // Tags 1, 2 and 7 are rebuilt through `applying`, so any stored order decodes to the
        // canonical state. Tags 3 to 6 take their lists as stored: the encoder writes them in the
        // order the registers keep (candidates by version, ids and set writes by id), so what
        // `encoded()` wrote decodes to an equal state, but lists stored out of order would not be
        // re-sorted. Only this store writes these bytes; peers never send them.
        var state = FieldState.empty(for: policy)
        let tag = try reader.byte()
        switch (tag, state) {
        case (1, .immutable), (2, .lastWriterWins):
            for write in try writes() { state = state.applying(write, policy: policy) }
        case (3, .multiValue):
            state = .multiValue(MultiValueRegister(candidates: try writes(), superseded: try ids()))
        case (4, .monotonic):
            let best = try writes().first
            let terminals = MultiValueRegister(candidates: try writes(), superseded: try ids())
            state = .monotonic(MonotonicRegister(best: best, terminals: terminals))
        case (5, .addWinsSet):
            state = .addWinsSet(AddWinsSet(adds: try writes(), removedTags: try ids()))
        case (6, .removeWinsSet):
            state = .removeWinsSet(RemoveWinsSet(adds: try writes(), removes: try writes()))
        case (7, .counter):
            var counter = GrowOnlyCounter()
            for _ in 0..<(try reader.count(minimumItemSize: 18)) {
                let id = try ChangeID.decode(from: &reader)
                let delta = try reader.signedVarint()
                counter = counter.applying(FieldWrite(id: id, timestamp: .zero, author: "", operation: .increment(delta)))
            }
            state = .counter(counter)
        default:
            throw ByteDecodingError(.invalidTag, offset: 0, field: "state tag", "state tag \(tag) does not match policy \(policy.name)")
        }
        try reader.expectEnd()
        return state
    }
}
