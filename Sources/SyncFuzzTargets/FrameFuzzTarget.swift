import NIOCore
import SyncWire

/// Fuzz target (a): the frame decoder. Input: one byte choosing the frame limit, then a byte
/// stream. The stream is parsed three ways — `FrameParser` over the whole buffer, `FrameParser`
/// drip-fed one byte at a time, and `ByteBufferShim` — and all three must agree on the frames,
/// the error and the bytes left over; every frame must re-encode to the bytes it was read from.
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
        let shim = parseShim(stream, maxBody: maxBody)
        guard whole == dripped else { return .invariantBroken("drip-fed parse differs from whole-buffer parse") }
        guard whole == shim else { return .invariantBroken("ByteBufferShim differs from FrameParser") }
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
        var result = Parse()
        drain(&buffer, FrameParser(maxBody: maxBody), into: &result)
        result.leftover = buffer.readableBytes
        return result
    }

    static func parseDripped(_ stream: [UInt8], maxBody: Int) -> Parse {
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        let parser = FrameParser(maxBody: maxBody)
        var result = Parse()
        var fed = 0
        for byte in stream where result.error == nil {
            buffer.writeInteger(byte)
            fed += 1
            drain(&buffer, parser, into: &result)
        }
        // After an error the rest is never fed; it is left over all the same.
        result.leftover = buffer.readableBytes + stream.count - fed
        return result
    }

    static func drain(_ buffer: inout ByteBuffer, _ parser: FrameParser, into result: inout Parse) {
        do {
            while let frame = try parser.next(from: &buffer) { result.frames.append(frame) }
        } catch {
            result.error = error
        }
    }

    static func parseShim(_ stream: [UInt8], maxBody: Int) -> Parse {
        var shim = ByteBufferShim(stream)
        var result = Parse()
        do {
            while let frame = try shim.frame(maxBody: maxBody) { result.frames.append(frame) }
        } catch {
            result.error = error
        }
        result.leftover = stream.count - result.frames.reduce(0) { $0 + $1.payload.count + Frame.headerSize }
        return result
    }
}
