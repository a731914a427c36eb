import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bounded black-box fuzz of `caresync` argument vectors: random commands, options and values
/// (dash-first, huge numbers, unicode and control characters, missing files, directories, read-only
/// and foreign files). Each run must end with an exit code from the documented set (never a
/// signal), print no stack trace, echo no stored record contents in its errors, and a refused
/// command must leave every file's bytes as they were.
/// SplitMix64: the same seed gives the same argument vectors.
struct FuzzRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func index(below count: Int) -> Int { Int(next() % UInt64(count)) }
}

extension CLITests {
    static let documentedExitCodes: Set<Int32> = [0, 1, 2, 3, 4, 5, 64]

    /// The marker stored in a record; no error output may carry it.
    static let storedMarker = "MARKER-STORED-FUZZ"

    struct FuzzFiles {
        let directory: String
        var watched: [String] { ["a.db", "hub.db", "readonly.db", "foreign.db", "empty.db", "a.bundle"].map { "\(directory)/\($0)" } }
        var paths: [String] {
            watched + ["\(directory)/missing.db", "\(directory)/sub", "\(directory)/sub/", "\(directory)/fifo", "", "-", "--",
                       "\(directory)/new-\(UUID().uuidString.prefix(4)).db"]
        }

        /// The bytes of every watched file and of each non-empty journal beside it. An empty `-wal`
        /// (and the `-shm`) that SQLite leaves when a process exits with the file open holds no
        /// write; a journal with frames in it does.
        func snapshot() -> [String: Data] {
            var bytes: [String: Data] = [:]
            for path in watched {
                bytes[path] = FileManager.default.contents(atPath: path) ?? Data("absent".utf8)
                for side in ["-wal", "-journal"] {
                    if let contents = FileManager.default.contents(atPath: path + side), !contents.isEmpty { bytes[path + side] = contents }
                }
            }
            return bytes
        }
    }

