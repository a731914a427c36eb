import SyncCore
import SyncStore

/// Rights this replica holds for one (young person, item, period), folded from its ledger.
public struct HeldRights: Sendable, Equatable {
    /// The young person.
    public let person: String
    /// The item code.
    public let item: String
    /// The cap period.
    public let period: String
    /// Whether the item is counted (else its unit is pence).
    public let counted: Bool
    /// Rights usable here now: grants held by this replica whose lease has not ended.
    public let available: Int64
    /// Rights whose lease has ended, not yet given back (they are at the next sync).
    public let lapsed: Int64
    /// Committed spend for the account, as this replica knows it.
    public let committed: Int64
    /// The grants held here, soonest expiry first.
    public let grants: [Escrow.Grant]

    /// `£100.00` or `3`: an amount in the item's unit.
    public func format(_ amount: Int64) -> String { Self.format(amount, counted: counted) }

    static func format(_ amount: Int64, counted: Bool) -> String { counted ? String(amount) : Money.format(amount) }
}

/// What became of an award request or commit: committed, partly committed, or waiting for the hub.
public struct AwardOutcome: Sendable, Equatable {
    /// The award.
    public let award: String
    /// Its status now.
    public let status: String
    /// Committed by this call, in the item's unit.
    public let committed: Int64
    /// Still to commit: it waits for rights from the hub.
    public let waiting: Int64
    /// Rights available here for its item before this call.
    public let availableHere: Int64
    /// Whether the item is counted.
    public let counted: Bool

    /// "£100.00 available locally; needs the hub" when part of it waits, else nil.
    public var note: String? {
        guard waiting > 0 else { return nil }
        return "\(HeldRights.format(availableHere, counted: counted)) available locally; \(HeldRights.format(waiting, counted: counted)) needs the hub"
    }
}

extension CareReplica {
    /// The rights this replica holds, by young person, item and period (Protocol/entitlements.md).
    ///
    /// - Parameter person: one young person, or nil for all.
    /// - Throws: `StoreError` when the replica cannot be read.
    public func heldRights(person: String? = nil) throws -> [HeldRights] {
        try store.read { view in try heldRights(person: person, view: view) }
    }

    func heldRights(person: String?, view: ReadView) throws -> [HeldRights] {
        let me = store.replicaID.hex
        let now = Int64(clamping: wallClock.nowMillis())
        let entries = try view.rows("ledger_entry", where: person.map { [CareColumn.personID.rawValue: .text($0)] } ?? [:])
        let byPerson = Dictionary(grouping: entries) { $0[.personID]?.textValue ?? "" }
        var result: [HeldRights] = []
        let catalogue = try view.rows(EntitlementItem.kindName).compactMap { try? EntitlementItem(row: $0) }
        let origins = try ledgerOrigins(view)
        for who in byPerson.keys.sorted() {
            let lines = byPerson[who]!.map { line($0, catalogue: catalogue, origins: origins) }
            let accounts = Escrow.accounts(lines) { $0.origin == Escrow.origin }
            for key in accounts.keys.sorted() {
                let account = accounts[key]!
                let mine = account.grants.values.filter { $0.holder == me }.sorted { ($0.expiresAtMillis, $0.id) < ($1.expiresAtMillis, $1.id) }
                guard !mine.isEmpty else { continue }
                result.append(HeldRights(person: who, item: account.item, period: account.period,
                                         counted: EntitlementDesk.isCounted(account.item, catalogue),
                                         available: mine.filter { $0.expiresAtMillis > now }.reduce(0) { $0 &+ $1.remaining },
                                         lapsed: mine.filter { $0.expiresAtMillis <= now }.reduce(0) { $0 &+ $1.remaining },
                                         committed: account.committed, grants: mine))
            }
        }
        return result
    }

    /// Who wrote each ledger entry (its written-once `kind`), by entry id; for the entries the
    /// escrow origin wrote, the values it wrote (a grant is read from the hub's writes alone:
    /// `Escrow.value(of:by:)`).
    struct LedgerWriters {
        var origins: [String: ReplicaID] = [:]
        var hubValues: [String: [String: FieldValue]] = [:]
        /// The amount fields' states of the entries others wrote (`Escrow.amount(_:kind:)`).
        var amounts: [String: [String: FieldState]] = [:]
    }

