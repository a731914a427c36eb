import SyncCore
import SyncStore

/// How a care-record field is written and checked, beside its merge policy.
public enum FieldFormat: Hashable, Sendable {
    case text
    /// ISO-8601 calendar date, `YYYY-MM-DD`.
    case date
    case integer
    /// Integer pence (GBP).
    case money
    /// One of a fixed list of values.
    case choice([String])
    /// The id of a record of the named kind.
    case reference(String)
    /// A set of text elements (add/remove, never assigned).
    case set

    var columnType: ColumnType {
        switch self {
        case .integer, .money: .integer
        default: .text
        }
    }

    public var name: String {
        switch self {
        case .text: "text"
        case .date: "date"
        case .integer: "integer"
        case .money: "pence"
        case let .choice(values): values.joined(separator: "|")
        case let .reference(kind): "\(kind) id"
        case .set: "set"
        }
    }
}

/// One field of a record kind: its format, merge policy and what it is for.
public struct CareField: Sendable {
    public let name: String
    public let format: FieldFormat
    public let policy: MergePolicy
    public let help: String
    /// Set by the program, not by the user (author, derived keys).
    public let automatic: Bool
    /// Values an integer or money field accepts. Every number in the schema is a count, an age,
    /// a version or an amount, so none is negative.
    public let range: ClosedRange<Int64>

    public init(_ name: String, _ format: FieldFormat, _ policy: MergePolicy, _ help: String, automatic: Bool = false,
                range: ClosedRange<Int64> = 0...Int64.max) {
        self.name = name
        self.format = format
        self.policy = policy
        self.help = help
        self.automatic = automatic
        self.range = range
    }

    var column: ColumnSchema { ColumnSchema(name, format.columnType, policy) }
}

/// A kind of care record (a domain table) with its fields.
public struct RecordKind: Sendable {
    public let name: String
    public let summary: String
    public let fields: [CareField]
    public let required: [String]
    public let deletable: Bool
    /// An example `caresync add` line for `--help`.
    public let example: String

    public init(_ name: String, summary: String, required: [String], deletable: Bool = false, example: String,
                fields: [CareField]) {
        self.name = name
        self.summary = summary
        self.fields = fields
        self.required = required
        self.deletable = deletable
        self.example = example
    }

    public func field(_ name: String) -> CareField? { fields.first { $0.name == name } }

    var table: TableSchema { TableSchema(name, deletable: deletable, columns: fields.map(\.column)) }
}
