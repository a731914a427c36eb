import Crypto
import SyncCore
import SyncStore

/// The local checks of the invariants that can be kept offline (DOMAIN.md I3, I4, I6, I10, I14).
extension CareReplica {
    static let closedPlanStatuses: Set<String> = ["closed", "superseded"]
    static let frozenPlanStatuses: Set<String> = ["approved", "closed", "superseded"]
    static let planContentFields: [String] = ["title", "effective_from", "summary", "child_views", "contact_arrangements",
                                              "owning_team_id", "owner_worker_id"]

    /// Fills in derived fields of a new record and checks the rules that apply at creation.
    func prepareNew(_ kind: RecordKind, id: String, values: inout [String: FieldValue], author: String, view: ReadView) throws {
        switch kind.name {
        case "young_person":
            values["restricted"] = values["restricted"] ?? .text("no")
        case "plan":
            values["lineage_id"] = .text(id)
            values["version_no"] = .integer(1)
            values["status"] = .text("draft")
        case "goal":
            let plan = try requirePlanOpenForContent(values["plan_id"]!.textValue!, view: view, adding: "goal")
            values["yp_id"] = plan["yp_id"]
            values["status"] = .text("open")
        case "action":
            let goalID = values["goal_id"]!.textValue!
            guard let goal = try view.row("goal", id: goalID) else { throw Self.notFound("goal", goalID) }
            let planID = goal["plan_id"]?.textValue ?? ""
            _ = try requirePlanOpenForContent(planID, view: view, adding: "action")
            values["plan_id"] = .text(planID)
            values["yp_id"] = goal["yp_id"]
            values["status"] = .text("open")
        case "review":
            values["status"] = .text("scheduled")
        case "visit":
            values["worker_id"] = .text(author)
            values["status"] = .text("draft")
        case "case_note":
            if let amends = values["amends_note_id"]?.textValue, let original = try view.row("case_note", id: amends),
               original["yp_id"] != values["yp_id"] {
                throw CareError("BAD_REFERENCE", "an addendum must be on the same young person as the note it amends")
            }
        case "allocation":
            if values["role"]?.textValue == "pa" {
                try checkAge(person: values["yp_id"]!.textValue!, on: values["from_date"]!.textValue!, minimum: 14, limit: 25,
                             what: "a personal adviser allocation", view: view)
            }
        case "reminder":
            values["owner"] = .text(author)
        default:
            break
        }
    }

    /// I4 and I6: goals and actions are added only to plans that are still drafts or submitted.
    func requirePlanOpenForContent(_ planID: String, view: ReadView, adding what: String) throws -> [String: FieldValue] {
        guard let plan = try view.row("plan", id: planID) else { throw Self.notFound("plan", planID) }
        let status = plan["status"]?.textValue ?? "draft"
        if Self.closedPlanStatuses.contains(status) {
            throw CareError("PLAN_CLOSED", "plan \(planID) is \(status): no new \(what)s (I4); add it to the current version")
        }
        if status == "approved" {
            throw CareError("PLAN_APPROVED", "plan \(planID) is approved and frozen (I6); create a new version with `caresync plan-version \(planID)`")
        }
        return plan
    }

    /// Rules for editing an existing record.
    func checkEdit(_ kind: RecordKind, id: String, current: [String: FieldValue], values: [String: FieldValue], view: ReadView) throws {
        let contentFields = values.keys.filter { $0 != "status" }
        switch kind.name {
        case "plan":
            let status = current["status"]?.textValue ?? "draft"
            if !contentFields.isEmpty && Self.frozenPlanStatuses.contains(status) {
                throw CareError("PLAN_FROZEN", "plan \(id) is \(status): its content cannot change (I6/I10); create a new version with `caresync plan-version \(id)`")
            }
            if let next = values["status"]?.textValue {
                if next == "approved" { throw CareError("USE_APPROVE", "approve a plan with `caresync approve \(id)`, which binds the approval to its content") }
                if next == "submitted", try openConflicts(plan: id, view: view) > 0 {
                    throw CareError("OPEN_CONFLICTS", "plan \(id) has unresolved conflicts; resolve them (`caresync conflicts`) before submitting")
                }
            }
        case "goal", "action":
            if !contentFields.isEmpty, let planID = current["plan_id"]?.textValue, let plan = try view.row("plan", id: planID),
               let status = plan["status"]?.textValue, Self.frozenPlanStatuses.contains(status) {
                throw CareError("PLAN_FROZEN", "plan \(planID) is \(status): its goals and actions cannot change (I6/I10)")
            }
        case "visit":
            if !contentFields.isEmpty, let status = current["status"]?.textValue, status != "draft" {
                throw CareError("FINALISED", "visit \(id) is \(status): its record is fixed (I10); add a case note to correct it")
            }
        default:
            break
        }
    }

