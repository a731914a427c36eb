import Foundation
import ProcessHarness
import Testing

/// Device identity in the CLI (Protocol/identity.md): the identity file, permission warnings,
/// authors shown with the signing device, final revocation, TLS beyond loopback, the catalogue.
extension CLITests {
    func mode(_ name: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")
        return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func chmod(_ name: String, _ mode: Int) throws {
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: "\(directory)/\(name)")
    }

    /// Enrols `replicas` with one hub, so that their bundles verify at each other (each holds the
    /// hub's key and its own certificate, which its bundles carry).
    func enrol(_ replicas: [String]) throws {
        let hub = try HubProcess(database: "\(directory)/enrol-hub.db")
        defer { hub.stop() }
        for replica in replicas {
            let token = try run(["hub", "enroll", "--db", "\(directory)/enrol-hub.db", "--team", "T"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let synced = try run(["sync", "--hub", hub.address, "--token", token], replica: replica)
            #expect(synced.status == 0, "enrolling \(replica): \(synced.stderr)")
            #expect(synced.stdout.contains("(plaintext, loopback only) (enrolled)"), "said so: \(synced.stdout)")
        }
    }

    @Test("bundles verify between replicas enrolled with one hub; from a device this replica cannot know, an import is refused whole with the way to fix it")
    func bundleNeedsEnrolment() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        #expect(try run(["init", "\(directory)/b.db"]).status == 0)
        _ = try run(["add", "reminder", "text=call back"])
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        let refused = try run(["import", "\(directory)/a.bundle"], replica: "b.db")
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.hasPrefix("error: ") && refused.stderr.contains("; nothing applied; "), "\(refused.stderr)")
        #expect(refused.stderr.contains("run `caresync sync` on both") && refused.stderr.contains("[UNKNOWN_DEVICE]"))
        #expect(try run(["list", "reminder"], replica: "b.db").stdout.contains("call back") == false)
        try enrol(["a.db", "b.db"])
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        let imported = try run(["import", "\(directory)/a.bundle"], replica: "b.db")
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(try run(["list", "reminder"], replica: "b.db").stdout.contains("call back"))
    }

    @Test("init says where the identity file is and that it must stay private; the file and the database are 0600")
    func initIdentityFile() throws {
        let created = try run(["init", "\(directory)/a.db"])
        #expect(created.status == 0)
        #expect(created.stdout.contains("device key in \(directory)/a.db.identity (mode 0600): keep it private"), "\(created.stdout)")
        #expect(try mode("a.db.identity") == 0o600)
        #expect(try mode("a.db") == 0o600)
        let json = try #require(try self.json(try run(["init", "\(directory)/b.db", "--json"]).stdout) as? [String: Any])
        #expect(json["identity_file"] as? String == "\(directory)/b.db.identity")
        let status = try run(["status"])
        #expect(status.status == 0)
        #expect(!status.stdout.contains("warning"), "\(status.stdout)")
    }

    @Test("without its identity file a replica reads and writes locally, but sync and export fail with NO_DEVICE_KEY and the way back")
    func missingIdentityFile() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        try FileManager.default.removeItem(atPath: "\(directory)/a.db.identity")
        let added = try run(["add", "reminder", "text=call back"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(try run(["list", "reminder"]).stdout.contains("call back"))
        for arguments in [["sync", "--hub", "127.0.0.1:9"], ["export", "\(directory)/out.bundle"]] {
            let result = try run(arguments)
            #expect(result.status == 3, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("a.db.identity is missing"), "\(result.stderr)")
            #expect(result.stderr.contains("[NO_DEVICE_KEY]"))
            #expect(result.stderr.contains("re-enrol as a new identity: `caresync init <new path>`"))
        }
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/out.bundle"))
        let status = try run(["status"])
        #expect(status.stdout.contains("warning: the identity file \(directory)/a.db.identity is missing"), "\(status.stdout)")
    }

    @Test("status warns when the identity file or the database can be read by group or others; --json has it")
    func statusPermissionWarnings() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        try chmod("a.db.identity", 0o644)
        let status = try run(["status"])
        #expect(status.stdout.contains("warning: \(directory)/a.db.identity can be read by group or others, and it holds the device key"), "\(status.stdout)")
        #expect(!status.stdout.contains("holds the records"))
        try chmod("a.db", 0o640)
        let json = try #require(try self.json(try run(["status", "--json"]).stdout) as? [String: Any])
        #expect(json["identity_private"] as? Bool == false)
        #expect(json["database_private"] as? Bool == false)
        #expect((json["warnings"] as? [String])?.count == 2)
        try chmod("a.db.identity", 0o600)
        try chmod("a.db", 0o600)
        let fixed = try #require(try self.json(try run(["status", "--json"]).stdout) as? [String: Any])
        #expect(fixed["identity_private"] as? Bool == true)
        #expect((fixed["warnings"] as? [String])?.isEmpty == true)
    }

