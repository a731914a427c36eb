import SyncCore
import SyncStore

/// A worker's view of a restricted record, recorded on the replica where it happened (issue 10:
/// "replicas record restricted views offline and upload them").
///
/// A view is a row of the `record_view` table (schema v3, migration `care-v3-views`): append-only,
/// every field written once, in the viewed young person's bundle. So it is made like any local
/// write (one transaction, its own signed change, durable before the record is shown), waits
/// offline in the origin log, reaches the hub at the next sync and, being in the restricted
/// scope, travels only where the restricted record itself does: to the replicas on the
/// restriction (a manager named on it sees who looked, also offline). The hub turns each arriving
/// view into a `RESTRICTED_VIEW` audit event (`CareScopeRules.audit(_:of:)`).
///
/// The row names the record by kind and id, never its content. It is not a record kind of
/// `CareSchema.kinds`: no one adds, edits or lists views by hand, and reading views records none.
public enum RecordView {
    /// The table's name.
    public static let tableName = "record_view"
    /// The viewed record's kind.
    static let viewedKind = "viewed_kind"
    /// The viewed record's id.
    static let viewedID = "viewed_id"
    /// When the worker viewed it, in Unix milliseconds on the replica's wall clock.
    static let viewedAt = "viewed_at"
    /// How it was viewed: the command's name (`show`, `list`, `conflicts`, `history`).
    static let via = "via"

    /// The table: every column written once (IMM), so a view is never changed after the fact.
    static let table = TableSchema(tableName, columns: [
        ColumnSchema(CareSchema.personID, .text, .immutable),
        ColumnSchema(viewedKind, .text, .immutable),
        ColumnSchema(viewedID, .text, .immutable),
        ColumnSchema(viewedAt, .integer, .immutable),
        ColumnSchema(via, .text, .immutable),
        ColumnSchema(CareColumn.createdBy.rawValue, .text, .immutable),
    ])

    /// Schema v3's migration.
    static let migration = SchemaMigration("care-v3-views", sql: table.createStatement + ";"
                                               + "\nCREATE INDEX record_view_by_person ON \(tableName) (\(CareSchema.personID));")

    /// The ways a record can be read that count as a view.
    public enum Access: String, Sendable, CaseIterable {
        /// `caresync show`: every field of one record.
        case show
        /// `caresync list`: a listing that includes the record.
        case list
        /// `caresync conflicts`: the record's conflict candidates.
        case conflicts
        /// `caresync history`: the record's changes with their values.
        case history
    }
}

extension CareReplica {
    /// The records among `records` that are restricted here: records of a young person whose
    /// `restricted` status is `yes` (the young person's own record and every record of the
    /// bundle), as this replica holds it. Read only: a caller that opened the replica read-only
    /// learns whether it must record views.
    ///
    /// - Parameter records: Records by kind and id; unknown ones are not restricted.
    /// - Returns: The restricted ones, in the order given, each once.
    /// - Throws: `StoreError` when the replica cannot be read.
    public func restrictedRecords(among records: [(kind: String, id: String)]) throws -> [(kind: String, id: String)] {
        try store.read { view in try Self.restricted(records, view).map { ($0.kind, $0.id) } }
    }

    /// Records a view of each restricted record among `records` (`restrictedRecords(among:)`), in
    /// one transaction: a `record_view` row each, in the record's young person's bundle, with the
    /// worker, the replica's wall time and how it was read. Call it before showing the records:
    /// a record is shown only once its view is durable. Records that are not restricted record
    /// nothing.
    ///
    /// ```swift
    /// let record = try replica.describe("case_note", id: noteID)
    /// try replica.recordViews(of: [("case_note", noteID)], via: .show, author: "morgan")   // then print it
    /// ```
    ///
    /// - Parameters:
    ///   - records: The records read, by kind and id.
    ///   - access: How they were read.
    ///   - author: The worker who read them.
    /// - Returns: The number of views recorded.
    /// - Throws: `CareError` `.badValue` for a bad worker id; `StoreError` when the replica cannot be written.
    @discardableResult
    public func recordViews(of records: [(kind: String, id: String)], via access: RecordView.Access, author: String) throws -> Int {
        let author = try WorkerID.canonical(author)
        let now = Int64(clamping: wallClock.nowMillis())
        return try store.write(author: author) { transaction in
            let viewed = try Self.restricted(records, transaction.view)
            for record in viewed {
                try transaction.create(RecordView.tableName, id: ids.next(), values: [
                    CareSchema.personID: .text(record.scope), RecordView.viewedKind: .text(record.kind), RecordView.viewedID: .text(record.id),
                    RecordView.viewedAt: .integer(now), RecordView.via: .text(access.rawValue), CareColumn.createdBy.rawValue: .text(author),
                ], scope: record.scope)
            }
            return viewed.count
        }
    }

    /// The restricted records among `records`, each once, with the young person they belong to.
    private static func restricted(_ records: [(kind: String, id: String)], _ view: ReadView) throws -> [(kind: String, id: String, scope: String)] {
        var seen: Set<[String]> = []
        var restrictedScopes: [String: Bool] = [:]
        var result: [(kind: String, id: String, scope: String)] = []
        for record in records where seen.insert([record.kind, record.id]).inserted {
            guard record.kind != RecordView.tableName, CareSchema.kind(record.kind) != nil,
                  let row = try view.row(record.kind, id: record.id) else { continue }
            let scope = RecordScope.of(record.kind, id: record.id, values: row)
            guard !scope.isEmpty else { continue }
            if restrictedScopes[scope] == nil {
                let person = try view.row(YoungPerson.kindName, id: scope)
                restrictedScopes[scope] = person?[CareColumn.restricted.rawValue] == .text(Restriction.yes.rawValue)
            }
            if restrictedScopes[scope] == true { result.append((record.kind, record.id, scope)) }
        }
        return result
    }
}
