import SyncCore
import SyncStore

/// The hub's entitlement checks (Protocol/entitlements.md): after each push, over the young
/// person's merged view, the hub grants rights to requests that wait, refuses the ones the cap
/// can no longer meet, and raises a flag for each rule a merge broke. Nothing is deleted or
/// undone: a flag is a record beside what it is about.
extension CareScopeRules {
    /// The hub's entitlement decisions are made under the escrow origin.
    public var decisionOrigin: ReplicaID? { Escrow.origin }

    /// What the entitlement checks read, by table, with the policies `policies` gives them (all
    /// of a table's columns for nil).
    static func entitlementColumns(_ policies: (String, [String]?) -> [String: MergePolicy]) -> [String: [String: MergePolicy]] {
        [
            YoungPerson.kindName: policies(YoungPerson.kindName, [CareColumn.dateOfBirth.rawValue, "date_of_death"]),
            "award": policies("award", ["yp_id", "item_code", "catalogue_version", "period_key", "requested_amount_pence", "requested_count",
                                        "decision_date", "status", CareSchema.requestedOn]),
            "ledger_entry": policies("ledger_entry", nil),
            "flag": policies("flag", ["code", "subject_id", "status", "detail"]),
            "allocation": policies("allocation", ["role", "worker_id"]),
            "goal": policies("goal", ["plan_id"]),
            "action": policies("action", ["plan_id"]),
            EntitlementItem.kindName: policies(EntitlementItem.kindName, nil),
        ]
    }

    /// The hub's decisions for one young person.
    public func decide(_ view: ScopeView, shared: ScopeView, context: DecisionContext) -> [HubDecision] {
        var desk = EntitlementDesk(view: view, shared: shared, context: context)
        desk.audience = audience(view)
        desk.restriction = restriction(view)
        return desk.decisions()
    }
}

/// One run of the hub's entitlement checks over one young person's view.
struct EntitlementDesk {
    let view: ScopeView
    let context: DecisionContext
    let catalogue: [EntitlementItem]
    let today: CalendarDate
    /// Rows by table, alive ones.
    let rows: [String: [ScopeView.Row]]
    /// Every row key the view holds, by table (a decision's id is taken once).
    let held: Set<String>
    /// The decisions already made: each flag and ledger entry the escrow origin wrote, by table and
    /// decision id. A row another origin wrote under a decision's deterministic id (a replica can
    /// create any row) is no decision: the hub makes it all the same, under `<id>~<n>`, so a
    /// replica cannot silence a flag by writing it first, already resolved, nor starve a request
    /// by taking its grant's id.
    let made: Set<String>
    /// The teams that hold the young person's bundle, and the replicas a restriction limits it to:
    /// rights go only to a replica that can hold them (else they would be stranded, out of the
    /// pool, until the lease ends). Nil: not checked (the operator's totals).
    var audience: Set<String>?
    var restriction: Set<String>?
    /// How far ahead of hub time a decision's clock may be.
    static let clockWindowMillis: UInt64 = 3_600_000

    init(view: ScopeView, shared: ScopeView, context: DecisionContext) {
        self.view = view
        self.context = context
        let published = shared.rows.filter { $0.isAlive && $0.table == EntitlementItem.kindName }
            .compactMap { try? EntitlementItem(row: Self.values($0)) }
        // Until the hub publishes the catalogue, it is the one every replica starts with.
        catalogue = published.isEmpty ? EntitlementCatalogue.seedRecords : published
        today = CalendarDate(unixMillis: context.nowMillis)
        rows = Dictionary(grouping: view.rows.filter(\.isAlive), by: \.table)
        held = Set(view.rows.map { $0.table + "/" + $0.key })
        made = Set(view.rows.compactMap { row in
            guard let column = ["flag": "code", "ledger_entry": "kind"][row.table],
                  Escrow.value(of: row.fields[column]?.state, by: Escrow.origin) != nil else { return nil }
            return row.table + "/" + (row.key.split(separator: "~", maxSplits: 1).first.map(String.init) ?? row.key)
        })
    }

    static func values(_ row: ScopeView.Row) -> [String: FieldValue] {
        var values: [String: FieldValue] = ["id": .text(row.key)]
        for column in row.fields.keys { values[column] = row.value(column) }
        return values
    }

    /// The version of `code` in force on `date`.
    func item(_ code: String, on date: CalendarDate) -> EntitlementItem? {
        catalogue.filter { $0.code == code && $0.isInForce(on: date) }.max { $0.version < $1.version }
    }

