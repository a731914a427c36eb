import Foundation
import NIOCore
import SyncCore
import SyncWire
import Testing

/// The codec against Protocol/vectors, and the spec's hex examples against the vectors.
@Suite("Conformance: Protocol/vectors and the spec's examples")
struct VectorConformanceTests {
    @Test("the vector files load, names are unique, each vector is positive or negative")
    func loads() throws {
        let vectors = try Vectors.all()
        #expect(vectors.count >= 60, "found \(vectors.count) vectors in \(Package.vectorDirectory.path)")
        #expect(Set(vectors.map(\.name)).count == vectors.count, "vector names are unique")
        for vector in vectors {
            #expect((vector.decoded == nil) != (vector.error == nil), "\(vector.name): exactly one of decoded and error")
            #expect(Hex.bytes(vector.hex) != nil, "\(vector.name): hex is well-formed")
            for code in [vector.error, vector.refused].compactMap({ $0 }) {
                #expect(WireError.Code.allCases.contains { $0.name == code }, "\(vector.name): \(code) is a WireError.Code name")
            }
            #expect(vector.refused == nil || vector.decoded != nil, "\(vector.name): only a vector that decodes is refused by the limits")
        }
    }

    @Test("every message type has a positive vector, and compression has several")
    func coverage() throws {
        let types: [JSONValue] = Vectors.positive.compactMap { $0.decoded?.field("type") }
        for kind in Message.Kind.allCases {
            #expect(types.contains(JSONValue.string(MessageJSON.typeName(kind))), "no positive vector for \(kind)")
        }
        #expect(Vectors.positive.filter(\.isCompressed).count >= 2)
        #expect(Vectors.negative.count >= 40)
        #expect(Vectors.loaded.filter { $0.refused != nil }.count >= 15, "limits.json: a vector over each limit")
    }

    @Test("positive vectors decode to their `decoded` object and re-encode to the same bytes", arguments: Vectors.positive)
    func positive(_ vector: Vector) throws {
        let codec = MessageCodec(maxBody: vector.limit)
        let message = try codec.decode(bytes: vector.bytes)
        let expected = try #require(vector.decoded)
        let actual = MessageJSON.json(message, compressed: vector.isCompressed)
        #expect(actual == expected, "\(vector.name):\n  codec  \(actual)\n  vector \(expected)")
        #expect(Self.refusal(of: message.changes) == vector.refused,
                "\(vector.name): the limits refuse it with \(Self.refusal(of: message.changes) ?? "nothing"), the vector says \(vector.refused ?? "nothing")")

        // The frame's flag must match what the vector says.
        var buffer = ByteBuffer(bytes: vector.bytes)
        var decoder = FrameDecoder(maxBody: vector.limit)
        let frame = try #require(try decoder.decode(buffer: &buffer))
        #expect(frame.isCompressed == vector.isCompressed)

        let uncompressed = MessageCodec(maxBody: vector.limit, compressionThreshold: nil).encode(message)
        if !vector.isCompressed, vector.canonical ?? true {
            #expect(uncompressed.hexString == vector.hex, "\(vector.name): re-encoding is not canonical")
        } else {
            // Not byte-comparable (zlib output differs between releases), but it must decode alike.
            #expect(try codec.decode(bytes: uncompressed) == message)
            #expect(try codec.decode(bytes: MessageCodec(maxBody: vector.limit, compressionThreshold: 0).encode(message)) == message)
        }
    }

    @Test("the other way: each positive vector's `decoded` object, built into a message without the decoder, encodes to its bytes",
          arguments: Vectors.positive)
    func encodesFromJSON(_ vector: Vector) throws {
        let message = try MessageFromJSON.message(try #require(vector.decoded))
        let codec = MessageCodec(maxBody: vector.limit, compressionThreshold: nil)
        if !vector.isCompressed, vector.canonical ?? true {
            #expect(codec.encode(message).hexString == vector.hex, "\(vector.name): the encoder differs from the vector")
        } else {
            // zlib output is not pinned, and a non-canonical vector reads an unknown code as another.
            #expect(try MessageCodec(maxBody: vector.limit).decode(bytes: vector.bytes) == message, "\(vector.name)")
        }
    }

    /// What a hub answers a push holding `changes` with, by the limits of Protocol/README.md,
    /// "Limits on a change", in the order HubSession checks them (range and content, then sizes).
    static func refusal(of changes: [Change]) -> String? {
        for change in changes {
            if ChangeLimits.rangeViolation(of: change) ?? ChangeLimits.contentViolation(of: change) != nil {
                return WireError.Code.malformedMessage.name
            }
            if ChangeLimits.sizeViolation(of: change) != nil { return WireError.Code.limitExceeded.name }
        }
        return nil
    }

    @Test("negative vectors are refused with the named error", arguments: Vectors.negative)
    func negative(_ vector: Vector) throws {
        let expected = try #require(vector.error)
        do {
            let message = try MessageCodec(maxBody: vector.limit).decode(bytes: vector.bytes)
            Issue.record("\(vector.name): expected \(expected), decoded \(message)")
        } catch {
            #expect(error.code.name == expected, "\(vector.name): expected \(expected), got \(error)")
        }
    }

    @Test("every hex example in Protocol/*.md equals the vector it names")
    func specExamples() throws {
        let examples = try SpecExample.all()
        let vectors = Dictionary(uniqueKeysWithValues: try Vectors.all().map { ($0.name, $0) })
        #expect(examples.count >= 12, "found \(examples.count) examples")
        for example in examples {
            guard let vector = vectors[example.name] else {
                Issue.record("\(example.file):\(example.line): no vector named \(example.name)")
                continue
            }
            #expect(example.hex == vector.hex, "\(example.file):\(example.line): the example differs from vector \(example.name)")
        }
        // messages.md shows every message.
        let shown = try examples.filter { $0.file == "messages.md" }.compactMap { example in
            try vectors[example.name].map { try MessageCodec(maxBody: $0.limit).decode(bytes: $0.bytes).kind }
        }
        #expect(Set(shown) == Set(Message.Kind.allCases), "messages.md lacks an example of \(Set(Message.Kind.allCases).subtracting(shown))")
    }

    @Test("the example parser reads markers, blocks and comments as the Python checker does")
    func specExampleParser() throws {
        let text = "x\n<!-- vector: a-b -->\n```text\n00 0A  # comment 00\n\tff # more\n```\n<!-- vector: c -->\n```\n```\n"
        let examples = try SpecExample.parse(text, file: "t.md")
        #expect(examples.map(\.name) == ["a-b", "c"])
        #expect(examples.map(\.hex) == ["000aff", ""])
        #expect(throws: SpecExample.Malformed.self) { try SpecExample.parse("<!-- vector: a -->\n\n```\n00\n```", file: "t.md") }
    }

    static let python3: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/python3" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    @Test("the independent Python decoder passes every vector and every spec example",
          .enabled(if: python3 != nil, "python3 is not on PATH: Tools/protocol_decoder.py cannot run"),
          arguments: [["--check", "Protocol/vectors"], ["--check-spec", "Protocol"]])
    func pythonDecoder(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Self.python3))
        process.arguments = ["Tools/protocol_decoder.py"] + arguments
        process.currentDirectoryURL = Package.root
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "protocol_decoder.py \(arguments.joined(separator: " ")):\n\(text)")
        #expect(text.contains(" passed, 0 failed"), "\(text)")
    }
}
