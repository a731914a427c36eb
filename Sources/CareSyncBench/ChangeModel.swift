import SyncCore

/// The one place the benchmarks read the change model: the field edits a batch of changes (row
/// edits) carries, each as the (row, column, value) a plain upsert would write. A delete carries none.
struct FieldChange {
    let row: String
    let column: String
    let value: FieldValue

    /// Bytes of the value itself as the wire carries it (text and blob contents, 8 for numbers).
    var valueBytes: Int {
        switch value {
        case .null: 0
        case .integer, .real: 8
        case let .text(text): text.utf8.count
        case let .blob(bytes): bytes.count
        }
    }
}

func fieldChanges(_ changes: [Change]) -> [FieldChange] {
    changes.flatMap { change in change.fields.map { FieldChange(row: change.row, column: $0.column, value: $0.value) } }
}