    func ledgerOrigins(_ view: ReadView) throws -> LedgerWriters {
        var writers = LedgerWriters()
        for (id, state) in try view.fieldStates("ledger_entry", column: CareColumn.kind.rawValue) {
            guard case let .immutable(register) = state, let first = register.writes.first else { continue }
            if Escrow.value(of: state, by: Escrow.origin) != nil {
                writers.origins[id] = Escrow.origin
                writers.hubValues[id] = [:]
            } else {
                writers.origins[id] = first.id.replica
            }
        }
        for column in [CareColumn.count.rawValue, CareColumn.amountPence.rawValue] {
            for (id, state) in try view.fieldStates("ledger_entry", column: column) { writers.amounts[id, default: [:]][column] = state }
        }
        guard !writers.hubValues.isEmpty else { return writers }
        let columns = [CareColumn.kind.rawValue, CareColumn.itemCode.rawValue, CareColumn.periodKey.rawValue, CareColumn.count.rawValue,
                       CareColumn.amountPence.rawValue, CareColumn.awardID.rawValue, CareSchema.escrowGrantID, CareSchema.holderReplica,
                       CareSchema.expiresAtMillis, CareSchema.requestID]
        for column in columns {
            for (id, state) in try view.fieldStates("ledger_entry", column: column) where writers.hubValues[id] != nil {
                if let value = Escrow.value(of: state, by: Escrow.origin) { writers.hubValues[id]?[column] = value }
            }
        }
        return writers
    }

    /// A stored ledger entry as the fold reads it, with the origin that wrote it.
    func line(_ stored: [String: FieldValue], catalogue: [EntitlementItem], origins writers: LedgerWriters) -> Escrow.Line {
        let id = stored[.id]?.textValue ?? ""
        let row = writers.hubValues[id] ?? stored
        let origins = writers.origins
        let item = row[.itemCode]?.textValue ?? "?"
        let counted = EntitlementDesk.isCounted(item, catalogue)
        let origin = origins[id]
        let kind = row[.kind]?.textValue.flatMap(LedgerKind.init(rawValue:))
        let unit = counted ? CareColumn.count : CareColumn.amountPence
        let written = max(0, row[unit]?.integerValue ?? 0)
        return Escrow.Line(id: id, kind: kind, item: item,
                           period: row[.periodKey]?.textValue ?? "lifetime",
                           amount: writers.hubValues[id] == nil ? writers.amounts[id]?[unit.rawValue].map { Escrow.amount($0, kind: kind) } ?? written : written,
                           grant: row[CareSchema.escrowGrantID]?.textValue, holder: row[CareSchema.holderReplica]?.textValue,
                           expiresAtMillis: row[CareSchema.expiresAtMillis]?.integerValue, request: row[CareSchema.requestID]?.textValue,
                           award: row[.awardID]?.textValue, origin: origin)
    }

    /// Commits what it can of a waiting award within the rights this replica holds: all of it, or
    /// (with `partial`) as much as the rights cover, the rest still waiting; nothing beyond them
    /// unless `override` gives the emergency's reason (the hub then flags it OVER_CAP, I1).
    ///
    /// - Parameters:
    ///   - id: the award (status `requested` or `approved`).
    ///   - partial: commit part when the rights cover only part.
    ///   - override: the reason for committing beyond the rights held; nil for none.
    ///   - author: the worker committing.
    /// - Returns: what was committed and what waits.
    /// - Throws: `CareError` `.notFound`, `.notWaiting`, `.noRights` (when nothing could be
    ///   committed and the caller asked for a commit); `StoreError`.
    @discardableResult
    public func commitAward(_ id: String, partial: Bool = false, override: String? = nil, author: String) throws -> AwardOutcome {
        let author = try WorkerID.canonical(author)
        let outcome = try store.write(author: author) { transaction in
            try commit(award: id, partial: partial, override: override, author: author, transaction: &transaction)
        }
        if outcome.committed == 0, outcome.waiting > 0 {
            throw CareError(.noRights, "award \(id) waits: \(outcome.note ?? "")", kind: "award", id: id)
        }
        return outcome
    }

