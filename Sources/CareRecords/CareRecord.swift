import SyncCore

/// A typed view of one kind of care record, after GRDB's `FetchableRecord` (`init(row:)`) and
/// `PersistableRecord` (`fields`, what a write stores): the rules and the CLI read `plan.status`,
/// not `row["status"]?.textValue ?? "draft"`.
///
/// ```swift
/// let plan = try Plan(row: replica.record("plan", id: planID))
/// if plan.status.isFrozen { … }
/// ```
public protocol CareRecord: Sendable {
    /// The record kind (`CareSchema.kind(_:)`) this type views.
    static var kindName: String { get }
    /// Reads a stored row.
    ///
    /// - Parameter row: the row's values by column name, as `CareReplica.record(_:id:)` returns it.
    /// - Throws: `CareError` `.badRecord`, naming the kind, id and column, when a field the type
    ///   needs is missing or of the wrong type (never the value itself).
    init(row: [String: FieldValue]) throws
    /// The values the view holds, by column name, as a write stores them (nil fields left out).
    var fields: [String: FieldValue] { get }
}

/// Reads typed fields of one row, throwing `.badRecord` with the kind, id and column.
struct RowReader {
    let kind: String
    let row: [String: FieldValue]

    var id: String? { row[.id]?.textValue }

    func bad(_ column: CareColumn, _ expected: String) -> CareError {
        CareError(.badRecord, "\(kind) \(id ?? "?") has no \(expected) in \(column.rawValue)", kind: kind, id: id, field: column.rawValue)
    }

    func text(_ column: CareColumn) throws -> String {
        guard let text = try optionalText(column) else { throw bad(column, "text") }
        return text
    }

    func optionalText(_ column: CareColumn) throws -> String? {
        switch row[column] {
        case nil, .null?: return nil
        case let .text(text)?: return text
        default: throw bad(column, "text")
        }
    }

    func integer(_ column: CareColumn) throws -> Int64 {
        guard let number = try optionalInteger(column) else { throw bad(column, "integer") }
        return number
    }

    func optionalInteger(_ column: CareColumn) throws -> Int64? {
        switch row[column] {
        case nil, .null?: return nil
        case let .integer(number)?: return number
        default: throw bad(column, "integer")
        }
    }

    func date(_ column: CareColumn) throws -> CalendarDate? {
        guard let text = try optionalText(column) else { return nil }
        guard let date = CalendarDate(text) else { throw bad(column, "date") }
        return date
    }

    /// A choice or status; `missing` when the field is null (a row written before the field was set).
    func value<T: RawRepresentable<String>>(_ column: CareColumn, missing: T? = nil) throws -> T {
        guard let text = try optionalText(column) else {
            if let missing { return missing }
            throw bad(column, "value")
        }
        guard let value = T(rawValue: text) else { throw bad(column, "known value") }
        return value
    }
}

extension Dictionary where Key == String, Value == FieldValue {
    /// Puts a value, leaving out nil.
    mutating func put(_ column: CareColumn, _ value: FieldValue?) {
        if let value, !value.isNull { self[column] = value }
    }
}

/// A young person: the record every other care record belongs to.
public struct YoungPerson: CareRecord, Equatable {
    /// The `young_person` kind.
    public static let kindName = "young_person"
    /// The record id, which is also the scope of every record about this person.
    public let id: String
    /// The recorded date of birth, if one is recorded and valid (it drives eligibility, I3).
    public let dateOfBirth: CalendarDate?
    /// The recorded date of death, if any (I14).
    public let dateOfDeath: CalendarDate?
    /// Whether the record is restricted (sticky).
    public let restricted: Restriction

    /// Reads a stored row (see `CareRecord.init(row:)`).
    ///
    /// - Throws: `CareError` `.badRecord` naming the column that is missing or ill-typed.
    public init(row: [String: FieldValue]) throws {
        let reader = RowReader(kind: Self.kindName, row: row)
        id = try reader.text(.id)
        dateOfBirth = try reader.date(.dateOfBirth)
        dateOfDeath = try reader.date(.dateOfDeath)
        restricted = try reader.value(.restricted, missing: Restriction.no)
    }

    /// The view's values by column name, nil fields left out.
    public var fields: [String: FieldValue] {
        var fields: [String: FieldValue] = [:]
        fields.put(.id, .text(id))
        fields.put(.dateOfBirth, dateOfBirth.map { .text($0.description) })
        fields.put(.dateOfDeath, dateOfDeath.map { .text($0.description) })
        fields.put(.restricted, .text(restricted.rawValue))
        return fields
    }
}

/// One version of a plan (care, pathway, PEP…): its identity, lineage and status.
public struct Plan: CareRecord, Equatable {
    /// The `plan` kind.
    public static let kindName = "plan"
    /// The record id of this version.
    public let id: String
    /// The young person the plan is for.
    public let personID: String
    /// The kind of plan (`pathway`, `pep`…).
    public let kind: String
    /// Shared by every version of the plan; the first version's id.
    public let lineageID: String
    /// This version's number within the lineage, from 1.
    public let versionNumber: Int64
    /// The version this one replaces, if any.
    public let supersedesID: String?
    /// Where the plan is in its life; a plan written before its status was set is a draft.
    public let status: PlanStatus

