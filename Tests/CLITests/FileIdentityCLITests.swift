import Foundation
import Testing

/// Files that are not ours, or not the kind a command wants, are refused with exit code 3 and
/// left exactly as they were; commands that only read never change the file.
extension CLITests {
    /// Bytes, modification time and which side files exist.
    func snapshot(_ name: String) -> String {
        let path = "\(directory)/\(name)"
        let bytes = FileManager.default.contents(atPath: path).map { "\($0.count) bytes \($0.hashValue)" } ?? "missing"
        let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        let sides = ["-wal", "-shm", "-journal"].filter { FileManager.default.fileExists(atPath: path + $0) }
        return "\(bytes) \(modified?.timeIntervalSince1970 ?? 0) \(sides)"
    }

    func sqlite(_ name: String, _ sql: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = ["\(directory)/\(name)", sql]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("another application's SQLite file: refused with exit 3 and a clear message, untouched, still not WAL")
    func foreignDatabaseRefused() throws {
        _ = try sqlite("foreign.db", "CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        let before = snapshot("foreign.db")
        for arguments in [["add", "reminder", "text=x"], ["list", "reminder"], ["status"]] {
            let result = try run(arguments, replica: "foreign.db")
            #expect(result.status == 3, "\(arguments)")
            #expect(result.stderr.contains("is an SQLite database of another application, not a CareSync replica"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "one line")
        }
        let hub = try run(["hub", "replicas", "--db", "\(directory)/foreign.db"])
        #expect(hub.status == 3)
        #expect(hub.stderr.contains("not a CareSync hub database"))
        #expect(snapshot("foreign.db") == before)
        #expect(try sqlite("foreign.db", "PRAGMA journal_mode") == "delete")
    }

    @Test("an empty file stays empty: refused by replica and hub commands, and init will not take it over")
    func emptyFileRefused() throws {
        #expect(FileManager.default.createFile(atPath: "\(directory)/empty.db", contents: Data()))
        for arguments in [["add", "reminder", "text=x"], ["status"], ["init", "\(directory)/empty.db"]] {
            #expect(try run(arguments, replica: "empty.db").status == 3, "\(arguments)")
        }
        for command in ["replicas", "enroll"] {
            let result = try run(["hub", command, "--db", "\(directory)/empty.db", "--team", "T"].filter { command == "enroll" || ($0 != "--team" && $0 != "T") })
            #expect(result.status == 3, "hub \(command)")
            #expect(result.stderr.contains("empty file"))
        }
        #expect(FileManager.default.contents(atPath: "\(directory)/empty.db")?.isEmpty == true)
        #expect(snapshot("empty.db").contains("[]"), "no side files")
    }

    @Test("hub replicas --db <replica> refuses and creates no hub table; a replica command on a hub file refuses")
    func wrongKindRefused() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        #expect(try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).status == 0)
        let replicaBefore = snapshot("a.db")
        let hubBefore = snapshot("hub.db")
        for command in [["hub", "replicas"], ["hub", "enroll", "--team", "T"]] {
            let result = try run(command + ["--db", "\(directory)/a.db"])
            #expect(result.status == 3, "\(command)")
            #expect(result.stderr.contains("a.db is a CareSync replica, not a CareSync hub database"), "\(result.stderr)")
        }
        #expect(try sqlite("a.db", "SELECT count(*) FROM sqlite_master WHERE name LIKE 'hub%'") == "0")
        for arguments in [["status"], ["add", "reminder", "text=x"]] {
            let result = try run(arguments, replica: "hub.db")
            #expect(result.status == 3)
            #expect(result.stderr.contains("hub.db is a CareSync hub database, not a CareSync replica"), "\(result.stderr)")
        }
        #expect(snapshot("a.db") == replicaBefore)
        #expect(snapshot("hub.db") == hubBefore)
    }

    @Test("commands that only read leave the replica and hub files exactly as they were, with no -wal or -shm")
    func readsChangeNothing() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let id = try run(["add", "reminder", "text=hello"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).status == 0)
        // As files made before stamping: a writing open would stamp them, a read must not.
        let unstamp = "PRAGMA application_id = 0; DELETE FROM grdb_migrations WHERE identifier = 'file-identity-v1';"
        _ = try sqlite("a.db", unstamp)
        _ = try sqlite("hub.db", unstamp)
        let before = snapshot("a.db")
        let hubBefore = snapshot("hub.db")
        #expect(before.hasSuffix("[]"), "a closed replica has no side files")
        for arguments in [["list", "reminder"], ["show", "reminder", id], ["status", "--json"], ["conflicts"],
                          ["history", "reminder", id], ["catalogue"], ["export", "\(directory)/out.bundle"]] {
            let result = try run(arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(snapshot("a.db") == before, "\(arguments) changed the replica file")
        }
        #expect(try run(["hub", "replicas", "--db", "\(directory)/hub.db"]).status == 0)
        #expect(snapshot("hub.db") == hubBefore)
        #expect(try sqlite("a.db", "PRAGMA application_id") == "0")
        #expect(try sqlite("hub.db", "PRAGMA application_id") == "0")
        let missing = try run(["hub", "replicas", "--db", "\(directory)/nohub.db"])
        #expect(missing.status == 3)
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/nohub.db"), "a read creates no hub")
    }
}
