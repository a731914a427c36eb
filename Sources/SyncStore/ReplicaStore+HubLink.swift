import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// What a replica remembers about its hub.
public struct HubLink: Equatable, Sendable {
    /// The hub's address (`host:port`).
    public let address: String
    /// The hub's id, once a welcome named it.
    public let hubID: ReplicaID?
    /// The device secret issued at enrolment, once enrolled (from the identity file; from the
    /// database only for a replica that has no identity file).
    public let credential: [UInt8]?
    /// The hub sequence up to which this replica has pulled (and applied).
    public let pullCursor: UInt64
    /// When the last sync ended.
    public let lastSyncAtMillis: UInt64?
    /// The error code the last sync ended with; nil after a clean one.
    public let lastError: String?
    /// The identity this replica had before it forked, while the hub's changes of that origin
    /// (written by the other copy) are still to be received.
    public let forkedFrom: ReplicaID?
}

/// The replica's own health, as it reports it to the hub: counts and ages, never contents.
public struct LocalHealth: Equatable, Sendable {
    /// Own changes the hub has not acknowledged.
    public let pendingChanges: UInt64
    /// The age of the oldest of them (0 if none).
    public let oldestUnsyncedAgeMillis: UInt64
    /// Fields in open conflict.
    public let openConflicts: UInt64
    /// The replica's schema version.
    public let schemaVersion: UInt64
}

extension ReplicaStore {
    /// The replica's link to its hub, or nil if it never linked one.
    ///
    /// - Throws: ``StoreError`` `.database`.
    public func hubLink() throws -> HubLink? {
        try readDatabase { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT address, hub_id, credential, pull_cursor, last_sync_at, last_error, forked_from FROM sync_hub
                """) else { return nil }
            return HubLink(address: row[0], hubID: (row[1] as String?).flatMap(ReplicaID.init(hex:)),
                           credential: deviceSecret ?? (row[2] as Data?).map(Array.init),
                           pullCursor: UInt64(bitPattern: row[3] as Int64), lastSyncAtMillis: (row[4] as Int64?).map { UInt64(max(0, $0)) },
                           lastError: row[5], forkedFrom: (row[6] as String?).flatMap(ReplicaID.init(hex:)))
        }
    }

    /// Sets the hub address. The credential and cursor stay: a hub may move (a new port, a new
    /// host name); if a different hub answers, `recordHub` resets the cursor.
    public func setHubAddress(_ address: String) throws {
        try writeContext { context in try Self.saveHubAddress(address, in: context.db) }
    }

    static func saveHubAddress(_ address: String, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO sync_hub (id, address, pull_cursor) VALUES (1, ?, 0)
            ON CONFLICT (id) DO UPDATE SET address = excluded.address
            """, arguments: [address])
    }

    /// Records the hub's identity, the address it answered on and, at enrolment, the device
    /// secret it issued: one transaction, run only after that hub's welcome.
    package func recordHub(_ hubID: ReplicaID, address: String? = nil, credential: [UInt8]?) throws {
        // The secret goes to the identity file (the database keeps it only for a replica without one).
        if let credential, device.value != nil { try setDeviceSecret(credential) }
        let inDatabase = device.value == nil ? credential : nil
        try writeContext { context in
            if let address { try Self.saveHubAddress(address, in: context.db) }
            if let existing = try String.fetchOne(context.db, sql: "SELECT hub_id FROM sync_hub"), existing != hubID.hex {
                // A different hub behind the same address: its cursor means nothing here.
                try context.db.execute(sql: "UPDATE sync_hub SET pull_cursor = 0")
            }
            try context.db.execute(sql: "UPDATE sync_hub SET hub_id = ?", arguments: [hubID.hex])
            if let inDatabase {
                try context.db.execute(sql: "UPDATE sync_hub SET credential = ?", arguments: [Data(inDatabase)])
            }
        }
    }

