import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// Local edits inside one write transaction. Each edit becomes a change with this replica's next
/// counter and a fresh hybrid timestamp, then merges through the same path as a remote change.
///
/// Only valid inside `ReplicaStore.write`; it must not escape the closure. Every method throws a
/// ``StoreError`` naming the table, column and row (never the value) for an edit the schema or a
/// field's policy refuses (`MergePolicy.admitsAssignment`); a refused edit writes nothing and
/// uses no counter.
///
/// ```swift
/// try store.write(author: "ann") { edits in
///     try edits.create("plan", id: "p1", values: ["title": .text("Pathway plan")], scope: "yp-7")
///     try edits.add("plan", id: "p1", column: "tags", element: .text("housing"))
///     try edits.increment("plan", id: "p1", column: "reviews", by: 1)
///     return edits.changeIDs
/// }
/// ```
public struct LocalTransaction {
    let context: MergeTransaction
    /// The replica making the edits (their origin).
    public let replicaID: ReplicaID
    /// Who makes them.
    public let author: String
    private(set) var counter: UInt64
    private(set) var clock: HybridClock
    let wallMillis: UInt64
    /// Ids of the changes made so far in this transaction.
    public private(set) var changeIDs: [ChangeID] = []
    /// `chain(counter)` of this replica's own log; nil when the log below is not held whole.
    private(set) var chain: [UInt8]?
    /// Canonical bytes of own changes since the last checkpoint (Protocol/identity.md, "Checkpoints").
    private(set) var sinceCheckpoint: Int
    /// The scope of own change `counter`, made in this transaction or an earlier one; nil when there
    /// is none or it is not held. A change in another scope flags it for a head (Protocol/scope.md,
    /// "Boundary heads").
    private var previousScope: String?

    init(context: MergeTransaction, replicaID: ReplicaID, author: String, counter: UInt64, clock: HybridClock, wallMillis: UInt64,
         chain: [UInt8]?, sinceCheckpoint: Int, previousScope: String?) {
        self.chain = chain
        self.sinceCheckpoint = sinceCheckpoint
        self.previousScope = previousScope
        self.context = context
        self.replicaID = replicaID
        self.author = author
        self.counter = counter
        self.clock = clock
        self.wallMillis = wallMillis
    }

    /// Reads see this transaction's own edits.
    public var view: ReadView {
        get throws {
            try context.flushAll()
            return ReadView(db: context.db, schema: context.schema)
        }
    }

    /// Creates a row (or re-creates a deleted row of a deletable table) with the given fields, in
    /// one row edit. `scope` is the partition the row belongs to (for care records, the young
    /// person); a re-created row keeps the scope it had.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    ///   - values: Fields to assign (not sets or counters: add and increment after creating).
    ///   - scope: The partition the row belongs to.
    /// - Throws: ``StoreError`` `.unknownTable`, `.unknownColumn`, `.rowExists`, `.notDeletable`
    ///   (re-creating a row of a table whose rows are never deleted), `.wrongOperation`,
    ///   `.wrongType`, `.limitExceeded`.
    public mutating func create(_ table: String, id: String, values: [String: FieldValue], scope: String = "") throws {
        let schema = try tableSchema(table)
        let ref = try context.rowRef(table: table, key: id, scope: scope)
        let causalLength: UInt64
        do {
            causalLength = try CausalLength.afterCreate(ref.causalLength, deletable: schema.deletable)
        } catch .exists {
            throw StoreError(.rowExists, "\(table) \(id) already exists", table: table, row: id)
        } catch .notDeletable {
            throw StoreError(.notDeletable, "\(table) \(id) cannot be re-created", table: table, row: id)
        }
        var fields: [FieldEdit] = []
        for name in values.keys.sorted() {
            let column = try columnSchema(schema, name)
            let value = values[name]!
            guard column.policy.takesAssignment else {
                let after = if case .counter = column.policy { "a counter: increment it" } else { "a set: add elements" }
                throw StoreError(.wrongOperation, "\(table).\(name) is \(after) after creating the row", table: table, column: name, row: id)
            }
            try checkType(column, value, table: table)
            fields.append(try edit(ref, column, .assign(value)))
        }
        try emit(schema, key: id, causalLength: causalLength, setsLife: true, fields: fields,
                 scope: ref.scope.isEmpty ? scope : ref.scope)
    }

