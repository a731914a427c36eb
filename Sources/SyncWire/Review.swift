import SyncCore

/// The limits and encodings of review (0x32) and held (0x33) (Protocol/messages.md).
public enum ReviewCoding {
    /// The most decisions in one review, and so outcomes in one held.
    public static let maxDecisions = 1_024
    /// The most decisions this client puts in one review: the held answer's outcomes then leave
    /// room under the smallest frame limit (65,536) for a write of the largest size a change may
    /// have, so a hub can always answer with at least one item. More decisions go in the next review.
    public static let decisionsPerReview = 128
    /// The most items in one held message.
    public static let maxItems = 1_024
    /// Bytes of a held frame besides its items: type and flags (2), the outcomes of the most
    /// decisions (each at most 16 + 10 + 1), the count of items (2) and `more` (1).
    public static func heldEnvelopeBytes(outcomes: Int) -> Int { 2 + 2 + outcomes * 27 + 1 + 2 }

    /// The encoded size of one item, for cutting a held message to the frame limit.
    public static func encodedSize(_ item: HeldItem) -> Int {
        var writer = ByteWriter()
        encode(item, into: &writer)
        return writer.bytes.count
    }

    static func encode(_ id: ChangeID, into writer: inout ByteWriter) {
        writer.replica(id.replica)
        writer.varint(id.counter)
    }

    static func decodeID(from reader: inout ByteReader, field: String) throws -> ChangeID {
        let replica = try reader.replica()
        let at = reader.offset
        let counter = try reader.varint()
        guard counter > 0 else { throw ByteDecodingError(.invalidValue, offset: at, field: field, "a change counter of 0") }
        return ChangeID(replica: replica, counter: counter)
    }

    static func encode(_ item: HeldItem, into writer: inout ByteWriter) {
        writer.replica(item.fromReplica)
        writer.byte(item.reason.rawValue)
        writer.varint(item.receivedAtMillis)
        item.change.encode(into: &writer)
    }

    /// Decodes a list's count, refusing one above `limit` (`LIMIT_EXCEEDED`) before reading on.
    static func count(_ reader: inout ByteReader, limit: Int, minimumItemSize: Int, field: String) throws -> Int {
        let at = reader.offset
        let count = try reader.varint()
        guard count <= UInt64(limit) else {
            throw WireError(.limitExceeded, "\(field): \(count) entries exceed \(limit)", offset: at, field: field)
        }
        guard count * UInt64(minimumItemSize) <= UInt64(reader.remaining) else {
            throw ByteDecodingError(.limitExceeded, offset: at, field: field, "list of \(count) entries cannot fit")
        }
        return Int(count)
    }

    static func encodeReview(_ decisions: [HeldDecision], after: ChangeID?, into writer: inout ByteWriter) {
        precondition(zip(decisions, decisions.dropFirst()).allSatisfy { $0.change < $1.change }, "a review's decisions ascend by change id")
        precondition(decisions.count <= maxDecisions, "a review carries at most \(maxDecisions) decisions")
        writer.varint(UInt64(decisions.count))
        for decision in decisions {
            encode(decision.change, into: &writer)
            writer.byte(decision.verdict.rawValue)
        }
        if let after {
            writer.byte(1)
            encode(after, into: &writer)
        } else {
            writer.byte(0)
        }
    }

    static func decodeReview(_ reader: inout ByteReader) throws -> Message {
        let count = try count(&reader, limit: maxDecisions, minimumItemSize: 18, field: "decisions")
        var decisions: [HeldDecision] = []
        for _ in 0..<count {
            let at = reader.offset
            let id = try decodeID(from: &reader, field: "decisions")
            let raw = try reader.byte()
            guard let verdict = HeldVerdict(rawValue: raw) else {
                throw ByteDecodingError(.invalidValue, offset: reader.offset - 1, field: "verdict", "unknown verdict \(raw)")
            }
            if let last = decisions.last, !(last.change < id) {
                throw ByteDecodingError(.invalidValue, offset: at, field: "decisions", "decisions do not ascend by change id")
            }
            decisions.append(HeldDecision(change: id, verdict: verdict))
        }
        let after: ChangeID? = switch try MessageCodec.boolean(&reader) {
        case true: try decodeID(from: &reader, field: "after")
        case false: nil
        }
        return .review(decisions: decisions, after: after)
    }

    static func encodeHeld(_ outcomes: [HeldOutcome], more: Bool, items: [HeldItem], into writer: inout ByteWriter) {
        precondition(outcomes.count <= maxDecisions && items.count <= maxItems, "a held message is within its counts")
        precondition(zip(items, items.dropFirst()).allSatisfy { $0.change.id < $1.change.id }, "a held message's items ascend by change id")
        writer.varint(UInt64(outcomes.count))
        for outcome in outcomes {
            encode(outcome.change, into: &writer)
            writer.byte(outcome.code.rawValue)
        }
        writer.byte(more ? 1 : 0)
        writer.varint(UInt64(items.count))
        for item in items { encode(item, into: &writer) }
    }

    static func decodeHeld(_ reader: inout ByteReader) throws -> Message {
        let outcomeCount = try count(&reader, limit: maxDecisions, minimumItemSize: 18, field: "outcomes")
        var outcomes: [HeldOutcome] = []
        for _ in 0..<outcomeCount {
            let id = try decodeID(from: &reader, field: "outcomes")
            let raw = try reader.byte()
            guard let code = HeldOutcomeCode(rawValue: raw) else {
                throw ByteDecodingError(.invalidValue, offset: reader.offset - 1, field: "outcome", "unknown outcome \(raw)")
            }
            outcomes.append(HeldOutcome(change: id, code: code))
        }
        let more = try MessageCodec.boolean(&reader)
        let itemCount = try count(&reader, limit: maxItems, minimumItemSize: 18 + Change.minimumEncodedSize, field: "items")
        var items: [HeldItem] = []
        for _ in 0..<itemCount {
            let at = reader.offset
            let from = try reader.replica()
            let raw = try reader.byte()
            guard let reason = HeldReason(rawValue: raw) else {
                throw ByteDecodingError(.invalidValue, offset: reader.offset - 1, field: "reason", "unknown reason \(raw)")
            }
            let received = try reader.varint()
            let change = try Change.decode(from: &reader)
            if let last = items.last, !(last.change.id < change.id) {
                throw ByteDecodingError(.invalidValue, offset: at, field: "items", "items do not ascend by change id")
            }
            items.append(HeldItem(fromReplica: from, reason: reason, receivedAtMillis: received, change: change))
        }
        return .held(outcomes: outcomes, more: more, items: items)
    }
}
