import SyncCore
import SyncWire
import Testing

/// The fields protocol version 3 added (Protocol/identity.md, "Messages in protocol version 3"),
/// through the codec: each round-trips, each size rule is the decoder's, and a frame filled to
/// the room FrameBudget gives still fits with its provenance.
@Suite("Codec: the identity fields of protocol version 3")
struct IdentityFieldTests {
    static let replica = ReplicaID(high: 0x8F3C_2A1B_4D5E_6F70, low: 0x8192_A3B4_C5D6_E7F8)
    static let other = ReplicaID(high: 0x1F2E_3D4C_5B6A_7988, low: 0x0796_A5B4_C3D2_E1F0)
    static let key = [UInt8](repeating: 0xD1, count: 32)
    static let codec = MessageCodec(compressionThreshold: nil)

    static func hello(max: UInt64, key: [UInt8]) -> Hello {
        Hello(protocolMin: 2, protocolMax: max, schemaVersion: 3, replica: replica, appVersion: "caresync/0.6.0",
              credential: .enrolmentToken("K7Q2"), maxFrameBody: 65_536, deviceKey: key)
    }

    static func certificate(_ replica: ReplicaID) -> DeviceCertificate {
        DeviceCertificate(replica: replica, publicKey: key, team: "leeds-east", issuedAtMillis: 1_750_000_000_000,
                          signature: [UInt8](repeating: 0x77, count: 64))
    }

    static func head(_ origin: ReplicaID, _ counter: UInt64) -> SignedHead {
        SignedHead(origin: origin, counter: counter, chain: [UInt8](repeating: 0x11, count: 32), signature: [UInt8](repeating: 0x22, count: 64))
    }

    /// The uncompressed payload of `message`.
    static func payload(_ message: Message) -> [UInt8] { codec.frame(message).payload }

    static func roundTrips(_ message: Message) throws -> Bool {
        try codec.decode(bytes: codec.encode(message)) == message
    }

    static func refusal(_ kind: Message.Kind, _ payload: [UInt8]) throws -> WireError {
        try #require(throws: WireError.self) { try MessageCodec().decode(Frame(type: kind.rawValue, payload: payload)) }
    }

    @Test("hello: a device key of 0 or 32 bytes round-trips; 31 or 33 bytes is refused at device_key")
    func helloDeviceKey() throws {
        #expect(try Self.roundTrips(.hello(Self.hello(max: 3, key: Self.key))))
        #expect(try Self.roundTrips(.hello(Self.hello(max: 3, key: []))))
        let keyed = Self.payload(.hello(Self.hello(max: 3, key: [])))
        for length in [31, 33, 1] {
            let error = try Self.refusal(.hello, Array(keyed.dropLast()) + [UInt8(length)] + [UInt8](repeating: 7, count: length))
            #expect(error.code == .malformedMessage && error.field == "device_key" && error.offset == keyed.count - 1, "\(length) bytes")
        }
    }

    @Test("hello: below protocol_max 3 there is no device_key, so a version-2 client's hello still decodes")
    func helloBeforeVersionThree() throws {
        let old = Self.payload(.hello(Self.hello(max: 2, key: [])))
        let keyed = Self.payload(.hello(Self.hello(max: 3, key: [])))
        #expect(old.count + 1 == keyed.count, "version 2's layout: nothing after max_frame_body")
        #expect(try MessageCodec().decode(Frame(type: Message.Kind.hello.rawValue, payload: old)) == .hello(Self.hello(max: 2, key: [])))
        #expect(try Self.refusal(.hello, old + [0]).code == .trailingBytes)
        #expect(try Self.refusal(.hello, Array(keyed.dropLast())).code == .malformedMessage, "from version 3 on the key is required")
    }

    @Test("welcome: hub key, incarnation and a certificate or none round-trip; a short hub key is refused")
    func welcome() throws {
        func welcome(_ certificate: DeviceCertificate?) -> Welcome {
            Welcome(protocolVersion: 3, schemaVersion: 1, hub: Self.other, maxFrameBody: 65_536, issuedCredential: [1, 2],
                    hubTimeMillis: 5, heartbeatIntervalMillis: 30_000, ownDurable: 44, hubKey: Self.key,
                    incarnation: [UInt8](repeating: 0x7C, count: 16), certificate: certificate)
        }
        #expect(try Self.roundTrips(.welcome(welcome(Self.certificate(Self.replica)))))
        #expect(try Self.roundTrips(.welcome(welcome(nil))))
        let none = Self.payload(.welcome(welcome(nil)))
        #expect(none.last == 0, "no certificate: an empty bytes")
        let short = try Self.refusal(.welcome, Array(none.dropLast(1 + 16 + 1)))
        #expect(short.code == .malformedMessage, "a hub key of 31 bytes, then nothing")
        let empty = try Self.refusal(.welcome, Array(none.dropLast()))
        #expect(empty.code == .malformedMessage, "the certificate field is required even when empty")
    }