    /// The cap of an item in its own unit (pence or a count); nil when uncapped.
    static func cap(_ item: EntitlementItem) -> Int64? {
        switch item.capKind {
        case .none: nil
        case .amount, .amountPerPeriod: item.capAmountPence
        case .count, .countPerPeriod: item.capCount
        }
    }

    /// What an award asks for, in its item's unit.
    static func requested(_ award: ScopeView.Row, counted: Bool) -> Int64 {
        max(0, award.value(counted ? "requested_count" : "requested_amount_pence").integerValue ?? 0)
    }

    static func isCounted(_ code: String, _ catalogue: [EntitlementItem]) -> Bool {
        catalogue.first { $0.code == code }.map { [.count, .countPerPeriod].contains($0.capKind) } ?? false
    }

    /// The ledger as the fold reads it.
    func lines() -> [Escrow.Line] {
        (rows["ledger_entry"] ?? []).map { row in
            // An entry the escrow origin wrote is read from its writes alone (Escrow.value(of:by:)).
            let byHub = Escrow.value(of: row.fields["kind"]?.state, by: Escrow.origin) != nil
            func value(_ column: String) -> FieldValue {
                byHub ? Escrow.value(of: row.fields[column]?.state, by: Escrow.origin) ?? .null : row.value(column)
            }
            let item = value("item_code").textValue ?? "?"
            let counted = Self.isCounted(item, catalogue)
            let kind = value("kind").textValue.flatMap(LedgerKind.init(rawValue:))
            let unit = counted ? "count" : "amount_pence"
            return Escrow.Line(id: row.key, kind: kind, item: item,
                               period: value("period_key").textValue ?? "lifetime",
                               amount: byHub ? max(0, value(unit).integerValue ?? 0) : Escrow.amount(row.fields[unit]?.state, kind: kind),
                               grant: value(CareSchema.escrowGrantID).textValue, holder: value(CareSchema.holderReplica).textValue,
                               expiresAtMillis: value(CareSchema.expiresAtMillis).integerValue, request: value(CareSchema.requestID).textValue,
                               award: value("award_id").textValue, origin: byHub ? Escrow.origin : row.origin("kind"))
        }
    }

