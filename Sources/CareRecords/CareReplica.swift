import SyncCore
import SyncIdentity
import SyncEngine
import SyncStore

/// A team's replica of care records: the generic store plus the domain's rules.
///
/// Every edit runs its checks and its writes in one store transaction, so a check never sees a
/// state that another edit changes before the write lands.
public final class CareReplica: Sendable {
    /// The generic replica underneath: status, sync, bundles, history.
    public let store: ReplicaStore
    let wallClock: any WallClock
    let ids: RecordIDGenerator

    init(store: ReplicaStore, wallClock: any WallClock, ids: RecordIDGenerator) {
        self.store = store
        self.wallClock = wallClock
        self.ids = ids
    }

    /// Creates a replica file with schema v1 and the published entitlement catalogue.
    ///
    /// ```swift
    /// let replica = try CareReplica.create(at: "alex.db", name: "Alex (PA team)", wallClock: clock, random: .system)
    /// let ava = try replica.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun",
    ///                                                    "date_of_birth": "2007-03-14"], author: "alex")
    /// ```
    ///
    /// - Parameters:
    ///   - path: the new file; nothing may exist there.
    ///   - name: a display name for the replica (team or device).
    ///   - wallClock: the time of every edit and of record ids.
    ///   - random: the source of the replica id (unless `replicaID` is given) and of record ids.
    ///   - replicaID: a chosen replica id, for tests and simulations.
    ///   - maxClockSkewMillis: how far ahead of this clock a received change may be.
    /// - Returns: the open replica.
    /// - Throws: `StoreError` when the file exists or cannot be created.
    public static func create(at path: String, name: String, wallClock: any WallClock, random: RandomSource, replicaID: ReplicaID? = nil,
                              maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis) throws -> CareReplica {
        var generator = random
        let store = try ReplicaStore.create(at: path, schema: CareSchema.schema,
                                            replicaID: replicaID ?? ReplicaID.random(using: &generator), name: name,
                                            wallClock: wallClock, random: &generator, maxClockSkewMillis: maxClockSkewMillis,
                                            hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
        _ = try store.apply(EntitlementCatalogue.publishedChanges())
        return CareReplica(store: store, wallClock: wallClock, ids: RecordIDGenerator(wallClock: wallClock, random: random))
    }

    /// Opens an existing replica; `.readOnly` for commands that only read, so they never change the file.
    ///
    /// ```swift
    /// let replica = try CareReplica.open(at: "alex.db", wallClock: clock, random: .system, access: .readOnly)
    /// let conflicts = try replica.conflicts()
    /// ```
    ///
    /// - Parameters:
    ///   - path: a replica file made by `create`.
    ///   - wallClock: the time of every edit and of record ids.
    ///   - random: the source of record ids.
    ///   - maxClockSkewMillis: how far ahead of this clock a received change may be.
    ///   - access: `.readWrite` (the default) or `.readOnly`.
    /// - Returns: the open replica.
    /// - Throws: `StoreError` when the file is missing, is not a replica, or has a newer schema.
    public static func open(at path: String, wallClock: any WallClock, random: RandomSource,
                            maxClockSkewMillis: UInt64 = HybridClock.defaultMaxClockSkewMillis,
                            access: StoreAccess = .readWrite) throws -> CareReplica {
        var generator = random
        let store = try ReplicaStore.open(at: path, schema: CareSchema.schema, wallClock: wallClock,
                                          maxClockSkewMillis: maxClockSkewMillis, access: access,
                                          hubKeyedOrigins: EntitlementCatalogue.hubOrigins,
                                          upgradeKey: access == .readWrite ? SigningKey(random: &generator) : nil)
        return CareReplica(store: store, wallClock: wallClock, ids: RecordIDGenerator(wallClock: wallClock, random: random))
    }

    /// Today's UTC date by the replica's clock: the date ages and "not in the future" are judged on.
    public var today: CalendarDate { CalendarDate(unixMillis: wallClock.nowMillis()) }

    // MARK: adding and editing

    /// Adds a record of `kind` from `field=value` text, returning its new id. The checks and the
    /// write run in one transaction: required fields, formats and ranges, references, and the
    /// kind's rules (a goal only on an open plan, I4/I6; a PA allocation only from 14 to 25, I3).
    ///
    /// ```swift
    /// let plan = try replica.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "Pathway plan 2025"], author: "alex")
    /// ```
    ///
    /// - Parameters:
    ///   - kindName: a record kind of `CareSchema.kinds` (awards go through `requestAward`).
    ///   - text: field values as typed; an empty value is no value.
    ///   - author: the worker recorded as the author.
    /// - Returns: the new record's id.
    /// - Throws: `CareError` naming the rule or check that refused (nothing is written then);
    ///   `StoreError` when the replica cannot be written.
    @discardableResult
    public func add(_ kindName: String, fields text: [String: String], author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        switch kind.name {
        case "entitlement_item":
            throw CareError(.hubOwned, "the entitlement catalogue is published by the hub; replicas only read it", kind: kind.name)
        case "ledger_entry":
            throw CareError(.ledgerOnly, "ledger entries are written by the entitlement engine, not by hand", kind: kind.name)
        case "flag":
            throw CareError(.hubOwned, "flags are raised by the hub's checks at merge; resolve them with `flags resolve`", kind: kind.name)
        case "approval":
            throw CareError(.useApprove, "an approval is recorded by approving a plan, which binds it to the plan's content", kind: kind.name)
        case "award": return try requestAward(fields: text, author: author)
        default: break
        }
        try Self.checkAssignable(kind, text.keys, editing: false)
        var values = try parse(kind, text)
        try checkValues(kind, values, editing: nil)
        let id = ids.next()
        if kind.field(CareColumn.createdBy.rawValue) != nil { values[.createdBy] = .text(author) }
        try store.write(author: author) { transaction in
            try checkReferences(kind, values, transaction.view)
            try prepareNew(kind, id: id, values: &values, author: author, view: transaction.view)
            try transaction.createRecord(kind.name, id: id, values: values)
        }
        return id
    }

    /// Edits fields of a record from `field=value` text (an empty value clears a field), with the
    /// checks `add` makes and the edit rules (frozen plans, finalised visits, forward-only statuses).
    ///
    /// - Parameters:
    ///   - kindName: the record's kind.
    ///   - id: the record.
    ///   - text: the fields to change, at least one.
    ///   - author: the worker recorded as the author.
    /// - Throws: `CareError` naming the rule or check that refused; `StoreError` when the replica
    ///   cannot be written.
    public func edit(_ kindName: String, id: String, fields text: [String: String], author: String) throws {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        guard !text.isEmpty else { throw CareError(.nothingToEdit, "give at least one field to change", kind: kind.name, id: id) }
        try Self.checkAssignable(kind, text.keys, editing: true)
        try edit(kind, id: id, values: try parse(kind, text), author: author)
    }

    /// Edits typed values: the path `edit` and `resolve` share, with the checks `add` makes.
    func edit(_ kind: RecordKind, id: String, values: [String: FieldValue], author: String) throws {
        try checkValues(kind, values, editing: id)
        try store.write(author: author) { transaction in
            guard let current = try transaction.view.row(kind.name, id: id) else { throw Self.notFound(kind.name, id) }
            try checkReferences(kind, values, transaction.view)
            try checkEdit(kind, id: id, current: current, values: values, view: transaction.view)
            try transaction.update(kind.name, id: id, values: values)
        }
    }

    /// Adds an element to a set field (alerts, involved teams, consent to share).
    ///
    /// - Throws: `CareError` `.unknownField`, `.notASet`, `.badValue` (an empty element); `StoreError`.
    public func setAdd(_ kindName: String, id: String, field name: String, element: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        try Self.requireSet(kind, name, element: element)
        try store.write(author: author) { transaction in
            try transaction.add(kind.name, id: id, column: name, element: .text(element))
        }
    }

    /// Removes an element from a set field; only the additions this replica has seen are removed.
    ///
    /// - Throws: `CareError` `.unknownField`, `.notASet`, `.badValue` (an empty element); `StoreError`.
    public func setRemove(_ kindName: String, id: String, field name: String, element: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        try Self.requireSet(kind, name, element: element)
        try store.write(author: author) { transaction in
            try transaction.remove(kind.name, id: id, column: name, element: .text(element))
        }
    }

    /// Deletes a record of a deletable kind (only reminders; statutory records are never deleted).
    ///
    /// - Throws: `CareError` `.notDeletable` (I10); `StoreError` when there is no such record.
    public func delete(_ kindName: String, id: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        let kind = try Self.kind(kindName)
        guard kind.deletable else {
            throw CareError(.notDeletable, "\(kind.name) records are never deleted (I10); set a void or closed status instead",
                            kind: kind.name, id: id)
        }
        try store.write(author: author) { transaction in try transaction.delete(kind.name, id: id) }
    }

    // MARK: reading

    /// One record's current values by field name.
    ///
    /// - Throws: `CareError` `.unknownKind` or `.notFound`; `StoreError` when the replica cannot be read.
    public func record(_ kindName: String, id: String) throws -> [String: FieldValue] {
        let kind = try Self.kind(kindName)
        guard let row = try store.read({ try $0.row(kind.name, id: id) }) else { throw Self.notFound(kind.name, id) }
        return row
    }

    /// Records of a kind whose fields equal the given values.
    ///
    /// - Parameters:
    ///   - kindName: the kind to list.
    ///   - filters: field values as typed (`["plan_id": id]`); `id` filters by record id.
    /// - Returns: the matching records' values by field name.
    /// - Throws: `CareError` `.unknownKind`, `.unknownField`, `.badValue`; `StoreError`.
    public func list(_ kindName: String, where filters: [String: String] = [:]) throws -> [[String: FieldValue]] {
        let kind = try Self.kind(kindName)
        var parsed: [String: FieldValue] = [:]
        for (name, value) in filters {
            if name == "id" { parsed[name] = .text(value); continue }
            guard let field = kind.field(name) else { throw Self.unknownField(kind, name) }
            parsed[name] = try Self.parse(field, value, kind: kind)
        }
        return try store.read { try $0.rows(kind.name, where: parsed) }
    }

    // MARK: helpers

    static func kind(_ name: String) throws -> RecordKind {
        guard let kind = CareSchema.kind(name) else {
            throw CareError(.unknownKind, "unknown record kind '\(name)'; kinds: \(CareSchema.kinds.map(\.name).joined(separator: ", "))")
        }
        return kind
    }

    static func unknownField(_ kind: RecordKind, _ name: String) -> CareError {
        CareError(.unknownField, "\(kind.name) has no field '\(name)'; fields: \(kind.fields.filter { !$0.automatic }.map(\.name).joined(separator: ", "))",
                  kind: kind.name)
    }

    static func notFound(_ kind: String, _ id: String) -> CareError {
        CareError(.notFound, "no \(kind) with id \(id) on this replica", kind: kind, id: id)
    }

    static func requireSet(_ kind: RecordKind, _ name: String, element: String) throws {
        guard let field = kind.field(name) else { throw unknownField(kind, name) }
        guard case .set = field.format else { throw CareError(.notASet, "\(kind.name).\(name) is not a set field", kind: kind.name, field: name) }
        guard !element.trimmingWhitespace().isEmpty else {
            throw CareError(.badValue, "\(kind.name).\(name): an element cannot be empty", kind: kind.name, field: name)
        }
    }

    /// Whether a person may give these fields: known, not automatic, not a set (sets are added to
    /// and removed from, never assigned), and, when editing, not written-once.
    static func checkAssignable(_ kind: RecordKind, _ names: some Sequence<String>, editing: Bool) throws {
        for name in names.sorted() {
            guard let field = kind.field(name) else { throw unknownField(kind, name) }
            if field.automatic {
                throw CareError(.automaticField, "\(kind.name).\(name) is set automatically, not by hand", kind: kind.name, field: name)
            }
            if editing, case .immutable = field.policy {
                throw CareError(.immutableField, "\(kind.name).\(name) is written once and cannot change (I10); record a correction instead",
                                kind: kind.name, field: name)
            }
            if case .set = field.format {
                throw CareError(.setField, "\(kind.name).\(name) is a set: elements are added and removed one at a time", kind: kind.name, field: name)
            }
        }
    }

    /// The one validation of typed values, for add, edit, resolve and award requests: required
    /// fields present (and never cleared), dates in a plausible window, numbers in their range,
    /// and the per-kind rules that need no other record (a date of birth is not in the future).
    ///
    /// `editing` is the id of the record edited, nil when one is created: an error then carries no
    /// id, and a program can show how to create one.
    func checkValues(_ kind: RecordKind, _ values: [String: FieldValue], editing id: String?) throws {
        let creating = id == nil
        for name in kind.required {
            let value = values[name]
            let blank = value.map { $0.isNull || $0.textValue?.trimmingWhitespace().isEmpty == true } ?? creating
            guard !blank else {
                throw creating ? CareError(.requiredField, "\(kind.name) needs \(name)=…", kind: kind.name, field: name)
                    : CareError(.requiredField, "\(kind.name).\(name) is required and cannot be cleared", kind: kind.name, id: id, field: name)
            }
        }
        for name in values.keys.sorted() {
            guard let field = kind.field(name), let value = values[name], !value.isNull else { continue }
            switch field.format {
            case .date:
                guard let date = value.textValue.flatMap(CalendarDate.init), CalendarDate.plausibleYears.contains(date.year) else {
                    throw CareError(.badValue, "\(kind.name).\(name) must be a date from \(CalendarDate.plausibleYears.lowerBound) to \(CalendarDate.plausibleYears.upperBound), like 2025-06-23",
                                    kind: kind.name, id: id, field: name)
                }
                if Self.pastOnlyDates.contains("\(kind.name).\(name)"), date > today {
                    throw CareError(.badValue, "\(kind.name).\(name) is in the future", kind: kind.name, id: id, field: name)
                }
            case .integer, .money:
                guard let number = value.integerValue, field.range.contains(number) else {
                    throw CareError(.badValue, "\(kind.name).\(name) must be a whole number from \(field.range.lowerBound)\(field.range.upperBound == .max ? " up" : " to \(field.range.upperBound)")",
                                    kind: kind.name, id: id, field: name)
                }
            default:
                break
            }
        }
    }

    /// Dates of facts that have happened: never later than today.
    static let pastOnlyDates: Set<String> = ["young_person.date_of_birth", "young_person.date_of_death"]

    func parse(_ kind: RecordKind, _ text: [String: String]) throws -> [String: FieldValue] {
        var values: [String: FieldValue] = [:]
        for (name, raw) in text {
            guard let field = kind.field(name) else { throw Self.unknownField(kind, name) }
            values[name] = try Self.parse(field, raw, kind: kind)
        }
        return values
    }

    /// Text from the command line to a typed value; an empty string is null (clears the field).
    static func parse(_ field: CareField, _ raw: String, kind: RecordKind) throws -> FieldValue {
        if raw.isEmpty { return .null }
        func bad(_ expected: String) -> CareError {
            CareError(.badValue, "\(kind.name).\(field.name) must be \(expected)", kind: kind.name, field: field.name)
        }
        switch field.format {
        case .text, .reference, .set:
            return .text(raw)
        case .date:
            guard let date = CalendarDate(raw) else { throw bad("a date like 2025-06-23") }
            return .text(date.description)
        case .integer:
            guard let number = Int64(raw) else { throw bad("a whole number") }
            return .integer(number)
        case .money:
            guard let pence = Money.pence(from: raw) else { throw bad("an amount in pence (1000) or pounds (£10.00)") }
            return .integer(pence)
        case let .choice(values):
            guard values.contains(raw) else { throw bad("one of: \(values.joined(separator: ", "))") }
            return .text(raw)
        }
    }

    func checkReferences(_ kind: RecordKind, _ values: [String: FieldValue], _ view: ReadView) throws {
        for field in kind.fields {
            guard case let .reference(target) = field.format, let id = values[field.name]?.textValue else { continue }
            guard try view.row(target, id: id) != nil else {
                throw CareError(.badReference, "\(kind.name).\(field.name): no \(target) with id \(id) on this replica",
                                kind: kind.name, field: field.name)
            }
        }
    }
}

enum Money {
    /// "1250" (pence) or "£12.50" / "12.50" with a pound sign or decimal point.
    static func pence(from text: String) -> Int64? {
        var body = Substring(text)
        var pounds = false
        if body.hasPrefix("£") { body = body.dropFirst(); pounds = true }
        if let dot = body.firstIndex(of: ".") {
            let whole = body[..<dot]
            let fraction = body[body.index(after: dot)...]
            guard fraction.count == 2, let w = Int64(whole), let f = Int64(fraction), w >= 0, f >= 0 else { return nil }
            let (pence, overflow) = w.multipliedReportingOverflow(by: 100)
            return overflow || pence > Int64.max - f ? nil : pence + f
        }
        guard let value = Int64(body), value >= 0 else { return nil }
        guard pounds else { return value }
        let (pence, overflow) = value.multipliedReportingOverflow(by: 100)
        return overflow ? nil : pence
    }

    static func format(_ pence: Int64) -> String {
        let sign = pence < 0 ? "-" : ""
        let magnitude = pence.magnitude
        let fraction = magnitude % 100
        return "\(sign)£\(magnitude / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
