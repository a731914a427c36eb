import SyncCore
import SyncWire
import Testing

/// The welcome's `purges` and purge-ack's `scopes` (Protocol/messages.md, "Scope lists"): round
/// trips, and each limit refused with the code the spec gives it.
@Suite("Scope lists: welcome purges and purge-ack")
struct ScopeListTests {
    let codec = MessageCodec()

    static func welcome(purges: [String]) -> Welcome {
        Welcome(protocolVersion: 4, schemaVersion: 1, hub: ReplicaID(high: 1, low: 1), maxFrameBody: 65_536, issuedCredential: [],
                hubTimeMillis: 1, heartbeatIntervalMillis: 30_000, ownDurable: 0, hubKey: [UInt8](repeating: 2, count: 32),
                incarnation: [UInt8](repeating: 3, count: 16), certificate: nil, purges: purges)
    }

    /// The frame of a message of `type` whose payload is `payload`, uncompressed.
    static func frame(_ type: Message.Kind, _ payload: [UInt8]) -> [UInt8] {
        Frame(type: type.rawValue, payload: payload).encoded()
    }

    /// A scope list's bytes: `count`, then each scope's length and bytes.
    static func list(_ scopes: [[UInt8]], count: Int? = nil) -> [UInt8] {
        var bytes = varint(UInt64(count ?? scopes.count))
        for scope in scopes { bytes += varint(UInt64(scope.count)) + scope }
        return bytes
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            bytes.append(UInt8(value & 0x7F) | (value >= 0x80 ? 0x80 : 0))
            value >>= 7
        } while value > 0
        return bytes
    }

    /// The welcome's payload without its purges (an empty list is the payload's last byte).
    var welcomeHead: [UInt8] {
        let frame = codec.encode(.welcome(Self.welcome(purges: [])))
        return Array(frame[6..<(frame.count - 1)])
    }

    @Test("a welcome with purges and a purge-ack decode to what was encoded; the bytes are count then strings")
    func roundTrip() throws {
        let scopes = ["p-11", "p-27", "yp-é", "yp-中"]
        let welcome = Message.welcome(Self.welcome(purges: scopes))
        #expect(try codec.decode(bytes: codec.encode(welcome)) == welcome)
        let ack = Message.purgeAck(scopes: scopes)
        let bytes = codec.encode(ack)
        #expect(try codec.decode(bytes: bytes) == ack)
        #expect(Array(bytes[4...]) == [0x31, 0x00] + Self.list(scopes.map { Array($0.utf8) }))
        #expect(try codec.decode(bytes: codec.encode(.purgeAck(scopes: []))) == .purgeAck(scopes: []))
        // At the limits exactly: 4,096 scopes, one of 128 bytes.
        let most = (0..<ScopeList.maxScopes).map { "yp-\(100_000 + $0)" }
        let longest = [String(repeating: "y", count: ScopeList.maxScopeBytes)]
        #expect(try codec.decode(bytes: codec.encode(.welcome(Self.welcome(purges: most)))) == .welcome(Self.welcome(purges: most)))
        #expect(try codec.decode(bytes: codec.encode(.purgeAck(scopes: longest))) == .purgeAck(scopes: longest))
    }

    @Test("more than 4,096 scopes is LIMIT_EXCEEDED, from the count alone, in a welcome and in a purge-ack")
    func tooMany() {
        for (kind, payload, field) in [(Message.Kind.welcome, welcomeHead + Self.varint(4_097), "purges"),
                                       (.purgeAck, Self.varint(4_097), "scopes")] {
            #expect {
                try codec.decode(bytes: Self.frame(kind, payload))
            } throws: { error in
                guard let error = error as? WireError else { return false }
                return error.code == .limitExceeded && error.kind == kind && error.field == field
            }
        }
    }

    @Test("a scope over 128 bytes is LIMIT_EXCEEDED, from its length alone; the rest of a bad list is MALFORMED_MESSAGE")
    func tooLongAndMalformed() {
        let long = [UInt8](repeating: 0x79, count: ScopeList.maxScopeBytes + 1)
        let cases: [([UInt8], WireError.Code)] = [
            (Self.list([long]), .limitExceeded),
            (Self.varint(1) + Self.varint(129), .limitExceeded),   // nothing after the length: refused on it
            (Self.list([Array("p-27".utf8), Array("p-11".utf8)]), .malformedMessage),
            (Self.list([Array("p-11".utf8), Array("p-11".utf8)]), .malformedMessage),
            (Self.list([[], Array("p-11".utf8)]), .malformedMessage),
            (Self.list([[0x70, 0x00]]), .malformedMessage),
            (Self.list([[0xFF]]), .malformedMessage),
            (Self.list([Array("p-11".utf8)], count: 5), .malformedMessage),
        ]
        for (payload, code) in cases {
            for (kind, bytes) in [(Message.Kind.purgeAck, payload), (.welcome, welcomeHead + payload)] {
                #expect {
                    try codec.decode(bytes: Self.frame(kind, bytes))
                } throws: { error in
                    (error as? WireError)?.code == code && (error as? WireError)?.kind == kind
                }
            }
        }
    }

    @Test("purge-acks are cut to fit the frame limit: 4,096 scopes of 128 bytes go in frames of at most 65,536 bytes")
    func chunks() throws {
        let scopes = ScopeList.canonical((0..<ScopeList.maxScopes).map(Self.longScope))
        let chunks = ScopeList.chunks(scopes, maxBody: 65_536)
        #expect(chunks.count > 1)
        #expect(Array(chunks.joined()) == scopes)
        for chunk in chunks {
            // The frame body (type, flags, payload) is what the limit bounds.
            #expect(codec.encode(.purgeAck(scopes: chunk)).count - 4 <= 65_536)
        }
        #expect(ScopeList.chunks([], maxBody: 65_536).isEmpty)
        #expect(ScopeList.chunks(["a", "b"], maxBody: 65_536) == [["a", "b"]])
    }

    /// A 128-byte scope ending in `index`'s digits.
    static func longScope(_ index: Int) -> String {
        let digits = String(index)
        return String(repeating: "y", count: ScopeList.maxScopeBytes - digits.utf8.count) + digits
    }
}
