import NIOCore
import SyncCore
import SyncWire
import SyncTesting
import Testing

/// FrameParser over a NIO ByteBuffer: bytes arriving one at a time or in arbitrary chunks give the
/// same frames, and a huge announced length is refused from the header alone.
@Suite("FrameParser: drip-feed and limits")
struct FrameParserTests {
    /// The positive vectors up to 16 KiB. The 50–61 KB changes of limits.json are left out:
    /// drip-fed a byte at a time they cost minutes (the buffer is compacted after every chunk) and
    /// add no framing case a small frame lacks; VectorConformanceTests decodes them whole.
    static var streamed: [Vector] { Vectors.positive.filter { $0.bytes.count <= 16_384 } }

    /// Every streamed vector's bytes, back to back, and the frames they must yield.
    static func stream() throws -> (bytes: [UInt8], frames: [Frame]) {
        var bytes: [UInt8] = []
        var frames: [Frame] = []
        for vector in streamed {
            var buffer = ByteBuffer(bytes: vector.bytes)
            let frame = try #require(try FrameParser().next(from: &buffer), "\(vector.name) is one whole frame")
            #expect(buffer.readableBytes == 0)
            frames.append(frame)
            bytes += vector.bytes
        }
        return (bytes, frames)
    }

    /// Feeds `chunks` in order, collecting every frame as soon as it is complete.
    static func feed(_ chunks: [ArraySlice<UInt8>], parser: FrameParser = FrameParser()) throws -> (frames: [Frame], left: Int) {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        var frames: [Frame] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            while let frame = try parser.next(from: &buffer) { frames.append(frame) }
            buffer.discardReadBytes()
        }
        return (frames, buffer.readableBytes)
    }

    @Test("byte by byte, every positive vector comes out as the same frame")
    func byteByByte() throws {
        let (bytes, expected) = try Self.stream()
        #expect(expected.count == Self.streamed.count && expected.count > 20)
        let (frames, left) = try Self.feed(bytes.indices.map { bytes[$0...$0] })
        #expect(frames == expected)
        #expect(left == 0)
    }

    @Test("in random chunks (seeded), the same frames; each decodes as its vector says")
    func randomChunks() throws {
        let (bytes, expected) = try Self.stream()
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("FrameParserTests.randomChunks seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        for round in 0..<200 {
            var chunks: [ArraySlice<UInt8>] = []
            var start = 0
            let largest = [1, 3, 7, 64, 600, 5000][round % 6]
            while start < bytes.count {
                let end = min(bytes.count, start + Int.random(in: 0...largest, using: &random))
                chunks.append(bytes[start..<end])  // empty chunks too: reads that return nothing
                start = end
            }
            let (frames, left) = try Self.feed(chunks)
            #expect(frames == expected, "seed \(seed), round \(round)")
            #expect(left == 0, "seed \(seed), round \(round)")
        }
        let codec = MessageCodec()
        for (frame, vector) in zip(expected, Self.streamed) {
            #expect(try codec.decode(frame) == codec.decode(bytes: vector.bytes), "\(vector.name)")
        }
    }

    @Test("a partial frame waits for more bytes and consumes nothing")
    func partial() throws {
        let bytes = try #require(Vectors.positive.first { $0.name == "hello-enrolment-token" }).bytes
        for cut in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            #expect(try FrameParser().next(from: &buffer) == nil, "cut at \(cut)")
            #expect(buffer.readableBytes == cut)
            #expect(FrameParser().hasPartialFrame(buffer) == (cut > 0))
        }
    }

    @Test("a huge announced length is refused once its 4 bytes are in, before the body arrives",
          arguments: [([0xFF, 0xFF, 0xFF, 0xFF] as [UInt8], Frame.defaultMaxBody),
                      ([0x00, 0x40, 0x00, 0x01], Frame.defaultMaxBody),
                      ([0x00, 0x01, 0x00, 0x01], 65536),
                      ([0x80, 0x00, 0x00, 0x00], 65536)])
    func frameTooLarge(_ header: [UInt8], maxBody: Int) throws {
        let parser = FrameParser(maxBody: maxBody)
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        for byte in header.dropLast() {
            buffer.writeInteger(byte)
            #expect(try parser.next(from: &buffer) == nil, "three bytes are not yet a length")
        }
        buffer.writeInteger(header.last!)
        let error = #expect(throws: WireError.self) { try parser.next(from: &buffer) }
        #expect(error?.code == .frameTooLarge)
        #expect(buffer.readableBytes == 4, "nothing was consumed or buffered beyond the header")
        // The byte-array path refuses it from the header alone as well.
        do {
            _ = try MessageCodec(maxBody: maxBody).decode(bytes: header)
            Issue.record("a \(header.hexString) header was accepted")
        } catch {
            #expect(error.code == .frameTooLarge)
        }
    }

    @Test("lengths 0 and 1 are malformed, length 2 is an empty payload", arguments: [0, 1, 2] as [UInt32])
    func smallLengths(_ length: UInt32) throws {
        var buffer = ByteBufferAllocator().buffer(capacity: 6)
        buffer.writeInteger(length)
        buffer.writeBytes([0x7F, 0x00])
        if length < 2 {
            let error = #expect(throws: WireError.self) { try FrameParser().next(from: &buffer) }
            #expect(error?.code == .malformedFrame)
        } else {
            #expect(try FrameParser().next(from: &buffer) == Frame(type: 0x7F, payload: []))
        }
    }

    @Test("a frame exactly at the limit is accepted, one byte over is refused")
    func limitBoundary() throws {
        let limit = 65536
        let atLimit = Frame(type: 0x21, payload: [UInt8](repeating: 0, count: limit - 2))
        var buffer = ByteBufferAllocator().buffer(capacity: limit + 4)
        atLimit.write(into: &buffer)
        #expect(try FrameParser(maxBody: limit).next(from: &buffer) == atLimit)
        var over = ByteBufferAllocator().buffer(capacity: 8)
        over.writeInteger(UInt32(limit + 1))
        let error = #expect(throws: WireError.self) { try FrameParser(maxBody: limit).next(from: &over) }
        #expect(error?.code == .frameTooLarge)
    }
}
