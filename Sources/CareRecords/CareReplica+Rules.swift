import Crypto
import SyncCore
import SyncStore

/// The local checks of the invariants that can be kept offline (I3 age limits, I4 closed plans,
/// I6 approvals bound to content, I10 no deletion, I14 nothing after death).
extension CareReplica {
    static let planContentFields: [String] = ["title", "effective_from", "summary", "child_views", "contact_arrangements",
                                              "owning_team_id", "owner_worker_id"]

    /// Fills in derived fields of a new record and checks the rules that apply at creation.
    func prepareNew(_ kind: RecordKind, id: String, values: inout [String: FieldValue], author: String, view: ReadView) throws {
        switch kind.name {
        case "young_person":
            values[.restricted] = values[.restricted] ?? .text(Restriction.no.rawValue)
        case "plan":
            values[.lineageID] = .text(id)
            values[.versionNumber] = .integer(1)
            values[.status] = .text(PlanStatus.draft.rawValue)
        case "goal":
            let plan = try requirePlanOpenForContent(values[.planID]!.textValue!, view: view, adding: "goal")
            values[.personID] = .text(plan.personID)
            values[.status] = .text(GoalStatus.open.rawValue)
        case "action":
            let goalID = values[.goalID]!.textValue!
            guard let goal = try view.row("goal", id: goalID) else { throw Self.notFound("goal", goalID) }
            let planID = goal[.planID]?.textValue ?? ""
            _ = try requirePlanOpenForContent(planID, view: view, adding: "action")
            values[.planID] = .text(planID)
            values[.personID] = goal[.personID]
            values[.status] = .text(ActionStatus.open.rawValue)
        case "review":
            values[.status] = .text(ReviewStatus.scheduled.rawValue)
        case "visit":
            values[.workerID] = .text(author)
            values[.status] = .text(VisitStatus.draft.rawValue)
        case "case_note":
            if let amends = values[.amendsNoteID]?.textValue, let original = try view.row("case_note", id: amends),
               original[.personID] != values[.personID] {
                throw CareError(.badReference, "an addendum must be on the same young person as the note it amends",
                                kind: kind.name, field: CareColumn.amendsNoteID.rawValue)
            }
        case "allocation":
            if values[.role]?.textValue == AllocationRole.personalAdviser.rawValue {
                try checkAge(person: values[.personID]!.textValue!, on: values[.fromDate]!.textValue!, minimum: 14, limit: 25,
                             what: "a personal adviser allocation", view: view)
            }
        case "reminder":
            values[.owner] = .text(author)
        default:
            break
        }
    }

    /// I4 and I6: goals and actions are added only to plans that are still drafts or submitted.
    func requirePlanOpenForContent(_ planID: String, view: ReadView, adding what: String) throws -> Plan {
        let plan = try self.plan(planID, view: view)
        if plan.status.isClosed {
            throw CareError(.planClosed, "plan \(planID) is \(plan.status.rawValue): no new \(what)s (I4); add it to the current version",
                            kind: Plan.kindName, id: planID)
        }
        if plan.status == .approved {
            throw CareError(.planApproved, "plan \(planID) is approved and frozen (I6); its content changes only in a new version",
                            kind: Plan.kindName, id: planID)
        }
        return plan
    }

    /// The plan of that id, typed.
    func plan(_ id: String, view: ReadView) throws -> Plan {
        guard let row = try view.row(Plan.kindName, id: id) else { throw Self.notFound(Plan.kindName, id) }
        return try Plan(row: row)
    }

    /// Rules for editing an existing record.
    func checkEdit(_ kind: RecordKind, id: String, current: [String: FieldValue], values: [String: FieldValue], view: ReadView) throws {
        let contentFields = values.keys.filter { $0 != CareColumn.status.rawValue }
        switch kind.name {
        case "plan":
            let status = try Plan(row: current).status
            if !contentFields.isEmpty && status.isFrozen {
                throw CareError(.planFrozen, "plan \(id) is \(status.rawValue): its content cannot change (I6/I10); it changes only in a new version",
                                kind: Plan.kindName, id: id)
            }
            if let next = values[.status]?.textValue {
                if next == PlanStatus.approved.rawValue {
                    throw CareError(.useApprove, "a plan is approved only by an approval, which binds it to the plan's content",
                                    kind: Plan.kindName, id: id, field: CareColumn.status.rawValue)
                }
                if next == PlanStatus.submitted.rawValue, try openConflicts(plan: id, view: view) > 0 {
                    throw CareError(.openConflicts, "plan \(id) has unresolved conflicts; resolve them before submitting",
                                    kind: Plan.kindName, id: id)
                }
            }
        case "goal", "action":
            if !contentFields.isEmpty, let planID = current[.planID]?.textValue, let row = try view.row(Plan.kindName, id: planID),
               case let status = try Plan(row: row).status, status.isFrozen {
                throw CareError(.planFrozen, "plan \(planID) is \(status.rawValue): its goals and actions cannot change (I6/I10)",
                                kind: Plan.kindName, id: planID)
            }
        case "visit":
            if !contentFields.isEmpty, let status = current[.status]?.textValue, status != VisitStatus.draft.rawValue {
                throw CareError(.finalised, "visit \(id) is \(status): its record is fixed (I10); add a case note to correct it",
                                kind: kind.name, id: id)
            }
        default:
            break
        }
    }

