import SyncCore
import SyncStore

/// A candidate value in a conflict, with its provenance.
public struct ConflictCandidate: Sendable {
    /// The value this candidate would set.
    public let value: FieldValue
    /// The worker who wrote it.
    public let author: String
    /// The replica it was written on.
    public let replica: ReplicaID
    /// The change that wrote it, if known.
    public let change: ChangeID?
    /// When it was written (hybrid logical clock).
    public let timestamp: HybridTimestamp
    /// For an allocation conflict, the allocation record.
    public let recordID: String?
}

/// Something a person must settle: concurrent values of one field, a quarantined write, or two
/// open allocations for an exclusive role (I8: until resolved both workers stay responsible).
public struct CareConflict: Sendable {
    /// What must be settled; the raw value is its stable name (as JSON output prints it).
    public enum Kind: String, Sendable {
        /// Concurrent values of a field whose policy keeps them for a person (multi-value).
        case concurrentValues = "concurrent_values"
        /// A differing write to a written-once field, kept aside; the earliest value stands.
        case quarantined
        /// Two or more open allocations of an exclusive role for one young person (I8).
        case allocation = "allocation_conflict"
    }

    /// What must be settled.
    public let kind: Kind
    /// The kind of the record in conflict.
    public let recordKind: String
    /// The record in conflict (the young person, for an allocation conflict).
    public let recordID: String
    /// The field in conflict (`allocation.<role>` for an allocation conflict).
    public let field: String
    /// The values to choose from, in a stable order (a pick counts from 1).
    public let candidates: [ConflictCandidate]
    /// The role a conflict is routed to for resolution: `team_manager`, or `iro` for a review.
    public let assignedRole: String
}

/// A record with its fields, their policies, any conflict candidates, and derived values.
public struct RecordDescription: Sendable {
    /// One field of the record.
    public struct Field: Sendable {
        /// The field's name.
        public let name: String
        /// Its merge policy's short name (`LWW`, `MVR`…).
        public let policy: String
        /// Its current value.
        public let value: FieldValue
        /// Its conflict candidates, empty when there is no conflict.
        public let candidates: [ConflictCandidate]
    }

    /// The record kind.
    public let kind: String
    /// The record id.
    public let id: String
    /// Every field of the kind, in schema order.
    public let fields: [Field]
    /// Computed on read, never stored as editable: ages, hashes, flags, balances.
    public let derived: [(name: String, value: String)]
}

extension CareReplica {
    /// Every open conflict: concurrent values, quarantined writes and allocation conflicts (I8).
    ///
    /// ```swift
    /// for conflict in try replica.conflicts() where conflict.kind == .concurrentValues {
    ///     try replica.resolve(conflict.recordKind, id: conflict.recordID, field: conflict.field, value: nil, pick: 1, author: "morgan")
    /// }
    /// ```
    ///
    /// - Throws: `StoreError` when the replica cannot be read.
    public func conflicts() throws -> [CareConflict] {
        var result = try store.conflicts().map { conflict in
            CareConflict(kind: conflict.kind == .quarantined ? .quarantined : .concurrentValues, recordKind: conflict.table,
                         recordID: conflict.row, field: conflict.column, candidates: conflict.candidates.map(Self.candidate),
                         assignedRole: Self.role(for: conflict.table, conflict.column))
        }
        result += try allocationConflicts()
        return result
    }

    static func candidate(_ write: FieldWrite) -> ConflictCandidate {
        ConflictCandidate(value: write.value, author: write.author, replica: write.id.replica, change: write.id,
                          timestamp: write.timestamp, recordID: nil)
    }

    static func role(for table: String, _ column: String) -> String {
        switch (table, column) {
        case ("young_person", _): "team_manager"
        case ("review", _): "iro"
        default: "team_manager"
        }
    }

