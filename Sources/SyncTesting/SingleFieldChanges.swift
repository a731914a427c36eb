import SyncCore

/// Tests written before row edits build changes of one field (or one row-life change) at a time.
/// These make such a change as the one-field row edit it now is, the same way files made before
/// row edits are migrated (`ChangeV1`); production code builds row edits directly.
extension Change {
    /// A row edit of one field, carrying `write`'s id, time, author, causal length and operation.
    public init(table: String, row: String, column: String, write: FieldWrite, scope: String = "") {
        let edit = ChangeV1.rowEdit(table: table, row: row, column: column, write: write)
        self.init(id: edit.id, timestamp: edit.timestamp, author: edit.author, table: table, row: row, scope: scope,
                  causalLength: edit.causalLength, setsLife: edit.setsLife, fields: edit.fields)
    }

    /// A change of a row's life alone (a create, delete or re-create by its causal length), with no field.
    public static func rowLife(table: String, row: String, id: ChangeID, timestamp: HybridTimestamp, author: String,
                               causalLength: UInt64) -> Change {
        Change(id: id, timestamp: timestamp, author: author, table: table, row: row, causalLength: causalLength, setsLife: true,
               fields: [])
    }

    /// The column of a one-field edit; empty for a row-life change.
    public var column: String { fields.first?.column ?? "" }

    /// The write of a one-field edit (a row-life change: an assignment of null, as v1 held it).
    public var write: FieldWrite {
        if let field = fields.first { return write(of: field) }
        return FieldWrite(id: id, timestamp: timestamp, causalLength: causalLength, author: author, operation: .assign(.null))
    }

    /// Whether the change sets the row's life.
    public var isRowLife: Bool { setsLife }
}