    /// The commit in `transaction`: ledger entries against the rights held, soonest lease first.
    func commit(award id: String, partial: Bool, override: String?, author: String, transaction: inout LocalTransaction) throws -> AwardOutcome {
        let view = try transaction.view
        guard let award = try view.row("award", id: id) else { throw Self.notFound("award", id) }
        let status = award[.status]?.textValue ?? ""
        guard status == AwardStatus.requested.rawValue || status == AwardStatus.approved.rawValue else {
            throw CareError(.notWaiting, "award \(id) is \(status): only a waiting request can be committed", kind: "award", id: id)
        }
        let person = award[.personID]?.textValue ?? ""
        let code = award[.itemCode]?.textValue ?? ""
        let period = award[.periodKey]?.textValue ?? "lifetime"
        let catalogue = try view.rows(EntitlementItem.kindName).compactMap { try? EntitlementItem(row: $0) }
        let counted = EntitlementDesk.isCounted(code, catalogue)
        let origins = try ledgerOrigins(view)
        let lines = try view.rows("ledger_entry", where: [CareColumn.personID.rawValue: .text(person)])
            .map { line($0, catalogue: catalogue, origins: origins) }
        let done = Escrow.committed(toward: id, in: lines)
        let requested = max(0, (counted ? award[.requestedCount] : award[.requestedAmountPence])?.integerValue ?? 0)
        var needed = max(0, requested - done)
        let date = award[.decisionDate]?.textValue ?? today.description
        let capped = try catalogueItem(code: code, on: date, view: view).capKind != .none
        let rights = try heldRights(person: person, view: view).first { $0.item == code && $0.period == period }
        let available = rights?.available ?? 0
        var committed: Int64 = 0
        func entry(_ kind: LedgerKind, _ amount: Int64, grant: String?, reason: String?) throws {
            var values: [String: FieldValue] = [
                CareColumn.awardID.rawValue: .text(id), CareColumn.personID.rawValue: .text(person), CareColumn.itemCode.rawValue: .text(code),
                CareColumn.periodKey.rawValue: .text(period), CareColumn.kind.rawValue: .text(kind.rawValue),
                (counted ? CareColumn.count : CareColumn.amountPence).rawValue: .integer(amount), "actor_id": .text(author),
                "occurred_at": .text(today.description),
            ]
            if let grant { values[CareSchema.escrowGrantID] = .text(grant) }
            if let reason { values["reason"] = .text(reason) }
            try transaction.createRecord("ledger_entry", id: ids.next(), values: values)
        }
        if !capped {
            try entry(.commit, needed, grant: nil, reason: nil)
            committed = needed
            needed = 0
        } else if available >= needed || (partial && available > 0) {
            let now = Int64(clamping: wallClock.nowMillis())
            let kind: LedgerKind = available >= needed ? .commit : .partialCommit
            for grant in rights?.grants ?? [] where grant.expiresAtMillis > now && grant.remaining > 0 && needed > 0 {
                let amount = min(grant.remaining, needed)
                try entry(kind, amount, grant: grant.id, reason: nil)
                committed += amount
                needed -= amount
            }
        }
        if needed > 0, let override {
            try entry(.commit, needed, grant: nil, reason: "override: " + override)
            committed += needed
            needed = 0
        }
        if needed == 0, committed > 0 || requested == 0 {
            try transaction.update("award", id: id, values: [CareColumn.status.rawValue: .text(AwardStatus.committed.rawValue)])
        }
        return AwardOutcome(award: id, status: needed == 0 ? AwardStatus.committed.rawValue : status, committed: committed, waiting: needed,
                            availableHere: available, counted: counted)
    }