    /// Two or more open allocations for an exclusive role of one young person (I8).
    func allocationConflicts() throws -> [CareConflict] {
        let open = try list("allocation").filter { $0[.endedOn]?.isNull ?? true }
        let grouped = Dictionary(grouping: open) { ($0[.personID]?.textValue ?? "") + "|" + ($0[.role]?.textValue ?? "") }
        return try grouped.keys.sorted().compactMap { key -> CareConflict? in
            let allocations = grouped[key]!
            guard allocations.count > 1, let role = allocations[0][.role]?.textValue,
                  AllocationRole(rawValue: role)?.isExclusive == true else { return nil }
            let candidates = try allocations.map { allocation -> ConflictCandidate in
                let id = allocation[.id]!.textValue!
                let created = try store.read { try $0.createdAt("allocation", id: id) } ?? .zero
                let change = try store.history(table: "allocation", row: id).first { $0.column == nil }?.change
                return ConflictCandidate(value: allocation[.workerID] ?? .null, author: allocation[.createdBy]?.textValue ?? "?",
                                         replica: change?.replica ?? store.replicaID, change: change, timestamp: created,
                                         recordID: id)
            }
            return CareConflict(kind: .allocation, recordKind: YoungPerson.kindName, recordID: allocations[0][.personID]?.textValue ?? "",
                                field: "allocation.\(role)", candidates: candidates, assignedRole: "team_manager")
        }
    }

    /// Resolves a conflicting field with a value that supersedes every candidate: either a chosen
    /// candidate (`pick`, 1-based) or a new value. The write goes through the usual checks.
    ///
    /// ```swift
    /// try replica.resolve("goal", id: goalID, field: "statement", value: nil, pick: 2, author: "morgan")
    /// ```
    ///
    /// - Parameters:
    ///   - kindName: the record's kind.
    ///   - id: the record.
    ///   - field: the field in conflict.
    ///   - value: a new value as typed, or nil to pick a candidate.
    ///   - pick: the candidate to keep (1-based, in `conflicts()` order), or nil to give a value.
    ///   - author: the worker resolving.
    /// - Throws: `CareError` `.noConflict`, `.badPick`, `.badResolution`, `.endAllocation`,
    ///   `.quarantined` and the checks of `edit`; `StoreError`.
    public func resolve(_ kindName: String, id: String, field: String, value: String?, pick: Int?, author: String) throws {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        guard let conflict = try conflicts().first(where: { $0.recordKind == kind.name && $0.recordID == id && $0.field == field })
        else { throw CareError(.noConflict, "\(kind.name) \(id) has no open conflict on \(field)", kind: kind.name, id: id, field: field) }
        switch conflict.kind {
        case .allocation:
            throw CareError(.endAllocation, "an allocation conflict is resolved by ending the allocation that should stop (its ended_on and end_reason)",
                            kind: kind.name, id: id, field: field)
        case .quarantined:
            throw CareError(.quarantined, "\(kind.name).\(field) is immutable: the differing write stays quarantined for an administrator; the earliest value stands",
                            kind: kind.name, id: id, field: field)
        case .concurrentValues:
            break
        }
        guard let definition = kind.field(field) else { throw Self.unknownField(kind, field) }
        // The chosen value stays typed: a candidate that cleared the field clears it again (it
        // is not the text "null"), and a date stays a date.
        let chosen: FieldValue
        switch (value, pick) {
        case let (value?, nil): chosen = try Self.parse(definition, value, kind: kind)
        case let (nil, index?):
            guard (1...conflict.candidates.count).contains(index) else {
                throw CareError(.badPick, "pick a candidate from 1 to \(conflict.candidates.count)", kind: kind.name, id: id, field: field)
            }
            chosen = conflict.candidates[index - 1].value
        default:
            throw CareError(.badResolution, "give either a candidate to pick or a new value, not both", kind: kind.name, id: id, field: field)
        }
        if field == CareColumn.status.rawValue {
            // A status conflict is between terminal states; the resolution is itself terminal.
            try checkValues(kind, [field: chosen], editing: id)
            try store.write(author: author) { try $0.update(kind.name, id: id, values: [field: chosen]) }
        } else {
            try Self.checkAssignable(kind, [field], editing: true)
            try edit(kind, id: id, values: [field: chosen], author: author)
        }
    }

