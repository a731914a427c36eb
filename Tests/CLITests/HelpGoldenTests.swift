import Foundation
import Testing

/// Golden `--help`, after argument-parser's `MathExampleTests`: the whole help text of the root
/// command and of every subcommand is compared with `Tests/CLITests/help/<command>.txt`
/// (`caresync.txt`, `add.txt`, `hub-serve.txt`…), so a change to any option, abstract or example
/// shows in review as a diff of those files.
///
/// To regenerate the files after a deliberate change, run
///
///     CARESYNC_UPDATE_GOLDEN=1 swift test --filter HelpGoldenTests
///
/// and review the diff. The help is rendered at a fixed width (`COLUMNS=100`), so it does not
/// depend on the terminal the tests run in.
extension CLITests {
    static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("help")
    static let updateGolden = ProcessInfo.processInfo.environment["CARESYNC_UPDATE_GOLDEN"] == "1"

    /// Every command path, found from the help itself (so a new command is covered), root first.
    func commandPaths() throws -> [[String]] {
        var paths: [[String]] = [[]]
        var index = 0
        while index < paths.count {
            let path = paths[index]
            index += 1
            paths += Self.subcommands(in: try help(path)).map { path + [$0] }
        }
        return paths
    }

    func help(_ path: [String]) throws -> String {
        let result = try run(path + ["--help"], environment: ["COLUMNS": "100"])
        #expect(result.status == 0, "caresync \(path.joined(separator: " ")) --help exited \(result.status)")
        return result.stdout
    }

    static func goldenFile(_ path: [String]) -> URL {
        goldenDirectory.appendingPathComponent((path.isEmpty ? "caresync" : path.joined(separator: "-")) + ".txt")
    }

    @Test("--help of the root and of every subcommand matches its golden file, whole")
    func goldenHelp() throws {
        let paths = try commandPaths()
        #expect(paths.count >= 26, "\(paths.count) commands found")
        if Self.updateGolden {
            try FileManager.default.createDirectory(at: Self.goldenDirectory, withIntermediateDirectories: true)
        }
        for path in paths {
            let text = try help(path)
            let file = Self.goldenFile(path)
            if Self.updateGolden {
                try text.write(to: file, atomically: true, encoding: .utf8)
                continue
            }
            let golden = try #require(try? String(contentsOf: file, encoding: .utf8),
                                      "no golden help \(file.lastPathComponent); run with CARESYNC_UPDATE_GOLDEN=1")
            #expect(text == golden, "caresync \(path.joined(separator: " ")) --help differs from help/\(file.lastPathComponent)")
        }
        // No stale golden file for a command that no longer exists.
        let expected = Set(paths.map { Self.goldenFile($0).lastPathComponent })
        let present = Set(try FileManager.default.contentsOfDirectory(atPath: Self.goldenDirectory.path).filter { $0.hasSuffix(".txt") })
        #expect(present == expected, "golden files without a command: \(present.subtracting(expected).sorted())")
    }

    @Test("every subcommand's help has an Example or Examples section")
    func exampleSections() throws {
        for path in try commandPaths() where !path.isEmpty {
            let discussion = try help(path).components(separatedBy: "\nUSAGE:").first ?? ""
            #expect(discussion.contains("Example: ") || discussion.contains("Examples:"),
                    "caresync \(path.joined(separator: " ")) --help has no Example section")
        }
    }
}
