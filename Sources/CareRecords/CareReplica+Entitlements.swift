import SyncCore
import SyncStore

/// Award requests and derived balances. Capped spending with escrow rights (bounded counters)
/// comes with the entitlements issue; here a request is recorded after the checks a replica can
/// make alone.
extension CareReplica {
    /// Records an award request for a young person, after checking the catalogue version in force
    /// on the decision date (I16), the age limits (I3, I14) and the item's required fields.
    ///
    /// ```swift
    /// let award = try replica.requestAward(fields: ["yp_id": ava, "item_code": "DRIVING", "requested_count": "2",
    ///                                               "decision_date": "2025-06-23"], author: "alex")
    /// ```
    ///
    /// - Parameters:
    ///   - text: the award's fields as typed; its status and catalogue version are set here.
    ///   - author: the worker requesting.
    /// - Returns: the new award's id.
    /// - Throws: `CareError` `.unknownItem`, `.notInForce`, `.ageLimit`, `.dobConflict`,
    ///   `.noDateOfBirth`, `.afterDeath`, `.requiredField` and the checks of `add`; `StoreError`.
    @discardableResult
    public func requestAward(fields text: [String: String], author: String) throws -> String {
        try request(award: text, author: author).award
    }

    /// Records an award request (as ``requestAward(fields:author:)``) and commits it at once when
    /// the rights this replica holds for its item cover it (a capped item; I1/I2). Otherwise it
    /// waits, and the outcome says what is available here and what needs the hub.
    ///
    /// - Throws: as ``requestAward(fields:author:)``.
    public func request(award text: [String: String], author: String) throws -> AwardOutcome {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind("award")
        for name in text.keys.sorted() {
            guard let field = kind.field(name) else { throw Self.unknownField(kind, name) }
            if field.automatic || name == CareColumn.status.rawValue {
                throw CareError(.automaticField, "award.\(name) is set automatically, not by hand", kind: kind.name, field: name)
            }
        }
        var values = try parse(kind, text)
        try checkValues(kind, values, editing: nil)
        let id = ids.next()
        values[.createdBy] = .text(author)
        values[.status] = .text(AwardStatus.requested.rawValue)
        values[CareSchema.requestedOn] = .text(store.replicaID.hex)
        return try store.write(author: author) { transaction in
            let view = try transaction.view
            try checkReferences(kind, values, view)
            let code = values[.itemCode]!.textValue!
            let date = values[.decisionDate]!.textValue!
            let item = try catalogueItem(code: code, on: date, view: view)
            values[.catalogueVersion] = .integer(item.version)
            try checkAge(person: values[.personID]!.textValue!, on: date, minimum: item.ages.minimum.map(Int.init),
                         limit: item.ages.limit.map(Int.init), what: "an award of \(code)", view: view)
            for field in item.requiredFields where values[field]?.isNull ?? true {
                throw CareError(.requiredField, "\(code) awards need \(field)=… (I2)", kind: kind.name, field: field)
            }
            switch item.capKind {
            case .count, .countPerPeriod:
                guard let count = values[.requestedCount]?.integerValue, count > 0 else {
                    throw CareError(.requiredField, "\(code) is counted: give requested_count=N", kind: kind.name,
                                    field: CareColumn.requestedCount.rawValue)
                }
            case .amount, .amountPerPeriod:
                guard let amount = values[.requestedAmountPence]?.integerValue, amount > 0 else {
                    throw CareError(.requiredField, "\(code) is an amount: give requested_amount_pence=… (pence or £)", kind: kind.name,
                                    field: CareColumn.requestedAmountPence.rawValue)
                }
            case .none:
                break
            }
            values[.periodKey] = .text(try periodKey(item: item, person: values[.personID]!.textValue!, on: date, view: view))
            try transaction.createRecord("award", id: id, values: values)
            let counted = [.count, .countPerPeriod].contains(item.capKind)
            guard item.capKind != .none else {
                return AwardOutcome(award: id, status: AwardStatus.requested.rawValue, committed: 0, waiting: 0, availableHere: 0, counted: counted)
            }
            return try commit(award: id, partial: false, override: nil, author: author, transaction: &transaction)
        }
    }

