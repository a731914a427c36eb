import Crypto
import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The hub's audit trail (`hub_audit`, `hub_audit_head`): append-only events chained by hash
/// (``AuditChain``), and one head row, signed by the hub key, updated in the same transaction as
/// every append.
///
/// A hub made before the trail existed starts it empty when it is first opened for writing
/// (migration hub-v7-audit): what it stored before is in its log, not in the trail.
enum HubAuditSchema {
    /// hub-v7-audit: the tables and an empty head (count 0, `hash(0)`, no signature yet: the
    /// migration runs before the hub key is loaded, and an empty trail has nothing to protect).
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE hub_audit (
              seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, actor TEXT NOT NULL, device TEXT, table_name TEXT NOT NULL,
              row_key TEXT NOT NULL, scope TEXT NOT NULL, change_origin TEXT, change_counter INTEGER,
              occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL, detail TEXT NOT NULL, hash BLOB NOT NULL);
            CREATE TABLE hub_audit_head (
              id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL, hash BLOB NOT NULL, signature BLOB);
            """)
        try db.execute(sql: "INSERT INTO hub_audit_head (id, count, hash) VALUES (1, 0, ?)", arguments: [Data(AuditChain.genesis)])
    }

    /// The columns after `seq`, in the order `insert` binds and `event(from:)` reads them.
    static let columns = "kind, actor, device, table_name, row_key, scope, change_origin, change_counter, occurred_at, received_at, detail"

    static func values(_ event: AuditEvent) -> [FieldValue] {
        [.text(event.kind.name), .text(event.actor), event.device.map { .text($0.hex) } ?? .null, .text(event.table), .text(event.row),
         .text(event.scope), event.change.map { .text($0.replica.hex) } ?? .null,
         event.change.map { .integer(Int64(bitPattern: $0.counter)) } ?? .null, .integer(Int64(event.occurredAtMillis)),
         .integer(Int64(event.receivedAtMillis)), .text(event.detail)]
    }

    /// The event of a row selected as `seq, <columns>, hash`; nil when a column cannot be one.
    static func event(from row: Row) -> AuditEvent? {
        guard let kindName = row[1] as String?, let kind = AuditEvent.Kind(name: kindName),
              let actor = row[2] as String?, let table = row[4] as String?, let rowKey = row[5] as String?, let scope = row[6] as String?,
              let occurred = row[9] as Int64?, let received = row[10] as Int64?, occurred >= 0, received >= 0,
              let detail = row[11] as String?
        else { return nil }
        var device: ReplicaID?
        if let hex = row[3] as String? {
            guard let id = ReplicaID(hex: hex) else { return nil }
            device = id
        }
        var change: ChangeID?
        switch (row[7] as String?, row[8] as Int64?) {
        case (nil, nil): change = nil
        case let (origin?, counter?):
            guard let replica = ReplicaID(hex: origin) else { return nil }
            change = ChangeID(replica: replica, counter: UInt64(bitPattern: counter))
        default: return nil
        }
        return AuditEvent(kind: kind, actor: actor, device: device, table: table, row: rowKey, scope: scope, change: change,
                          occurredAtMillis: UInt64(occurred), receivedAtMillis: UInt64(received), detail: detail)
    }
}

extension SQLiteHubStore {
    /// Appends `events` to the audit trail inside the caller's write transaction, chained after
    /// the last one, and moves the signed head over them (one signature per call, none for no
    /// events). Called by every hub write that audits (pushes, purges, quarantines, scope
    /// changes), so an event is durable exactly when what it records is: a rolled-back savepoint
    /// takes its events with it.
    ///
    /// - Parameters:
    ///   - events: The events, in the order they happened.
    ///   - db: The open write transaction.
    /// - Throws: ``StoreError`` `.corrupt` when the head row is missing or unreadable (the trail
    ///   cannot be continued: the write is refused rather than left unaudited), `.database` on a
    ///   read-only store or a SQLite failure.
    package func recordAudit(_ events: [AuditEvent], in db: Database) throws {
        guard !events.isEmpty else { return }
        guard let signingKey else { throw StoreError(.database, "a read-only hub store cannot audit", path: path) }
        guard let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT count, hash FROM hub_audit_head WHERE id = 1")),
              let stored = head[0] as Int64?, stored >= 0, let hashData = head[1] as Data?, hashData.count == SignedHead.chainSize
        else { throw StoreError(.corrupt, "the audit head is missing or unreadable; the write is refused", path: path, table: "hub_audit_head") }
        let insert = try db.cachedStatement(sql: "INSERT INTO hub_audit (seq, \(HubAuditSchema.columns), hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        var count = UInt64(stored)
        var hash = Array(hashData)
        for event in events {
            count += 1
            hash = AuditChain.next(after: hash, event: event, seq: count)
            try BulkStatement.execute(insert, in: db, values: [FieldValue.integer(Int64(count))] + HubAuditSchema.values(event) + [.blob(hash)])
        }
        let signature = signingKey.signature(for: AuditChain.headSignedBytes(hub: hubID, count: count, hash: hash))
        try db.cachedStatement(sql: "UPDATE hub_audit_head SET count = ?, hash = ?, signature = ? WHERE id = 1")
            .execute(arguments: [Int64(count), Data(hash), Data(signature)])
    }

    /// Up to `limit` events after sequence `after`, in order (for the operator's listing).
    ///
    /// - Throws: ``StoreError`` `.schemaTooOld` for a hub file without a trail yet, `.corrupt` for
    ///   an event that cannot be read, `.database`.
    public func auditEvents(after seq: UInt64, limit: Int) throws -> [AuditRecord] {
        try ReplicaStore.guarded {
            try reads.read { db in
                try requireTrail(db)
                let rows = try Row.fetchCursor(db, sql: "SELECT seq, \(HubAuditSchema.columns), hash FROM hub_audit WHERE seq > ? ORDER BY seq LIMIT ?",
                                               arguments: [Int64(clamping: seq), max(0, limit)])
                var records: [AuditRecord] = []
                while let row = try rows.next() {
                    let position: Int64 = row[0]
                    guard let event = HubAuditSchema.event(from: row), let hash = row[12] as Data? else {
                        throw StoreError(.corrupt, "audit event \(position) is unreadable", path: path, table: "hub_audit")
                    }
                    records.append(AuditRecord(seq: UInt64(max(0, position)), event: event, hash: Array(hash)))
                }
                return records
            }
        }
    }

    /// Checks the audit trail: every event's hash against the chain recomputed from the first,
    /// the sequence for gaps, and the head for its count, hash and signature by the hub key.
    /// Streams the events (one read transaction, one event in memory at a time).
    ///
    /// What it cannot see, by construction: the whole trail put back to empty, or to an earlier
    /// state with its head, by someone who can write the file (compare ``AuditVerification/headHash``
    /// and the count with values kept elsewhere).
    ///
    /// - Returns: Intact with the count and head hash, or the first broken sequence and why.
    /// - Throws: ``StoreError`` `.schemaTooOld` for a hub file without a trail yet, `.database`.
    public func verifyAudit() throws -> AuditVerification {
        try ReplicaStore.guarded {
            try reads.read { db in
                try requireTrail(db)
                return try Self.verifyAudit(db, hub: hubID, hubKey: hubKey)
            }
        }
    }

    private func requireTrail(_ db: Database) throws {
        guard try db.tableExists("hub_audit") else {
            throw StoreError(.schemaTooOld, "the hub database has no audit trail yet; open it for writing once", path: path, table: "hub_audit")
        }
    }

    private static func verifyAudit(_ db: Database, hub: ReplicaID, hubKey: [UInt8]) throws -> AuditVerification {
        var hash = AuditChain.genesis
        var verified: UInt64 = 0
        func broken(_ seq: UInt64, _ reason: AuditVerification.Reason, _ message: String) -> AuditVerification {
            .failure(seq, reason, message, verified: verified, hash: hash)
        }
        let rows = try Row.fetchCursor(db, sql: "SELECT seq, \(HubAuditSchema.columns), hash FROM hub_audit ORDER BY seq")
        while let row = try rows.next() {
            let expected = verified + 1
            guard let position = row[0] as Int64?, position > 0 else {
                return broken(expected, .unreadable, "an audit event has sequence \(String(describing: row[0] as Int64?)), not \(expected)")
            }
            guard UInt64(position) == expected else {
                return broken(expected, .removed, "audit events \(expected)…\(position - 1) are missing (removed or moved)")
            }
            guard let event = HubAuditSchema.event(from: row) else { return broken(expected, .unreadable, "audit event \(expected) is unreadable") }
            let next = AuditChain.next(after: hash, event: event, seq: expected)
            guard (row[12] as Data?).map { Array($0) } == next else {
                return broken(expected, .changed, "audit event \(expected) does not match the chain: it, or the event before it with its hash, was changed")
            }
            hash = next
            verified = expected
        }
        guard let head = try Row.fetchOne(db, sql: "SELECT count, hash, signature FROM hub_audit_head WHERE id = 1"),
              let headCount = head[0] as Int64?, headCount >= 0, let headHash = head[1] as Data?
        else { return broken(verified + 1, .unreadable, "the audit head is missing or unreadable") }
        let count = UInt64(headCount)
        if count > verified {
            return broken(verified + 1, .tailRemoved, "the signed head counts \(count) audit events, the trail holds \(verified): the last were removed")
        }
        if count < verified {
            return broken(count + 1, .headMismatch, "audit events \(count + 1)…\(verified) are not covered by the signed head")
        }
        guard Array(headHash) == hash else { return broken(count, .headMismatch, "the audit head's hash is not the chain's at event \(count)") }
        // An empty trail as the migration left it has no signature yet: nothing to protect.
        if count == 0, head.hasNull(atIndex: 2) { return AuditVerification(verifiedEvents: 0, headHash: hash) }
        let signed = AuditChain.headSignedBytes(hub: hub, count: count, hash: hash)
        guard let signature = head[2] as Data?,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: hubKey), key.isValidSignature(signature, for: signed)
        else { return broken(count, .headSignatureInvalid, "the audit head's signature is not the hub key's") }
        return AuditVerification(verifiedEvents: verified, headHash: hash)
    }

    /// Refusals a push's audit records (`REJECTED_WRITE`): the store refused what the replica sent.
    /// A storage failure is not one (nothing was refused; the replica retries).
    static let auditedRefusals: Set<StoreError.Code> = [.limitExceeded, .signatureInvalid, .chainGap, .unsignedChanges, .unknownDevice]

    /// Audits a push the store refused, in the group's transaction after the push's savepoint was
    /// rolled back; nothing for an error that is not a refusal.
    func auditRefusal(_ db: Database, _ push: HubPush, _ error: any Error) throws {
        if let refused = error as? Equivocations {
            try recordAudit([.rejected(push, code: StoreError.Code.equivocation.name, change: refused.found.first?.change)], in: db)
        } else if let error = error as? StoreError, Self.auditedRefusals.contains(error.code) {
            try recordAudit([.rejected(push, code: error.code.name, change: error.change)], in: db)
        }
    }
}
