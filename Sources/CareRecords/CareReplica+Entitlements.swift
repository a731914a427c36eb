import SyncCore
import SyncStore

/// Award requests and derived balances. Capped spending with escrow rights (bounded counters)
/// comes with the entitlements issue; here a request is recorded after the checks a replica can
/// make alone.
extension CareReplica {
    /// Records an award request for a young person, after checking the catalogue version in force
    /// on the decision date (I16), the age limits (I3, I14) and the item's required fields.
    @discardableResult
    public func requestAward(fields text: [String: String], author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind("award")
        for name in text.keys.sorted() {
            guard let field = kind.field(name) else { throw Self.unknownField(kind, name) }
            if field.automatic || name == "status" {
                throw CareError("AUTOMATIC_FIELD", "award.\(name) is set by caresync, not by hand")
            }
        }
        var values = try parse(kind, text)
        try checkValues(kind, values, creating: true)
        let id = ids.next()
        values["created_by"] = .text(author)
        values["status"] = .text("requested")
        try store.write(author: author) { transaction in
            let view = try transaction.view
            try checkReferences(kind, values, view)
            let code = values["item_code"]!.textValue!
            let date = values["decision_date"]!.textValue!
            let item = try catalogueItem(code: code, on: date, view: view)
            values["catalogue_version"] = item["version"]
            try checkAge(person: values["yp_id"]!.textValue!, on: date, minimum: item["min_age_incl"]?.integerValue.map(Int.init),
                         limit: item["max_age_excl"]?.integerValue.map(Int.init), what: "an award of \(code)", view: view)
            if let required = item["requires_fields"]?.textValue {
                for field in required.split(separator: ",").map(String.init) where values[field]?.isNull ?? true {
                    throw CareError("REQUIRED_FIELD", "\(code) awards need \(field)=… (I2)")
                }
            }
            switch item["cap_kind"]?.textValue {
            case "count", "count_per_period":
                guard let count = values["requested_count"]?.integerValue, count > 0 else {
                    throw CareError("REQUIRED_FIELD", "\(code) is counted: give requested_count=N")
                }
            case "amount", "amount_per_period":
                guard let amount = values["requested_amount_pence"]?.integerValue, amount > 0 else {
                    throw CareError("REQUIRED_FIELD", "\(code) is an amount: give requested_amount_pence=… (pence or £)")
                }
            default:
                break
            }
            values["period_key"] = .text(try periodKey(item: item, person: values["yp_id"]!.textValue!, on: date, view: view))
            try transaction.createRecord("award", id: id, values: values)
        }
        return id
    }

    /// The version of an item in force on a date.
    func catalogueItem(code: String, on dateText: String, view: ReadView) throws -> [String: FieldValue] {
        guard let date = CalendarDate(dateText) else { throw CareError("BAD_VALUE", "decision_date must be a date like 2025-06-23") }
        let versions = try view.rows("entitlement_item", where: ["item_code": .text(code)])
        guard !versions.isEmpty else { throw CareError("UNKNOWN_ITEM", "no entitlement item \(code); see `caresync catalogue`") }
        let inForce = versions.filter { item in
            let from = item["effective_from"]?.textValue.flatMap(CalendarDate.init)
            let to = item["effective_to"]?.textValue.flatMap(CalendarDate.init)
            return (from.map { $0 <= date } ?? true) && (to.map { date <= $0 } ?? true)
        }
        guard let item = inForce.max(by: { ($0["version"]?.integerValue ?? 0) < ($1["version"]?.integerValue ?? 0) }) else {
            throw CareError("NOT_IN_FORCE", "no version of \(code) is in force on \(date)")
        }
        return item
    }

    func periodKey(item: [String: FieldValue], person: String, on dateText: String, view: ReadView) throws -> String {
        switch item["period"]?.textValue {
        case "per_birthday":
            guard let dob = try view.row("young_person", id: person)?["date_of_birth"]?.textValue.flatMap(CalendarDate.init),
                  let date = CalendarDate(dateText) else { return "lifetime" }
            return "age-\(date.age(bornOn: dob))"
        case let period?: return period
        case nil: return "lifetime"
        }
    }

    /// Derived, never stored: committed spend or count per item and period for a young person,
    /// folded from the append-only ledger (commit − release − refund ± adjust).
    public func balances(person id: String) throws -> [EntitlementBalance] {
        let entries = try list("ledger_entry", where: ["yp_id": id])
        var totals: [String: (item: String, period: String, pence: Int64, count: Int64)] = [:]
        for entry in entries {
            let item = entry["item_code"]?.textValue ?? "?"
            let period = entry["period_key"]?.textValue ?? "lifetime"
            let sign: Int64 = switch entry["kind"]?.textValue {
            case "commit", "adjust": 1
            case "release", "refund": -1
            default: 0
            }
            var total = totals[item + "|" + period] ?? (item, period, 0, 0)
            // Entries can come from any replica: saturate rather than trap on extreme values.
            total.pence = Self.saturating(total.pence, sign, entry["amount_pence"]?.integerValue ?? 0)
            total.count = Self.saturating(total.count, sign, entry["count"]?.integerValue ?? 0)
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

public struct EntitlementBalance: Sendable, Equatable {
    public let itemCode: String
    public let periodKey: String
    public let committedPence: Int64
    public let committedCount: Int64
}