    /// Sets fields of an existing row, in one row edit. Immutable fields cannot change; statuses
    /// only move forward.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    ///   - values: Fields to assign.
    /// - Throws: ``StoreError`` `.rowNotFound`, `.unknownColumn`, `.immutableField`,
    ///   `.statusBackwards`, `.wrongType`, `.wrongOperation`, `.limitExceeded`.
    public mutating func update(_ table: String, id: String, values: [String: FieldValue]) throws {
        let schema = try tableSchema(table)
        let ref = try requireRow(table, id)
        var fields: [FieldEdit] = []
        for name in values.keys.sorted() {
            let column = try columnSchema(schema, name)
            let value = values[name]!
            try checkType(column, value, table: table)
            let current = try currentResolution(ref, column)
            switch column.policy.admitsAssignment(value, over: current) {
            case .admitted:
                break
            case .writtenOnce:
                throw StoreError(.immutableField, "\(table).\(name) is written once and cannot change", table: table, column: name, row: id)
            case .outsideLattice:
                let order = if case let .monotonic(lattice) = column.policy { lattice.order.joined(separator: ", ") } else { "" }
                throw StoreError(.wrongType, "\(table).\(name) must be one of: \(order)", table: table, column: name, row: id)
            case .backwards:
                throw StoreError(.statusBackwards, "\(table).\(name) cannot move from \(current?.value.textValue ?? "none") to \(value.textValue ?? "none")",
                                 table: table, column: name, row: id)
            case .notAnAssignment:
                throw StoreError(.wrongOperation, "\(table).\(name) is a \(column.policy.name): use add/remove/increment",
                                 table: table, column: name, row: id)
            }
            fields.append(try edit(ref, column, .assign(value)))
        }
        guard !fields.isEmpty else { return }
        try emit(schema, key: id, causalLength: ref.causalLength, setsLife: false, fields: fields, scope: ref.scope)
    }

    /// Deletes a row of a deletable table; statutory records refuse.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    /// - Throws: ``StoreError`` `.notDeletable`, `.rowNotFound`, `.unknownTable`.
    public mutating func delete(_ table: String, id: String) throws {
        let schema = try tableSchema(table)
        guard schema.deletable else { throw StoreError(.notDeletable, "\(table) records are never deleted; void them instead", table: table, row: id) }
        let ref = try requireRow(table, id)
        guard let causalLength = CausalLength.afterDelete(ref.causalLength) else {
            throw StoreError(.rowNotFound, "no \(table) with id \(id)", table: table, row: id)
        }
        try emit(schema, key: id, causalLength: causalLength, setsLife: true, fields: [], scope: ref.scope)
    }

    /// Adds an element to a set field; it removes nothing this replica has seen added.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    ///   - name: The set field.
    ///   - element: The element.
    /// - Throws: ``StoreError`` `.wrongOperation` for a field that is not a set, `.rowNotFound`,
    ///   `.unknownColumn`, `.limitExceeded`.
    public mutating func add(_ table: String, id: String, column name: String, element: FieldValue) throws {
        try setOperation(table, id, name, .add(element))
    }

    /// Removes an element from a set field: every add of it this replica has seen.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    ///   - name: The set field.
    ///   - element: The element.
    /// - Throws: As ``add(_:id:column:element:)``.
    public mutating func remove(_ table: String, id: String, column name: String, element: FieldValue) throws {
        try setOperation(table, id, name, .remove(element))
    }

    /// Adds `delta` (which may be negative) to a counter field.
    ///
    /// - Parameters:
    ///   - table: The row's table.
    ///   - id: The row's id.
    ///   - name: The counter field.
    ///   - delta: The amount.
    /// - Throws: ``StoreError`` `.wrongOperation` for a field that is not a counter, `.rowNotFound`,
    ///   `.unknownColumn`, `.limitExceeded`.
    public mutating func increment(_ table: String, id: String, column name: String, by delta: Int64) throws {
        let schema = try tableSchema(table)
        let column = try columnSchema(schema, name)
        guard case .counter = column.policy else {
            throw StoreError(.wrongOperation, "\(table).\(name) is \(column.policy.name), not a counter", table: table, column: name)
        }
        let ref = try requireRow(table, id)
        try emit(schema, key: id, causalLength: ref.causalLength, setsLife: false, fields: [try edit(ref, column, .increment(delta))],
                 scope: ref.scope)
    }

    private mutating func setOperation(_ table: String, _ id: String, _ name: String, _ operation: FieldOperation) throws {
        let schema = try tableSchema(table)
        let column = try columnSchema(schema, name)
        switch column.policy {
        case .addWinsSet, .removeWinsSet: break
        default: throw StoreError(.wrongOperation, "\(table).\(name) is \(column.policy.name), not a set", table: table, column: name)
        }
        let ref = try requireRow(table, id)
        try emit(schema, key: id, causalLength: ref.causalLength, setsLife: false, fields: [try edit(ref, column, operation)],
                 scope: ref.scope)
    }

