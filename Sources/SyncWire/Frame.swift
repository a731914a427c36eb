import NIOCore
import SyncCore

/// One frame: `u32be length | u8 type | u8 flags | payload` (Protocol/framing.md). The length
/// counts the type, flags and payload bytes.
public struct Frame: Equatable, Sendable {
    public static let headerSize = 6
    /// Default largest frame body (type + flags + payload); negotiated down in the hello.
    public static let defaultMaxBody = 4 * 1024 * 1024
    /// Bit 0 of flags: the payload is compressed. Bits 1–7 are reserved and must be zero.
    public static let compressedFlag: UInt8 = 0x01

    public let type: UInt8
    public let flags: UInt8
    public let payload: [UInt8]

    public init(type: UInt8, flags: UInt8 = 0, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    public var isCompressed: Bool { flags & Self.compressedFlag != 0 }

    public func encoded() -> [UInt8] {
        let length = UInt32(payload.count + 2)
        var bytes: [UInt8] = [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
                              UInt8(truncatingIfNeeded: length), type, flags]
        bytes.append(contentsOf: payload)
        return bytes
    }

    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(payload.count + 2))
        buffer.writeInteger(type)
        buffer.writeInteger(flags)
        buffer.writeBytes(payload)
    }
}

/// Incremental frame decoding with the length checked against the limit before anything is
/// buffered: a peer announcing a 2 GiB frame is refused after four bytes.
public struct FrameParser: Sendable {
    public var maxBody: Int

    public init(maxBody: Int = Frame.defaultMaxBody) { self.maxBody = maxBody }

    /// The next complete frame in `buffer`, consuming it; nil if more bytes are needed.
    public func next(from buffer: inout ByteBuffer) throws(WireError) -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 2 else { throw WireError(.malformedFrame, "frame length \(length) is below the 2-byte minimum") }
        guard length <= UInt32(maxBody) else {
            throw WireError(.frameTooLarge, "frame of \(length) bytes exceeds the \(maxBody)-byte limit")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let type: UInt8 = buffer.readInteger()!
        let flags: UInt8 = buffer.readInteger()!
        let payload = buffer.readBytes(length: Int(length) - 2)!
        return Frame(type: type, flags: flags, payload: payload)
    }

    /// True when `buffer` holds the start of a frame but not all of it (for frame deadlines).
    public func hasPartialFrame(_ buffer: ByteBuffer) -> Bool { buffer.readableBytes > 0 }
}

/// The NIO adapter: turns inbound bytes into frames with `FrameParser`'s checks.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame
    public private(set) var parser: FrameParser
    /// When set, the limit is read from it before each frame, so it can change after the handshake.
    let limit: FrameLimit?

    public init(maxBody: Int = Frame.defaultMaxBody) {
        parser = FrameParser(maxBody: maxBody)
        limit = nil
    }

    public init(limit: FrameLimit) {
        parser = FrameParser(maxBody: limit.current)
        self.limit = limit
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let limit { parser.maxBody = limit.current }
        guard let frame = try parser.next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError(.malformedFrame, "connection closed inside a frame (\(buffer.readableBytes) bytes pending)")
        }
        return .needMoreData
    }
}

/// Writes frames to the channel.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        data.write(into: &out)
    }
}
