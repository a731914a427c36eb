/// What one change may be (Protocol/messages.md, "Limits on a change"). A change is created once
/// and then relayed to every replica in batch frames, so a change that could not fit the smallest
/// frame a peer may negotiate (65,536 bytes) would block every puller behind it for good. The
/// limits are checked where a change is made (a local edit) and where it enters the hub (a push).
///
/// A change of many fields can break the size limit with every field within its own limit, so
/// the size itself is checked (cheaply: exactly only when values and supersedes come near it).
/// `maxEncodedBytes` leaves room for a batch's envelope in a 65,536-byte frame.
public enum ChangeLimits {
    /// A text or blob value, in bytes (UTF-8 for text).
    public static let maxValueBytes = 49_152
    /// A table or column name, in bytes.
    public static let maxNameBytes = 64
    /// A row id, in bytes.
    public static let maxRowBytes = 128
    /// An author (worker id), in bytes.
    public static let maxAuthorBytes = 128
    /// Entries in `supersedes`.
    public static let maxSupersedes = 256
    /// The change's canonical encoding, in bytes.
    public static let maxEncodedBytes = 61_440
    /// Counters and causal lengths are stored as SQLite's signed 64-bit integers.
    public static let maxInteger = UInt64(Int64.max)

    /// Field edits in one change (a table has fewer columns than this).
    public static let maxFields = 64

    /// Why `change` breaks a limit, without its contents (sizes and counts only); nil if it fits.
    public static func violation(of change: Change) -> String? {
        rangeViolation(of: change) ?? contentViolation(of: change) ?? sizeViolation(of: change)
    }

    /// A U+0000 in a name, row id, scope, author or text value, or a NaN real. SQLite's text readers
    /// stop at a U+0000 and it stores NaN as NULL, so the change could not be stored and read back as
    /// it was written: a replica would relay other content than its origin wrote, and see its own
    /// copy as another version when it came back.
    public static func contentViolation(of change: Change) -> String? {
        func hasNul(_ text: String) -> Bool {
            // A native string's bytes scanned in place; the generic `utf8.contains` was visible in profiles.
            var text = text
            return text.withUTF8 { $0.contains(0) }
        }
        if hasNul(change.table) || hasNul(change.row) || hasNul(change.scope) || hasNul(change.author)
            || change.fields.contains(where: { hasNul($0.column) }) {
            return "a name, row id, scope or author holding U+0000"
        }
        for field in change.fields {
            switch field.value {
            case let .text(text) where hasNul(text): return "a text value holding U+0000"
            // SQLite stores a NaN real as NULL: the same kind of change that cannot be kept as written.
            case let .real(number) where number.isNaN: return "a NaN real value"
            default: continue
            }
        }
        return nil
    }

    /// A name, value or list over its size limit, or an encoding over `maxEncodedBytes`.
    public static func sizeViolation(of change: Change) -> String? {
        if change.table.utf8.count > maxNameBytes { return "table name of \(change.table.utf8.count) bytes exceeds \(maxNameBytes)" }
        if change.row.utf8.count > maxRowBytes { return "row id of \(change.row.utf8.count) bytes exceeds \(maxRowBytes)" }
        if change.scope.utf8.count > maxRowBytes { return "scope of \(change.scope.utf8.count) bytes exceeds \(maxRowBytes)" }
        if change.author.utf8.count > maxAuthorBytes { return "author of \(change.author.utf8.count) bytes exceeds \(maxAuthorBytes)" }
        if change.fields.count > maxFields { return "\(change.fields.count) field edits exceed \(maxFields)" }
        var encoded = 0
        for field in change.fields {
            if field.column.utf8.count > maxNameBytes { return "column name of \(field.column.utf8.count) bytes exceeds \(maxNameBytes)" }
            if field.supersedes.count > maxSupersedes { return "\(field.supersedes.count) superseded ids exceed \(maxSupersedes)" }
            if let size = valueBytes(field.value) {
                if size > maxValueBytes { return "value of \(size) bytes exceeds \(maxValueBytes)" }
                encoded += size
            }
            encoded += field.supersedes.count * 17
        }
        // Values and supersedes dominate; everything else of a change is at most a few kilobytes, so
        // the exact size is computed only when the sum could be near the limit.
        if encoded > maxEncodedBytes - 16_384 {
            let size = encodedSize(change)
            if size > maxEncodedBytes { return "change of \(size) bytes exceeds \(maxEncodedBytes)" }
        }
        return nil
    }

    /// A counter or causal length no replica could store (above 2^63 - 1): only a broken or
    /// hostile peer sends one.
    public static func rangeViolation(of change: Change) -> String? {
        if change.id.counter > maxInteger || change.fields.contains(where: { $0.supersedes.contains { $0.counter > maxInteger } }) {
            return "a change counter above 2^63 - 1"
        }
        if change.causalLength > maxInteger { return "an impossible causal length (above 2^63 - 1)" }
        return nil
    }

    /// The size of the change's canonical encoding.
    package static func encodedSize(_ change: Change) -> Int {
        var writer = ByteWriter()
        change.encode(into: &writer)
        return writer.bytes.count
    }

    static func valueBytes(_ value: FieldValue) -> Int? {
        switch value {
        case let .text(text): text.utf8.count
        case let .blob(bytes): bytes.count
        case .null, .integer, .real: nil
        }
    }
}