    /// One field's operation in a local edit: it supersedes everything its author can see, so that
    /// a local write resolves a conflict and a local remove removes what was observed.
    private func edit(_ ref: MergeTransaction.RowRef, _ column: ColumnSchema, _ operation: FieldOperation) throws -> FieldEdit {
        var supersedes: [ChangeID] = []
        if column.policy.keepsState, let stored = try context.loadField(ref.id, column.name),
           let state = try context.storedState(stored, column, of: ref) {
            supersedes = state.supersededByLocalWrite(operation, policy: column.policy)
        }
        return FieldEdit(column: column.name, operation: operation, supersedes: supersedes)
    }

    /// Makes the row edit, refuses it whole if it breaks a limit (nothing of it written, and its
    /// counter not used, so the origin's counters keep no gap), and merges it through the same
    /// path as a remote change. Every last-writer-wins field of it wins: the local clock is past
    /// every timestamp seen, and the edit is in the row's current life.
    private mutating func emit(_ table: TableSchema, key: String, causalLength: UInt64, setsLife: Bool, fields: [FieldEdit],
                               scope: String) throws {
        let saved = (counter, clock, changeIDs.count)
        let change = Change(id: nextID(), timestamp: tick(), author: author, table: table.name, row: key, scope: scope,
                            causalLength: causalLength, setsLife: setsLife, fields: fields)
        do {
            try MergeTransaction.checkLimits(change)
        } catch {
            (counter, clock) = (saved.0, saved.1)
            changeIDs.removeLast(changeIDs.count - saved.2)
            throw error
        }
        // The log's chain, checkpoints and scope boundaries, from the canonical bytes computed once.
        let bytes = change.canonicalBytes
        if change.id.counter > 1, Checkpoints.previousNeedsHead(bytesSinceCheckpoint: sinceCheckpoint, nextChangeSize: bytes.count,
                                                                 previousScope: previousScope, nextScope: change.scope) {
            try context.markCheckpoint(replicaID, counter: change.id.counter - 1)
        }
        previousScope = change.scope
        sinceCheckpoint = Checkpoints.bytesSinceCheckpoint(after: sinceCheckpoint, nextChangeSize: bytes.count)
        chain = chain.map { OriginChain.next(after: $0, canonicalBytes: bytes) }
        try context.apply(change, knownToWin: true, chain: chain)
    }

    /// The merged value of a field that keeps state (every policy but last-writer-wins).
    private func currentResolution(_ ref: MergeTransaction.RowRef, _ column: ColumnSchema) throws -> FieldResolution? {
        guard column.policy.keepsState, let stored = try context.loadField(ref.id, column.name), let blob = stored.state else {
            return nil
        }
        return try context.decodeState(Array(blob), column: column, of: ref).resolution(policy: column.policy)
    }

    private mutating func nextID() -> ChangeID {
        counter += 1
        let id = ChangeID(replica: replicaID, counter: counter)
        changeIDs.append(id)
        return id
    }

    private mutating func tick() -> HybridTimestamp { clock.tick(wallMillis: wallMillis) }

    private func tableSchema(_ table: String) throws -> TableSchema {
        guard let schema = context.schema.table(table) else { throw StoreError(.unknownTable, "unknown record kind \(table)", table: table) }
        return schema
    }

    private func columnSchema(_ table: TableSchema, _ name: String) throws -> ColumnSchema {
        guard let column = table.column(name) else {
            throw StoreError(.unknownColumn, "\(table.name) has no field \(name)", table: table.name, column: name)
        }
        return column
    }

    private func requireRow(_ table: String, _ id: String) throws -> MergeTransaction.RowRef {
        guard let ref = try context.existingRowRef(table: table, key: id), ref.exists else {
            throw StoreError(.rowNotFound, "no \(table) with id \(id)", table: table, row: id)
        }
        return ref
    }

    private func checkType(_ column: ColumnSchema, _ value: FieldValue, table: String) throws {
        let matches = switch (column.type, value) {
        case (_, .null), (.text, .text), (.integer, .integer), (.real, .real), (.real, .integer), (.blob, .blob): true
        default: false
        }
        if !matches {
            throw StoreError(.wrongType, "\(table).\(column.name) takes \(column.type.rawValue.lowercased()), not \(value.shape)",
                             table: table, column: column.name)
        }
    }
}
