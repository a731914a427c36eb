import SyncCore
import SyncStore

/// Every care record belongs to one young person: the young person's own record, and every other
/// record through its `yp_id`. That id is the record's scope, carried in each of its row edits, so
/// a hub can tell whose record a change is about without decoding values (team-scoped pulls).
enum RecordScope {
    static func of(_ kind: String, id: String, values: [String: FieldValue]) -> String {
        kind == YoungPerson.kindName ? id : values[.personID]?.textValue ?? ""
    }
}

extension LocalTransaction {
    /// Creates a care record with its young person as the row's scope.
    mutating func createRecord(_ kind: String, id: String, values: [String: FieldValue]) throws {
        try create(kind, id: id, values: values, scope: RecordScope.of(kind, id: id, values: values))
    }
}
