import Foundation
import SyncCore
import SyncWire
import SyncTesting
import Testing

/// The package root, found from this file's path: Tests/SyncWireTests/VectorSupport.swift.
enum Package {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let protocolDirectory = root.appendingPathComponent("Protocol")
    static let vectorDirectory = protocolDirectory.appendingPathComponent("vectors")
}

/// A JSON value, with numbers kept exact (u64 and i64 do not survive a trip through Double).
indirect enum JSONValue: Codable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Numbers first: a strict decoder never reads `true` as a number, nor `1` as a boolean.
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Int64.self) { self = .int(value) }
        else if let value = try? container.decode(UInt64.self) { self = .uint(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(value): try container.encode(value)
        case let .int(value): try container.encode(value)
        case let .uint(value): try container.encode(value)
        case let .double(value): try container.encode(value)
        case let .string(value): try container.encode(value)
        case let .array(value): try container.encode(value)
        case let .object(value): try container.encode(value)
        }
    }

    /// Numbers compare by value whatever their JSON spelling (`1`, `1.0`).
    static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case let (.bool(a), .bool(b)): a == b
        case let (.string(a), .string(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.object(a), .object(b)): a == b
        default:
            if let a = lhs.exactNumber, let b = rhs.exactNumber { a == b } else { false }
        }
    }

    /// A number as (integer value if integral and in range, else the double), for comparison.
    private var exactNumber: NumberKey? {
        switch self {
        case let .int(value): .integer(value.magnitude, negative: value < 0)
        case let .uint(value): .integer(value, negative: false)
        case let .double(value):
            if let integer = Int64(exactly: value) { .integer(integer.magnitude, negative: integer < 0) }
            else if let integer = UInt64(exactly: value) { .integer(integer, negative: false) }
            else { .real(value) }
        default: nil
        }
    }

    private enum NumberKey: Equatable {
        case integer(UInt64, negative: Bool)
        case real(Double)
    }

    var description: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "?"
    }
}

struct VectorFile: Decodable {
    let description: String
    let vectors: [Vector]
}

/// One vector (Protocol/vectors/README.md).
struct Vector: Decodable, CustomTestStringConvertible {
    let name: String
    let note: String?
    let hex: String
    let decoded: JSONValue?
    let error: String?
    /// The error a hub answers a push holding the vector's change with (a limit, checked by the
    /// session; the bytes decode).
    let refused: String?
    let maxBody: Int?
    let canonical: Bool?

    enum CodingKeys: String, CodingKey {
        case name, note, hex, decoded, error, refused, canonical
        case maxBody = "max_body"
    }

    var bytes: [UInt8] { Hex.bytes(hex)! }
    var limit: Int { maxBody ?? Frame.defaultMaxBody }
    var isCompressed: Bool { decoded?.field("compressed") == .bool(true) }
    var testDescription: String { name }
}

extension JSONValue {
    func field(_ key: String) -> JSONValue? {
        if case let .object(fields) = self { fields[key] } else { nil }
    }
}

enum Vectors {
    /// Every vector of every file, in file then list order.
    static func all() throws -> [Vector] {
        let files = try FileManager.default.contentsOfDirectory(atPath: Package.vectorDirectory.path)
            .filter { $0.hasSuffix(".json") }.sorted()
        var vectors: [Vector] = []
        for file in files {
            let data = try Data(contentsOf: Package.vectorDirectory.appendingPathComponent(file))
            vectors += try JSONDecoder().decode(VectorFile.self, from: data).vectors
        }
        return vectors
    }

    /// For `@Test(arguments:)`: a load failure becomes an empty list, which `loads` reports.
    static let loaded: [Vector] = (try? all()) ?? []
    static var positive: [Vector] { loaded.filter { $0.decoded != nil } }
    static var negative: [Vector] { loaded.filter { $0.error != nil } }
}

enum Hex {
    static func bytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8).filter { !$0.isWhitespace }
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension UInt8 {
    var isWhitespace: Bool { self == 0x20 || self == 0x09 || self == 0x0A || self == 0x0D }
}

/// The hex examples of Protocol/*.md: a fenced code block right after `<!-- vector: NAME -->`;
/// text after `#` on a line is commentary; whitespace is ignored. Same rule as
/// `Tools/protocol_decoder.py --check-spec`.
struct SpecExample {
    let file: String
    let line: Int
    let name: String
    let hex: String

    static func all() throws -> [SpecExample] {
        let files = try FileManager.default.contentsOfDirectory(atPath: Package.protocolDirectory.path)
            .filter { $0.hasSuffix(".md") }.sorted()
        var examples: [SpecExample] = []
        for file in files {
            let text = try String(contentsOf: Package.protocolDirectory.appendingPathComponent(file), encoding: .utf8)
            examples += try parse(text, file: file)
        }
        return examples
    }

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    static func parse(_ text: String, file: String) throws -> [SpecExample] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var examples: [SpecExample] = []
        var index = 0
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("<!-- vector: "), line.hasSuffix(" -->") else { index += 1; continue }
            let name = String(line.dropFirst("<!-- vector: ".count).dropLast(" -->".count))
            let markerLine = index + 1
            guard index + 1 < lines.count, lines[index + 1].hasPrefix("```") else {
                throw Malformed(description: "\(file):\(markerLine): vector marker not followed by a code block")
            }
            index += 2
            var hex = ""
            while index < lines.count, !lines[index].hasPrefix("```") {
                let code = lines[index].split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                hex += code.filter { !$0.isWhitespace }.lowercased()
                index += 1
            }
            guard index < lines.count else { throw Malformed(description: "\(file):\(markerLine): code block not closed") }
            examples.append(SpecExample(file: file, line: markerLine, name: name, hex: hex))
            index += 1
        }
        return examples
    }
}
