import Foundation
import CareRecords
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Issue 10, Build 5 and 6: views of a restricted record are recorded by the replica (offline)
/// and uploaded, and the hub audits them; conflict resolutions are audited. Real care replicas,
/// real sessions, a real scoped hub store with the care rules (`ScopedCareWorld`).
@Suite("Restricted views and conflict resolutions reach the hub's audit trail")
struct RestrictedViewTests {
    /// Y recorded by b1 and allocated to team B, with a case note; restricted to `named` when given.
    static func youngPerson(in world: ScopedCareWorld, restrictedTo named: [CareReplica]?) throws -> (y: String, note: String) {
        let y = try world.youngPerson(by: world.b1)
        let note = try world.b1.add("case_note", fields: ["yp_id": y, "category": "visit", "occurred_at": "2025-06-01", "body": "note"],
                                    author: "w")
        _ = try world.allocate(y, team: "B", role: .socialWorker, by: world.b1)
        if let named { try world.restrict(y, to: named, by: world.b1) }
        try world.sync(world.b1)
        return (y, note)
    }

    static func events(_ world: ScopedCareWorld, _ kind: AuditEvent.Kind) throws -> [AuditEvent] {
        try world.hub.auditEvents(after: 0, limit: 10_000).map(\.event).filter { $0.kind == kind }
    }

    /// One sync whose push reaches the hub (stored, durable) but whose push-ack never reaches the
    /// replica: the connection drops, as at a crash of the client before it took the ack.
    static func syncLosingTheAck(_ replica: CareReplica, _ world: ScopedCareWorld) throws {
        let secret = try #require(try replica.store.hubLink()?.credential)
        var client = ClientSession(store: replica.store, credential: .device(secret), configuration: ClientConfiguration(), random: RandomSource { 99 })
        var server = InlineHubSession(store: world.hub, random: RandomSource { 7 })
        var toHub = client.start()
        for _ in 0..<1_000 {
            var toClient: [Message] = []
            for case let .send(message) in toHub {
                for case let .send(reply) in server.receive(message, nowMillis: world.now) { toClient.append(reply) }
            }
            if toClient.contains(where: { if case .pushAck = $0 { true } else { false } }) { return }
            toHub = toClient.flatMap { client.receive($0) }
            if client.isFinished || toHub.isEmpty { break }
        }
        Issue.record("the sync pushed nothing")
    }

    @Test("a view of a restricted record made offline reaches the hub's audit at the next sync exactly once, with who, device, record, occurred and received times, also when the push's ack was lost or it is pushed twice")
    func offlineViewAuditedOnce() throws {
        let world = try ScopedCareWorld(name: "views-offline")
        defer { world.remove() }
        let (y, note) = try Self.youngPerson(in: world, restrictedTo: [world.b1, world.b2])
        #expect(try Self.events(world, .restrictedView).isEmpty)
        // Offline: the view is recorded locally; the hub learns nothing until b1 syncs.
        world.clock.advance(5_000)
        let viewedAt = world.now
        #expect(try world.b1.restrictedRecords(among: [("case_note", note), ("young_person", y)]).count == 2)
        #expect(try world.b1.recordViews(of: [("case_note", note), ("case_note", note)], via: .show, author: "morgan.lee") == 1)
        #expect(try Self.events(world, .restrictedView).isEmpty)
        world.clock.advance(60_000)
        let receivedAt = world.now
        try Self.syncLosingTheAck(world.b1, world)
        #expect(try Self.events(world, .restrictedView).count == 1, "stored and audited, the ack lost")
        try world.sync(world.b1)
        // A client that resends it anyway (an older one, or the hub's welcome lost too): a duplicate.
        let viewChange = try #require(try world.b1.store.changes(notIn: VersionVector()).first { $0.table == RecordView.tableName })
        let again = try world.hub.append([viewChange], from: world.b1.store.replicaID,
                                         provenance: world.b1.store.provenance(for: [viewChange]), receivedAtMillis: world.now)
        #expect(again.stored == 0 && again.duplicates == 1)
        try world.sync(world.b1)
        let views = try Self.events(world, .restrictedView)
        try #require(views.count == 1, "one view, one event, whatever was resent")
        let view = views[0]
        #expect(view.actor == "morgan.lee")
        #expect(view.device == world.b1.store.replicaID)
        #expect(view.table == "case_note" && view.row == note && view.scope == y)
        #expect(view.occurredAtMillis >= viewedAt && view.occurredAtMillis < receivedAt, "the replica's clock at the view")
        #expect(view.receivedAtMillis >= receivedAt, "the hub's clock at the sync")
        #expect(view.detail == "VIA=show")
        #expect(try world.hub.verifyAudit().isIntact)
    }

