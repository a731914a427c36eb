import Foundation
import ProcessHarness
import Testing

/// `caresync audit verify` and `audit list` on a hub that stored a replica's sync.
extension CLITests {
    @Test("audit verify: exit 0 and --json on an intact trail; exit 6 with the broken event and why on a tampered one; exit 3 for a missing or foreign file")
    func auditVerify() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let marker = "MARKER-AUDIT-9c1"
        #expect(try run(["add", "young_person", "legal_given_name=\(marker)", "legal_family_name=\(marker)", "date_of_birth=2007-03-14"]).status == 0)
        try enrol(["a.db"])
        let hubDB = "\(directory)/enrol-hub.db"

        let intact = try run(["audit", "verify", "--db", hubDB])
        #expect(intact.status == 0, "\(intact.stderr)")
        #expect(intact.stdout.hasPrefix("audit trail intact: "), "\(intact.stdout)")
        let json = try #require(try self.json(try run(["audit", "verify", "--db", hubDB, "--json"]).stdout) as? [String: Any])
        #expect(json["intact"] as? Bool == true)
        let events = try #require(json["verified_events"] as? Int)
        #expect(events >= 1)
        #expect((json["head_sha256"] as? String)?.count == 64)
        #expect(json["broken_at"] is NSNull && json["reason"] is NSNull)

        let listed = try #require(try self.json(try run(["audit", "list", "--db", hubDB, "--json"]).stdout) as? [[String: Any]])
        #expect(listed.count == events)
        #expect(listed.first?["kind"] as? String == "CREATE" && listed.first?["actor"] as? String == "alex")
        #expect(listed.first?["seq"] as? Int == 1)
        let table = try run(["audit", "list", "--db", hubDB, "--limit", "1"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("CREATE") && table.stdout.contains("next page: --after 1"), "\(table.stdout)")
        for output in [table.stdout, try run(["audit", "list", "--db", hubDB, "--json"]).stdout] {
            #expect(!output.contains(marker), "an audit listing shows a field value")
        }

        _ = try sqlite("enrol-hub.db", "UPDATE hub_audit SET actor = 'sam' WHERE seq = 1")
        let broken = try run(["audit", "verify", "--db", hubDB])
        #expect(broken.status == 6)
        #expect(broken.stderr.contains("broken at event 1") && broken.stderr.contains("[CHANGED]"), "\(broken.stderr)")
        let brokenJSON = try run(["audit", "verify", "--db", hubDB, "--json"])
        #expect(brokenJSON.status == 6)
        let report = try #require(try self.json(brokenJSON.stdout) as? [String: Any])
        #expect(report["intact"] as? Bool == false && report["broken_at"] as? Int == 1 && report["reason"] as? String == "CHANGED")
        #expect(report["verified_events"] as? Int == 0)

        _ = try sqlite("enrol-hub.db", "UPDATE hub_audit SET actor = 'alex' WHERE seq = 1")
        #expect(try run(["audit", "verify", "--db", hubDB]).status == 0, "restored")
        _ = try sqlite("enrol-hub.db", "DELETE FROM hub_audit WHERE seq = (SELECT max(seq) FROM hub_audit)")
        let truncated = try run(["audit", "verify", "--db", hubDB])
        #expect(truncated.status == 6 && truncated.stderr.contains("[TAIL_REMOVED]"), "\(truncated.stderr)")

        let missing = try run(["audit", "verify", "--db", "\(directory)/none.db"])
        #expect(missing.status == 3 && missing.stderr.contains("[NOT_A_HUB]"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/none.db"), "nothing created")
        let foreign = try run(["audit", "list", "--db", "\(directory)/a.db"])
        #expect(foreign.status == 3 && foreign.stderr.contains("[NOT_A_HUB]"), "\(foreign.stderr)")
        #expect(try run(["audit", "list", "--db", hubDB, "--limit", "0"]).status == 64)
    }