    /// Cancels a committed award: each of its commits is released, into its grant while the
    /// grant's lease runs (the rights can be used again here), else back to the hub.
    ///
    /// - Throws: `CareError` `.notFound`, `.notCommitted`; `StoreError`.
    public func releaseAward(_ id: String, reason: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard let award = try view.row("award", id: id) else { throw Self.notFound("award", id) }
            guard award[.status]?.textValue == AwardStatus.committed.rawValue || award[.status]?.textValue == AwardStatus.requested.rawValue
                    || award[.status]?.textValue == AwardStatus.approved.rawValue else {
                throw CareError(.notCommitted, "award \(id) is \(award[.status]?.textValue ?? "?"): nothing to release", kind: "award", id: id)
            }
            let person = award[.personID]?.textValue ?? ""
            let catalogue = try view.rows(EntitlementItem.kindName).compactMap { try? EntitlementItem(row: $0) }
            let rows = try view.rows("ledger_entry", where: [CareColumn.personID.rawValue: .text(person)])
            let origins = try ledgerOrigins(view)
            let lines = rows.map { line($0, catalogue: catalogue, origins: origins) }
            let released = Set(lines.filter { $0.kind == .release }.compactMap { line in rows.first { $0[.id]?.textValue == line.id }?[.reversesEntryID]?.textValue })
            let now = Int64(clamping: wallClock.nowMillis())
            let live = Set(try heldRights(person: person, view: view).flatMap(\.grants).filter { $0.expiresAtMillis > now }.map(\.id))
            let counted = EntitlementDesk.isCounted(award[.itemCode]?.textValue ?? "", catalogue)
            for commit in lines where commit.award == id && [.commit, .partialCommit].contains(commit.kind) && !released.contains(commit.id) {
                var values: [String: FieldValue] = [
                    CareColumn.awardID.rawValue: .text(id), CareColumn.personID.rawValue: .text(person),
                    CareColumn.itemCode.rawValue: .text(commit.item), CareColumn.periodKey.rawValue: .text(commit.period),
                    CareColumn.kind.rawValue: .text(LedgerKind.release.rawValue), (counted ? CareColumn.count : CareColumn.amountPence).rawValue: .integer(commit.amount),
                    "actor_id": .text(author), "occurred_at": .text(today.description), "reason": .text(reason),
                    CareColumn.reversesEntryID.rawValue: .text(commit.id),
                ]
                if let grant = commit.grant, live.contains(grant), commit.origin == store.replicaID { values[CareSchema.escrowGrantID] = .text(grant) }
                try transaction.createRecord("ledger_entry", id: ids.next(), values: values)
            }
            try transaction.update("award", id: id, values: [CareColumn.status.rawValue: .text(AwardStatus.cancelled.rawValue)])
        }
    }

    /// Records money that came back for a committed award (a refund): committed spend goes down,
    /// and the amount is the hub's to grant again.
    ///
    /// - Throws: `CareError` `.notFound`, `.notCommitted`, `.badValue`; `StoreError`.
    public func refundAward(_ id: String, amount: Int64, reason: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard let award = try view.row("award", id: id) else { throw Self.notFound("award", id) }
            guard [AwardStatus.committed.rawValue, AwardStatus.fulfilled.rawValue].contains(award[.status]?.textValue ?? "") else {
                throw CareError(.notCommitted, "award \(id) is \(award[.status]?.textValue ?? "?"): only a committed award is refunded", kind: "award", id: id)
            }
            let catalogue = try view.rows(EntitlementItem.kindName).compactMap { try? EntitlementItem(row: $0) }
            let counted = EntitlementDesk.isCounted(award[.itemCode]?.textValue ?? "", catalogue)
            let requested = (counted ? award[.requestedCount] : award[.requestedAmountPence])?.integerValue ?? 0
            guard amount > 0, amount <= requested else {
                throw CareError(.badValue, "a refund is more than 0 and at most the award (\(HeldRights.format(requested, counted: counted)))",
                                kind: "award", id: id)
            }
            try transaction.createRecord("ledger_entry", id: ids.next(), values: [
                CareColumn.awardID.rawValue: .text(id), CareColumn.personID.rawValue: award[.personID] ?? .null,
                CareColumn.itemCode.rawValue: award[.itemCode] ?? .null, CareColumn.periodKey.rawValue: award[.periodKey] ?? .text("lifetime"),
                CareColumn.kind.rawValue: .text(LedgerKind.refund.rawValue), (counted ? CareColumn.count : CareColumn.amountPence).rawValue: .integer(amount),
                "actor_id": .text(author), "occurred_at": .text(today.description), "reason": .text(reason),
            ])
        }
    }

    /// An amount as typed, in an item's unit: a count for a counted item, else pence (`1250`) or
    /// pounds (`£12.50`).
    ///
    /// - Throws: `CareError` `.unknownItem`, `.badValue`; `StoreError`.
    public func amount(_ text: String, item code: String) throws -> Int64 {
        let catalogue = try list(EntitlementItem.kindName).compactMap { try? EntitlementItem(row: $0) }
        guard catalogue.contains(where: { $0.code == code }) else {
            throw CareError(.unknownItem, "no entitlement item \(code) in the catalogue", kind: EntitlementItem.kindName)
        }
        let counted = EntitlementDesk.isCounted(code, catalogue)
        guard let value = counted ? Int64(text) : Money.pence(from: text), value > 0 else {
            throw CareError(.badValue, counted ? "\(code) is counted: give a whole number above 0" : "give an amount above 0 in pence (1000) or pounds (£10.00)",
                            kind: "ledger_entry")
        }
        return value
    }

    /// Asks the hub for rights ahead of awards (granted at the next sync if the cap allows).
    ///
    /// - Returns: the request's ledger entry id.
    /// - Throws: `CareError` `.notFound`, `.unknownItem`, `.notInForce`, `.badValue`; `StoreError`.
    @discardableResult
    public func requestRights(person: String, item code: String, amount: Int64, author: String) throws -> String {
        let author = try WorkerID.canonical(author)
        let id = ids.next()
        try store.write(author: author) { transaction in
            let view = try transaction.view
            guard try view.row(YoungPerson.kindName, id: person) != nil else { throw Self.notFound(YoungPerson.kindName, person) }
            let item = try catalogueItem(code: code, on: today.description, view: view)
            guard item.capKind != .none else {
                throw CareError(.badValue, "\(code) is not capped: it needs no rights", kind: EntitlementItem.kindName)
            }
            guard amount > 0 else { throw CareError(.badValue, "rights are requested for more than 0", kind: "ledger_entry") }
            let counted = [.count, .countPerPeriod].contains(item.capKind)
            try transaction.createRecord("ledger_entry", id: id, values: [
                CareColumn.personID.rawValue: .text(person), CareColumn.itemCode.rawValue: .text(code),
                CareColumn.periodKey.rawValue: .text(try periodKey(item: item, person: person, on: today.description, view: view)),
                CareColumn.kind.rawValue: .text(LedgerKind.requestRights.rawValue),
                (counted ? CareColumn.count : CareColumn.amountPence).rawValue: .integer(amount), "actor_id": .text(author),
                "occurred_at": .text(today.description),
            ])
        }
        return id
    }

    /// Gives back rights held here: every grant whose lease has ended (`expire_rights`), and
    /// with `all` every live grant too (`return_rights`). Run before each sync, so rights not
    /// used by their expiry flow back at the next contact, after every commit made under them.
    ///
    /// - Parameter all: give back live grants too.
    /// - Returns: how many grants were given back.
    /// - Throws: `StoreError` when the replica cannot be written.
    @discardableResult
    public func returnRights(all: Bool = false, author: String = "system") throws -> Int {
        let author = try WorkerID.canonical(author)
        let now = Int64(clamping: wallClock.nowMillis())
        let due = try heldRights().flatMap { rights in
            rights.grants.filter { $0.remaining > 0 && (all || $0.expiresAtMillis <= now) }.map { (rights, $0) }
        }
        guard !due.isEmpty else { return 0 }
        try store.write(author: author) { transaction in
            for (rights, grant) in due {
                try transaction.createRecord("ledger_entry", id: ids.next(), values: [
                    CareColumn.personID.rawValue: .text(rights.person), CareColumn.itemCode.rawValue: .text(rights.item),
                    CareColumn.periodKey.rawValue: .text(rights.period),
                    CareColumn.kind.rawValue: .text((grant.expiresAtMillis <= now ? LedgerKind.expireRights : .returnRights).rawValue),
                    (rights.counted ? CareColumn.count : CareColumn.amountPence).rawValue: .integer(grant.remaining),
                    CareSchema.escrowGrantID: .text(grant.id), "actor_id": .text(author), "occurred_at": .text(today.description),
                ])
            }
        }
        return due.count
    }

    /// Every flag the hub raised here, open ones first.
    ///
    /// - Throws: `StoreError` when the replica cannot be read.
    public func flags(openOnly: Bool = false) throws -> [[String: FieldValue]] {
        try list("flag").filter { !openOnly || $0[.status]?.textValue == FlagStatus.open.rawValue }
            .sorted { ($0[.status]?.textValue ?? "", $0[.id]?.textValue ?? "") > ($1[.status]?.textValue ?? "", $1[.id]?.textValue ?? "") }
    }

    /// Resolves a flag: who and how are stored with it, and it syncs like any edit.
    ///
    /// - Throws: `CareError` `.notFound`, `.flagResolved`, `.badValue`; `StoreError`.
    public func resolveFlag(_ id: String, resolution: String, author: String) throws {
        let author = try WorkerID.canonical(author)
        let text = String(resolution.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        guard !text.isEmpty, text.utf8.count <= 1_000 else {
            throw CareError(.badValue, "say how the flag was resolved (1 to 1,000 bytes)", kind: "flag", id: id, field: "resolution")
        }
        try store.write(author: author) { transaction in
            guard let flag = try transaction.view.row("flag", id: id) else { throw Self.notFound("flag", id) }
            guard flag[.status]?.textValue == FlagStatus.open.rawValue else {
                throw CareError(.flagResolved, "flag \(id) is already resolved", kind: "flag", id: id)
            }
            try transaction.update("flag", id: id, values: [CareColumn.status.rawValue: .text(FlagStatus.resolved.rawValue),
                                                            "resolution": .text(text), "resolved_by": .text(author)])
        }
    }
}
