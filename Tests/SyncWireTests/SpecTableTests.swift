import Foundation
import SyncWire
import Testing

/// The spec's tables of message types and error codes against the codec: a message type, a
/// compression rule or an error code cannot reach the wire without `Protocol/` listing it as the
/// code has it. (The vectors pin bytes; these tables are what an implementer reads first.)
@Suite("Conformance: the spec's message-type and error-code tables")
struct SpecTableTests {
    /// The cells of every table row in `file` that starts with `prefix`.
    static func rows(_ file: String, startingWith prefix: String) throws -> [[String]] {
        let text = try String(contentsOf: Package.protocolDirectory.appendingPathComponent(file), encoding: .utf8)
        return text.split(separator: "\n").filter { $0.hasPrefix(prefix) }.map { line in
            line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    /// `0x12` (with its backticks) as a type byte.
    static func typeByte(_ cell: String) -> UInt8? {
        let digits = cell.trimmingCharacters(in: CharacterSet(charactersIn: "`"))
        guard digits.hasPrefix("0x") else { return nil }
        return UInt8(digits.dropFirst(2), radix: 16)
    }

    static var kinds: [UInt8: Message.Kind] {
        Dictionary(uniqueKeysWithValues: Message.Kind.allCases.map { ($0.rawValue, $0) })
    }

    @Test("framing.md lists exactly the codec's message types, and which of them may be compressed")
    func framingTypeTable() throws {
        var compressible: [UInt8: Bool] = [:]
        for row in try Self.rows("framing.md", startingWith: "| `0x") {
            let type = try #require(Self.typeByte(row[0]), "bad type cell in \(row)")
            let kind = try #require(Self.kinds[type], "framing.md lists type \(row[0]), which the codec does not know")
            #expect(row[1].replacingOccurrences(of: "-", with: "_") == MessageJSON.typeName(kind), "\(row)")
            compressible[type] = row[3].contains("yes")
        }
        #expect(compressible == Self.kinds.mapValues(\.mayCompress), "framing.md's 'may be compressed' column differs from the codec")
    }

    @Test("messages.md's table at the top lists exactly the codec's message types")
    func messagesTypeTable() throws {
        var listed: [UInt8: String] = [:]
        for row in try Self.rows("messages.md", startingWith: "| `0x") {
            let type = try #require(Self.typeByte(row[0]), "bad type cell in \(row)")
            // "[push-ack](#push-ack-0x11)" names push_ack.
            let name = try #require(row[1].split(separator: "]").first?.dropFirst(), "bad name cell in \(row)")
            listed[type] = name.replacingOccurrences(of: "-", with: "_")
        }
        #expect(listed == Self.kinds.mapValues(MessageJSON.typeName))
    }

    @Test("errors.md lists exactly the codec's error codes, with their names and which are retryable")
    func errorCodeTable() throws {
        var names: [UInt16: String] = [:]
        var retryable: Set<UInt16> = []
        for row in try Self.rows("errors.md", startingWith: "| ") {
            guard let code = UInt16(row[0]) else { continue }
            names[code] = row[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            if row[4].hasPrefix("**Retry**") { retryable.insert(code) }
        }
        #expect(names == Dictionary(uniqueKeysWithValues: WireError.Code.allCases.map { ($0.rawValue, $0.name) }))
        #expect(retryable == Set(WireError.Code.allCases.filter(\.retryable).map(\.rawValue)),
                "the codes whose 'what the receiver does' starts **Retry** are not the retryable ones")
    }
}