    @Test("show, list and history of a restricted record record a view each before printing it, read-only reads of others record none; after a sync, audit list shows each as RESTRICTED_VIEW (ids only) and the trail verifies")
    func restrictedViewsAudited() throws {
        let created = try #require(try json(try run(["init", "\(directory)/a.db", "--json"]).stdout) as? [String: Any])
        let replicaID = try #require(created["replica_id"] as? String)
        let marker = "MARKER-VIEW-51d"
        func add(_ arguments: [String]) throws -> String {
            let result = try run(["add"] + arguments)
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let open = try add(["young_person", "legal_given_name=\(marker)", "legal_family_name=\(marker)", "date_of_birth=2007-03-14"])
        let restricted = try add(["young_person", "legal_given_name=\(marker)", "legal_family_name=\(marker)", "date_of_birth=2008-03-14"])
        let note = try add(["case_note", "yp_id=\(restricted)", "category=visit", "occurred_at=2025-06-01", "body=\(marker)"])
        #expect(try run(["set-add", "young_person", restricted, "restricted_to", replicaID]).status == 0)
        #expect(try run(["edit", "young_person", restricted, "restricted=yes"]).status == 0)
        func views() throws -> String { try sqlite("a.db", "SELECT count(*) FROM record_view").trimmingCharacters(in: .whitespacesAndNewlines) }

        #expect(try run(["show", "young_person", open]).status == 0)
        #expect(try run(["list", "young_person", "id=\(open)"]).status == 0)
        #expect(try views() == "0", "a record that is not restricted is read without a write")
        let shown = try run(["show", "young_person", restricted, "--as", "morgan.lee"])
        #expect(shown.status == 0 && shown.stdout.contains(marker), "\(shown.stderr)")
        #expect(try run(["list", "case_note", "--json"]).status == 0)
        #expect(try run(["history", "case_note", note]).status == 0)
        #expect(try views() == "3")

        try enrol(["a.db"])
        let hubDB = "\(directory)/enrol-hub.db"
        let listed = try #require(try json(try run(["audit", "list", "--db", hubDB, "--json"]).stdout) as? [[String: Any]])
        let viewEvents = listed.filter { $0["kind"] as? String == "RESTRICTED_VIEW" }
        #expect(viewEvents.map { $0["row"] as? String ?? "" }.sorted() == [restricted, note, note].sorted())
        #expect(viewEvents.map { $0["detail"] as? String ?? "" }.sorted() == ["VIA=history", "VIA=list", "VIA=show"])
        #expect(viewEvents.allSatisfy { $0["scope"] as? String == restricted && $0["device"] as? String == replicaID })
        #expect(viewEvents.first { $0["detail"] as? String == "VIA=show" }?["actor"] as? String == "morgan.lee")
        let table = try run(["audit", "list", "--db", hubDB])
        #expect(table.stdout.contains("RESTRICTED_VIEW"), "\(table.stdout)")
        for output in [table.stdout, try run(["audit", "list", "--db", hubDB, "--json"]).stdout] {
            #expect(!output.contains(marker), "an audit listing shows a field value")
        }
        #expect(try run(["audit", "verify", "--db", hubDB]).status == 0)
    }

    @Test("conflicts showing a restricted record's candidates records a view of it, uploaded and audited as RESTRICTED_VIEW VIA=conflicts")
    func conflictsOfRestrictedRecordAudited() throws {
        let a = try #require(try json(try run(["init", "\(directory)/a.db", "--json"]).stdout) as? [String: Any])["replica_id"] as? String
        let b = try #require(try json(try run(["init", "\(directory)/b.db", "--json"], replica: "b.db").stdout) as? [String: Any])["replica_id"] as? String
        try enrol(["a.db", "b.db"])
        let hub = try HubProcess(database: "\(directory)/enrol-hub.db")
        defer { hub.stop() }
        func sync(_ replica: String) throws {
            let result = try run(["sync", "--hub", hub.address, "--quiet"], replica: replica)
            #expect(result.status == 0, "\(replica): \(result.stderr)")
        }
        let person = try run(["add", "young_person", "legal_given_name=Yan", "legal_family_name=Test", "date_of_birth=2008-03-14"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        for replica in [a, b] { #expect(try run(["set-add", "young_person", person, "restricted_to", try #require(replica)]).status == 0) }
        #expect(try run(["edit", "young_person", person, "restricted=yes"]).status == 0)
        try sync("a.db")
        try sync("b.db")
        #expect(try run(["edit", "young_person", person, "legal_given_name=Yann"]).status == 0)
        #expect(try run(["edit", "young_person", person, "legal_given_name=Yanne"], replica: "b.db").status == 0)
        for replica in ["a.db", "b.db", "a.db"] { try sync(replica) }
        let before = try sqlite("a.db", "SELECT count(*) FROM record_view").trimmingCharacters(in: .whitespacesAndNewlines)
        let conflicts = try run(["conflicts"])
        #expect(conflicts.status == 0 && conflicts.stdout.contains("legal_given_name"), "\(conflicts.stdout)")
        #expect(try sqlite("a.db", "SELECT count(*) FROM record_view").trimmingCharacters(in: .whitespacesAndNewlines) == "\(Int(before).map { $0 + 1 } ?? -1)")
        try sync("a.db")
        let listed = try #require(try json(try run(["audit", "list", "--db", "\(directory)/enrol-hub.db", "--json"]).stdout) as? [[String: Any]])
        #expect(listed.contains { $0["kind"] as? String == "RESTRICTED_VIEW" && $0["detail"] as? String == "VIA=conflicts" && $0["row"] as? String == person })
    }
}