    /// The version of an item in force on a date.
    func catalogueItem(code: String, on dateText: String, view: ReadView) throws -> EntitlementItem {
        guard let date = CalendarDate(dateText) else {
            throw CareError(.badValue, "decision_date must be a date like 2025-06-23", kind: "award", field: CareColumn.decisionDate.rawValue)
        }
        let versions = try view.rows(EntitlementItem.kindName, where: [CareColumn.itemCode.rawValue: .text(code)]).map(EntitlementItem.init(row:))
        guard !versions.isEmpty else {
            throw CareError(.unknownItem, "no entitlement item \(code) in the catalogue", kind: EntitlementItem.kindName)
        }
        guard let item = versions.filter({ $0.isInForce(on: date) }).max(by: { $0.version < $1.version }) else {
            throw CareError(.notInForce, "no version of \(code) is in force on \(date)", kind: EntitlementItem.kindName)
        }
        return item
    }

    func periodKey(item: EntitlementItem, person: String, on dateText: String, view: ReadView) throws -> String {
        switch item.period {
        case "per_birthday":
            guard let dob = try view.row(YoungPerson.kindName, id: person)?[.dateOfBirth]?.textValue.flatMap(CalendarDate.init),
                  let date = CalendarDate(dateText) else { return "lifetime" }
            return "age-\(date.age(bornOn: dob))"
        case let period: return period
        }
    }

    /// Derived, never stored: committed spend or count per item and period for a young person,
    /// folded from the append-only ledger (commit − release − refund ± adjust).
    ///
    /// - Parameter id: the young person.
    /// - Returns: one balance per item and period, sorted by item then period.
    /// - Throws: `StoreError` when the replica cannot be read.
    public func balances(person id: String) throws -> [EntitlementBalance] {
        let entries = try list("ledger_entry", where: [CareColumn.personID.rawValue: id])
        var totals: [String: (item: String, period: String, pence: Int64, count: Int64)] = [:]
        for entry in entries {
            let item = entry[.itemCode]?.textValue ?? "?"
            let period = entry[.periodKey]?.textValue ?? "lifetime"
            let sign: Int64 = switch entry[.kind]?.textValue {
            case "commit", "adjust": 1
            case "release", "refund": -1
            default: 0
            }
            var total = totals[item + "|" + period] ?? (item, period, 0, 0)
            // Entries can come from any replica: saturate rather than trap on extreme values.
            total.pence = Self.saturating(total.pence, sign, entry[.amountPence]?.integerValue ?? 0)
            total.count = Self.saturating(total.count, sign, entry[.count]?.integerValue ?? 0)
            totals[item + "|" + period] = total
        }
        return totals.values.sorted { ($0.item, $0.period) < ($1.item, $1.period) }
            .map { EntitlementBalance(itemCode: $0.item, periodKey: $0.period, committedPence: $0.pence, committedCount: $0.count) }
    }
}

extension CareReplica {
    /// `total + sign × amount`, held at the ends of Int64 instead of overflowing.
    static func saturating(_ total: Int64, _ sign: Int64, _ amount: Int64) -> Int64 {
        let (term, termOverflow) = amount.multipliedReportingOverflow(by: sign)
        let delta = termOverflow ? (sign < 0 ? Int64.max : Int64.min) : term
        let (sum, overflow) = total.addingReportingOverflow(delta)
        return overflow ? (delta > 0 ? Int64.max : Int64.min) : sum
    }
}

/// What has been committed of one entitlement item in one period, folded from the ledger.
public struct EntitlementBalance: Sendable, Equatable {
    /// The catalogue item.
    public let itemCode: String
    /// The cap period (`lifetime`, `age-18`…).
    public let periodKey: String
    /// Money committed, in pence.
    public let committedPence: Int64
    /// Count committed.
    public let committedCount: Int64
}
