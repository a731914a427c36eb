import SyncCore
import SyncWire
import Testing

@Suite("WireError: context as data, the cause kept")
struct WireErrorTests {
    static let replica = ReplicaID(high: 1, low: 2)

    /// A push-ack whose version vector has a zero counter: the payload is batch (1 byte), entry
    /// count (1), the replica (16), then the counter at byte 18.
    static var zeroCounterAck: Frame {
        var writer = ByteWriter()
        writer.varint(1)
        writer.varint(1)
        writer.replica(replica)
        writer.varint(0)
        writer.varint(0)
        return Frame(type: Message.Kind.pushAck.rawValue, payload: writer.bytes)
    }

    @Test("a malformed message's error keeps the inner decoding error's offset, field and the error itself")
    func malformedKeepsOffset() throws {
        let error = try #require(throws: WireError.self) { try MessageCodec().decode(Self.zeroCounterAck) }
        #expect(error.code == .malformedMessage)
        #expect(error.kind == .pushAck)
        #expect(error.offset == 18)
        #expect(error.field == "entries")
        let cause = try #require(error.cause as? ByteDecodingError)
        #expect(cause.code == .invalidValue && cause.offset == 18)
        #expect(error.description == "MALFORMED_MESSAGE: pushAck: INVALID_VALUE at byte 18 (entries): version vector counter 0")
    }

    @Test("trailing bytes keep their offset too, under their own code")
    func trailingKeepsOffset() throws {
        let frame = MessageCodec(compressionThreshold: nil).frame(.pull(cursor: 3, byteBudget: 4))
        let error = try #require(throws: WireError.self) {
            try MessageCodec().decode(Frame(type: frame.type, payload: frame.payload + [0]))
        }
        #expect(error.code == .trailingBytes)
        #expect(error.kind == .pull)
        #expect(error.offset == frame.payload.count)
        #expect(error.cause is ByteDecodingError)
    }

    @Test("an error the message decoder raises itself names the message and where it stopped")
    func ownErrorGetsKind() throws {
        // batch: next_cursor 5, then `more` as 2, which is no bool.
        let error = try #require(throws: WireError.self) {
            try MessageCodec().decode(Frame(type: Message.Kind.batch.rawValue, payload: [5, 2, 0]))
        }
        #expect(error.code == .malformedMessage)
        #expect(error.kind == .batch)
        #expect(error.offset == 1)
        #expect(error.cause == nil)
    }

    @Test("codes are numbers and names as errors.md gives them; a number this version lacks is none")
    func codes() {
        #expect(WireError.Code.allCases.map(\.rawValue) == Array(1...26))
        #expect(WireError.Code(rawValue: 19) == .malformedMessage)
        #expect(WireError.Code(rawValue: 19)?.name == "MALFORMED_MESSAGE")
        #expect(WireError.Code(rawValue: 0) == nil)
        #expect(WireError.Code(rawValue: 27) == nil)
        #expect(WireError.Code.clockSkew.description == "CLOCK_SKEW")
    }

    @Test("the identity codes of protocol version 3 have identity.md's numbers and names, and none is retryable")
    func identityCodes() {
        let codes: [WireError.Code] = [.signatureInvalid, .chainGap, .unsignedChanges, .unknownDevice, .hubKeyChanged]
        #expect(codes.map(\.rawValue) == [22, 23, 24, 25, 26])
        #expect(codes.map(\.name) == ["SIGNATURE_INVALID", "CHAIN_GAP", "UNSIGNED_CHANGES", "UNKNOWN_DEVICE", "HUB_KEY_CHANGED"])
        #expect(codes.allSatisfy { !$0.retryable })
        #expect(codes.allSatisfy { WireError.Code(rawValue: $0.rawValue) == $0 })
    }
}