    @Test("hub status warns when the hub identity file can be read by others, and shows the incarnation")
    func hubStatusPermissionWarning() throws {
        #expect(try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).status == 0)
        try chmod("hub.db", 0o600)
        let quiet = try run(["hub", "status", "--db", "\(directory)/hub.db"])
        #expect(quiet.status == 0)
        #expect(!quiet.stdout.contains("warning"), "\(quiet.stdout)")
        try chmod("hub.db.identity", 0o644)
        let status = try run(["hub", "status", "--db", "\(directory)/hub.db"])
        #expect(status.stdout.contains("warning: \(directory)/hub.db.identity can be read by group or others, and it holds the hub's signing key"),
                "\(status.stdout)")
        let json = try #require(try self.json(try run(["hub", "status", "--db", "\(directory)/hub.db", "--json"]).stdout) as? [String: Any])
        #expect(json["identity_private"] as? Bool == false)
        #expect((json["incarnation"] as? String)?.count == 32)
        #expect((json["warnings"] as? [String])?.count == 1)
    }

    @Test("history shows each edit's author with the device that signed it")
    func historyShowsSigningDevice() throws {
        let created = try #require(try self.json(try run(["init", "\(directory)/a.db", "--json"]).stdout) as? [String: Any])
        let replica = try #require(created["replica_id"] as? String)
        let id = try run(["add", "reminder", "text=call back"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let history = try run(["history", "reminder", id])
        #expect(history.stdout.contains("alex on replica \(replica.prefix(8))"), "\(history.stdout)")
        let json = try #require(try self.json(try run(["history", "reminder", id, "--json"]).stdout) as? [[String: Any]])
        #expect(json.first?["signed_by"] as? String == "alex on replica \(replica.prefix(8))")
    }

    @Test("hub revoke says the revocation is final (--json too); re-enrolling the revoked replica id is refused")
    func revocationIsFinal() throws {
        let hubDB = "\(directory)/hub.db"
        #expect(try run(["hub", "enroll", "--db", hubDB, "--team", "T"]).status == 0)
        let replica = String(repeating: "ab", count: 16)
        let other = String(repeating: "cd", count: 16)
        for id in [replica, other] {
            _ = try sqlite("hub.db", "INSERT INTO hub_replica (replica_id, team, secret_hash) VALUES ('\(id)', 'T', 'x')")
        }
        let revoked = try run(["hub", "revoke", "--db", hubDB, replica])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(revoked.stdout.contains("final; its device key is never accepted again, and re-enrolment makes a new identity"), "\(revoked.stdout)")
        let json = try #require(try self.json(try run(["hub", "revoke", "--db", hubDB, other, "--json"]).stdout) as? [String: Any])
        #expect(json["final"] as? Bool == true)
        #expect(json["key_refused_forever"] as? Bool == true)
        #expect(json["replica_id"] as? String == other)
        let again = try run(["hub", "enroll", "--db", hubDB, "--team", "T", "--replica", replica])
        #expect(again.status == 1)
        #expect(again.stderr.contains("is revoked, and revocation is final"), "\(again.stderr)")
        #expect(again.stderr.contains("[REVOKED]"))
        #expect(try sqlite("hub.db", "SELECT count(*) FROM hub_token WHERE replica_id = '\(replica)'") == "0", "no token issued")
    }

    @Test("the operator sees an equivocation's two signed heads (counter and chain digest, never contents) and the hub's incarnation")
    func equivocationHeads() throws {
        let hubDB = "\(directory)/hub.db"
        #expect(try run(["hub", "enroll", "--db", hubDB, "--team", "T"]).status == 0)
        try insertEquivocation("hub.db", origin: String(repeating: "ab", count: 16), refusedBytes: [0])
        let json = try #require(try self.json(try run(["hub", "equivocations", "--db", hubDB, "--json"]).stdout) as? [[String: Any]])
        let held = try #require(json.first?["held_head"] as? [String: Any])
        let refused = try #require(json.first?["refused_head"] as? [String: Any])
        #expect(held["counter"] as? Int == 5 && held["signer"] as? String == "device")
        #expect(held["chain_sha256"] as? String == String(repeating: "11", count: 32))
        #expect(refused["chain_sha256"] as? String == String(repeating: "33", count: 32))
        let table = try run(["hub", "equivocations", "--db", hubDB]).stdout
        #expect(table.contains("5:111111111111") && table.contains("5:333333333333"), "\(table)")
        let status = try run(["hub", "status", "--db", hubDB]).stdout
        #expect(status.contains("1 equivocation(s): caresync hub equivocations"), "\(status)")
        #expect(try run(["hub", "replicas", "--db", hubDB]).stdout.contains(", incarnation "))
    }

    /// Puts an equivocation into a hub file as a hub records one: `refusedBytes` as the refused
    /// second version of change `origin`:5, and two signed heads at counter 5 whose chains are
    /// all 0x11 (held) and all 0x33 (refused) bytes.
    func insertEquivocation(_ database: String, origin: String, refusedBytes: [UInt8]) throws {
        // A head: origin, counter 5 (a one-byte varint), chain, signer 0 (the device), signature.
        func head(_ chain: String) -> String { "X'" + origin + "05" + String(repeating: chain, count: 32) + "00" + String(repeating: "22", count: 64) + "'" }
        let bytes = refusedBytes.map { String(format: "%02x", $0) }.joined()
        _ = try sqlite(database, """
            INSERT INTO hub_equivocation (origin, counter, bytes, digest, from_replica, received_at, held_head, refused_head)
            VALUES ('\(origin)', 5, X'\(bytes)', '\(String(repeating: "d", count: 64))', '\(origin)', 0, \(head("11")), \(head("33")))
            """)
    }

    @Test("sync beyond loopback needs --hub-ca (nothing is sent in clear); --hub-ca that cannot be read is refused")
    func syncBeyondLoopbackNeedsTLS() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let plain = try run(["sync", "--hub", "192.0.2.1:7700", "--token", "cse1-00", "--attempts", "1"], timeout: 20)
        #expect(plain.status == 64, "\(plain.stderr)")
        #expect(plain.stderr.contains("192.0.2.1 is not a loopback address: a sync beyond loopback needs TLS"), "\(plain.stderr)")
        #expect(plain.stderr.contains("--hub-ca"))
        #expect(plain.stderr.contains("[TLS_REQUIRED]"))
        let unreadable = try run(["sync", "--hub", "192.0.2.1:7700", "--hub-ca", "\(directory)/none.pem"], timeout: 20)
        #expect(unreadable.status == 2)
        #expect(unreadable.stderr.contains("cannot read --hub-ca"))
        let loopback = try run(["sync", "--hub", "127.0.0.1:9", "--attempts", "1"], timeout: 20)
        #expect(loopback.status == 5 && !loopback.stderr.contains("TLS_REQUIRED"), "loopback goes on to connect: \(loopback.stderr)")
        #expect(loopback.stderr.split(separator: "\n").count == 1, "a refused sync is one line")
    }

    @Test("hub publish-catalogue publishes the built-in catalogue once, then a file's versions continuing its chain")
    func publishCatalogue() throws {
        let hubDB = "\(directory)/hub.db"
        let first = try #require(try self.json(try run(["hub", "publish-catalogue", "--db", hubDB, "--json"]).stdout) as? [String: Any])
        let seed = try #require(first["changes"] as? Int)
        #expect(seed > 0)
        let again = try #require(try self.json(try run(["hub", "publish-catalogue", "--db", hubDB, "--json"]).stdout) as? [String: Any])
        #expect(again["changes"] as? Int == 0)
        let file = "\(directory)/driving.json"
        try Data("""
            [{"code": "DRIVING", "version": 2, "name": "Driving lessons", "category": "independence", "min_age": 16, "max_age": 26,
              "cap_kind": "count", "cap_count": 30, "period": "lifetime", "effective_from": "2026-01-01"}]
            """.utf8).write(to: URL(fileURLWithPath: file))
        let published = try run(["hub", "publish-catalogue", "--db", hubDB, "--file", file])
        #expect(published.status == 0, "\(published.stderr)")
        #expect(published.stdout.contains("(1 new item version(s)), signed by the hub key"), "\(published.stdout)")
        #expect(try sqlite("hub.db", "SELECT count(*) FROM hub_head") != "0", "signed heads are held")
        try Data("{}".utf8).write(to: URL(fileURLWithPath: file))
        let bad = try run(["hub", "publish-catalogue", "--db", hubDB, "--file", file])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("[BAD_CATALOGUE]"))
    }
}
