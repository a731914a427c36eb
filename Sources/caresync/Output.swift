import ArgumentParser
import CareRecords
import Foundation
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncStore

/// Printing, JSON and the mapping of errors to one-line messages and exit codes.
enum Output {
    nonisolated(unsafe) private static var loggingReady = false

    static func bootstrapLogging(verbose: Bool) {
        guard !loggingReady else { return }
        loggingReady = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .info : .warning
            return handler
        }
    }

    /// Runs `body`, turning known errors into a one-line message on standard error and a
    /// meaningful exit code.
    static func run<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as CareError {
            fail(error.message, code: error.code, exit: 1)
        } catch let error as StoreError {
            switch error.code {
            case .clockSkew: fail(error.message, code: error.code.rawValue, exit: 4)
            // A value too long to ever sync is a bad argument: the same command with a shorter one works.
            case .limitExceeded: fail(error.message, code: error.code.rawValue, exit: 64)
            case .rowNotFound, .rowExists, .immutableField, .statusBackwards, .notDeletable, .wrongOperation, .wrongType,
                 .unknownTable, .unknownColumn:
                fail(error.message, code: error.code.rawValue, exit: 1)
            default: fail(error.message, code: error.code.rawValue, exit: 3)
            }
        } catch let error as BundleError {
            fail(error.description, code: error.code.name, exit: 2)
        } catch let error as DurableFile.FileError {
            fail(error.description, code: error.code.name, exit: 2)
        }
    }

    /// `run(_:)` for a body that awaits (file I/O): the same messages and exit codes. (Not an
    /// overload of `run`: in an async command that would be chosen for every synchronous body too.)
    static func runAwaiting<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { return try run { throw error } }
    }

    static func fail(_ message: String, code: String, exit: Int32) -> Never {
        FileHandle.standardError.write(Data("error: \(message) [\(code)]\n".utf8))
        Foundation.exit(exit)
    }

    static func line(_ text: String = "") { print(text) }

    static func json(_ object: Any) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) else {
            fail("could not encode JSON output", code: "OUTPUT", exit: 3)
        }
        print(String(decoding: data, as: UTF8.self))
    }

    static func jsonValue(_ value: FieldValue) -> Any {
        switch value {
        case .null: NSNull()
        case let .integer(number): number
        case let .real(number): number
        case let .text(text): text
        case let .blob(bytes): bytes.hexString
        }
    }

    static func record(_ row: [String: FieldValue]) -> [String: Any] {
        row.mapValues(jsonValue)
    }

    /// A hybrid timestamp's physical part as UTC ISO-8601.
    static func iso(_ millis: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    static func iso(_ timestamp: HybridTimestamp) -> String { iso(timestamp.physicalMillis) }

    /// Value shown in a table cell: one line, shortened.
    static func cell(_ value: FieldValue, width: Int = 48) -> String {
        let text = value.isNull ? "–" : value.description.replacingOccurrences(of: "\n", with: " ")
        return text.count > width ? String(text.prefix(width - 1)) + "…" : text
    }

    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func render(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        line(render(header))
        for row in rows { line(render(row)) }
    }
}
