import NIOCore
import NIOEmbedded
import NIOTestUtils
import SyncCore
import SyncWire
import SyncTesting
import Testing

/// The one frame decoder: bytes arriving one at a time or in arbitrary chunks give the same
/// frames, whether the pipeline's `ByteToMessageHandler` or the simulator's
/// `NIOSingleStepByteToMessageProcessor` drives it, and a huge announced length is refused from
/// the header alone.
@Suite("FrameDecoder: drip-feed and limits")
struct FrameDecoderTests {
    /// Every positive vector's bytes, back to back, and the frames they must yield.
    static func stream() throws -> (bytes: [UInt8], frames: [Frame]) {
        var bytes: [UInt8] = []
        var frames: [Frame] = []
        for vector in Vectors.positive {
            var buffer = ByteBuffer(bytes: vector.bytes)
            var decoder = FrameDecoder()
            let frame = try #require(try decoder.decode(buffer: &buffer), "\(vector.name) is one whole frame")
            #expect(buffer.readableBytes == 0)
            frames.append(frame)
            bytes += vector.bytes
        }
        return (bytes, frames)
    }

    /// Feeds `chunks` in order through the processor, collecting every frame as soon as it is complete.
    static func feed(_ chunks: [ArraySlice<UInt8>], maxBody: Int = Frame.defaultMaxBody) throws -> (frames: [Frame], left: Int) {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: maxBody))
        var frames: [Frame] = []
        for chunk in chunks {
            try processor.frames(in: ByteBuffer(bytes: chunk)) { frames.append($0) }
        }
        return (frames, processor.unprocessedBytes)
    }

    @Test("ByteToMessageDecoderVerifier: every positive vector, whole, drip-fed and all at once")
    func verifier() throws {
        let pairs = try Vectors.positive.map { vector in
            var buffer = ByteBuffer(bytes: vector.bytes)
            var decoder = FrameDecoder()
            return (ByteBuffer(bytes: vector.bytes), [try #require(try decoder.decode(buffer: &buffer))])
        }
        #expect(pairs.count > 20)
        // Two frames in one input, and an empty-payload frame: lengths at the 2-byte minimum.
        let twoFrames = Frame(type: 0x7F, payload: []).encoded() + Frame(type: 0x7E, flags: 0x01, payload: [1, 2, 3]).encoded()
        let extra = (ByteBuffer(bytes: twoFrames), [Frame(type: 0x7F, payload: []), Frame(type: 0x7E, flags: 0x01, payload: [1, 2, 3])])
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs + [extra]) { FrameDecoder() }
    }

    @Test("the verifier catches a decoder that splits frames wrongly")
    func verifierCanFail() {
        // A decoder that drops the last payload byte: the verifier must refuse it, or the test above proves nothing.
        struct Truncating: NIOSingleStepByteToMessageDecoder {
            typealias InboundOut = Frame
            var inner = FrameDecoder()
            mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
                try inner.decode(buffer: &buffer).map { Frame(type: $0.type, flags: $0.flags, payload: Array($0.payload.dropLast())) }
            }
            mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? { try decode(buffer: &buffer) }
        }
        let frame = Frame(type: 0x7F, payload: [0])
        #expect(throws: (any Error).self) {
            try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: [(ByteBuffer(bytes: frame.encoded()), [frame])]) { Truncating() }
        }
    }

    @Test("byte by byte, every positive vector comes out as the same frame")
    func byteByByte() throws {
        let (bytes, expected) = try Self.stream()
        #expect(expected.count == Vectors.positive.count && expected.count > 20)
        let (frames, left) = try Self.feed(bytes.indices.map { bytes[$0...$0] })
        #expect(frames == expected)
        #expect(left == 0)
    }

    @Test("in random chunks (seeded), the same frames; each decodes as its vector says")
    func randomChunks() throws {
        let (bytes, expected) = try Self.stream()
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("FrameDecoderTests.randomChunks seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
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
        for (frame, vector) in zip(expected, Vectors.positive) {
            #expect(try codec.decode(frame) == codec.decode(bytes: vector.bytes), "\(vector.name)")
        }
    }

    @Test("a partial frame waits for more bytes and consumes nothing; the end of the stream inside it is refused")
    func partial() throws {
        let bytes = try #require(Vectors.positive.first { $0.name == "hello-enrolment-token" }).bytes
        for cut in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            var decoder = FrameDecoder()
            #expect(try decoder.decode(buffer: &buffer) == nil, "cut at \(cut)")
            #expect(buffer.readableBytes == cut)
            let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder())
            try processor.frames(in: ByteBuffer(bytes: bytes[..<cut])) { _ in Issue.record("a frame from \(cut) bytes") }
            #expect(processor.unprocessedBytes == cut)
            if cut == 0 {
                try processor.finishProcessing(seenEOF: true) { _ in }
            } else {
                let error = #expect(throws: WireError.self) { try processor.finishProcessing(seenEOF: true) { _ in } }
                #expect(error?.code == .malformedFrame, "cut at \(cut)")
            }
        }
    }

    @Test("the decoder reports how much of an unfinished frame it holds (what the frame deadline reads)")
    func progress() throws {
        let loop = EmbeddedEventLoop()
        let progress = FrameProgress(eventLoop: loop)
        let limit = FrameLimit(Frame.defaultMaxBody, eventLoop: loop)
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(limit: limit, progress: progress))
        let frame = Frame(type: 0x7F, payload: [0]).encoded()
        var seen = 0
        for (index, byte) in (frame + frame.prefix(2)).enumerated() {
            try processor.frames(in: ByteBuffer(bytes: [byte])) { _ in seen += 1 }
            let pending = index < frame.count ? (index + 1) % frame.count : index + 1 - frame.count
            #expect(progress.pendingBytes == pending, "after byte \(index)")
            #expect(progress.isInsideFrame == (pending > 0))
        }
        #expect(seen == 1)
    }

    @Test("a huge announced length is refused once its 4 bytes are in, before the body arrives",
          arguments: [([0xFF, 0xFF, 0xFF, 0xFF] as [UInt8], Frame.defaultMaxBody),
                      ([0x00, 0x40, 0x00, 0x01], Frame.defaultMaxBody),
                      ([0x00, 0x01, 0x00, 0x01], 65536),
                      ([0x80, 0x00, 0x00, 0x00], 65536)])
    func frameTooLarge(_ header: [UInt8], maxBody: Int) throws {
        var decoder = FrameDecoder(maxBody: maxBody)
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        for byte in header.dropLast() {
            buffer.writeInteger(byte)
            #expect(try decoder.decode(buffer: &buffer) == nil, "three bytes are not yet a length")
        }
        buffer.writeInteger(header.last!)
        let error = #expect(throws: WireError.self) { try decoder.decode(buffer: &buffer) }
        #expect(error?.code == .frameTooLarge)
        #expect(buffer.readableBytes == 4, "nothing was consumed or buffered beyond the header")
        // Through the processor, byte by byte, the same refusal at the fourth byte.
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: maxBody))
        for byte in header.dropLast() { try processor.frames(in: ByteBuffer(bytes: [byte])) { _ in } }
        let dripped = #expect(throws: WireError.self) { try processor.frames(in: ByteBuffer(bytes: [header.last!])) { _ in } }
        #expect(dripped?.code == .frameTooLarge)
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
        var decoder = FrameDecoder()
        if length < 2 {
            let error = #expect(throws: WireError.self) { try decoder.decode(buffer: &buffer) }
            #expect(error?.code == .malformedFrame)
        } else {
            #expect(try decoder.decode(buffer: &buffer) == Frame(type: 0x7F, payload: []))
        }
    }

    @Test("a frame exactly at the limit is accepted, one byte over is refused")
    func limitBoundary() throws {
        let limit = 65536
        let atLimit = Frame(type: 0x21, payload: [UInt8](repeating: 0, count: limit - 2))
        var buffer = ByteBufferAllocator().buffer(capacity: limit + 4)
        atLimit.write(into: &buffer)
        var decoder = FrameDecoder(maxBody: limit)
        #expect(try decoder.decode(buffer: &buffer) == atLimit)
        var over = ByteBufferAllocator().buffer(capacity: 8)
        over.writeInteger(UInt32(limit + 1))
        let error = #expect(throws: WireError.self) { try decoder.decode(buffer: &over) }
        #expect(error?.code == .frameTooLarge)
    }

    @Test("a limit lowered after the handshake applies to the next frame")
    func adjustableLimit() throws {
        let loop = EmbeddedEventLoop()
        let limit = FrameLimit(Frame.defaultMaxBody, eventLoop: loop)
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(limit: limit))
        let big = Frame(type: 0x21, payload: [UInt8](repeating: 0, count: 100))
        var frames = 0
        try processor.frames(in: ByteBuffer(bytes: big.encoded())) { _ in frames += 1 }
        let lowered = limit.set(64)
        loop.run()
        try lowered.wait()
        let error = #expect(throws: WireError.self) { try processor.frames(in: ByteBuffer(bytes: big.encoded())) { _ in frames += 1 } }
        #expect(error?.code == .frameTooLarge)
        #expect(frames == 1)
    }
}
