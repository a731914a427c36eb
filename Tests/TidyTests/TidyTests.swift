import Foundation
import Testing

/// Reads the sources and fails when the architecture's rules are broken (README.md, "How it is built").
@Suite("Tidy: module layering and source hygiene")
struct TidyTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Which modules each module may import. A lower module never imports a higher one.
    static let allowedImports: [String: Set<String>] = [
        "SyncCore": [],
        "SyncWire": ["SyncCore", "NIOCore", "CZlib"],
        "SyncIdentity": ["SyncCore", "Crypto"],
        "SyncStore": ["SyncCore", "SyncIdentity", "GRDB", "GRDBSQLite", "Foundation", "Logging", "Crypto"],
        "SyncEngine": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "Foundation", "Crypto"],
        "CareRecords": ["SyncCore", "SyncIdentity", "SyncStore", "SyncEngine", "Crypto"],
        "SyncClient": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "Foundation", "Dispatch", "Logging", "NIOCore", "NIOPosix",
                       "NIOConcurrencyHelpers", "NIOFileSystem", "NIOSSL", "X509", "Crypto"],
        "SyncHub": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "Foundation", "Dispatch", "Logging", "NIOCore", "NIOPosix",
                    "NIOConcurrencyHelpers", "ServiceLifecycle", "NIOSSL", "X509", "Crypto"],
        "SyncFuzzTargets": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncTesting", "Foundation", "NIOCore", "Crypto"],
        "SyncTesting": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncClient", "SyncHub", "Foundation",
                        "NIOCore"],
        "caresync": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncClient", "SyncHub", "ArgumentParser",
                     "Foundation", "Logging", "ServiceLifecycle", "Crypto"],
        "CareSyncBench": ["SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncClient", "SyncHub", "SyncTesting", "GRDB", "GRDBSQLite",
                          "Foundation", "Logging", "NIOCore", "NIOPosix"],
    ]

    static func sources() throws -> [(module: String, file: String, text: String)] {
        let base = root.appendingPathComponent("Sources")
        var result: [(String, String, String)] = []
        for module in try FileManager.default.contentsOfDirectory(atPath: base.path).sorted() {
            let directory = base.appendingPathComponent(module)
            guard let enumerator = FileManager.default.enumerator(atPath: directory.path) else { continue }
            for case let file as String in enumerator where file.hasSuffix(".swift") {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                result.append((module, "\(module)/\(file)", text))
            }
        }
        return result
    }

    static func imports(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let words = trimmed.split(separator: " ")
            guard let index = words.firstIndex(of: "import"), index <= 1 else { return nil }
            guard index + 1 < words.count else { return nil }
            return String(words[index + 1])
        }
    }

    @Test("every module imports only what the layering allows")
    func layering() throws {
        let files = try Self.sources()
        #expect(files.count > 20, "the sources were found")
        for (module, file, text) in files {
            let allowed = try #require(Self.allowedImports[module], "module \(module) has no layering rule; add one")
            for imported in Self.imports(text) {
                #expect(allowed.contains(imported), "\(file) imports \(imported), which \(module) may not")
            }
        }
    }

    @Test("the tidy check itself catches a forbidden import")
    func detectsViolation() {
        #expect(Self.imports("import Foundation\n@testable import GRDB\nlet x = 1") == ["Foundation", "GRDB"])
        #expect(!(Self.allowedImports["SyncCore"]!.contains("Foundation")))
    }

    @Test("no print outside the CLI and the benchmark; no try!; unchecked Sendable says why")
    func hygiene() throws {
        for (module, file, text) in try Self.sources() {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            for (number, line) in lines.enumerated() {
                let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if !["caresync", "CareSyncBench"].contains(module) {
                    #expect(!code.contains("print("), "\(file):\(number + 1) prints; use a Logger or return the value")
                }
                #expect(!code.contains("try!"), "\(file):\(number + 1) uses try!")
                // A command ends by throwing argument-parser's `ExitCode`, so it can run in process;
                // only a top-level entry point (the benchmark's main.swift) may end the process.
                if file != "CareSyncBench/main.swift" {
                    #expect(code.range(of: #"(^|[^A-Za-z_.])exit\("#, options: .regularExpression) == nil
                            && !code.contains("Foundation.exit("), "\(file):\(number + 1) calls exit(); throw ExitCode instead")
                }
                if code.contains("nonisolated(unsafe)") {
                    // The reason goes in the comment just above (it may take a few lines).
                    let above = lines[max(0, number - 3)..<number].joined(separator: "\n")
                    #expect(above.contains("Safety:") || line.contains("Safety:"), "\(file):\(number + 1) needs a // Safety: line")
                }
                if code.contains("@unchecked Sendable") {
                    // The reason goes on the line before the declaration or the first line inside it.
                    let previous = number > 0 ? String(lines[number - 1]) : ""
                    let next = number + 1 < lines.count ? String(lines[number + 1]) : ""
                    #expect(previous.contains("Safety:") || line.contains("Safety:") || next.contains("Safety:"),
                            "\(file):\(number + 1) needs a // Safety: line")
                }
            }
        }
    }

    @Test("cross-module internals stay package: no public member on standard types, byte coding, statements and NIO handlers not public")
    func packageInternals() throws {
        let internals = ["struct ByteWriter", "struct ByteReader", "struct FrameDecoder", "class FrameProgressHandler",
                         "class SessionEvents", "enum OperatorText", "enum ChangeV1", "struct BulkStatement", "struct NameLookup",
                         "enum SetRendering", "final class RowRef"]
        // The library products, and SyncWire beneath the shells.
        for (module, file, text) in try Self.sources() where ["SyncCore", "SyncWire", "SyncStore", "CareRecords"].contains(module) {
            var extendsStandardType = false
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.trimmingCharacters(in: .whitespaces)
                if code.hasPrefix("extension ") {
                    let name = code.dropFirst("extension ".count).prefix { $0.isLetter || $0.isNumber }
                    extendsStandardType = ["Array", "String", "Int", "UInt64", "UInt8", "Sequence", "Collection", "Dictionary"]
                        .contains(String(name))
                    #expect(!code.hasPrefix("public extension"), "\(file):\(number + 1): public extension")
                }
                if line == "}" { extendsStandardType = false }
                if extendsStandardType {
                    #expect(!code.hasPrefix("public "), "\(file):\(number + 1) adds a public member to every importer's standard type")
                }
                for name in internals {
                    #expect(!code.hasPrefix("public \(name)") && !code.hasPrefix("public final \(name)"),
                            "\(file):\(number + 1): \(name) is a cross-module internal; make it package")
                }
            }
        }
    }

    @Test("log calls carry ids and counts, never field values")
    func noContentsInLogs() throws {
        let contentAccessors = [".textValue", "value.description", "\\(value)", ".value)", "row["]
        for (_, file, text) in try Self.sources() {
            for (number, line) in text.split(separator: "\n").enumerated() where line.contains("logger.") {
                for accessor in contentAccessors {
                    #expect(!line.contains(accessor), "\(file):\(number + 1) may log record contents (\(accessor))")
                }
            }
        }
    }
}