    @Test("fork carries the new key; forked a certificate or none")
    func forkAndForked() throws {
        #expect(try Self.roundTrips(.fork(newReplica: Self.other, deviceKey: Self.key)))
        #expect(Self.payload(.fork(newReplica: Self.other, deviceKey: Self.key)).count == 16 + 32)
        #expect(try Self.refusal(.fork, Array(Self.payload(.fork(newReplica: Self.other, deviceKey: Self.key)).dropLast())).code
            == .malformedMessage)
        #expect(try Self.roundTrips(.forked(newReplica: Self.other, issuedCredential: [9, 9], certificate: Self.certificate(Self.other))))
        #expect(try Self.roundTrips(.forked(newReplica: Self.other, issuedCredential: [9, 9], certificate: nil)))
    }

    @Test("push, batch and recovered carry their provenance after the changes; relayed answers are their bytes exactly")
    func provenanceAfterChanges() throws {
        let provenance = Provenance(heads: [Self.head(Self.other, 3), Self.head(Self.replica, 7)], certificates: [Self.certificate(Self.other)])
        let change = Change(id: ChangeID(replica: Self.other, counter: 3), timestamp: HybridTimestamp(rawValue: 1), author: "w-ben",
                            table: "note", row: "n-1", causalLength: 1, fields: [FieldEdit(column: "text", operation: .assign(.text("x")))])
        var stored = ByteWriter()
        change.encode(into: &stored)
        for message: Message in [.push(batch: 1, changes: [change], provenance: provenance),
                                 .batch(nextCursor: 9, more: true, changes: [change], provenance: provenance),
                                 .recovered(origin: Self.other, nextCounter: 3, more: false, changes: [change], provenance: provenance)] {
            #expect(try Self.roundTrips(message), "\(message.kind)")
            let withNone = Self.payload(message.replacingProvenance(.none))
            #expect(Self.payload(message).count == withNone.count - Provenance.none.encodedSize + provenance.encodedSize)
        }
        #expect(Self.payload(.relayedBatch(nextCursor: 9, more: true, encodedChanges: [stored.bytes], provenance: provenance))
            == Self.payload(.batch(nextCursor: 9, more: true, changes: [change], provenance: provenance)))
        #expect(Self.payload(.relayedRecovered(origin: Self.other, nextCounter: 3, more: false, encodedChanges: [stored.bytes],
                                                       provenance: provenance))
            == Self.payload(.recovered(origin: Self.other, nextCounter: 3, more: false, changes: [change], provenance: provenance)))
        #expect(Message.relayedBatch(nextCursor: 9, more: true, encodedChanges: [stored.bytes], provenance: provenance).decoded
            == .batch(nextCursor: 9, more: true, changes: [change], provenance: provenance))
    }

    @Test("changes filling FrameBudget's room, with their provenance, fit the frame limit", arguments: [0, 1, 3, 40])
    func frameBudget(heads count: Int) throws {
        let maxBody = 65_536
        let provenance = Provenance(heads: (1...max(1, count)).prefix(count).map { Self.head(Self.other, UInt64($0) * 1_000) },
                                    certificates: count > 0 ? [Self.certificate(Self.other)] : [])
        for (room, kind) in [(FrameBudget.changeBytes(maxBody: maxBody, provenance: provenance), Message.Kind.batch),
                             (FrameBudget.recoveredChangeBytes(maxBody: maxBody, provenance: provenance), .recovered)] {
            // One change whose encoding is exactly the room: a blob sized to make up the difference.
            var blob = room - 60
            var change = Self.blobChange(blob)
            while change.encodedSize != room { blob += room - change.encodedSize; change = Self.blobChange(blob) }
            let message: Message = kind == .batch
                ? .batch(nextCursor: UInt64.max, more: true, changes: [change], provenance: provenance)
                : .recovered(origin: Self.other, nextCounter: UInt64.max, more: true, changes: [change], provenance: provenance)
            let frameLength = Self.payload(message).count + 2
            #expect(frameLength <= maxBody, "\(kind) with \(count) heads: \(frameLength) bytes in a \(maxBody)-byte limit")
            #expect(frameLength > maxBody - 25, "the room is not much smaller than it must be")
        }
    }

    static func blobChange(_ size: Int) -> Change {
        Change(id: ChangeID(replica: other, counter: UInt64.max >> 1), timestamp: HybridTimestamp(rawValue: 1), author: "w", table: "note",
               row: "n", causalLength: 1, fields: [FieldEdit(column: "scan", operation: .assign(.blob([UInt8](repeating: 1, count: size))))])
    }
}

extension Change {
    /// Bytes of this change's canonical encoding.
    var encodedSize: Int {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes.count
    }
}

extension Message {
    /// The same push, batch or recovered with another provenance; any other message as it is.
    func replacingProvenance(_ provenance: Provenance) -> Message {
        switch self {
        case let .push(batch, changes, _): .push(batch: batch, changes: changes, provenance: provenance)
        case let .batch(next, more, changes, _): .batch(nextCursor: next, more: more, changes: changes, provenance: provenance)
        case let .recovered(origin, next, more, changes, _):
            .recovered(origin: origin, nextCounter: next, more: more, changes: changes, provenance: provenance)
        default: self
        }
    }
}