    /// A plan version from its parts.
    public init(id: String, personID: String, kind: String, lineageID: String, versionNumber: Int64, supersedesID: String?,
                status: PlanStatus) {
        self.id = id
        self.personID = personID
        self.kind = kind
        self.lineageID = lineageID
        self.versionNumber = versionNumber
        self.supersedesID = supersedesID
        self.status = status
    }

    /// Reads a stored row (see `CareRecord.init(row:)`).
    ///
    /// - Throws: `CareError` `.badRecord` naming the column that is missing or ill-typed.
    public init(row: [String: FieldValue]) throws {
        let reader = RowReader(kind: Self.kindName, row: row)
        id = try reader.text(.id)
        personID = try reader.text(.personID)
        kind = try reader.text(.kind)
        lineageID = try reader.optionalText(.lineageID) ?? id
        versionNumber = try reader.optionalInteger(.versionNumber) ?? 1
        supersedesID = try reader.optionalText(.supersedesID)
        status = try reader.value(.status, missing: PlanStatus.draft)
    }

    /// The view's values by column name, nil fields left out.
    public var fields: [String: FieldValue] {
        var fields: [String: FieldValue] = [:]
        fields.put(.id, .text(id))
        fields.put(.personID, .text(personID))
        fields.put(.kind, .text(kind))
        fields.put(.lineageID, .text(lineageID))
        fields.put(.versionNumber, .integer(versionNumber))
        fields.put(.supersedesID, supersedesID.map(FieldValue.text))
        fields.put(.status, .text(status.rawValue))
        return fields
    }
}

/// One version of an entitlement catalogue item (hub-owned, immutable per version).
public struct EntitlementItem: CareRecord, Equatable {
    /// The `entitlement_item` kind.
    public static let kindName = "entitlement_item"
    /// The item code (`DRIVING`), shared by its versions.
    public let code: String
    /// The catalogue version of this item.
    public let version: Int64
    /// The item's name.
    public let name: String
    /// How the item is capped.
    public let capKind: CapKind
    /// The cap in pence, for an amount cap.
    public let capAmountPence: Int64?
    /// The cap as a count, for a count cap.
    public let capCount: Int64?
    /// The cap period: `lifetime`, `per_birthday`…
    public let period: String
    /// The youngest age eligible (inclusive), and the age limit (exclusive) (I3).
    public let ages: (minimum: Int64?, limit: Int64?)
    /// Fields an award of this item must carry.
    public let requiredFields: [String]
    /// First and last day in force (I16); nil is open-ended.
    public let inForce: (from: CalendarDate?, to: CalendarDate?)

    /// Reads a stored row (see `CareRecord.init(row:)`).
    ///
    /// - Throws: `CareError` `.badRecord` naming the column that is missing or ill-typed.
    public init(row: [String: FieldValue]) throws {
        let reader = RowReader(kind: Self.kindName, row: row)
        code = try reader.text(.itemCode)
        version = try reader.optionalInteger(.version) ?? 0
        name = try reader.optionalText(.name) ?? ""
        capKind = try reader.value(.capKind, missing: CapKind.none)
        capAmountPence = try reader.optionalInteger(.capAmountPence)
        capCount = try reader.optionalInteger(.capCount)
        period = try reader.optionalText(.period) ?? "lifetime"
        ages = (try reader.optionalInteger(.minimumAge), try reader.optionalInteger(.ageLimit))
        requiredFields = (try reader.optionalText(.requiresFields)).map { $0.split(separator: ",").map(String.init) } ?? []
        inForce = (try reader.date(.effectiveFrom), try reader.date(.effectiveTo))
    }

    /// The view's values by column name, nil fields left out.
    public var fields: [String: FieldValue] {
        var fields: [String: FieldValue] = [:]
        fields.put(.itemCode, .text(code))
        fields.put(.version, .integer(version))
        fields.put(.name, .text(name))
        fields.put(.capKind, .text(capKind.rawValue))
        fields.put(.capAmountPence, capAmountPence.map(FieldValue.integer))
        fields.put(.capCount, capCount.map(FieldValue.integer))
        fields.put(.period, .text(period))
        fields.put(.minimumAge, ages.minimum.map(FieldValue.integer))
        fields.put(.ageLimit, ages.limit.map(FieldValue.integer))
        fields.put(.requiresFields, requiredFields.isEmpty ? nil : .text(requiredFields.joined(separator: ",")))
        fields.put(.effectiveFrom, inForce.from.map { .text($0.description) })
        fields.put(.effectiveTo, inForce.to.map { .text($0.description) })
        return fields
    }

    /// Whether this version is in force on `date` (both ends inclusive).
    public func isInForce(on date: CalendarDate) -> Bool {
        (inForce.from.map { $0 <= date } ?? true) && (inForce.to.map { date <= $0 } ?? true)
    }

    /// The cap as a person reads it: `£123.45`, `5`, or `–` for an uncapped item.
    public var capDescription: String {
        switch capKind {
        case .count, .countPerPeriod: String(capCount ?? 0)
        case .amount, .amountPerPeriod: Money.format(capAmountPence ?? 0)
        case .none: "–"
        }
    }

    /// Equal when every field is.
    public static func == (lhs: EntitlementItem, rhs: EntitlementItem) -> Bool { lhs.fields == rhs.fields }
}
