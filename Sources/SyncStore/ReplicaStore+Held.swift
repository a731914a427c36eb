import Foundation
import GRDB
import SyncCore

/// A write the hub holds in quarantine, delivered to this replica for review (Protocol/scope.md,
/// "Quarantine review"): stored in `sync_held`, never merged into the rows.
public struct StoredHeldItem: Equatable, Sendable {
    /// Where the review stands on this replica.
    public enum State: String, Equatable, Sendable {
        /// Waiting for a decision.
        case held
        /// Accepted here (re-authored as a local change); the hub is told at the next sync.
        case accepting
        /// Dismissed here; the hub is told at the next sync.
        case dismissing
        /// Accepted, and the hub recorded it.
        case accepted
        /// Dismissed, and the hub recorded it.
        case dismissed
    }

    /// This replica's id for the item (shown and typed at the command line).
    public let id: Int64
    /// The held change, as its author wrote it.
    public let item: HeldItem
    /// Where its review stands.
    public let state: State
    /// The worker who decided; empty while held.
    public let worker: String
    /// The dismissal's reason (record content: it never leaves this replica); empty for none.
    public let reason: String
    /// When it was decided here, ms since 1970; nil while held.
    public let decidedAtMillis: UInt64?
    /// The local change that re-authored an accepted edit.
    public let acceptedAs: ChangeID?
}

extension ReplicaStore {
    /// The migration that adds `sync_held`.
    static let heldMigration = "sync-v7-held"

    static func migrateToHeld(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE sync_held (
              id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, counter INTEGER NOT NULL, scope TEXT NOT NULL,
              from_replica TEXT NOT NULL, reason TEXT NOT NULL, received_at INTEGER NOT NULL, bytes BLOB NOT NULL,
              state TEXT NOT NULL DEFAULT 'held', worker TEXT NOT NULL DEFAULT '', decision_reason TEXT NOT NULL DEFAULT '',
              decided_at INTEGER, accepted_origin TEXT, accepted_counter INTEGER,
              UNIQUE (origin, counter));
            CREATE INDEX sync_held_by_scope ON sync_held (scope);
            """)
    }

    /// Every write held here for review, by id.
    ///
    /// - Throws: ``StoreError`` `.corrupt` for a held change that does not decode, `.database`.
    public func heldItems() throws -> [StoredHeldItem] {
        try readDatabase { db in
            try Row.fetchAll(db, sql: "SELECT * FROM sync_held ORDER BY id").map(Self.heldItem)
        }
    }

    /// The held write of this replica's id `id`.
    ///
    /// - Throws: ``StoreError`` `.heldNotFound`, `.corrupt`, `.database`.
    public func heldItem(id: Int64) throws -> StoredHeldItem {
        let found = try readDatabase { db in try Row.fetchOne(db, sql: "SELECT * FROM sync_held WHERE id = ?", arguments: [id]).map(Self.heldItem) }
        guard let found else { throw StoreError(.heldNotFound, "no held write \(id) here: the ids are those the quarantine listing shows") }
        return found
    }

    private static func heldItem(_ row: Row) throws -> StoredHeldItem {
        let id: Int64 = row["id"]
        let change: Change
        do {
            change = try Change(canonicalBytes: Array(row["bytes"] as Data))
        } catch {
            throw StoreError(.corrupt, "held write \(id) is unreadable", table: "sync_held", column: "bytes")
        }
        let accepted = (row["accepted_origin"] as String?).flatMap(ReplicaID.init(hex:)).flatMap { origin in
            (row["accepted_counter"] as Int64?).map { ChangeID(replica: origin, counter: UInt64(max(1, $0))) }
        }
        return StoredHeldItem(
            id: id,
            item: HeldItem(fromReplica: ReplicaID(hex: row["from_replica"]) ?? change.id.replica, reason: HeldReason(name: row["reason"]) ?? .outOfScope,
                           receivedAtMillis: UInt64(max(0, row["received_at"] as Int64)), change: change),
            state: StoredHeldItem.State(rawValue: row["state"]) ?? .held, worker: row["worker"], reason: row["decision_reason"],
            decidedAtMillis: (row["decided_at"] as Int64?).map { UInt64(max(0, $0)) }, acceptedAs: accepted)
    }

    /// Stores writes the hub holds for this replica's review (a page of a held message); one
    /// already here is left as it is. Nothing of them is merged.
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func receiveHeld(_ items: [HeldItem]) throws {
        guard !items.isEmpty else { return }
        try writeContext { context in
            let insert = try context.db.makeStatement(sql: """
                INSERT OR IGNORE INTO sync_held (origin, counter, scope, from_replica, reason, received_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            for item in items {
                try insert.execute(arguments: [item.change.id.replica.hex, Int64(clamping: item.change.id.counter), item.change.scope,
                                               item.fromReplica.hex, item.reason.name, Int64(clamping: item.receivedAtMillis),
                                               Data(item.change.canonicalBytes)])
            }
        }
    }