    /// Open conflicts on a plan, its goals and their actions.
    func openConflicts(plan id: String, view: ReadView) throws -> Int {
        var total = try view.openConflicts("plan", id: id)
        for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
            total += try view.openConflicts("goal", id: goal["id"]!.textValue!)
        }
        for action in try view.rows("action", where: ["plan_id": .text(id)]) {
            total += try view.openConflicts("action", id: action["id"]!.textValue!)
        }
        return total
    }

    /// I3: age limits, judged on a given date from the date of birth. Refused while the date of
    /// birth is in conflict, since no age can be trusted then.
    func checkAge(person id: String, on dateText: String, minimum: Int?, limit: Int?, what: String, view: ReadView) throws {
        guard let person = try view.row("young_person", id: id) else { throw Self.notFound("young_person", id) }
        if try view.resolution("young_person", id: id, column: "date_of_birth")?.inConflict == true {
            throw CareError("DOB_CONFLICT", "young person \(id) has a date-of-birth conflict: \(what) is blocked until it is resolved")
        }
        guard let dob = person["date_of_birth"]?.textValue.flatMap(CalendarDate.init), let date = CalendarDate(dateText) else {
            throw CareError("NO_DOB", "young person \(id) has no date of birth: cannot check eligibility for \(what)")
        }
        let age = date.age(bornOn: dob)
        if let minimum, age < minimum {
            throw CareError("AGE_LIMIT", "\(what) needs age \(minimum) or over on \(date); the young person is \(age) (I3)")
        }
        if let limit, age >= limit {
            throw CareError("AGE_LIMIT", "\(what) is only for ages under \(limit) on \(date); the young person is \(age) (I3)")
        }
        if let death = person["date_of_death"]?.textValue.flatMap(CalendarDate.init), death <= date {
            throw CareError("AFTER_DEATH", "\(what) cannot be dated on or after the recorded date of death (I14)")
        }
    }

    // MARK: approvals and versions

    /// Approves a submitted plan: records an approval bound to the plan's content hash and moves
    /// the plan to approved, in one transaction. The version it supersedes becomes superseded.
    @discardableResult
    public func approve(plan id: String, decision: String = "approved", author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        guard ["approved", "rejected", "returned"].contains(decision) else {
            throw CareError("BAD_VALUE", "decision must be approved, rejected or returned")
        }
        let approvalID = ids.next()
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard let plan = try view.row("plan", id: id) else { throw Self.notFound("plan", id) }
            guard plan["status"]?.textValue == "submitted" else {
                throw CareError("NOT_SUBMITTED", "plan \(id) is \(plan["status"]?.textValue ?? "draft"); only a submitted plan can be approved")
            }
            if try openConflicts(plan: id, view: view) > 0 {
                throw CareError("OPEN_CONFLICTS", "plan \(id) has unresolved conflicts; resolve them before approving")
            }
            if try contentAuthors(plan: id, view: view).contains(where: { WorkerID.sameWorker($0, author) }) {
                throw CareError("FOUR_EYES", "\(author) wrote part of this plan's content (the plan, a goal or an action); ask a team manager who did not")
            }
            let hash = try contentHash(plan: id, view: view)
            try transaction.createRecord("approval", id: approvalID, values: [
                "yp_id": plan["yp_id"] ?? .null, "subject_type": .text("plan"), "subject_id": .text(id),
                "subject_content_hash": .text(hash), "approver_id": .text(author), "decision": .text(decision),
                "decided_at": .text(today.description),
            ])
            guard decision == "approved" else { return }
            try transaction.update("plan", id: id, values: ["status": .text("approved")])
            if let previous = plan["supersedes_id"]?.textValue, let old = try view.row("plan", id: previous),
               old["status"]?.textValue.map({ !Self.closedPlanStatuses.contains($0) }) ?? true {
                try transaction.update("plan", id: previous, values: ["status": .text("superseded")])
            }
        }
        return approvalID
    }

    /// Starts a new draft version of a plan, copying its content, goals and actions. The old
    /// version stays as it is until the new one is approved.
    @discardableResult
    public func newVersion(plan id: String, author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let newID = ids.next()
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard let plan = try view.row("plan", id: id) else { throw Self.notFound("plan", id) }
            if let status = plan["status"]?.textValue, Self.closedPlanStatuses.contains(status) {
                throw CareError("PLAN_CLOSED", "plan \(id) is \(status); start a new plan instead")
            }
            var values: [String: FieldValue] = [
                "yp_id": plan["yp_id"] ?? .null, "kind": plan["kind"] ?? .null, "lineage_id": plan["lineage_id"] ?? .text(id),
                "version_no": .integer((plan["version_no"]?.integerValue ?? 1) &+ 1), "supersedes_id": .text(id),
                "status": .text("draft"), "created_by": .text(author),
            ]
            for field in Self.planContentFields { values[field] = plan[field] ?? .null }
            try transaction.createRecord("plan", id: newID, values: values.filter { !$0.value.isNull })
            for goal in try view.rows("goal", where: ["plan_id": .text(id)]) {
                let goalID = ids.next()
                var copy = goal.filter { ["domain", "statement", "success_measure", "target_date", "sort_key", "yp_id"].contains($0.key) }
                copy["plan_id"] = .text(newID)
                copy["status"] = goal["status"] ?? .text("open")
                copy["created_by"] = .text(author)
                try transaction.createRecord("goal", id: goalID, values: copy.filter { !$0.value.isNull })
                for action in try view.rows("action", where: ["goal_id": goal["id"]!]) {
                    var actionCopy = action.filter { ["description", "responsible", "due_date", "yp_id"].contains($0.key) }
                    actionCopy["goal_id"] = .text(goalID)
                    actionCopy["plan_id"] = .text(newID)
                    actionCopy["status"] = action["status"] ?? .text("open")
                    actionCopy["created_by"] = .text(author)
                    try transaction.createRecord("action", id: ids.next(), values: actionCopy.filter { !$0.value.isNull })
                }
            }
        }
        return newID
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
            authors.formUnion(try view.authors("goal", id: goal["id"]!.textValue!, columns: Self.goalContentFields))
            for action in try view.rows("action", where: ["goal_id": goal["id"]!]) {
                authors.formUnion(try view.authors("action", id: action["id"]!.textValue!, columns: Self.actionContentFields))
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
            for action in try view.rows("action", where: ["goal_id": goal["id"]!]) {
                put(action, ["id"] + Self.actionContentFields)
            }
        }
        return Array(SHA256.hash(data: writer.bytes)).hexString
    }
}