    /// Open conflicts on a plan, its goals and their actions.
    func openConflicts(plan id: String, view: ReadView) throws -> Int {
        var total = try view.openConflicts("plan", id: id)
        for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
            total += try view.openConflicts("goal", id: goal[.id]!.textValue!)
        }
        for action in try view.rows("action", where: ["plan_id": .text(id)]) {
            total += try view.openConflicts("action", id: action[.id]!.textValue!)
        }
        return total
    }

    /// I3: age limits, judged on a given date from the date of birth. Refused while the date of
    /// birth is in conflict, since no age can be trusted then.
    func checkAge(person id: String, on dateText: String, minimum: Int?, limit: Int?, what: String, view: ReadView) throws {
        guard let row = try view.row(YoungPerson.kindName, id: id) else { throw Self.notFound(YoungPerson.kindName, id) }
        let person = try YoungPerson(row: row)
        if try view.resolution(YoungPerson.kindName, id: id, column: CareColumn.dateOfBirth.rawValue)?.inConflict == true {
            throw CareError(.dobConflict, "young person \(id) has a date-of-birth conflict: \(what) is blocked until it is resolved",
                            kind: YoungPerson.kindName, id: id, field: CareColumn.dateOfBirth.rawValue)
        }
        guard let dob = person.dateOfBirth, let date = CalendarDate(dateText) else {
            throw CareError(.noDateOfBirth, "young person \(id) has no date of birth: cannot check eligibility for \(what)",
                            kind: YoungPerson.kindName, id: id, field: CareColumn.dateOfBirth.rawValue)
        }
        let age = date.age(bornOn: dob)
        if let minimum, age < minimum {
            throw CareError(.ageLimit, "\(what) needs age \(minimum) or over on \(date); the young person is \(age) (I3)",
                            kind: YoungPerson.kindName, id: id)
        }
        if let limit, age >= limit {
            throw CareError(.ageLimit, "\(what) is only for ages under \(limit) on \(date); the young person is \(age) (I3)",
                            kind: YoungPerson.kindName, id: id)
        }
        if let death = person.dateOfDeath, death <= date {
            throw CareError(.afterDeath, "\(what) cannot be dated on or after the recorded date of death (I14)",
                            kind: YoungPerson.kindName, id: id, field: CareColumn.dateOfDeath.rawValue)
        }
    }

    // MARK: approvals and versions

    /// Approves a submitted plan: records an approval bound to the plan's content hash and moves
    /// the plan to approved, in one transaction. The version it supersedes becomes superseded.
    /// A rejection or return is recorded the same way and leaves the plan submitted.
    ///
    /// ```swift
    /// try replica.edit("plan", id: planID, fields: ["status": "submitted"], author: "alex")
    /// let approvalID = try replica.approve(plan: planID, author: "morgan")   // not alex: four eyes
    /// ```
    ///
    /// - Parameters:
    ///   - id: the plan version to decide on.
    ///   - decision: approved (the default), rejected or returned.
    ///   - author: the deciding worker; someone who wrote none of the plan's content (I6).
    /// - Returns: the id of the new approval record.
    /// - Throws: `CareError` `.notFound`, `.notSubmitted`, `.openConflicts`, `.fourEyes`,
    ///   `.badWorker`; `StoreError` when the replica cannot be written.
    @discardableResult
    public func approve(plan id: String, decision: ApprovalDecision = .approved, author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let approvalID = ids.next()
        try store.write(author: author) { transaction in
            let view = try transaction.view
            let plan = try self.plan(id, view: view)
            guard plan.status == .submitted else {
                throw CareError(.notSubmitted, "plan \(id) is \(plan.status.rawValue); only a submitted plan can be approved",
                                kind: Plan.kindName, id: id)
            }
            if try openConflicts(plan: id, view: view) > 0 {
                throw CareError(.openConflicts, "plan \(id) has unresolved conflicts; resolve them before approving",
                                kind: Plan.kindName, id: id)
            }
            if try contentAuthors(plan: id, view: view).contains(where: { WorkerID.sameWorker($0, author) }) {
                throw CareError(.fourEyes, "\(author) wrote part of this plan's content (the plan, a goal or an action); ask a team manager who did not",
                                kind: Plan.kindName, id: id)
            }
            let hash = try contentHash(plan: id, view: view)
            var approval: [String: FieldValue] = [:]
            approval[.personID] = .text(plan.personID)
            approval[.subjectType] = .text(Plan.kindName)
            approval[.subjectID] = .text(id)
            approval[.subjectContentHash] = .text(hash)
            approval[.approverID] = .text(author)
            approval[.decision] = .text(decision.rawValue)
            approval[.decidedAt] = .text(today.description)
            try transaction.createRecord("approval", id: approvalID, values: approval)
            guard decision == .approved else { return }
            try transaction.update(Plan.kindName, id: id, values: [CareColumn.status.rawValue: .text(PlanStatus.approved.rawValue)])
            if let previous = plan.supersedesID, let old = try view.row(Plan.kindName, id: previous),
               !(try Plan(row: old).status.isClosed) {
                try transaction.update(Plan.kindName, id: previous, values: [CareColumn.status.rawValue: .text(PlanStatus.superseded.rawValue)])
            }
        }
        return approvalID
    }

    /// Starts a new draft version of a plan, copying its content, goals and actions. The old
    /// version stays as it is until the new one is approved.
    ///
    /// - Parameters:
    ///   - id: the plan version to copy (any status but closed or superseded).
    ///   - author: the worker starting the version.
    /// - Returns: the id of the new plan version.
    /// - Throws: `CareError` `.notFound`, `.planClosed`, `.badWorker`; `StoreError` when the
    ///   replica cannot be written.
    @discardableResult
    public func newVersion(plan id: String, author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let newID = ids.next()
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard let row = try view.row(Plan.kindName, id: id) else { throw Self.notFound(Plan.kindName, id) }
            let plan = try Plan(row: row)
            if plan.status.isClosed {
                throw CareError(.planClosed, "plan \(id) is \(plan.status.rawValue); start a new plan instead", kind: Plan.kindName, id: id)
            }
            var values = Plan(id: newID, personID: plan.personID, kind: plan.kind, lineageID: plan.lineageID,
                              versionNumber: plan.versionNumber &+ 1, supersedesID: id, status: .draft).fields
            values[.id] = nil
            values[.createdBy] = .text(author)
            for field in Self.planContentFields { values[field] = row[field] ?? .null }
            try transaction.createRecord("plan", id: newID, values: values.filter { !$0.value.isNull })
            for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
                let goalID = ids.next()
                var copy = goal.filter { ["domain", "statement", "success_measure", "target_date", "sort_key", CareColumn.personID.rawValue].contains($0.key) }
                copy[.planID] = .text(newID)
                copy[.status] = goal[.status] ?? .text(GoalStatus.open.rawValue)
                copy[.createdBy] = .text(author)
                try transaction.createRecord("goal", id: goalID, values: copy.filter { !$0.value.isNull })
                for action in try view.rows("action", where: ["goal_id": goal[.id]!]) {
                    var actionCopy = action.filter { ["description", "responsible", "due_date", CareColumn.personID.rawValue].contains($0.key) }
                    actionCopy[.goalID] = .text(goalID)
                    actionCopy[.planID] = .text(newID)
                    actionCopy[.status] = action[.status] ?? .text(ActionStatus.open.rawValue)
                    actionCopy[.createdBy] = .text(author)
                    try transaction.createRecord("action", id: ids.next(), values: actionCopy.filter { !$0.value.isNull })
                }
            }
        }
        return newID
    }

    /// The fields of `kind` (plan, goal or action) the content hash covers.
    static func contentFields(of kind: String) -> [String] {
        switch kind {
        case "plan": planContentFields
        case "goal": goalContentFields
        case "action": actionContentFields
        default: []
        }
    }

    /// Fields of a plan, its goals and their actions that the content hash covers.
    static let goalContentFields = ["domain", "statement", "success_measure", "target_date"]
    static let actionContentFields = ["description", "responsible", "due_date"]

    /// I6 four-eyes: everyone who wrote what `contentHash` covers — created the plan version, a
    /// goal or an action, or changed one of their content fields — as the change log records
    /// them. Status changes (submitting) are not content.
    func contentAuthors(plan id: String, view: ReadView) throws -> Set<String> {
        var authors = try view.authors("plan", id: id, columns: Self.planContentFields)
        for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
            authors.formUnion(try view.authors("goal", id: goal[.id]!.textValue!, columns: Self.goalContentFields))
            for action in try view.rows("action", where: ["goal_id": goal[.id]!]) {
                authors.formUnion(try view.authors("action", id: action[.id]!.textValue!, columns: Self.actionContentFields))
            }
        }
        return authors
    }

    /// SHA-256 over the plan's content (not its status) and the content of its goals and actions,
    /// in a canonical order. An approval is valid only while this hash is unchanged (I6).
    func contentHash(plan id: String, view: ReadView) throws -> String {
        guard let plan = try view.row("plan", id: id) else { throw Self.notFound("plan", id) }
        var writer = ByteWriter()
        func put(_ record: [String: FieldValue], _ fields: [String]) {
            for field in fields {
                writer.string(field)
                (record[field] ?? .null).encode(into: &writer)
            }
        }
        put(plan, ["id", "kind", "version_no"] + Self.planContentFields)
        for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
            put(goal, ["id"] + Self.goalContentFields)
            for action in try view.rows("action", where: ["goal_id": goal[.id]!]) {
                put(action, ["id"] + Self.actionContentFields)
            }
        }
        return Array(SHA256.hash(data: writer.bytes)).hexString
    }
}
