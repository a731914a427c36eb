import Foundation
import Testing

/// The public surface is meant: no layer below the CLI names the CLI's flags or subcommands, and every
/// public declaration of a library product is documented (internals at `package`: TidyTests.packageInternals).
@Suite("Tidy: the public surface and its messages")
struct PublicSurfaceTidyTests {
    /// The code part of each line (comments dropped), with its number, for every source file.
    static func codeLines() throws -> [(module: String, file: String, number: Int, code: String, line: String)] {
        var result: [(String, String, Int, String, String)] = []
        for (module, file, text) in try TidyTests.sources() {
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("//") { continue }
                let code = line.range(of: " //").map { String(line[..<$0.lowerBound]) } ?? String(line)
                result.append((module, file, index + 1, code, String(line)))
            }
        }
        return result
    }

    static func matches(_ pattern: String, _ text: String) -> Bool {
        text.range(of: pattern, options: .regularExpression) != nil
    }

    @Test("no layer below the CLI names a CLI flag or subcommand")
    func noCLINamesBelowTheCLI() throws {
        for line in try Self.codeLines() where !["caresync", "CareSyncBench"].contains(line.module) {
            // String literals only: a flag-like `--name` or "caresync <subcommand>" inside quotes.
            for literal in line.code.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter({ $0.offset % 2 == 1 }).map(\.element) {
                #expect(!Self.matches(#"(^|\s|`)--[a-z][a-z-]+"#, String(literal)) && !Self.matches(#"caresync [a-z]"#, String(literal)),
                        "\(line.file):\(line.number) names a CLI flag or subcommand; the CLI adds hints")
            }
        }
    }

    /// The library products: what they declare `public` is meant for library users.
    static let libraryProducts: Set<String> = ["SyncCore", "SyncIdentity", "SyncStore", "CareRecords"]
    @Test("every public declaration of a library product is documented")
    func publicIsDocumented() throws {
        var undocumented: [String] = []
        var total = 0
        for (module, file, text) in try TidyTests.sources() where Self.libraryProducts.contains(module) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            for (index, line) in lines.enumerated() where line.hasPrefix("public ") && !line.hasPrefix("public extension") && !line.hasPrefix("public import") {
                total += 1
                var above = index - 1
                while above >= 0, lines[above].hasPrefix("@") || lines[above].hasPrefix("#") { above -= 1 }
                if above < 0 || !(lines[above].hasPrefix("///") || lines[above].hasSuffix("*/")) {
                    undocumented.append("\(file):\(index + 1) \(line.prefix(80))")
                }
            }
        }
        #expect(total > 50, "public declarations were found")
        #expect(undocumented.isEmpty, "\(undocumented.count) of \(total) public declarations lack a /// doc comment:\n\(undocumented.joined(separator: "\n"))")
    }
}