    func decisions() -> [HubDecision] {
        var out: [HubDecision] = []
        var taken = held
        var decided = made
        /// A free row id for the decision `id`: `id` itself unless another origin's row holds it.
        func free(_ table: String, _ id: String) -> String {
            var row = id
            var attempt = 1
            while !taken.insert(table + "/" + row).inserted {
                attempt += 1
                row = id + "~\(attempt)"
            }
            return row
        }
        func flag(_ code: FlagCode, subject: (kind: String, id: String), role: String, detail: String, key: String? = nil) {
            raise(code, subject, role, detail, key)
        }
        func raise(_ code: FlagCode, _ subject: (kind: String, id: String), _ role: String, _ detail: String, _ key: String?) {
            let id = "flag-\(code.rawValue.lowercased())-\(key ?? subject.id)"
            guard decided.insert("flag/" + id).inserted else { return }
            out.append(HubDecision(table: "flag", row: free("flag", id), creates: true, values: [
                "yp_id": .text(view.scope), "code": .text(code.rawValue), "subject_kind": .text(subject.kind), "subject_id": .text(subject.id),
                "routed_to": .text(role), "detail": .text(detail), "raised_at": .integer(Int64(clamping: context.nowMillis)),
                "status": .text(FlagStatus.open.rawValue),
            ]))
        }
        let lines = lines()
        var accounts = Escrow.accounts(lines) { $0.origin == nil || $0.origin == Escrow.origin }
        let awards = (rows["award"] ?? []).sorted { $0.key < $1.key }
        // Money and counts: over the cap by another route, and commits no rights covered.
        for key in accounts.keys.sorted() {
            let account = accounts[key]!
            for forged in account.forged {
                flag(.forgedRights, subject: ("ledger_entry", forged), role: "head_of_service", detail: "GRANT_NOT_FROM_HUB")
            }
            guard let item = item(account.item, on: today), let cap = Self.cap(item) else { continue }
            for uncovered in account.uncovered {
                let line = lines.first { $0.id == uncovered }
                flag(.overCap, subject: ("award", line?.award ?? uncovered), role: "head_of_service",
                     detail: "NOT_COVERED_BY_RIGHTS ENTRY=\(uncovered) AMOUNT=\(line?.amount ?? 0)", key: uncovered)
            }
            if account.committed > cap {
                // Keyed by the number of commits, not the figures: a flag id is seen in the audit trail.
                flag(.overCap, subject: ("account", key), role: "head_of_service",
                     detail: "COMMITTED=\(account.committed) CAP=\(cap) EXCESS=\(account.committed - cap)",
                     key: "\(account.item)-\(account.period)-n\(lines.filter { $0.item == account.item && $0.period == account.period && [.commit, .partialCommit].contains($0.kind) }.count)")
            }
        }
        // Requests that wait: grant what the cap allows, refuse what it can never meet.
        let waiting: [(id: String, kind: String, item: String, period: String, needed: Int64, holder: String?, isAward: Bool)] =
            awards.compactMap { award in
                guard let status = award.value("status").textValue, status == AwardStatus.requested.rawValue || status == AwardStatus.approved.rawValue,
                      let code = award.value("item_code").textValue else { return nil }
                let counted = Self.isCounted(code, catalogue)
                let done = Escrow.committed(toward: award.key, in: lines)
                let needed = Self.requested(award, counted: counted) - done
                guard needed > 0 else { return nil }
                return (award.key, "award", code, award.value("period_key").textValue ?? "lifetime", needed,
                        award.value(CareSchema.requestedOn).textValue, true)
            } + lines.filter { $0.kind == .requestRights }.sorted { $0.id < $1.id }.map { line in
                (line.id, "ledger_entry", line.item, line.period, line.amount, line.origin?.hex, false)
            }
        for request in waiting.sorted(by: { $0.id < $1.id }) {
            guard let item = item(request.item, on: today), let cap = Self.cap(item) else { continue }
            let grantID = "grant-" + request.id
            let key = request.item + "|" + request.period
            var account = accounts[key] ?? Escrow.Account(item: request.item, period: request.period)
            guard !decided.contains("ledger_entry/" + grantID),
                  !decided.contains("flag/flag-\(FlagCode.capReached.rawValue.lowercased())-\(request.id)") else { continue }
            if account.committed.addingSaturated(request.needed) > cap {
                if request.isAward {
                    out.append(HubDecision(table: "award", row: request.id, creates: false, values: ["status": .text(AwardStatus.rejected.rawValue)]))
                }
                flag(.capReached, subject: (request.kind, request.id), role: "personal_adviser",
                     detail: "cap_reached COMMITTED=\(account.committed) CAP=\(cap) NEEDED=\(request.needed)")
                continue
            }
            guard let holder = request.holder?.lowercased(), let team = context.replicas[holder], audience?.contains(team) ?? true,
                  restriction?.contains(holder) ?? true,
                  account.committed.addingSaturated(account.outstanding).addingSaturated(request.needed) <= cap else { continue }
            let expires = Int64(clamping: context.nowMillis.addingReportingOverflow(Escrow.leaseMillis).partialValue)
            let counted = Self.isCounted(request.item, catalogue)
            decided.insert("ledger_entry/" + grantID)
            let row = free("ledger_entry", grantID)
            out.append(HubDecision(table: "ledger_entry", row: row, creates: true, values: [
                "yp_id": .text(view.scope), "item_code": .text(request.item), "period_key": .text(request.period),
                "kind": .text(LedgerKind.grantRights.rawValue), (counted ? "count" : "amount_pence"): .integer(request.needed),
                CareSchema.holderReplica: .text(holder), CareSchema.expiresAtMillis: .integer(expires), CareSchema.requestID: .text(request.id),
                "actor_id": .text("hub"), "occurred_at": .text(today.description), "reason": .text("request"),
            ].merging(request.isAward ? ["award_id": .text(request.id)] : [:]) { $1 }))
            account.grants[row] = Escrow.Grant(id: row, holder: holder, granted: request.needed, expiresAtMillis: expires, request: request.id)
            accounts[key] = account
        }
        // Eligibility, the catalogue version and the clock, for every award the hub holds.
        let person = rows[YoungPerson.kindName]?.first { $0.key == view.scope }
        let births = person?.values(CareColumn.dateOfBirth.rawValue).compactMap(\.textValue).compactMap(CalendarDate.init) ?? []
        let arrived = Dictionary(context.arrived.filter { $0.table == "award" && $0.setsLife }.map { ($0.row, $0) }) { first, _ in first }
        for award in awards {
            guard let code = award.value("item_code").textValue, let date = award.value("decision_date").textValue.flatMap(CalendarDate.init),
                  award.value("status").textValue != AwardStatus.rejected.rawValue else { continue }
            let inForce = item(code, on: date)
            if let inForce, let version = award.value("catalogue_version").integerValue, version != inForce.version {
                flag(.staleCatalogue, subject: ("award", award.key), role: "team_manager",
                     detail: "DECIDED_UNDER=\(version) IN_FORCE=\(inForce.version)")
            }
            if let inForce, births.count == 1 {
                let age = date.age(bornOn: births[0])
                if let limit = inForce.ages.limit, age >= limit {
                    flag(.eligibilityLost, subject: ("award", award.key), role: "team_manager", detail: "AGE=\(age) LIMIT=\(limit)")
                } else if let minimum = inForce.ages.minimum, age < minimum {
                    flag(.eligibilityLost, subject: ("award", award.key), role: "team_manager", detail: "AGE=\(age) MINIMUM=\(minimum)")
                }
            }
            if let change = arrived[award.key] {
                var reasons: [String] = []
                if date > CalendarDate(unixMillis: context.nowMillis.addingReportingOverflow(86_400_000).partialValue) {
                    reasons.append("DECISION_AFTER_HUB_DATE")
                }
                if let previous = context.previousContactMillis, date < CalendarDate(unixMillis: previous) {
                    reasons.append("DECISION_BEFORE_LAST_CONTACT")
                }
                if change.timestamp.physicalMillis > context.nowMillis.addingReportingOverflow(Self.clockWindowMillis).partialValue {
                    reasons.append("CLOCK_AHEAD_OF_HUB")
                }
                if !reasons.isEmpty {
                    flag(.clockSuspect, subject: ("award", award.key), role: "team_manager", detail: reasons.joined(separator: " "))
                }
            }
        }
        let resolutions = planChecks(flag: raise)
        out += resolutions
        return out
    }