    /// After a whole listing from the hub: held writes it no longer holds for this replica
    /// (resolved by another replica, or out of its team's reach) are deleted, with
    /// `secure_delete`, unless a decision on them is still to be sent.
    ///
    /// - Parameter listed: Every change id the hub listed in this session.
    /// - Throws: ``StoreError`` `.database`.
    public func keepOnlyHeld(_ listed: Set<ChangeID>) throws {
        try withSecureDelete {
            try writeContext { context in
                for row in try Row.fetchAll(context.db, sql: "SELECT id, origin, counter FROM sync_held WHERE state = 'held'") {
                    guard let origin = ReplicaID(hex: row[1]), let counter = row[2] as Int64?, counter > 0,
                          !listed.contains(ChangeID(replica: origin, counter: UInt64(counter))) else { continue }
                    try context.db.execute(sql: "DELETE FROM sync_held WHERE id = ?", arguments: [row[0] as Int64])
                }
            }
        }
    }

    /// The decisions taken here and not yet recorded by the hub, ascending by change id (at most `limit`).
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func heldDecisionsToSend(limit: Int) throws -> [HeldDecision] {
        try readDatabase { db in
            try Row.fetchAll(db, sql: """
                SELECT origin, counter, state FROM sync_held WHERE state IN ('accepting', 'dismissing') ORDER BY origin, counter LIMIT ?
                """, arguments: [limit]).compactMap { row in
                guard let origin = ReplicaID(hex: row[0]), let counter = row[1] as Int64?, counter > 0 else { return nil }
                return HeldDecision(change: ChangeID(replica: origin, counter: UInt64(counter)),
                                    verdict: (row[2] as String) == "accepting" ? .accept : .dismiss)
            }
        }
    }

    /// What the hub did with the decisions sent: a recorded one (or one resolved already) is
    /// marked accepted or dismissed for good; a refused one (not held for this replica) is deleted.
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func recordHeldOutcomes(_ outcomes: [HeldOutcome]) throws {
        guard !outcomes.isEmpty else { return }
        try withSecureDelete {
            try writeContext { context in
                for outcome in outcomes {
                    let key: [DatabaseValueConvertible] = [outcome.change.replica.hex, Int64(clamping: outcome.change.counter)]
                    switch outcome.code {
                    case .recorded, .resolvedAlready:
                        try context.db.execute(sql: """
                            UPDATE sync_held SET state = CASE state WHEN 'accepting' THEN 'accepted' WHEN 'dismissing' THEN 'dismissed' ELSE state END
                            WHERE origin = ? AND counter = ?
                            """, arguments: StatementArguments(key))
                    case .refused:
                        try context.db.execute(sql: "DELETE FROM sync_held WHERE origin = ? AND counter = ? AND state != 'held'",
                                               arguments: StatementArguments(key))
                    }
                }
            }
        }
    }

