import Foundation
import ProcessHarness
import Testing

/// Runs the real `caresync` binary (built beside this test bundle) and checks its output, JSON
/// shape, exit codes and that record contents never reach standard error.
@Suite("caresync CLI")
struct CLITests {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        /// False when a signal ended the process (`status` is then the signal's number).
        var exitedNormally = true
    }

    static let binary = CaresyncBinary.url

    let directory: String = {
        let path = NSTemporaryDirectory() + "caresync-cli-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    @discardableResult
    func run(_ arguments: [String], replica: String? = "a.db", timeout seconds: Double = 60,
             environment extra: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        var environment = ProcessInfo.processInfo.environment
        environment["CARESYNC_USER"] = "alex"
        environment["CARESYNC_REPLICA"] = replica.map { "\(directory)/\($0)" }
        environment.merge(extra) { $1 }
        process.environment = environment
        let out = Pipe()
        // Standard error goes to a file: with two pipes, a child filling the stderr pipe (an error
        // echoing a 70,000-byte argument) blocks while this reads stdout to its end.
        let errorPath = NSTemporaryDirectory() + "caresync-cli-stderr-" + UUID().uuidString
        guard FileManager.default.createFile(atPath: errorPath, contents: nil), let err = FileHandle(forWritingAtPath: errorPath) else {
            throw CocoaError(.fileWriteUnknown)
        }
        defer {
            try? err.close()
            try? FileManager.default.removeItem(atPath: errorPath)
        }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // A command that should have been refused must not hang the suite (a hub serving forever).
        let watchdog = DispatchWorkItem { [process] in if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: watchdog)
        defer { watchdog.cancel() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = FileManager.default.contents(atPath: errorPath) ?? Data()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self), exitedNormally: process.terminationReason == .exit)
    }

    func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    @Test("--help of every command and subcommand shows an example of that command")
    func help() throws {
        let top = try run(["--help"])
        #expect(top.status == 0)
        #expect(top.stdout.contains("Exit codes"))
        #expect(!Self.examples(in: top.stdout, of: []).isEmpty, "caresync --help shows an example")
        // Every command the parser lists, found from the help itself, so a new command is covered.
        let commands = try commandPaths().dropFirst()
        #expect(commands.count >= 25 && commands.contains(["hub"]) && commands.contains(["hub", "replicas"]), "\(commands.count) commands")
        for path in commands {
            #expect(!Self.examples(in: try help(path), of: path).isEmpty,
                    "caresync \(path.joined(separator: " ")) --help shows an example line of its own")
        }
    }

    /// The names under SUBCOMMANDS (the parser's own `help` command excluded).
    static func subcommands(in help: String) -> [String] {
        guard let section = help.components(separatedBy: "SUBCOMMANDS:\n").dropFirst().first else { return [] }
        return section.split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }.compactMap { line in
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first,
                  name.allSatisfy({ $0.isLowercase || $0 == "-" }), name != "help" else { return nil }
            return String(name)
        }
    }

    /// Example lines of ours for the command at `path`: in the discussion (above the parser's
    /// USAGE line), either `Example: caresync <path> …` or an indented `caresync <path> …` line.
    static func examples(in help: String, of path: [String]) -> [String] {
        let invocation = (["caresync"] + path).joined(separator: " ")
        let discussion = help.components(separatedBy: "\nUSAGE:").first ?? ""
        return discussion.split(separator: "\n").map(String.init).filter { line in
            let example = line.hasPrefix("Example: ") ? String(line.dropFirst("Example: ".count))
                : line.hasPrefix("  ") ? line.trimmingCharacters(in: .whitespaces) : ""
            return example == invocation || example.hasPrefix(invocation + " ")
        }
    }

    @Test("bad arguments: one clear line and a non-zero exit")
    func badArguments() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let cases: [([String], Int32)] = [
            (["frobnicate"], 64),
            (["add", "young_person", "no-equals-sign"], 64),
            (["add", "spaceship"], 1),
            (["add", "young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=yesterday"], 1),
            (["show", "plan", "missing-id"], 1),
            (["resolve", "goal", "x", "statement"], 64),
            (["import", "\(directory)/nonexistent.bundle"], 2),
            (["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T", "--expires-in-hours", "9999999999999999"], 64),
            (["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T", "--expires-in-hours", "0"], 64),
            (["hub", "serve", "--db", "\(directory)/hub.db", "--port", "70000"], 64),
            (["hub", "enroll", "--db", "\(directory)/hub.db", "--team", ""], 64),
            (["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T\u{1B}[2J"], 64),
            (["sync", "--hub", ":7700"], 64),
            (["resolve", "goal", "x", "statement", "--pick", "1", "--as", ""], 64),
        ]
        for (arguments, expected) in cases {
            let result = try run(arguments, timeout: 10)
            #expect(result.status == expected, "\(arguments) exited \(result.status): \(result.stderr)")
            #expect(!result.stderr.isEmpty)
        }
        let missing = try run(["status"], replica: "nowhere.db")
        #expect(missing.status == 3 && missing.stderr.contains("caresync init"))
    }

    @Test("a full round: add, edit concurrently, export/import, conflicts and history in JSON")
    func roundTrip() throws {
        #expect(try run(["init", "\(directory)/a.db", "--name", "A"]).status == 0)
        #expect(try run(["init", "\(directory)/b.db", "--name", "B"]).status == 0)
        try enrol(["a.db", "b.db"])
        let person = try run(["add", "young_person", "legal_given_name=MARKER-GIVEN", "legal_family_name=MARKER-FAMILY",
                              "date_of_birth=2007-03-14", "--json"])
        let personID = try #require((try json(person.stdout) as? [String: Any])?["id"] as? String)
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        #expect(try run(["import", "\(directory)/a.bundle"], replica: "b.db").status == 0)
        #expect(try run(["edit", "young_person", personID, "legal_given_name=MARKER-A", "--verbose"]).status == 0)
        #expect(try run(["edit", "young_person", personID, "legal_given_name=MARKER-B", "--as", "morgan", "--verbose"], replica: "b.db").status == 0)
        #expect(try run(["export", "\(directory)/b.bundle", "--verbose"], replica: "b.db").status == 0)
        let imported = try run(["import", "\(directory)/b.bundle", "--json", "--verbose"])
        let summary = try #require(try json(imported.stdout) as? [String: Any])
        #expect(summary["conflicts_opened"] as? Int == 1)

        let conflicts = try #require(try json(try run(["conflicts", "--json"]).stdout) as? [[String: Any]])
        #expect(conflicts.count == 1)
        let candidates = try #require(conflicts.first?["candidates"] as? [[String: Any]])
        #expect(Set(candidates.compactMap { $0["author"] as? String }) == ["alex", "morgan"])
        #expect(Set(candidates.compactMap { $0["value"] as? String }) == ["MARKER-A", "MARKER-B"])

        let history = try #require(try json(try run(["history", "young_person", personID, "--field", "legal_given_name", "--json"]).stdout) as? [[String: Any]])
        #expect(history.count == 3)
        #expect(history.allSatisfy { $0["recorded_at"] is String && $0["happened_at"] is String && $0["replica"] is String })

        // A refused edit (immutable field) must not echo the value.
        let refused = try run(["edit", "young_person", personID, "created_by=MARKER-REFUSED", "--verbose"])
        #expect(refused.status == 1)
        #expect(!refused.stderr.contains("MARKER"), "record contents never appear in errors or logs")

        let status = try #require(try json(try run(["status", "--json"]).stdout) as? [String: Any])
        #expect(status["open_conflicts"] as? Int == 1)
        #expect(try run(["resolve", "young_person", personID, "legal_given_name", "--pick", "2", "--verbose"]).status == 0)
        #expect((try json(try run(["conflicts", "--json"]).stdout) as? [Any])?.isEmpty == true)

        for result in [imported, refused] { #expect(!result.stderr.contains("MARKER")) }
    }

    @Test("a corrupt bundle is refused whole with exit code 2")
    func corruptBundle() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        #expect(try run(["init", "\(directory)/b.db"]).status == 0)
        #expect(try run(["add", "reminder", "text=hello"]).status == 0)
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/a.bundle"))
        bytes[bytes.count - 40] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: "\(directory)/bad.bundle"))
        let result = try run(["import", "\(directory)/bad.bundle"], replica: "b.db")
        #expect(result.status == 2)
        #expect(result.stderr.contains("nothing applied"))
        let status = try #require(try json(try run(["status", "--json"], replica: "b.db").stdout) as? [String: Any])
        #expect((status["records"] as? [String: Int])?["reminder"] == 0)
    }
}
