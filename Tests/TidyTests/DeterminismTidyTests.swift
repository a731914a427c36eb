import Testing

/// The engine and its shells reach time, sleeps and randomness only through what is injected
/// (`WallClock`, a `Clock`, `RandomSource`): STYLE's "determinism by construction". The one system
/// clock and the one system generator are the only places allowed to read the machine.
@Suite("Tidy: no hidden clocks, sleeps or random numbers in the engine and its shells")
struct DeterminismTidyTests {
    static let modules: Set<String> = ["SyncEngine", "SyncClient", "SyncHub"]
    /// Where the machine may be read: the system wall clock, and `RandomSource.system`.
    static let allowed: [String: Set<String>] = [
        "Date()": ["SyncEngine/SystemWallClock.swift"],
        ".random(in:": ["SyncEngine/SessionAction.swift"],
    ]

    /// The forbidden calls on a line of code (comments stripped), by the pattern that found them.
    static func violations(in code: String, file: String) -> [String] {
        var found: [String] = []
        if code.contains("Date()"), !(allowed["Date()"] ?? []).contains(file) { found.append("Date()") }
        if code.contains("Task.sleep") { found.append("Task.sleep") }
        // A draw that names no generator uses the system's.
        if code.contains(".random(in:"), !code.contains("using:"), !(allowed[".random(in:"] ?? []).contains(file) { found.append(".random(in:") }
        return found
    }

    @Test("no Date(), Task.sleep or unseeded .random(in:) outside the system clock and RandomSource.system")
    func injectedOnly() throws {
        for (module, file, text) in try TidyTests.sources() where Self.modules.contains(module) {
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
        #expect(Self.violations(in: "Date()", file: "SyncEngine/SystemWallClock.swift").isEmpty)
    }
}