    /// Every change to a record (optionally one field), oldest first.
    ///
    /// - Throws: `CareError` `.unknownKind`, `.unknownField`, `.notFound`; `StoreError`.
    public func history(_ kindName: String, id: String, field: String? = nil) throws -> [HistoryEntry] {
        let kind = try Self.kind(kindName)
        if let field, kind.field(field) == nil { throw Self.unknownField(kind, field) }
        let entries = try store.history(table: kind.name, row: id, column: field)
        if entries.isEmpty { throw Self.notFound(kind.name, id) }
        return entries
    }

    /// A record with conflict candidates per field and its derived values (ages, a plan's content
    /// hash and whether its approval still holds, I6).
    ///
    /// - Throws: `CareError` `.unknownKind`, `.notFound`; `StoreError`.
    public func describe(_ kindName: String, id: String) throws -> RecordDescription {
        let kind = try Self.kind(kindName)
        return try store.read { view in
            guard let row = try view.row(kind.name, id: id) else { throw Self.notFound(kind.name, id) }
            let fields = try kind.fields.map { field -> RecordDescription.Field in
                let resolution = try view.resolution(kind.name, id: id, column: field.name)
                return RecordDescription.Field(name: field.name, policy: field.policy.name, value: row[field.name] ?? .null,
                                               candidates: (resolution?.candidates ?? []).map(Self.candidate))
            }
            return RecordDescription(kind: kind.name, id: id, fields: fields, derived: try derived(kind.name, id: id, row: row, view: view))
        }
    }

    func derived(_ kind: String, id: String, row: [String: FieldValue], view: ReadView) throws -> [(name: String, value: String)] {
        var values: [(String, String)] = []
        switch kind {
        case "young_person":
            if let dob = row[.dateOfBirth]?.textValue.flatMap(CalendarDate.init) {
                values.append(("age", String(today.age(bornOn: dob))))
                values.append(("care_leaver_support_ends", CalendarDate(year: dob.year + 25, month: dob.month,
                                                                        day: min(dob.day, CalendarDate.daysIn(month: dob.month, year: dob.year + 25))).description))
            }
            values.append(("open_conflicts", String(try view.openConflicts(kind, id: id))))
        case "plan":
            values.append(("content_hash", try contentHash(plan: id, view: view)))
            values.append(("approval", try approvalState(plan: id, view: view)))
            values.append(("open_conflicts", String(try openConflicts(plan: id, view: view))))
        case "goal", "action":
            values.append(("added_after_close", try addedAfterClose(kind, id: id, row: row, view: view) ? "1" : "0"))
        default:
            break
        }
        return values
    }

    /// I6: whether the latest approval still matches the plan's content.
    func approvalState(plan id: String, view: ReadView) throws -> String {
        let approvals = try view.rows("approval", where: [CareColumn.subjectID.rawValue: .text(id),
                                                          CareColumn.decision.rawValue: .text(ApprovalDecision.approved.rawValue)])
        guard let latest = approvals.max(by: { ($0[.decidedAt]?.textValue ?? "") < ($1[.decidedAt]?.textValue ?? "") }) else {
            return "none"
        }
        let hash = try contentHash(plan: id, view: view)
        return latest[.subjectContentHash]?.textValue == hash ? "valid" : "invalid: content changed since approval"
    }

    /// I4: a goal or action created after its plan was closed (concurrently, on a replica that had
    /// not seen the closure) is kept and flagged, never dropped: as the hub's stored flag says, or,
    /// until the hub has judged, by hybrid timestamp (the closure had not seen a record created
    /// after it).
    func addedAfterClose(_ kind: String, id: String, row: [String: FieldValue], view: ReadView) throws -> Bool {
        // The hub's judgment, once it has made one (a stored ADDED_AFTER_CLOSE flag): by who saw
        // the closure, not by clocks. Before that (and between replicas without a hub), the clocks.
        if try !view.rows("flag", where: ["subject_id": .text(id), "code": .text(FlagCode.addedAfterClose.rawValue)]).isEmpty { return true }
        guard let planID = row[.planID]?.textValue, let plan = try view.row(Plan.kindName, id: planID),
              try Plan(row: plan).status.isClosed,
              let closedAt = try view.fieldTimestamp(Plan.kindName, id: planID, column: CareColumn.status.rawValue),
              let created = try view.createdAt(kind, id: id) else { return false }
        return created > closedAt
    }
}