    /// I4 and I8: additions to a plan closed elsewhere, and two open allocations of one role.
    /// - Returns: the hub's resolutions of allocation conflicts that no longer hold.
    func planChecks(flag: (FlagCode, (kind: String, id: String), String, String, String?) -> Void) -> [HubDecision] {
        var out: [HubDecision] = []
        // A goal or action created on a plan the hub holds closed or superseded. Its writer had
        // not seen the closure (a replica that has refuses the addition, I4), unless the writer
        // itself closed the plan after adding: judged by who saw what, not by clocks.
        let plans = Dictionary((rows["plan"] ?? []).map { ($0.key, $0) }) { first, _ in first }
        for change in context.arrived where ["goal", "action"].contains(change.table) && change.setsLife && CausalLength.isAlive(change.causalLength) {
            guard let row = rows[change.table]?.first(where: { $0.key == change.row }), let planID = row.value("plan_id").textValue,
                  case let .monotonic(register)? = plans[planID]?.fields[CareColumn.status.rawValue]?.state else { continue }
            let closures = register.terminals.candidates
            guard !closures.isEmpty,
                  !closures.contains(where: { $0.id.replica == change.id.replica && $0.id.counter > change.id.counter }) else { continue }
            flag(.addedAfterClose, (change.table, change.row), "plan_owner", "PLAN=\(planID) CLOSED_BY=\(closures[0].id.replica.hex)", nil)
        }
        // A content edit of an approved plan, its goals or actions: its writer had not seen the
        // approval (a replica that has refuses the edit, I6), so it was made concurrently with it.
        for change in context.arrived where ["plan", "goal", "action"].contains(change.table) && !change.setsLife {
            let content = change.fields.map(\.column).filter { CareReplica.contentFields(of: change.table).contains($0) }
            guard !content.isEmpty else { continue }
            let planID = change.table == "plan" ? change.row : rows[change.table]?.first { $0.key == change.row }?.value("plan_id").textValue
            guard let planID, plans[planID]?.value(CareColumn.status.rawValue).textValue == PlanStatus.approved.rawValue else { continue }
            flag(.editedAfterApproval, (change.table, change.row), "team_manager",
                 "edited concurrently with approval - re-approval required PLAN=\(planID) FIELDS=\(content.sorted().joined(separator: ","))",
                 "\(change.id.replica.hex)-\(change.id.counter)")
        }
        // Two or more open allocations of an exclusive role: both stay responsible until a person
        // ends one; the flag is resolved by the hub once one is left.
        let open = (rows["allocation"] ?? []).filter { $0.values(CareColumn.endedOn.rawValue).isEmpty }
        let byRole = Dictionary(grouping: open) { $0.value(CareColumn.role.rawValue).textValue ?? "" }
        for role in byRole.keys.sorted() where AllocationRole(rawValue: role)?.isExclusive == true && byRole[role]!.count > 1 {
            let ids = byRole[role]!.map(\.key).sorted()
            flag(.allocationConflict, (YoungPerson.kindName, view.scope), "team_manager", "ROLE=\(role) ALLOCATIONS=\(ids.joined(separator: ","))",
                 "\(view.scope)-\(role)-\(ids.joined(separator: "-"))")
        }
        for flagRow in rows["flag"] ?? [] where flagRow.value("code").textValue == FlagCode.allocationConflict.rawValue
            && flagRow.value(CareColumn.status.rawValue).textValue == FlagStatus.open.rawValue {
            let listed = (flagRow.value("detail").textValue ?? "").split(separator: "=").last.map { $0.split(separator: ",").map(String.init) } ?? []
            guard listed.filter({ id in open.contains { $0.key == id } }).count < 2 else { continue }
            out.append(HubDecision(table: "flag", row: flagRow.key, creates: false, values: [
                CareColumn.status.rawValue: .text(FlagStatus.resolved.rawValue), "resolution": .text("allocations ended: one left open"),
                "resolved_by": .text("hub"),
            ]))
        }
        return out
    }
}

