import NIOCore
import SyncCore

/// One frame: `u32be length | u8 type | u8 flags | payload` (Protocol/framing.md). The length
/// counts the type, flags and payload bytes.
public struct Frame: Equatable, Sendable {
    /// The length (4 bytes), type and flags before the payload.
    public static let headerSize = 6
    /// Default largest frame body (type + flags + payload); negotiated down in the hello.
    public static let defaultMaxBody = 4 * 1024 * 1024
    /// Bit 0 of flags: the payload is compressed. Bits 1–7 are reserved and must be zero.
    public static let compressedFlag: UInt8 = 0x01

    /// The message type (`Message.Kind`'s raw value).
    public let type: UInt8
    /// Flag bits; only `compressedFlag` may be set.
    public let flags: UInt8
    /// The payload, as it travels (compressed if the flag says so).
    public let payload: [UInt8]

    /// A frame.
    /// - Parameters:
    ///   - type: the message type.
    ///   - flags: flag bits, 0 unless compressed.
    ///   - payload: the payload bytes.
    public init(type: UInt8, flags: UInt8 = 0, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// Whether the payload is compressed.
    public var isCompressed: Bool { flags & Self.compressedFlag != 0 }

    /// The frame's bytes: `u32be length | type | flags | payload`.
    public func encoded() -> [UInt8] {
        let length = UInt32(payload.count + 2)
        var bytes: [UInt8] = [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
                              UInt8(truncatingIfNeeded: length), type, flags]
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Writes the frame's bytes into `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(payload.count + 2))
        buffer.writeInteger(type)
        buffer.writeInteger(flags)
        buffer.writeBytes(payload)
    }
}

/// The one frame parser (Protocol/framing.md): the hub's and the client's pipelines drive it
/// through `ByteToMessageHandler`, the simulator, the fuzz targets and `MessageCodec.decode(bytes:)`
/// through `NIOSingleStepByteToMessageProcessor` or `decode(buffer:)` directly, so every path
/// checks frames with the same code.
///
/// The length is checked against the limit as soon as its four bytes are in, before anything is
/// buffered for the frame: a peer announcing a 2 GiB frame is refused after four bytes. Nothing
/// is consumed until a whole frame is present.
package struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    package typealias InboundOut = Frame

    /// The largest frame body (type + flags + payload) accepted; read from `limit` before each
    /// frame when one is given.
    package private(set) var maxBody: Int
    /// When set, the limit is read from it before each frame, so it can change after the handshake.
    let limit: FrameLimit?
    /// When set, told after every step how many bytes of an unfinished frame are buffered (for the
    /// frame deadline, which keeps its timing apart from parsing).
    let progress: FrameProgress?

    package init(maxBody: Int = Frame.defaultMaxBody) {
        self.maxBody = maxBody
        limit = nil
        progress = nil
    }

    /// Call on `limit`'s event loop (a channel initializer runs there).
    package init(limit: FrameLimit, progress: FrameProgress? = nil) {
        maxBody = limit.current
        self.limit = limit
        self.progress = progress
    }

    /// The next complete frame in `buffer`, consuming exactly its bytes; nil if more are needed.
    package mutating func decode(buffer: inout ByteBuffer) throws(WireError) -> Frame? {
        if let limit { maxBody = limit.current }
        defer { progress?.record(pendingBytes: buffer.readableBytes) }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 2 else { throw WireError(.malformedFrame, "frame length \(length) is below the 2-byte minimum") }
        guard length <= UInt32(maxBody) else {
            throw WireError(.frameTooLarge, "frame of \(length) bytes exceeds the \(maxBody)-byte limit")
        }
        guard buffer.readableBytes >= 4 + Int(length),
              let (_, type, flags) = buffer.readMultipleIntegers(as: (UInt32, UInt8, UInt8).self),
              let payload = buffer.readBytes(length: Int(length) - 2)
        else { return nil }
        return Frame(type: type, flags: flags, payload: payload)
    }

    /// At the end of the stream: the frames still buffered, then a refusal if a frame was cut.
    package mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(WireError) -> Frame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        guard buffer.readableBytes == 0 else {
            throw WireError(.malformedFrame, "connection closed inside a frame (\(buffer.readableBytes) bytes pending)")
        }
        return nil
    }
}

extension NIOSingleStepByteToMessageProcessor where Decoder == FrameDecoder {
    /// Appends `bytes` and hands over every frame now complete, in order; the frame decoder's one
    /// error type. Bytes of an unfinished frame stay for the next call; after an error the bytes
    /// from the refused frame on stay unconsumed, as the pipeline's decoder leaves them.
    package func frames(in bytes: ByteBuffer, _ receive: (Frame) -> Void) throws(WireError) {
        do {
            try process(buffer: bytes, receive)
        } catch let error as WireError {
            throw error
        } catch {
            // Only the decoder throws here (no buffer maximum is set and `receive` cannot).
            throw WireError(.malformedFrame, "frame processing failed: \(type(of: error))")
        }
    }
}

/// Writes frames to the channel.
package struct FrameEncoder: MessageToByteEncoder {
    package typealias OutboundIn = Frame

    package init() {}

    package func encode(data: Frame, out: inout ByteBuffer) throws {
        data.write(into: &out)
    }
}