    @Test("reading a record that is not restricted records nothing and uploads nothing")
    func unrestrictedViewRecordsNothing() throws {
        let world = try ScopedCareWorld(name: "views-unrestricted")
        defer { world.remove() }
        let (y, note) = try Self.youngPerson(in: world, restrictedTo: nil)
        let before = try world.b1.store.changes(notIn: VersionVector()).count
        #expect(try world.b1.restrictedRecords(among: [("case_note", note), ("young_person", y)]).isEmpty)
        #expect(try world.b1.recordViews(of: [("case_note", note), ("young_person", y)], via: .show, author: "w") == 0)
        #expect(try world.b1.store.changes(notIn: VersionVector()).count == before, "no write")
        try world.sync(world.b1)
        #expect(try Self.events(world, .restrictedView).isEmpty)
    }

    @Test("a view row reaches the replicas on the restriction and no other: not the other replicas of its teams, not another team's")
    func viewRowStaysWithinRestriction() throws {
        let world = try ScopedCareWorld(name: "views-acl")
        defer { world.remove() }
        let (y, note) = try Self.youngPerson(in: world, restrictedTo: [world.b1, world.a2])
        _ = try world.allocate(y, team: "A", role: .supervisingSocialWorker, by: world.b1)
        try world.sync(world.b1)
        for replica in [world.a1, world.a2, world.b2, world.c1] { try world.sync(replica) }
        #expect(try world.b1.recordViews(of: [("case_note", note)], via: .list, author: "w") == 1)
        try world.sync(world.b1)
        for replica in [world.a1, world.a2, world.b2, world.c1] { try world.sync(replica) }
        func views(_ replica: CareReplica) throws -> Int {
            try replica.store.changes(notIn: VersionVector()).filter { $0.table == RecordView.tableName }.count
        }
        #expect(try views(world.a2) == 1, "on the restriction: a manager named on it sees who looked")
        for outside in [world.a1, world.b2, world.c1] {
            #expect(try views(outside) == 0, "\(outside.store.replicaID.short) is not on the restriction")
            #expect(try world.holdsNothing(of: y, at: outside))
        }
        #expect(try Self.events(world, .restrictedView).count == 1)
    }

    @Test("a view by a replica not on the restriction (it restricted the record to others) is quarantined and still audited as the view; its purge takes the view rows")
    func viewOffTheRestrictionAudited() throws {
        let world = try ScopedCareWorld(name: "views-off-restriction")
        defer { world.remove() }
        let (y, note) = try Self.youngPerson(in: world, restrictedTo: [world.b2])
        #expect(try world.b1.recordViews(of: [("case_note", note)], via: .show, author: "w") == 1)
        try world.sync(world.b1)
        let view = try #require(try Self.events(world, .restrictedView).first)
        #expect(view.row == note && view.scope == y && view.device == world.b1.store.replicaID)
        #expect(try Self.events(world, .quarantinedWrite).contains { $0.change == view.change }, "held, not relayed")
        try world.sync(world.b2)
        #expect(try world.b2.store.changes(notIn: VersionVector()).allSatisfy { $0.table != RecordView.tableName })
        // b1 is off the restriction: the purge it is owed (after pushing the view) takes its view
        // rows with the bundle.
        #expect(try world.b1.store.read { try $0.rows(RecordView.tableName) }.isEmpty)
        #expect(try world.holdsNothing(of: y, at: world.b1))
    }

