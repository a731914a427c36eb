import NIOCore
import SyncWire

/// Fuzz target (a): the frame decoder. Input: one byte choosing the frame limit, then a byte
/// stream. The stream is parsed three ways with the one `FrameDecoder` — called directly over the
/// whole buffer, drip-fed one byte at a time through `NIOSingleStepByteToMessageProcessor` (as the
/// simulator drives it), and handed to the processor at once and then ended (as a connection
/// closing) — and all three must agree on the frames, the error and the bytes left over; a stream
/// that ends inside a frame must be refused at its end; every frame must re-encode to the bytes it
/// was read from.
enum FrameFuzzTarget {
    static let limits = [Frame.defaultMaxBody, 65_536, 64, 2]

    struct Parse: Equatable {
        var frames: [Frame] = []
        var error: WireError?
        var leftover = 0
    }

    static func run(_ input: [UInt8]) -> FuzzOutcome {
        guard let selector = input.first else { return .refused("empty input") }
        let maxBody = limits[Int(selector) % limits.count]
        let stream = Array(input.dropFirst())
        let whole = parseWhole(stream, maxBody: maxBody)
        let dripped = parseDripped(stream, maxBody: maxBody)
        let (atOnce, endError) = parseToEnd(stream, maxBody: maxBody)
        guard whole == dripped else { return .invariantBroken("drip-fed parse differs from whole-buffer parse") }
        guard whole == atOnce else { return .invariantBroken("the processor's parse differs from the decoder's") }
        if whole.error == nil, (endError != nil) != (whole.leftover > 0) {
            return .invariantBroken("the end of the stream was \(endError == nil ? "accepted inside" : "refused outside") a frame")
        }
        var offset = 0
        for frame in whole.frames {
            let encoded = frame.encoded()
            guard offset + encoded.count <= stream.count, Array(stream[offset..<offset + encoded.count]) == encoded else {
                return .invariantBroken("a frame does not re-encode to the bytes it was read from")
            }
            guard frame.payload.count + 2 <= maxBody else { return .invariantBroken("a frame over the \(maxBody)-byte limit was returned") }
            offset += encoded.count
        }
        guard offset + whole.leftover == stream.count else { return .invariantBroken("bytes were lost between frames") }
        if let error = whole.error { return .refusal(error) }
        return .accepted
    }

    static func parseWhole(_ stream: [UInt8], maxBody: Int) -> Parse {
        var buffer = ByteBufferAllocator().buffer(bytes: stream)
        var decoder = FrameDecoder(maxBody: maxBody)
        var result = Parse()
        do {
            while let frame = try decoder.decode(buffer: &buffer) { result.frames.append(frame) }
        } catch {
            result.error = error
        }
        result.leftover = buffer.readableBytes
        return result
    }

    static func parseDripped(_ stream: [UInt8], maxBody: Int) -> Parse {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: maxBody))
        var result = Parse()
        var fed = 0
        for byte in stream where result.error == nil {
            fed += 1
            process(ByteBuffer(bytes: [byte]), processor, into: &result)
        }
        // After an error the rest is never fed; it is left over all the same.
        result.leftover = processor.unprocessedBytes + stream.count - fed
        return result
    }

    /// The whole stream at once, then its end; the error of the end, if the stream had none before.
    static func parseToEnd(_ stream: [UInt8], maxBody: Int) -> (Parse, endError: (any Error)?) {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: maxBody))
        var result = Parse()
        process(ByteBuffer(bytes: stream), processor, into: &result)
        result.leftover = processor.unprocessedBytes
        guard result.error == nil else { return (result, nil) }
        do {
            // Every whole frame came out above: a frame appearing only at the end is a difference.
            try processor.finishProcessing(seenEOF: true) { result.frames.append($0) }
            return (result, nil)
        } catch {
            return (result, error)
        }
    }

    static func process(_ bytes: ByteBuffer, _ processor: NIOSingleStepByteToMessageProcessor<FrameDecoder>, into result: inout Parse) {
        do {
            try processor.frames(in: bytes) { result.frames.append($0) }
        } catch {
            result.error = error
        }
    }
}
