/// A typed value as SQLite stores it: null, 64-bit integer, double, UTF-8 text or bytes.
public enum FieldValue: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// SQL NULL.
    case null
    /// A signed 64-bit integer.
    case integer(Int64)
    /// An IEEE-754 double, kept bit for bit.
    case real(Double)
    /// UTF-8 text.
    case text(String)
    /// Bytes.
    case blob([UInt8])

    /// Whether this is `.null`.
    public var isNull: Bool { if case .null = self { true } else { false } }

    /// The text, if this is `.text`.
    public var textValue: String? { if case let .text(text) = self { text } else { nil } }

    /// The integer, if this is `.integer`.
    public var integerValue: Int64? { if case let .integer(value) = self { value } else { nil } }

    /// A short, content-free description (type and size), safe for logs and errors.
    public var shape: String {
        switch self {
        case .null: "null"
        case .integer: "integer"
        case .real: "real"
        case let .text(text): "text(\(text.utf8.count) bytes)"
        case let .blob(bytes): "blob(\(bytes.count) bytes)"
        }
    }

    /// The value as a person reads it. Never use this in logs or errors: it shows content.
    public var description: String {
        switch self {
        case .null: "null"
        case let .integer(value): String(value)
        case let .real(value): String(value)
        case let .text(text): text
        case let .blob(bytes): "x'" + bytes.hexString + "'"
        }
    }

    /// SQLite's cross-type order (null < numbers < text < blob), so every replica sorts alike.
    private var typeRank: Int {
        switch self {
        case .null: 0
        case .integer, .real: 1
        case .text: 2
        case .blob: 3
        }
    }

    /// SQLite's order: by type rank first; numbers by value (an integer before an equal real, a NaN
    /// after every other real), text by UTF-8 bytes, blobs by bytes.
    public static func < (lhs: FieldValue, rhs: FieldValue) -> Bool {
        switch (lhs, rhs) {
        case let (.integer(a), .integer(b)): return a < b
        case let (.real(a), .real(b)): return a < b || (a.isNaN && !b.isNaN)
        case let (.integer(a), .real(b)): return Double(a) <= b  // integer sorts before an equal real: a total order
        case let (.real(a), .integer(b)): return a < Double(b)
        case let (.text(a), .text(b)): return Array(a.utf8).lexicographicallyPrecedes(b.utf8)
        case let (.blob(a), .blob(b)): return a.lexicographicallyPrecedes(b)
        default: return lhs.typeRank < rhs.typeRank
        }
    }
}