    @Test("a resolved conflict is a CONFLICT_RESOLUTION event (who, device, record, field, when), the concurrent edits are not; the chain verifies")
    func resolutionAudited() throws {
        let world = try ScopedCareWorld(name: "views-resolution")
        defer { world.remove() }
        let (y, _) = try Self.youngPerson(in: world, restrictedTo: nil)
        try world.sync(world.b2)
        try world.b1.edit("young_person", id: y, fields: ["legal_given_name": "Yann"], author: "w1")
        try world.b2.edit("young_person", id: y, fields: ["legal_given_name": "Yanne"], author: "w2")
        try world.sync(world.b1)
        try world.sync(world.b2)
        try world.sync(world.b1)
        #expect(try world.b1.conflicts().contains { $0.recordID == y && $0.field == "legal_given_name" })
        #expect(try Self.events(world, .conflictResolution).isEmpty, "concurrent edits resolve nothing")
        world.clock.advance(1_000)
        let resolvedAt = world.now
        try world.b1.resolve("young_person", id: y, field: "legal_given_name", value: nil, pick: 1, author: "morgan.lee")
        try world.sync(world.b1)
        let resolutions = try Self.events(world, .conflictResolution)
        try #require(resolutions.count == 1)
        let event = resolutions[0]
        #expect(event.actor == "morgan.lee" && event.device == world.b1.store.replicaID)
        #expect(event.table == "young_person" && event.row == y && event.scope == y)
        #expect(event.detail == "FIELD=legal_given_name CANDIDATES=2")
        #expect(event.occurredAtMillis >= resolvedAt)
        #expect(!event.detail.contains("Yann"))
        #expect(try world.hub.verifyAudit().isIntact)
    }

    @Test("a forged view row cannot carry text into the trail: a record kind or id that is not one is left out (MALFORMED)")
    func forgedViewRow() {
        let origin = ReplicaID(high: 1, low: 2)
        let change = Change(id: ChangeID(replica: origin, counter: 3), timestamp: HybridTimestamp(physicalMillis: 10, logical: 0), author: "w",
                            table: RecordView.tableName, row: "v1", scope: "y1", causalLength: 1, setsLife: true,
                            fields: [FieldEdit(column: "viewed_kind", operation: .assign(.text("case_note"))),
                                     FieldEdit(column: "viewed_id", operation: .assign(.text("MARKER free text"))),
                                     FieldEdit(column: "viewed_at", operation: .assign(.integer(7)))])
        let generic = AuditEvent(kind: .create, actor: "w", device: origin, table: change.table, row: change.row, scope: change.scope,
                                 change: change.id, occurredAtMillis: 10, receivedAtMillis: 20)
        let event = CareScopeRules().audit(generic, of: change)
        #expect(event.kind == .restrictedView)
        #expect(event.table.isEmpty && event.row.isEmpty && event.detail == "MALFORMED")
        #expect(event.occurredAtMillis == 7 && event.receivedAtMillis == 20 && event.scope == "y1")
    }

    @Test("a schema v2 replica file upgrades to v3 (care-v3-views) at its next open for writing, with its records; a read before that is refused with the way to upgrade")
    func upgradesFromV2() throws {
        let directory = TestFiles.directory("views-v2")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/v2.db"
        let clock = SimulatedClock(world: 1_750_000_000_000, step: 1)
        let replica = try CareReplica.create(at: path, name: "v2", wallClock: clock, random: RandomSource { 5 })
        let y = try replica.add("young_person", fields: ["legal_given_name": "Yan", "legal_family_name": "Test", "date_of_birth": "2010-02-03"], author: "w")
        // The file as schema v2 left it: no record_view table, no care-v3-views in the migration log.
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        sqlite.arguments = [path, """
            DROP TABLE record_view; DELETE FROM grdb_migrations WHERE identifier = 'care-v3-views'; UPDATE sync_state SET schema_version = 2;
            """]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0)
        #expect(throws: StoreError.self) { try CareReplica.open(at: path, wallClock: clock, random: RandomSource { 5 }, access: .readOnly) }
        let upgraded = try CareReplica.open(at: path, wallClock: clock, random: RandomSource { 5 })
        #expect(try upgraded.record("young_person", id: y)["legal_given_name"] == .text("Yan"))
        try upgraded.edit("young_person", id: y, fields: ["restricted": "yes"], author: "w")
        #expect(try upgraded.recordViews(of: [("young_person", y)], via: .show, author: "w") == 1)
        #expect(try upgraded.store.status().schemaVersion == CareSchema.version)
    }
}