    /// Applies a batch pulled from the hub and advances the pull cursor in the same transaction,
    /// so an interrupted sync resumes after the last batch applied, never from zero.
    ///
    /// Without a cursor (changes answering a recover), only the changes are applied.
    /// With `provenance`, the batch is verified first (``apply(_:provenance:)``): the client session
    /// always passes the batch's. Without, it is not (tests and tools below the sessions).
    package func applyFromHub(_ changes: [Change], hub: ReplicaID, nextCursor: UInt64?, provenance: Provenance? = nil) throws -> ApplySummary {
        var pulled: [ReplicaID: UInt64] = [:]
        for change in changes { pulled[change.id.replica] = max(pulled[change.id.replica] ?? 0, change.id.counter) }
        return try apply(changes, provenance: provenance) { context in
            if let nextCursor {
                try context.db.execute(sql: "UPDATE sync_hub SET pull_cursor = max(pull_cursor, ?)",
                                       arguments: [Int64(bitPattern: nextCursor)])
            }
            // What came from the hub is on the hub: never push it back. Recorded in the same
            // transaction as the changes, so a crash cannot leave them marked but missing.
            try Self.mergePeerKnowledge(context, hub, VersionVector(pulled))
        }
    }

    /// Pulls start again from the beginning of the hub's log (a hub restored from an older backup
    /// hands out its sequence numbers again).
    package func resetPullCursor() throws {
        try writeContext { context in try context.db.execute(sql: "UPDATE sync_hub SET pull_cursor = 0") }
    }

    /// The hub's changes of the identity this replica forked from have all been received.
    package func finishForkRecovery() throws {
        try writeContext { context in try context.db.execute(sql: "UPDATE sync_hub SET forked_from = NULL") }
    }

    /// Records how a sync ended, with this store's clock as its time.
    ///
    /// - Parameter error: The error code it ended with (a code, never a message), or nil.
    /// - Throws: ``StoreError`` `.database`.
    package func recordSyncOutcome(error: String?) throws {
        try writeContext { context in
            try context.db.execute(sql: "UPDATE sync_hub SET last_sync_at = ?, last_error = ?", arguments: [context.recordedAt, error])
        }
    }

    /// Pending changes (not yet on the hub, as far as this replica knows, of origins this replica
    /// pushes: not the hub's nor the hub-keyed ones), the age of the oldest, open conflicts and
    /// schema version.
    package func health(hub: ReplicaID?) throws -> LocalHealth {
        let known = try hub.map { try peerKnowledge($0) } ?? VersionVector()
        return try readDatabase { db in
            var pending: UInt64 = 0
            var oldest: Int64?
            for row in try Row.fetchAll(db, sql: "SELECT id, replica_id FROM sync_origin") {
                // Hub-keyed origins (the catalogue's seed, the hub's own changes) are the hub's to
                // hold: never pushed, so never pending.
                guard let replica = ReplicaID(hex: row[1]), replica != hub, !hubKeyedOrigins.contains(replica) else { continue }
                let result = try Row.fetchOne(db, sql: "SELECT count(*), min(hlc) FROM sync_change WHERE origin = ? AND counter > ?",
                                              arguments: [row[0] as Int64, Int64(bitPattern: known[replica])])!
                pending += UInt64(result[0] as Int64)
                if let hlc = result[1] as Int64? { oldest = min(oldest ?? hlc, hlc) }
            }
            let now = wallClock.nowMillis()
            let oldestMillis = oldest.map { HybridTimestamp(rawValue: UInt64(bitPattern: $0)).physicalMillis } ?? now
            return LocalHealth(
                pendingChanges: pending, oldestUnsyncedAgeMillis: now > oldestMillis ? now - oldestMillis : 0,
                openConflicts: UInt64(try Int.fetchOne(db, sql: "SELECT count(*) FROM sync_field WHERE conflict = 1") ?? 0),
                schemaVersion: UInt64(try Int.fetchOne(db, sql: "SELECT schema_version FROM sync_state") ?? 0))
        }
    }
}