/// The hub's escrow accounts, folded from its own merged view: for the operator's totals (counts
/// and sums only) and for checking `committed + outstanding ≤ cap`.
public enum HubEscrow {
    /// One account at the hub.
    public struct Entry: Sendable {
        /// The young person (hub-side only; never shown to the operator).
        public let scope: String
        /// The folded account.
        public let account: Escrow.Account
        /// The cap in force today, in the item's unit; nil when uncapped.
        public let cap: Int64?
    }

    /// Burns the rights a lost replica holds (`burn_rights`, by the hub): they stay counted
    /// against their caps for good, never granted again, since commits it made may still arrive.
    ///
    /// - Returns: how many grants were burned (a grant already burned is not burned again).
    /// - Throws: `StoreError` when the hub cannot be read or written.
    @discardableResult
    public static func burnRights(of replica: ReplicaID, hub: SQLiteHubStore, nowMillis: UInt64) throws -> Int {
        let today = CalendarDate(unixMillis: nowMillis).description
        var burned = 0
        for scope in try hub.scopes(holding: "ledger_entry") {
            let view = try hub.scopeView(scope)
            let held = Set(view.rows.map(\.key))
            let decisions = try accounts(hub, nowMillis: nowMillis).filter { $0.scope == scope }.flatMap { entry in
                entry.account.grants.values.filter { $0.holder == replica.hex && !$0.burned && $0.remaining > 0 && !held.contains("burn-" + $0.id) }
                    .sorted { $0.id < $1.id }.map { grant in
                        HubDecision(table: "ledger_entry", row: "burn-" + grant.id, creates: true, values: [
                            "yp_id": .text(scope), "item_code": .text(entry.account.item), "period_key": .text(entry.account.period),
                            "kind": .text(LedgerKind.burnRights.rawValue), (isCounted(entry.account.item) ? "count" : "amount_pence"): .integer(grant.remaining),
                            CareSchema.escrowGrantID: .text(grant.id), "actor_id": .text("hub"), "occurred_at": .text(today), "reason": .text("replica lost"),
                        ])
                    }
            }
            try hub.publish(decisions: decisions, scope: scope, nowMillis: nowMillis)
            burned += decisions.count
        }
        return burned
    }

    /// Whether an item of the built-in catalogue is counted (else its unit is pence).
    public static func isCounted(_ code: String) -> Bool { EntitlementDesk.isCounted(code, EntitlementCatalogue.seedRecords) }

    /// Every account the hub holds, by young person, item and period.
    ///
    /// - Throws: `StoreError` when the hub cannot be read.
    public static func accounts(_ hub: SQLiteHubStore, nowMillis: UInt64) throws -> [Entry] {
        let shared = try hub.scopeView("")
        let context = DecisionContext(pusher: Escrow.origin, pusherTeam: nil, arrived: [], nowMillis: nowMillis, previousContactMillis: nil,
                                      replicas: [:])
        return try hub.scopes(holding: "ledger_entry").flatMap { scope -> [Entry] in
            let desk = EntitlementDesk(view: try hub.scopeView(scope), shared: shared, context: context)
            let accounts = Escrow.accounts(desk.lines()) { $0.origin == nil || $0.origin == Escrow.origin }
            return accounts.keys.sorted().map { key in
                let account = accounts[key]!
                return Entry(scope: scope, account: account, cap: desk.item(account.item, on: desk.today).flatMap(EntitlementDesk.cap))
            }
        }
    }
}
