import Foundation
import ProcessHarness
import Testing

/// Quarantine review through the CLI and a real hub process (Protocol/scope.md, "Quarantine
/// review"): a replica of team B edits a young person who was transferred to team A while it was
/// offline; team A's replicas receive the held write, one lists, shows and accepts it; the edit
/// reaches every A replica as the reviewer's change, and nothing of it reaches team B's replicas.
extension CLITests {
    @Test("a stale edit of a transferred young person is held for the new team's review, accepted as the reviewer's change, and never reaches the old team")
    func quarantineReviewAcrossTeams() throws {
        let hubDB = "\(directory)/hub.db"
        let marker = "ZQHELD-preferred-\(UUID().uuidString.prefix(8))"
        var hub = try HubProcess(database: hubDB)
        defer { _ = hub.stop() }
        var ids: [String: String] = [:]
        for (name, team) in [("a1", "TEAM-A"), ("a2", "TEAM-A"), ("b1", "TEAM-B"), ("b2", "TEAM-B")] {
            #expect(try run(["init", "\(directory)/\(name).db"], replica: nil).status == 0)
            let token = try run(["hub", "enroll", "--db", hubDB, "--team", team], replica: nil).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let sync = try run(["sync", "--hub", hub.address, "--token", token, "--json"], replica: "\(name).db")
            #expect(sync.status == 0, "\(sync.stderr)")
            ids[name] = try #require(try json(sync.stdout) as? [String: Any])["replica_id"] as? String
        }
        func sync(_ name: String) throws -> [String: Any] {
            let result = try run(["sync", "--json"], replica: "\(name).db")
            #expect(result.status == 0, "\(name): \(result.stderr)")
            return try #require(try json(result.stdout) as? [String: Any])
        }
        func heldList(_ name: String) throws -> [[String: Any]] {
            try #require(try json(try run(["quarantine", "list", "--json"], replica: "\(name).db").stdout) as? [[String: Any]])
        }
        func hubCounts() throws -> [String: Int] {
            let summary = try #require(try json(try run(["hub", "quarantine", "--db", hubDB, "--json"], replica: nil).stdout) as? [String: Any])
            var counts: [String: Int] = [:]
            for entry in summary["counts"] as? [[String: Any]] ?? [] { counts["\(entry["state"] ?? "")", default: 0] += entry["count"] as? Int ?? 0 }
            return counts
        }

        // Team B records the young person; both B replicas hold them.
        let person = try run(["add", "young_person", "legal_given_name=Cara", "legal_family_name=Held", "date_of_birth=2009-06-20"], replica: "b1.db")
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(["set-add", "young_person", person, "involved_teams", "TEAM-B"], replica: "b1.db").status == 0)
        _ = try sync("b1")
        _ = try sync("b2")
        #expect(try run(["show", "young_person", person], replica: "b2.db").status == 0)
        // b2, offline, edits them; meanwhile b1 transfers them to team A.
        #expect(try run(["edit", "young_person", person, "preferred_name=\(marker)"], replica: "b2.db").status == 0)
        #expect(try run(["set-add", "young_person", person, "involved_teams", "TEAM-A"], replica: "b1.db").status == 0)
        #expect(try run(["set-remove", "young_person", person, "involved_teams", "TEAM-B"], replica: "b1.db").status == 0)
        _ = try sync("b1")
        _ = try sync("a1")
        _ = try sync("a2")
        // b2 comes back: its edit reaches the hub first, is quarantined, and the bundle is purged here.
        let back = try sync("b2")
        #expect(back["purged"] as? Int == 1, "\(back)")
        #expect(try hubCounts() == ["held": 1])

        // Team A's replicas receive it as held, not merged.
        #expect(try sync("a1")["held_received"] as? Int == 1)
        _ = try sync("a2")
        #expect(try heldList("a2").count == 1)
        let listed = try heldList("a1")
        let item = try #require(listed.first)
        #expect(listed.count == 1)
        #expect(item["table"] as? String == "young_person" && item["row"] as? String == person && item["from_replica"] as? String == ids["b2"])
        #expect(item["reason"] as? String == "OUT_OF_SCOPE" && item["state"] as? String == "held" && item["author"] as? String == "alex")
        let id = try #require(item["id"] as? Int)
        let table = try run(["quarantine", "list"], replica: "a1.db").stdout
        #expect(table.contains("young_person") && table.contains("OUT_OF_SCOPE"), "\(table)")
        let shown = try #require(try json(try run(["quarantine", "show", String(id), "--json"], replica: "a1.db").stdout) as? [String: Any])
        let fields = try #require(shown["fields"] as? [[String: Any]])
        #expect(fields.map { "\($0["field"] ?? "") \($0["operation"] ?? "") \($0["value"] ?? "")" } == ["preferred_name assign \(marker)"])
        #expect(try run(["quarantine", "show", String(id)], replica: "a1.db").stdout.contains(marker))
        let before = try #require(try json(try run(["show", "young_person", person, "--json"], replica: "a1.db").stdout) as? [String: Any])
        #expect((before["fields"] as? [String: Any])?["preferred_name"] as? String != marker, "held, not merged")

        // a1 accepts it as w-morgan's edit; the decision reaches the hub at the next sync.
        let accepted = try run(["quarantine", "accept", String(id), "--as", "w-morgan"], replica: "a1.db")
        #expect(accepted.status == 0, "\(accepted.stderr)")
        let again = try run(["quarantine", "accept", String(id), "--as", "w-morgan"], replica: "a1.db")
        #expect(again.status != 0 && again.stderr.contains("HELD_DECIDED"), "\(again.stderr)")
        #expect(try hubCounts() == ["held": 1], "not told before the sync")
        #expect(try sync("a1")["held_decisions_recorded"] as? Int == 1)
        #expect(try hubCounts() == ["accepted": 1])
        #expect(try heldList("a1").first?["state"] as? String == "accepted")

        // Every A replica has the edit as w-morgan's change; a2's held copy is gone.
        _ = try sync("a2")
        #expect(try heldList("a2").isEmpty)
        for name in ["a1", "a2"] {
            let record = try #require(try json(try run(["show", "young_person", person, "--json"], replica: "\(name).db").stdout) as? [String: Any])
            #expect((record["fields"] as? [String: Any])?["preferred_name"] as? String == marker, "\(name)")
            let history = try #require(try json(try run(["history", "young_person", person, "--field", "preferred_name", "--json"],
                                                        replica: "\(name).db").stdout) as? [[String: Any]])
            #expect(history.map { "\($0["author"] ?? "") \($0["replica"] ?? "")" } == ["w-morgan \(ids["a1"] ?? "")"], "\(name): \(history)")
        }
        // Nothing of it on team B's replicas: no held write, no record, no byte of the edit.
        for name in ["b1", "b2"] {
            _ = try sync(name)
            #expect(try heldList(name).isEmpty)
            #expect(!(try run(["list", "young_person"], replica: "\(name).db").stdout.contains(person)))
            for suffix in ["", "-wal"] {
                let bytes = FileManager.default.contents(atPath: "\(directory)/\(name).db\(suffix)") ?? Data()
                #expect(bytes.range(of: Data(marker.utf8)) == nil, "\(name).db\(suffix) holds the edit")
            }
        }
        _ = hub.stop()
        hub = try HubProcess(database: hubDB)
        #expect(try run(["audit", "verify", "--db", hubDB], replica: nil).status == 0)
    }
}
