import SyncCore
import SyncStore

extension CareReplica {
    /// Accepts a held write (`caresync quarantine accept`): its edit is made again as `worker`'s
    /// own, through the rules an edit at the command line meets: a record kind a person writes
    /// (not the hub's catalogue, the ledger, approvals, awards or view records), written-once
    /// fields unchanged, required fields and values in range, references held here, the edit
    /// rules of `edit` (frozen plans, finalised visits, forward-only statuses), sets changed by
    /// element, and deletion only of deletable kinds. A refusal leaves the write held.
    ///
    /// - Returns: The new local change's id.
    /// - Throws: `CareError` naming the rule that refused; `StoreError` as
    ///   `ReplicaStore.acceptHeld(id:worker:check:)` throws it.
    @discardableResult
    public func acceptHeld(id: Int64, worker: String) throws -> ChangeID {
        let author = try WorkerID.canonical(worker)
        return try store.acceptHeld(id: id, worker: author) { change, view in try checkHeld(change, view: view) }
    }

    /// The command line's checks of a local edit, applied to a held change.
    func checkHeld(_ change: Change, view: ReadView) throws {
        let kind = try Self.kind(change.table)
        guard !Self.notByHand.contains(kind.name) else {
            throw CareError(.hubOwned, "\(kind.name) records are not written by hand, so a held one is not made again; dismiss it",
                            kind: kind.name, id: change.row)
        }
        if change.deletesRow {
            guard kind.deletable else {
                throw CareError(.notDeletable, "\(kind.name) records are never deleted (I10)", kind: kind.name, id: change.row)
            }
            return
        }
        var assigned: [String: FieldValue] = [:]
        for field in change.fields {
            guard let declared = kind.field(field.column) else { throw Self.unknownField(kind, field.column) }
            switch field.operation {
            case let .assign(value): assigned[field.column] = value
            case let .add(element), let .remove(element):
                try Self.requireSet(kind, field.column, element: element.textValue ?? "")
            case .increment:
                guard case .integer = declared.format else {
                    throw CareError(.badValue, "\(kind.name).\(field.column) is not a count", kind: kind.name, id: change.row, field: field.column)
                }
            }
        }
        if let current = try view.row(kind.name, id: change.row) {
            // Held here already (a create made again of a row that exists is an edit of it).
            for name in assigned.keys.sorted() {
                if case .immutable = kind.field(name)?.policy, current[name] != assigned[name] {
                    throw CareError(.immutableField, "\(kind.name).\(name) is written once and cannot change (I10)",
                                    kind: kind.name, id: change.row, field: name)
                }
            }
            try checkValues(kind, assigned, editing: change.row)
            try checkReferences(kind, assigned, view)
            try checkEdit(kind, id: change.row, current: current, values: assigned, view: view)
        } else {
            try checkValues(kind, assigned, editing: nil)
            try checkReferences(kind, assigned, view)
            // The creation rules (a goal or action only on an open plan, a PA's age range), on a copy:
            // the held values are made again as they were.
            var derived = assigned
            try prepareNew(kind, id: change.row, values: &derived, author: change.author, view: view)
        }
    }

    /// Kinds only the hub, the entitlement engine or a workflow command writes.
    static let notByHand: Set<String> = ["entitlement_item", "ledger_entry", "approval", "award"]
}