    /// Accepts the held write `id`: its edit is made again as a new local change by `worker` (the
    /// original author's change is never applied under its name), and the decision is stored to
    /// reach the hub at the next sync, in one transaction.
    ///
    /// - Parameters:
    ///   - id: The held write, as ``heldItems()`` numbers it.
    ///   - worker: The reviewing worker, the new change's author.
    ///   - check: The application's rules for a local edit, run on the held change against the
    ///     rows as they are, in the same transaction, before anything is written: what it throws
    ///     refuses the acceptance (the held write stays held). The care records pass the checks
    ///     an edit at the command line gets.
    /// - Returns: The new local change's id.
    /// - Throws: ``StoreError`` `.heldNotFound`, `.heldDecided`, `.rowNotFound` (an edit of a row
    ///   this replica does not hold, nothing written), what `check` throws, or what the edit itself throws.
    public func acceptHeld(id: Int64, worker: String, check: (Change, ReadView) throws -> Void = { _, _ in }) throws -> ChangeID {
        let held = try undecided(id)
        let change = held.item.change
        return try write(author: worker) { edits -> ChangeID in
            try check(change, edits.view)
            try Self.reauthor(change, in: &edits)
            guard let made = edits.changeIDs.last else {
                throw StoreError(.rowNotFound, "held write \(id) changes nothing that can be made again here", table: change.table, row: change.row)
            }
            try edits.context.db.execute(sql: """
                UPDATE sync_held SET state = 'accepting', worker = ?, decided_at = ?, accepted_origin = ?, accepted_counter = ? WHERE id = ?
                """, arguments: [worker, Int64(clamping: wallClock.nowMillis()), made.replica.hex, Int64(clamping: made.counter), id])
            return made
        }
    }

    /// Dismisses the held write `id`: nothing of it is applied; `reason` stays on this replica,
    /// and the decision (without the reason) reaches the hub at the next sync.
    ///
    /// - Throws: ``StoreError`` `.heldNotFound`, `.heldDecided`, `.database`.
    public func dismissHeld(id: Int64, worker: String, reason: String) throws {
        _ = try undecided(id)
        try writeContext { context in
            try context.db.execute(sql: """
                UPDATE sync_held SET state = 'dismissing', worker = ?, decision_reason = ?, decided_at = ? WHERE id = ? AND state = 'held'
                """, arguments: [worker, reason, Int64(clamping: wallClock.nowMillis()), id])
        }
    }

    private func undecided(_ id: Int64) throws -> StoredHeldItem {
        let held = try heldItem(id: id)
        guard held.state == .held else {
            throw StoreError(.heldDecided, "held write \(id) was \(held.state.rawValue) already by \(held.worker)")
        }
        return held
    }

    /// The held change's edit as local edits: a create or delete as such, each field's operation
    /// as it was (assign, add, remove, increment).
    private static func reauthor(_ change: Change, in edits: inout LocalTransaction) throws {
        if change.deletesRow {
            try edits.delete(change.table, id: change.row)
            return
        }
        let exists = try edits.view.row(change.table, id: change.row) != nil
        var assigned: [String: FieldValue] = [:]
        for field in change.fields {
            if case let .assign(value) = field.operation { assigned[field.column] = value }
        }
        if !exists {
            guard change.setsLife else {
                throw StoreError(.rowNotFound, "\(change.table) \(change.row) is not held here: the held edit cannot be made again",
                                 table: change.table, row: change.row)
            }
            try edits.create(change.table, id: change.row, values: assigned, scope: change.scope)
        } else if !assigned.isEmpty {
            try edits.update(change.table, id: change.row, values: assigned)
        }
        for field in change.fields {
            switch field.operation {
            case .assign: continue
            case let .add(element): try edits.add(change.table, id: change.row, column: field.column, element: element)
            case let .remove(element): try edits.remove(change.table, id: change.row, column: field.column, element: element)
            case let .increment(delta): try edits.increment(change.table, id: change.row, column: field.column, by: delta)
            }
        }
    }
}