    func fuzzFixture() throws -> FuzzFiles {
        let files = FuzzFiles(directory: directory)
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let person = try run(["add", "young_person", "legal_given_name=\(Self.storedMarker)", "legal_family_name=\(Self.storedMarker)",
                              "date_of_birth=2007-03-14"])
        #expect(person.status == 0)
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        #expect(try run(["init", "\(directory)/readonly.db"]).status == 0)
        #expect(try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).status == 0)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: "\(directory)/readonly.db")
        try FileManager.default.createDirectory(atPath: "\(directory)/sub", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(directory)/empty.db", contents: Data())
        _ = FileManager.default.createFile(atPath: "\(directory)/foreign.db", contents: Data("SQLite format 3\u{0}not really".utf8))
        #expect(mkfifo("\(directory)/fifo", 0o600) == 0)
        return files
    }

    static func fuzzArguments(_ random: inout FuzzRandom, paths: [String], person: String) -> [String] {
        let commands: [[String]] = [
            ["init"], ["kinds"], ["add"], ["edit"], ["set-add"], ["set-remove"], ["delete"], ["show"], ["list"], ["approve"],
            ["plan-version"], ["catalogue"], ["request-award"], ["conflicts"], ["resolve"], ["history"], ["status"], ["export"],
            ["import"], ["sync"], ["hub", "enroll"], ["hub", "revoke"], ["hub", "replicas"], ["hub", "equivocations"], ["hub"],
            ["frobnicate"], [],
        ]
        let kinds = ["young_person", "plan", "goal", "action", "review", "visit", "case_note", "allocation", "reminder", "spaceship", ""]
        let numbers = ["0", "-1", "1", "65535", "65536", "70000", "9223372036854775807", "9223372036854775808", "18446744073709551615",
                       "18446744073709551616", "-9223372036854775809", "1e400", "0x10", "NaN", "٣"]
        let texts = ["-dash-first", "--", "-", "--help-me", "é😀\u{202E}", "\u{1B}[2J", "tab\there", "line\nbreak", "   ", "",
                     String(repeating: "x", count: 70_000), "'; DROP TABLE sync_change; --", "%s%n", "\u{7F}\u{85}"]
        let fields = ["legal_given_name", "date_of_birth", "alerts", "status", "seen_alone", "text", "created_by", "nope", ""]
        let options = ["--json", "--verbose", "--quiet", "--as", "--pick", "--db", "--hub", "--port", "--team", "--field", "--for",
                       "--replica", "--token", "--attempts", "--expires-in-hours", "--decision", "--bogus", "-h", "-x"]
        func pick<T>(_ items: [T]) -> T { items[random.index(below: items.count)] }
        // Half the runs are commands of the right shape with one hostile value, so they get past
        // the parser and reach the store.
        if random.index(below: 2) == 0 {
            let value = pick(texts + numbers + paths)
            let shaped: [[String]] = [
                ["add", pick(kinds), "\(pick(fields))=\(value)"],
                ["add", "young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=\(value)"],
                ["edit", "young_person", person, "\(pick(fields))=\(value)"],
                ["set-add", "young_person", person, "alerts", value], ["set-remove", "young_person", person, pick(fields), value],
                ["show", pick(kinds), value], ["list", pick(kinds), "\(pick(fields))=\(value)"], ["delete", "reminder", value],
                ["history", "young_person", person, "--field", value], ["resolve", "young_person", person, pick(fields), "--pick", value],
                ["export", value], ["import", value], ["init", value], ["status", "--replica", value], ["conflicts", "--replica", value],
                ["hub", "replicas", "--db", value], ["hub", "equivocations", "--db", value], ["hub", "revoke", "--db", pick(paths), value],
                ["hub", "enroll", "--db", pick(paths), "--team", value], ["hub", "enroll", "--team", "T", "--expires-in-hours", value],
                ["sync", "--hub", value, "--attempts", "1"], ["sync", "--token", value, "--attempts", "1", "--hub", "127.0.0.1:1"],
                ["edit", "young_person", person, "seen_alone=\(value)", "--as", pick(texts)],
            ]
            var arguments = pick(shaped)
            if random.index(below: 3) == 0 { arguments.append(pick(["--json", "--verbose", "--quiet"])) }
            if arguments.first == "sync", arguments[2].isEmpty || !arguments[2].contains(":") || arguments[2].hasSuffix(":7700") {
                arguments[2] = "127.0.0.1:1"
            }
            return arguments
        }
        var arguments = pick(commands)
        for _ in 0..<random.index(below: 7) {
            switch random.index(below: 9) {
            case 0: arguments.append(pick(kinds))
            case 1: arguments.append(pick(numbers))
            case 2: arguments.append(pick(texts))
            case 3: arguments.append(pick(paths))
            case 4: arguments.append("\(pick(fields))=\(pick(texts + numbers))")
            case 5: arguments.append(person)
            case 6: arguments += [pick(["--hub"]), pick(["127.0.0.1:1", ":7700", "[::1]:99999", "127.0.0.1:18446744073709551616", "a b:1"])]
            case 7: arguments += [pick(["--db", "--replica"]), pick(paths)]
            default:
                let option = pick(options)
                arguments.append(option)
                if random.index(below: 3) > 0 { arguments.append(pick(texts + numbers + paths)) }
            }
        }
        // A hub that serves forever, or a sync that waits on a real network, is not a fuzz case.
        if arguments.first == "sync", !arguments.contains("--hub") { arguments += ["--hub", "127.0.0.1:1"] }
        if arguments.first == "sync" { arguments += ["--attempts", "1"] }
        return arguments
    }

    @Test("fuzz: random argument vectors end with a documented exit code, no trace, no stored contents, nothing changed when refused")
    func argumentFuzz() throws {
        let seed = ProcessInfo.processInfo.environment["CARESYNC_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0..<UInt64.max)
        print("CLI fuzz seed: \(seed) (rerun with CARESYNC_FUZZ_SEED=\(seed))")
        var files = try fuzzFixture()
        let person = try #require((try json(try run(["list", "young_person", "--json"]).stdout) as? [[String: Any]])?.first?["id"] as? String)
        var random = FuzzRandom(seed: seed)
        let started = Date()
        var runs = 0
        while runs < 400 && Date().timeIntervalSince(started) < 45 {
            runs += 1
            let arguments = Self.fuzzArguments(&random, paths: files.paths, person: person)
            let before = files.snapshot()
            let result = try run(arguments, timeout: 15)
            let context = "seed \(seed), run \(runs): caresync \(arguments.map { $0.debugDescription }.joined(separator: " "))"
            #expect(result.exitedNormally, "\(context) ended by signal \(result.status)")
            #expect(Self.documentedExitCodes.contains(result.status), "\(context) exited \(result.status): \(result.stderr.prefix(300))")
            #expect(!result.stderr.contains(Self.storedMarker), "\(context) echoed a stored record in its errors")
            for trace in ["Fatal error", "Stack dump", "backtrace", "Illegal instruction", "Current stack trace"] {
                #expect(!result.stderr.contains(trace), "\(context) printed a trace: \(result.stderr.prefix(300))")
            }
            if result.status != 0 {
                #expect(!result.stderr.isEmpty, "\(context) failed silently")
                let after = files.snapshot()
                for path in Set(before.keys).union(after.keys) where before[path] != after[path] {
                    Issue.record("\(context) exited \(result.status) yet changed \(path): \(result.stderr.prefix(200))")
                }
            }
            if ProcessInfo.processInfo.environment["CARESYNC_FUZZ_VERBOSE"] != nil { print("\(context) -> \(result.status)") }
            files = FuzzFiles(directory: directory)
        }
        print("CLI fuzz: \(runs) runs in \(Int(Date().timeIntervalSince(started))) s (seed \(seed))")
        try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(directory)/readonly.db")
    }
}

extension CLITests {
    @Test("export never replaces a replica, a hub database, a directory or a pipe; import refuses a directory or pipe at once; a bundle is re-exported")
    func exportAndImportTargets() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        #expect(try run(["add", "reminder", "text=\(Self.storedMarker)"]).status == 0)
        #expect(try run(["init", "\(directory)/b.db"]).status == 0)
        try enrol(["a.db", "b.db"])
        #expect(try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T"]).status == 0)
        try FileManager.default.createDirectory(atPath: "\(directory)/sub", withIntermediateDirectories: true)
        #expect(mkfifo("\(directory)/fifo", 0o600) == 0)
        for target in ["b.db", "hub.db", "sub", "fifo"] {
            let before = FileManager.default.contents(atPath: "\(directory)/\(target)")
            let result = try run(["export", "\(directory)/\(target)"], timeout: 10)
            #expect(result.status == 2 && result.stderr.contains("left as it is"), "export over \(target): \(result.status) \(result.stderr)")
            #expect(FileManager.default.contents(atPath: "\(directory)/\(target)") == before, "\(target) unchanged")
            #expect(!FileManager.default.fileExists(atPath: "\(directory)/\(target).partial"))
        }
        #expect(try run(["status"], replica: "b.db").status == 0, "b.db is still a replica")
        for source in ["sub", "fifo"] {
            let result = try run(["import", "\(directory)/\(source)"], replica: "b.db", timeout: 10)
            #expect(result.status == 2 && result.stderr.contains("not a regular file"), "import of \(source): \(result.status) \(result.stderr)")
        }
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0)
        #expect(try run(["export", "\(directory)/a.bundle"]).status == 0, "an earlier bundle is replaced")
        _ = FileManager.default.createFile(atPath: "\(directory)/empty.bundle", contents: Data())
        #expect(try run(["export", "\(directory)/empty.bundle"]).status == 0, "an empty file is replaced")
        #expect(try run(["import", "\(directory)/empty.bundle"], replica: "b.db").status == 0)
    }
}
