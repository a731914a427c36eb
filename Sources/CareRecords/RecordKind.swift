import SyncCore
import SyncStore

/// How a care-record field is written and checked, beside its merge policy.
public enum FieldFormat: Hashable, Sendable {
    /// Free text.
    case text
    /// ISO-8601 calendar date, `YYYY-MM-DD`.
    case date
    /// A whole number in the field's range.
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

    /// How the format is shown to a person: `date`, `pence`, `a|b|c`, `plan id`.
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
    /// The column name.
    public let name: String
    /// How a value is written and checked.
    public let format: FieldFormat
    /// How concurrent writes merge.
    public let policy: MergePolicy
    /// What the field is for, one line.
    public let help: String
    /// Set by the program, not by the user (author, derived keys).
    public let automatic: Bool
    /// Values an integer or money field accepts. Every number in the schema is a count, an age,
    /// a version or an amount, so none is negative.
    public let range: ClosedRange<Int64>

    /// A field of the schema.
    package init(_ name: String, _ format: FieldFormat, _ policy: MergePolicy, _ help: String, automatic: Bool = false,
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
    /// The kind's name, which is also its table's.
    public let name: String
    /// What a record of the kind is, one line.
    public let summary: String
    /// Its fields, in display order.
    public let fields: [CareField]
    /// Fields a new record must have (and an edit cannot clear).
    public let required: [String]
    /// Whether records of the kind may be deleted (only reminders: statutory records never are, I10).
    public let deletable: Bool

    /// A record kind of the schema.
    package init(_ name: String, summary: String, required: [String], deletable: Bool = false,
                fields: [CareField]) {
        self.name = name
        self.summary = summary
        self.fields = fields
        self.required = required
        self.deletable = deletable
    }

    /// The field of that name, if the kind has one.
    public func field(_ name: String) -> CareField? { fields.first { $0.name == name } }

    var table: TableSchema { TableSchema(name, deletable: deletable, columns: fields.map(\.column)) }
}
