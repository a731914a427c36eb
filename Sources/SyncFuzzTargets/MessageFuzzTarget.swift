import SyncWire

/// Fuzz target (b): the message decoder. Input: a frame body, `type | flags | payload` (the length
/// prefix is the frame target's business), decoded by `MessageCodec.decode` with the default
/// limits, compressed payloads included. A message that decodes must come back equal through
/// encode and decode, and an uncompressed frame must be the canonical encoding of its message:
/// the decoder is strict, so two different byte strings never mean the same message.
enum MessageFuzzTarget {
    static let codec = MessageCodec()
    static let plainCodec = MessageCodec(compressionThreshold: nil)

    static func run(_ input: [UInt8]) -> FuzzOutcome {
        guard input.count >= 2 else { return .refused("a frame body has at least a type and a flags byte") }
        let frame = Frame(type: input[0], flags: input[1], payload: Array(input.dropFirst(2)))
        let message: Message
        do {
            message = try codec.decode(frame)
        } catch {
            return .refusal(error)
        }
        return check(message, decodedFrom: frame)
    }

    /// The round-trip promises for a message decoded from `frame`; shared with the hub target,
    /// which checks every message the hub sends the same way.
    static func check(_ message: Message, decodedFrom frame: Frame?, codec: MessageCodec = codec) -> FuzzOutcome {
        let plain = plainCodec.frame(message)
        if let frame, !frame.isCompressed, plain != frame, !readsUnknownCode(message) {
            return .invariantBroken("\(message.kind) decoded from a non-canonical encoding")
        }
        // Compared as canonical bytes, not with ==: a real NaN is kept exactly (Protocol/README.md)
        // but is not == to itself.
        for encoded in [codec.frame(message), plain] {
            do {
                guard plainCodec.frame(try codec.decode(encoded)) == plain else {
                    return .invariantBroken("\(message.kind) changed through encode and decode")
                }
            } catch {
                return .invariantBroken("\(message.kind) re-encoded is refused: \(error)")
            }
        }
        return .accepted
    }

    /// The one place the spec reads two encodings as one message: an error or reject code unknown
    /// to this version is read as MALFORMED_MESSAGE (errors.md; vector error-unknown-code).
    static func readsUnknownCode(_ message: Message) -> Bool {
        switch message {
        case let .error(code, _, _), let .reject(code, _, _): code == .malformedMessage
        default: false
        }
    }
}
