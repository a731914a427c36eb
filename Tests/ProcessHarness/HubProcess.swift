import Foundation

/// The `caresync` binary the process tests run: the one built beside the running test bundle.
/// One place for the CLI tests and the integration suite's process tests.
public enum CaresyncBinary {
    /// The executable beside the test bundle (looked for up to four directories up), else
    /// `.build/debug/caresync`.
    public static let url: URL = {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("caresync")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/caresync")
    }()
}

/// `caresync hub serve` as a process on a free loopback port (`--port 0`), started and waited
/// for until it announces its address. The caller stops it (`stop()`, or `kill9()`).
public final class HubProcess {
    /// The hub's process.
    public let process = Process()
    /// `host:port`, as the hub announced it ("… listening on host:port").
    public private(set) var address = ""
    private let output = Pipe()

    /// Starts the hub on `database` and waits for the line that says where it listens.
    ///
    /// - Parameters:
    ///   - database: The hub database's path.
    ///   - options: More `hub serve` options, e.g. `--verbose`.
    ///   - environment: Variables set for the hub beside this process's own.
    ///   - log: Where the hub's standard error goes; discarded when nil.
    /// - Throws: When the process cannot start, or ends before it announces an address.
    public init(database: String, options: [String] = [], environment: [String: String] = [:], log: FileHandle? = nil) throws {
        process.executableURL = CaresyncBinary.url
        process.arguments = ["hub", "serve", "--db", database, "--port", "0"] + options
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = output
        process.standardError = log ?? FileHandle.nullDevice
        try process.run()
        var announced = ""
        while !announced.contains("\n") {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { break }
            announced += String(decoding: data, as: UTF8.self)
        }
        guard let address = announced.components(separatedBy: "listening on ").dropFirst().last?
            .trimmingCharacters(in: .whitespacesAndNewlines), !address.isEmpty else {
            kill9()
            throw CocoaError(.fileReadUnknown)
        }
        self.address = address
    }

    /// The port the hub listens on.
    public var port: Int { Int(address.split(separator: ":").last ?? "") ?? 0 }

    /// Stops the hub as an operator would (SIGTERM: a graceful shutdown) and waits for it.
    /// - Returns: What it wrote to standard output after its address.
    @discardableResult
    public func stop() -> String {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Kills the hub with SIGKILL (a crash, or the end of a test that needs nothing more of it) and waits for it.
    public func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
