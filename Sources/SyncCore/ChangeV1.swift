/// A change as protocol v1 and store files before row edits held it: one write to one field
/// (`column` non-empty), or a change in a row's life (`column` empty). Only for migrating files
/// made before row edits: replica and hub convert it the same way, so both hold the same bytes
/// for one id after they migrate and no change looks like an equivocation.
package enum ChangeV1 {
    /// The row edit a v1 change becomes: a row-life change sets the row's causal length and edits
    /// no field; a field write is an edit of that one field. No v1 change had a scope.
    package static func rowEdit(table: String, row: String, column: String, write: FieldWrite) -> Change {
        if column.isEmpty {
            return Change(id: write.id, timestamp: write.timestamp, author: write.author, table: table, row: row,
                          causalLength: max(write.causalLength, 1), setsLife: true, fields: [])
        }
        return Change(id: write.id, timestamp: write.timestamp, author: write.author, table: table, row: row,
                      causalLength: max(write.causalLength, 1), setsLife: false,
                      fields: [FieldEdit(column: column, operation: write.operation, supersedes: write.supersedes)])
    }
}
