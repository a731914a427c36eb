import Foundation
import ProcessHarness
import Testing

/// A purge the hub owes, through the CLI (Protocol/scope.md, "Purge"): `caresync sync --json`
/// says how many young people's records it purged, `caresync hub replicas` counts purges owed and
/// acknowledged, never which.
extension CLITests {
    func replicasJSON() throws -> [[String: Any]] {
        try #require(try json(try run(["hub", "replicas", "--db", "\(directory)/hub.db", "--json"]).stdout) as? [[String: Any]])
    }

    @Test("sync --json counts the scopes purged at the hub's word; hub replicas --json counts purges owed and acknowledged")
    func purgeThroughTheCLI() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let person = try run(["add", "young_person", "legal_given_name=Ava", "legal_family_name=Marker", "date_of_birth=2007-03-14"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var hub = try HubProcess(database: "\(directory)/hub.db")
        let token = try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let enrolment = try run(["sync", "--hub", hub.address, "--token", token, "--json"])
        #expect(enrolment.status == 0, "\(enrolment.stderr)")
        let enrolled = try #require(try json(enrolment.stdout) as? [String: Any])
        #expect(enrolled["purged"] as? Int == 0 && enrolled["purges_waiting"] as? Int == 0)
        let replica = try #require(enrolled["replica_id"] as? String)
        _ = hub.stop()

        // Owed as the hub's scope rules would owe it (the sqlite3 shell; FileIdentityCLITests' helper).
        _ = try sqlite("hub.db", "INSERT INTO hub_purge (replica_id, scope, owed_at) VALUES ('\(replica)', '\(person)', 1)")
        let owed = try replicasJSON()
        #expect(owed.first?["purges_owed"] as? Int == 1 && owed.first?["purges_acknowledged"] as? Int == 0, "\(owed)")
        let table = try run(["hub", "replicas", "--db", "\(directory)/hub.db"]).stdout
        #expect(table.contains("PURGES OWED") && !table.contains(person), "counts only: \(table)")

        hub = try HubProcess(database: "\(directory)/hub.db")
        defer { _ = hub.stop() }
        let sync = try run(["sync", "--hub", hub.address, "--json"])
        #expect(sync.status == 0, "\(sync.stderr)")
        let synced = try #require(try json(sync.stdout) as? [String: Any])
        #expect(synced["purged"] as? Int == 1, "\(synced)")
        #expect(!(try run(["list", "young_person"]).stdout.contains("Marker")), "the young person's records are gone")
        let acknowledged = try replicasJSON()
        #expect(acknowledged.first?["purges_owed"] as? Int == 0 && acknowledged.first?["purges_acknowledged"] as? Int == 1, "\(acknowledged)")
        let said = try run(["sync", "--hub", hub.address]).stdout
        #expect(!said.contains("purged"), "nothing more to purge: \(said)")
    }
}
