import Foundation
import CareRecords
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// Bugs the scope-aware network simulator (`Simulation.Workload.careTeams`) found, each pinned by
/// a small in-process scenario: real care replicas, real sessions, a scoped hub store.
@Suite("Found by the scoped simulator: small batches and budgets")
struct SimulatorFoundTests {
    final class World {
        let directory: String
        let clock = SimulatedClock(world: 1_750_000_000_000, step: 1)
        var random = SeededGenerator(seed: 11)
        let hub: SQLiteHubStore

        init(_ name: String) throws {
            directory = TestFiles.directory(name)
            hub = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: clock, random: &random,
                                     hubKeyedOrigins: EntitlementCatalogue.hubOrigins, scopeRules: CareScopeRules())
        }

        func replica(_ name: String, team: String, configuration: ClientConfiguration = ClientConfiguration()) throws -> CareReplica {
            let box = GeneratorBox(SeededGenerator(seed: random.next()))
            let replica = try CareReplica.create(at: "\(directory)/\(name).db", name: name, wallClock: clock, random: RandomSource { box.next() })
            let token = try hub.issueEnrolmentToken(team: team, expiresAtMillis: .max, random: &random)
            let session = try InlineSync.run(replica.store, hub: hub, token: token, nowMillis: clock.nowMillis(), configuration: configuration).session
            #expect(session.failure == nil)
            return replica
        }

        func youngPerson(by replica: CareReplica) throws -> String {
            try replica.add("young_person", fields: ["legal_given_name": "Yan", "legal_family_name": "Test", "date_of_birth": "2010-02-03"],
                            author: "w")
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test("a care replica whose push batch is smaller than the catalogue still pushes its own changes (the catalogue filled every batch)")
    func smallPushBatches() throws {
        let world = try World("found-push")
        var configuration = ClientConfiguration()
        configuration.pushBatchChanges = 3
        let replica = try world.replica("r", team: "A", configuration: configuration)
        try #require(EntitlementCatalogue.publishedChanges().count > 3)
        let y = try world.youngPerson(by: replica)
        let session = try InlineSync.run(replica.store, hub: world.hub, nowMillis: world.clock.nowMillis(), configuration: configuration).session
        #expect(session.failure == nil)
        let stored = try world.hub.changes(ofOrigin: replica.store.replicaID, after: 0, byteBudget: 1 << 20, maxCount: 100).decodeChanges()
        #expect(stored.contains { $0.scope == y }, "the young person's record reached the hub")
        #expect(try world.hub.changes(ofOrigin: EntitlementCatalogue.publisher, after: 0, byteBudget: 1 << 20, maxCount: 100).decodeChanges().isEmpty,
                "the catalogue is not pushed")
    }

    @Test("a replica brought back into a young person it purged gets its own changes of the bundle again (the feed passed over them)")
    func ownChangesAfterPurgeAndScopeIn() throws {
        let world = try World("found-own")
        let a1 = try world.replica("a1", team: "A")
        let b1 = try world.replica("b1", team: "B")
        // a1 records Y and hands it to B in one push: A is owed a purge of Y.
        let y = try world.youngPerson(by: a1)
        try a1.add("allocation", fields: ["yp_id": y, "role": "social_worker", "worker_id": "w-b", "team_id": "B", "from_date": "2025-01-02"],
                   author: "w")
        for replica in [a1, a1, b1] {
            #expect(try InlineSync.run(replica.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session.failure == nil)
        }
        #expect(try a1.list("young_person").isEmpty, "a1 purged Y")
        // B brings A in again: a1 receives Y's whole bundle, its own record of Y included.
        try b1.setAdd("young_person", id: y, field: "involved_teams", element: "A", author: "w")
        for replica in [b1, a1] {
            #expect(try InlineSync.run(replica.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session.failure == nil)
        }
        #expect(try a1.list("young_person").contains { $0["id"] == .text(y) }, "a1 holds Y's own record again")
        #expect(try a1.list("allocation", where: ["yp_id": y]).count == 1)
    }

    @Test("a team feed page whose first signed run outgrows the pull budget is served whole (the hub trapped in feedPage)")
    func pullBudgetSmallerThanARun() throws {
        let world = try World("found-pull")
        let writer = try world.replica("a1", team: "A")
        var small = ClientConfiguration()
        small.pullBudget = 1_024
        let reader = try world.replica("a2", team: "A", configuration: small)
        let y = try world.youngPerson(by: writer)
        // One push, one scope: one signed head, at the end of the run of 9 changes (~3 KB).
        for index in 0..<8 {
            try writer.add("case_note", fields: ["yp_id": y, "category": "visit", "occurred_at": "2025-06-01",
                                                 "body": "note \(index) " + String(repeating: "x", count: 300)], author: "w")
        }
        #expect(try InlineSync.run(writer.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session.failure == nil)
        let session = try InlineSync.run(reader.store, hub: world.hub, nowMillis: world.clock.nowMillis(), configuration: small).session
        #expect(session.failure == nil)
        #expect(try reader.list("case_note", where: ["yp_id": y]).count == 8)
    }

    /// Known gap (Protocol/scope.md, "Not yet built"), found by the scoped simulation with replica
    /// restores on (seed 3164902716358174201): the hub owes a purge until the replica acknowledges
    /// it, and never again; a file restored from a backup taken before the purge holds the bundle
    /// again, and nothing removes it. Recorded as a known issue, so that this test fails once a fix
    /// makes the restored file purge the bundle (then drop `withKnownIssue`).
    @Test("a replica file restored from a backup older than an acknowledged purge holds the purged bundle again (known gap)")
    func restoredFileBringsBackAPurgedBundle() throws {
        let world = try World("found-restore")
        let a1 = try world.replica("a1", team: "A")
        let path = "\(world.directory)/a1.db"
        // a1 records Y and hands it to B: A is owed a purge of Y, which a1's next session carries out.
        let y = try world.youngPerson(by: a1)
        try a1.add("allocation", fields: ["yp_id": y, "role": "social_worker", "worker_id": "w-b", "team_id": "B", "from_date": "2025-01-02"],
                   author: "w")
        #expect(try InlineSync.run(a1.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session.failure == nil)
        try a1.store.backup(to: "\(world.directory)/a1-backup.db")
        let purging = try InlineSync.run(a1.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session
        #expect(purging.failure == nil && purging.summary.purged == 1)
        #expect(try a1.list("young_person").isEmpty, "a1 purged Y")
        try a1.store.close()
        // The user restores the file from the backup: it holds Y again, all of it pushed before.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: "\(world.directory)/a1-backup.db", toPath: path)
        let box = GeneratorBox(SeededGenerator(seed: world.random.next()))
        let restored = try CareReplica.open(at: path, wallClock: world.clock, random: RandomSource { box.next() })
        for _ in 0..<2 {
            #expect(try InlineSync.run(restored.store, hub: world.hub, nowMillis: world.clock.nowMillis()).session.failure == nil)
        }
        #expect(try world.hub.purgesOwed(replica: restored.store.replicaID, limit: 10).isEmpty, "the hub owes a1 nothing: it acknowledged")
        let (people, bundle) = (try restored.list("young_person"), try restored.store.bundleSize(scope: y))
        withKnownIssue("the hub does not owe an acknowledged purge again to a restored file") {
            #expect(people.isEmpty && bundle.isEmpty, "Y is outside a1's scope")
        }
    }
}
