import Foundation
import Testing

/// Process test: the issue's own reproduction with the real binaries and the `sqlite3` CLI. A
/// replica file is backed up with `sqlite3 .backup`, edited and synced, then restored over itself
/// (its -wal and -shm removed); a copy of a replica file runs as a second device. Every command
/// must say what happened, and no write may be lost.
extension Integration {
    @Suite("Process: restored and copied replica files")
    struct RestoreProcessTests {
        struct Run {
            let status: Int32
            let output: String
        }

        static func caresync(_ arguments: [String], in directory: String) throws -> Run {
            try run(CrashTests.binary, arguments, in: directory)
        }

        static func run(_ executable: String, _ arguments: [String], in directory: String) throws -> Run {
            let process = Process()
            let pipe = Pipe()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            var environment = ProcessInfo.processInfo.environment
            environment["CARESYNC_USER"] = "alex"
            environment.removeValue(forKey: "CARESYNC_REPLICA")
            process.environment = environment
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Run(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
        }

        static func sqlite(_ database: String, _ sql: String, in directory: String) throws -> String {
            try run("/usr/bin/env", ["sqlite3", database, sql], in: directory).output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        static func restore(_ backup: String, over replica: String, in directory: String) throws {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(replica)\(suffix)") }
            try FileManager.default.copyItem(atPath: "\(directory)/\(backup)", toPath: "\(directory)/\(replica)")
        }

        @Test("sqlite3 .backup, edit, sync, restore: the edit comes back; a write on the restored file forks and survives")
        func backupAndRestore() throws {
            let directory = NSTemporaryDirectory() + "caresync-restore-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            defer { hub.kill9() }
            let address = "127.0.0.1:\(hub.port)"
            for name in ["r1", "r2"] {
                #expect(try Self.caresync(["init", "\(name).db", "--name", name], in: directory).status == 0)
                let token = try Self.caresync(["hub", "enroll", "--db", "hub.db", "--team", "T"], in: directory).output
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let enrolled = try Self.caresync(["sync", "--replica", "\(name).db", "--hub", address, "--token", token, "--quiet"], in: directory)
                #expect(enrolled.status == 0, "\(enrolled.output)")
            }
            let add = try Self.caresync(["add", "--replica", "r1.db", "young_person", "legal_given_name=Ava", "legal_family_name=Le Brun",
                                         "date_of_birth=2007-03-14", "preferred_name=A"], in: directory)
            #expect(add.status == 0, "\(add.output)")
            let person = add.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try Self.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            #expect(try Self.sqlite("r1.db", ".backup b.db", in: directory).isEmpty)
            #expect(try Self.caresync(["edit", "--replica", "r1.db", "young_person", person, "preferred_name=Avi"], in: directory).status == 0)
            #expect(try Self.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)

            try Self.restore("b.db", over: "r1.db", in: directory)
            #expect(try Self.sqlite("r1.db", "select preferred_name from young_person", in: directory) == "A")
            let recovery = try Self.caresync(["sync", "--replica", "r1.db", "--quiet", "--json"], in: directory)
            #expect(recovery.status == 0, "\(recovery.output)")
            #expect(recovery.output.contains("\"recovered\" : 1"), "\(recovery.output)")
            #expect(try Self.sqlite("r1.db", "select preferred_name from young_person", in: directory) == "Avi",
                    "the replica got its own edit back from the hub")

            // Restore again, and write before syncing: the same counter, other content.
            try Self.restore("b.db", over: "r1.db", in: directory)
            let idBefore = try Self.sqlite("r1.db", "select replica_id from sync_state", in: directory)
            #expect(try Self.caresync(["edit", "--replica", "r1.db", "young_person", person, "sex=F"], in: directory).status == 0)
            let fork = try Self.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory)
            #expect(fork.status == 0, "\(fork.output)")
            #expect(fork.output.contains("new identity"), "the user is told: \(fork.output)")
            let idAfter = try Self.sqlite("r1.db", "select replica_id from sync_state", in: directory)
            #expect(!idAfter.isEmpty && idAfter != idBefore)
            #expect(try Self.caresync(["sync", "--replica", "r2.db", "--quiet"], in: directory).status == 0)
            #expect(try Self.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            for replica in ["r1.db", "r2.db"] {
                #expect(try Self.sqlite(replica, "select preferred_name, sex from young_person", in: directory) == "Avi|F",
                        "\(replica) holds the edit lost by the restore and the one made after it")
            }
            let operatorView = try Self.caresync(["hub", "replicas", "--db", "hub.db", "--json"], in: directory)
            #expect(operatorView.output.contains("\"forked_from\" : \"\(idBefore)\""), "\(operatorView.output)")
            #expect(!operatorView.output.contains("Avi") && !operatorView.output.contains("Ava"), "no record contents in the operator view")
        }

        @Test("a replica file copied to a second device: both keep writing and syncing, and every write reaches everyone")
        func copiedFile() throws {
            let directory = NSTemporaryDirectory() + "caresync-copy-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            defer { hub.kill9() }
            let address = "127.0.0.1:\(hub.port)"
            #expect(try Self.caresync(["init", "a.db", "--name", "a"], in: directory).status == 0)
            let token = try Self.caresync(["hub", "enroll", "--db", "hub.db", "--team", "T"], in: directory).output
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try Self.caresync(["sync", "--replica", "a.db", "--hub", address, "--token", token, "--quiet"], in: directory).status == 0)
            #expect(try Self.sqlite("a.db", ".backup copy.db", in: directory).isEmpty)
            // The whole device copied: the identity file (key and secret) with the database.
            try FileManager.default.copyItem(atPath: "\(directory)/a.db.identity", toPath: "\(directory)/copy.db.identity")
            var people: [String] = []
            for round in 0..<3 {
                for file in ["a.db", "copy.db"] {
                    let add = try Self.caresync(["add", "--replica", file, "young_person", "legal_given_name=P\(round)\(file.prefix(1))",
                                                 "legal_family_name=X", "date_of_birth=2008-01-01"], in: directory)
                    #expect(add.status == 0, "\(add.output)")
                    people.append(add.output.trimmingCharacters(in: .whitespacesAndNewlines))
                    let sync = try Self.caresync(["sync", "--replica", file, "--quiet"], in: directory)
                    #expect(sync.status == 0, "\(file) round \(round): \(sync.output)")
                }
            }
            for file in ["a.db", "copy.db"] { _ = try Self.caresync(["sync", "--replica", file, "--quiet"], in: directory) }
            for file in ["a.db", "copy.db"] {
                let ids = try Self.sqlite(file, "select id from young_person order by id", in: directory).split(separator: "\n").map(String.init)
                #expect(ids == people.sorted(), "\(file) holds every young person added on either device")
            }
            #expect(try Self.sqlite("a.db", "select replica_id from sync_state", in: directory)
                        != Self.sqlite("copy.db", "select replica_id from sync_state", in: directory))
        }
    }
}
