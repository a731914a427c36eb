import Foundation
import ProcessHarness
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bad input at the CLI changes nothing and gets a clear error (issue 6, item 9), with the real
/// binary: values that start with a dash, worker ids, edits that `add` would refuse, a picked
/// candidate that cleared a field, a sync to an address where nothing listens.
extension CLITests {
    func status() throws -> [String: Any] {
        try #require(try json(try run(["status", "--json"]).stdout) as? [String: Any])
    }

    func record(_ kind: String, _ id: String, replica: String = "a.db") throws -> [String: Any] {
        let shown = try #require(try json(try run(["show", kind, id, "--json"], replica: replica).stdout) as? [String: Any])
        return try #require(shown["fields"] as? [String: Any])
    }

    func addPerson(_ extra: [String] = []) throws -> String {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let added = try run(["add", "young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=2007-03-14"] + extra)
        #expect(added.status == 0, "\(added.stderr)")
        return added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("a set element starting with a dash is a value, never help with exit 0 and nothing written")
    func dashFirstValues() throws {
        let person = try addPerson()
        for element in ["-dash-first", "-h", "--help-me", "-"] {
            let added = try run(["set-add", "young_person", person, "alerts", element])
            #expect(added.status == 0 && added.stdout.contains("added"), "\(element): \(added.status) \(added.stderr)")
        }
        let alerts = try #require(try record("young_person", person)["alerts"] as? String)
        for element in ["-dash-first", "-h", "--help-me"] { #expect(alerts.contains("\"\(element)\"")) }
        let removed = try run(["set-remove", "young_person", person, "alerts", "-dash-first", "--json"])
        #expect(removed.status == 0 && removed.stdout.contains("\"removed\""))
        #expect(!(try #require(try record("young_person", person)["alerts"] as? String)).contains("-dash-first"))

        // Anything else is refused with a non-zero exit, never a silent 0.
        let before = try #require(try status()["local_changes"] as? Int)
        for arguments in [["set-add", "young_person", person, "alerts"], ["set-add", "young_person", person, "alerts", "a", "b"],
                          ["edit", "young_person", person, "-dash-first"], ["add", "reminder", "-text=x"],
                          ["set-add", "young_person", person, "alerts", ""]] {
            let result = try run(arguments)
            #expect(result.status == 64 || result.status == 1, "\(arguments) exited \(result.status)")
            #expect(!result.stderr.isEmpty)
        }
        #expect(try status()["local_changes"] as? Int == before, "nothing written by a refused command")
    }

    @Test("worker ids: empty, blank or with a newline are bad arguments; ALEX and ' alex ' are alex")
    func workerIDs() throws {
        _ = try addPerson()
        let before = try #require(try status()["local_changes"] as? Int)
        for worker in ["", " ", "\n", "al\nex", "al ex"] {
            let result = try run(["add", "reminder", "text=t", "--as", worker])
            #expect(result.status == 64, "\(worker.debugDescription) exited \(result.status)")
            #expect(result.stderr.contains("worker id"))
        }
        #expect(try status()["local_changes"] as? Int == before)
        let id = try run(["add", "reminder", "text=t", "--as", " ALEX "]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try record("reminder", id)["owner"] as? String == "alex")
    }

    @Test("four-eyes at the CLI: the author in another spelling, or an editor, cannot approve")
    func fourEyes() throws {
        let person = try addPerson()
        let plan = try run(["add", "plan", "yp_id=\(person)", "kind=pathway", "title=PP"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(["edit", "plan", plan, "summary=s", "--as", "morgan"]).status == 0)
        #expect(try run(["edit", "plan", plan, "status=submitted", "--as", "jordan"]).status == 0)
        for worker in ["ALEX", " alex", "alex ", "Morgan"] {
            let result = try run(["approve", plan, "--as", worker])
            #expect(result.status == 1 && result.stderr.contains("FOUR_EYES"), "\(worker.debugDescription) exited \(result.status)")
        }
        #expect(try record("plan", plan)["status"] as? String == "submitted")
        #expect(try run(["approve", plan, "--as", "jordan"]).status == 0)
    }

    @Test("edit refuses what add refuses, with exit 1 and nothing changed")
    func editValidation() throws {
        let person = try addPerson()
        let visit = try run(["add", "visit", "yp_id=\(person)", "kind=pa", "occurred_at=2025-06-20"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let before = try #require(try status()["local_changes"] as? Int)
        let cases: [[String]] = [
            ["edit", "young_person", person, "date_of_birth=2999-01-01"],
            ["edit", "young_person", person, "date_of_birth=0000-01-01"],
            ["edit", "young_person", person, "date_of_birth=9999-01-01"],
            ["edit", "young_person", person, "legal_given_name="],
            ["edit", "visit", visit, "seen_alone=-5"],
            ["add", "young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=0000-01-01"],
            ["add", "visit", "yp_id=\(person)", "kind=pa", "occurred_at=2025-06-20", "seen_alone=-5"],
        ]
        for arguments in cases {
            let result = try run(arguments)
            #expect(result.status == 1, "\(arguments) exited \(result.status): \(result.stderr)")
            #expect(result.stderr.hasPrefix("error: ") && result.stderr.split(separator: "\n").count == 1)
        }
        #expect(try status()["local_changes"] as? Int == before)
        #expect(try record("young_person", person)["date_of_birth"] as? String == "2007-03-14")
    }

    @Test("resolve --pick of a candidate that cleared a date clears it; --value may start with a dash")
    func resolveClearedCandidate() throws {
        let person = try addPerson(["date_of_death=2025-01-01"])
        #expect(try run(["init", "\(directory)/b.db"]).status == 0)
        try enrol(["a.db", "b.db"])
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        #expect(try run(["import", "\(directory)/a.bundle"], replica: "b.db").status == 0)
        #expect(try run(["edit", "young_person", person, "date_of_death=2025-02-01", "legal_given_name=X"]).status == 0)
        #expect(try run(["edit", "young_person", person, "date_of_death=", "legal_given_name=Y", "--as", "morgan"], replica: "b.db").status == 0)
        #expect(try run(["export", "\(directory)/b.bundle"], replica: "b.db").status == 0)
        #expect(try run(["import", "\(directory)/b.bundle"]).status == 0)
        let conflicts = try #require(try json(try run(["conflicts", "--json"]).stdout) as? [[String: Any]])
        let dates = try #require(conflicts.first { $0["field"] as? String == "date_of_death" }?["candidates"] as? [[String: Any]])
        let cleared = try #require(dates.firstIndex { $0["value"] is NSNull })
        let picked = try run(["resolve", "young_person", person, "date_of_death", "--pick", "\(cleared + 1)"])
        #expect(picked.status == 0, "\(picked.stderr)")
        #expect(try record("young_person", person)["date_of_death"] is NSNull, "cleared, not the text \"null\"")

        let resolved = try run(["resolve", "young_person", person, "legal_given_name", "--value", "-Ava-"])
        #expect(resolved.status == 0, "\(resolved.stderr)")
        #expect(try record("young_person", person)["legal_given_name"] as? String == "-Ava-")
        #expect((try json(try run(["conflicts", "--json"]).stdout) as? [Any])?.isEmpty == true)
    }

    /// A loopback port where nothing listens: bound, then closed.
    static func closedPort() throws -> Int {
        #if canImport(Glibc)
        let stream = Int32(SOCK_STREAM.rawValue)
        #else
        let stream = SOCK_STREAM
        #endif
        let descriptor = socket(AF_INET, stream, 0)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                try #require(bind(descriptor, raw, length) == 0)
                try #require(getsockname(descriptor, raw, &length) == 0)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("a sync to a closed port fails at once with 'refused', exit 5, and keeps the stored hub address")
    func refusedSync() throws {
        _ = try addPerson()
        let token = try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hub = try HubProcess(database: "\(directory)/hub.db")
        defer { hub.stop() }
        #expect(try run(["sync", "--hub", hub.address, "--token", token]).status == 0)

        let other = "127.0.0.1:\(try Self.closedPort())"
        let started = Date()
        let refused = try run(["sync", "--hub", other])
        let seconds = Date().timeIntervalSince(started)
        #expect(refused.status == 5)
        #expect(refused.stderr.contains("refused") && refused.stderr.contains(other), "\(refused.stderr)")
        #expect(seconds < 2, "reported in \(seconds) s, not after retries")
        // Beyond loopback only with TLS: refused before any connection without --hub-ca.
        let plain = try run(["sync", "--hub", "no-such-host.invalid:7700"])
        #expect(plain.status == 64 && plain.stderr.contains("[TLS_REQUIRED]"), "\(plain.stderr)")
        #expect(try run(["hub", "init-tls", "--out", "\(directory)/tls", "--host", "localhost"]).status == 0)
        let unknownHost = try run(["sync", "--hub", "no-such-host.invalid:7700", "--hub-ca", "\(directory)/tls/hub-cert.pem"])
        #expect(unknownHost.status == 5 && unknownHost.stderr.contains("not found"), "\(unknownHost.stderr)")

        // The stored address is still the hub's: a plain `caresync sync` reaches it.
        let again = try run(["sync", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
    }
}
