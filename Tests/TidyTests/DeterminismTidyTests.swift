import Testing

/// Every module reaches time, sleeps and randomness only through what is injected (`WallClock`, a
/// `Clock`, `RandomSource`, a seeded generator): STYLE's "determinism by construction". The one
/// system clock and the one system generator are the only places allowed to read the machine.
@Suite("Tidy: no hidden clocks, sleeps or random numbers")
struct DeterminismTidyTests {
    /// Where the machine may be read: the system wall clock, `RandomSource.system`, the test seed
    /// drawn when none is given (it is printed), and the load benchmark's pacing of real clients.
    static let allowed: [String: Set<String>] = [
        "Date()": ["SyncStore/SystemWallClock.swift"],
        ".random(in:": ["SyncEngine/SessionAction.swift"],
        "Task.sleep": ["CareSyncBench/LoadBenchmark.swift"],
        "SystemRandomNumberGenerator": ["SyncTesting/SeededRandom.swift"],
    ]

    /// The forbidden calls on a line of code (comments stripped), by the pattern that found them.
    static func violations(in code: String, file: String) -> [String] {
        var found: [String] = []
        if code.contains("Date()"), !(allowed["Date()"] ?? []).contains(file) { found.append("Date()") }
        if code.contains("Task.sleep"), !(allowed["Task.sleep"] ?? []).contains(file) { found.append("Task.sleep") }
        if code.contains("SystemRandomNumberGenerator"), !(allowed["SystemRandomNumberGenerator"] ?? []).contains(file) {
            found.append("SystemRandomNumberGenerator")
        }
        // A draw that names no generator uses the system's.
        if code.contains(".random(in:"), !code.contains("using:"), !(allowed[".random(in:"] ?? []).contains(file) { found.append(".random(in:") }
        return found
    }

    @Test("no Date(), Task.sleep or unseeded .random(in:) outside the system clock and RandomSource.system")
    func injectedOnly() throws {
        for (_, file, text) in try TidyTests.sources() {
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                for call in Self.violations(in: code, file: file) {
                    Issue.record("\(file):\(number + 1) calls \(call); take an injected WallClock, Clock or RandomSource")
                }
            }
        }
    }

    @Test("the check itself catches each forbidden call")
    func detects() {
        #expect(Self.violations(in: "let now = Date()", file: "SyncHub/HubServer.swift") == ["Date()"])
        #expect(Self.violations(in: "try await Task.sleep(nanoseconds: 1)", file: "SyncClient/SyncClient.swift") == ["Task.sleep"])
        #expect(Self.violations(in: "UInt64.random(in: 0...9)", file: "SyncClient/SyncClient.swift") == [".random(in:"])
        #expect(Self.violations(in: "UInt64.random(in: 0...9, using: &random)", file: "SyncClient/SyncClient.swift").isEmpty)
        #expect(Self.violations(in: "Date()", file: "SyncStore/SystemWallClock.swift").isEmpty)
        #expect(Self.violations(in: "var g = SystemRandomNumberGenerator()", file: "CareRecords/Identifiers.swift") == ["SystemRandomNumberGenerator"])
    }
}
