import NIOCore
import SyncCore

/// Strict, canonical encoding of messages to frames and back. Unknown types, reserved flag bits,
/// compression where it is not allowed, trailing bytes and out-of-range values are all refused.
public struct MessageCodec: Sendable {
    /// The largest frame body accepted (and the largest uncompressed payload).
    public var maxBody: Int
    /// Compress batch payloads at or above this size; nil never compresses.
    public var compressionThreshold: Int?

    /// A codec.
    /// - Parameters:
    ///   - maxBody: the largest frame body accepted.
    ///   - compressionThreshold: compress batch payloads at least this large; nil never compresses.
    public init(maxBody: Int = Frame.defaultMaxBody, compressionThreshold: Int? = PayloadCompression.threshold) {
        self.maxBody = maxBody
        self.compressionThreshold = compressionThreshold
    }

    // MARK: encoding

    /// The frame for `message`: a push, batch or recovered payload at or above the threshold is
    /// compressed when that saves space and stays within the ratio a receiver accepts.
    /// - Parameter message: the message.
    /// - Returns: its frame.
    public func frame(_ message: Message) -> Frame {
        let payload = Self.payload(message)
        if message.kind.mayCompress, let threshold = compressionThreshold, payload.count >= threshold,
           let compressed = PayloadCompression.compress(payload), compressed.count + 10 < payload.count,
           // A receiver refuses a ratio above maxRatio (framing.md), so such a payload goes as it is.
           payload.count <= compressed.count * PayloadCompression.maxRatio {
            var writer = ByteWriter(capacity: compressed.count + 10)
            writer.varint(UInt64(payload.count))
            writer.raw(compressed)
            return Frame(type: message.kind.rawValue, flags: Frame.compressedFlag, payload: writer.bytes)
        }
        return Frame(type: message.kind.rawValue, payload: payload)
    }

    /// The bytes of `message`'s frame.
    ///
    /// ```swift
    /// let codec = MessageCodec()
    /// let bytes = codec.encode(.pull(cursor: 0, byteBudget: 1 << 20))
    /// let back = try codec.decode(bytes: bytes)   // == .pull(cursor: 0, byteBudget: 1 << 20)
    /// ```
    public func encode(_ message: Message) -> [UInt8] { frame(message).encoded() }

    static func payload(_ message: Message) -> [UInt8] {
        var writer = ByteWriter()
        switch message {
        case let .hello(hello):
            writer.varint(hello.protocolMin)
            writer.varint(hello.protocolMax)
            writer.varint(hello.schemaVersion)
            writer.replica(hello.replica)
            writer.string(hello.appVersion)
            switch hello.credential {
            case .none: writer.byte(0)
            case let .enrolmentToken(token): writer.byte(1); writer.string(token)
            case let .device(secret): writer.byte(2); writer.lengthPrefixed(secret)
            }
            writer.varint(hello.maxFrameBody)
            if Hello.carriesDeviceKey(protocolMax: hello.protocolMax) {
                writer.lengthPrefixed(hello.deviceKey)
            } else {
                precondition(hello.deviceKey.isEmpty, "a hello of protocol_max \(hello.protocolMax) has no device key")
            }
        case let .welcome(welcome):
            writer.varint(welcome.protocolVersion)
            writer.varint(welcome.schemaVersion)
            writer.replica(welcome.hub)
            writer.varint(welcome.maxFrameBody)
            writer.lengthPrefixed(welcome.issuedCredential)
            writer.varint(welcome.hubTimeMillis)
            writer.varint(welcome.heartbeatIntervalMillis)
            writer.varint(welcome.ownDurable)
            precondition(welcome.hubKey.count == DeviceCertificate.publicKeySize && welcome.incarnation.count == Welcome.incarnationSize,
                         "a welcome's hub key is 32 bytes, its incarnation 16")
            writer.raw(welcome.hubKey)
            writer.raw(welcome.incarnation)
            DeviceCertificate.encodeField(welcome.certificate, into: &writer)
            ScopeList.encode(welcome.purges, into: &writer)
        case let .reject(code, retryAfter, text):
            writer.varint(UInt64(code.rawValue))
            writer.varint(retryAfter)
            writer.string(text)
        case let .push(batch, changes, provenance):
            writer.varint(batch)
            changeList(changes, &writer)
            provenance.encode(into: &writer)
        case let .pushAck(batch, durable, head):
            writer.varint(batch)
            durable.encode(into: &writer)
            writer.varint(head)
        case let .pull(cursor, budget):
            writer.varint(cursor)
            writer.varint(budget)
        case let .batch(next, more, changes, provenance):
            writer.varint(next)
            writer.byte(more ? 1 : 0)
            changeList(changes, &writer)
            provenance.encode(into: &writer)
        case let .heartbeat(health):
            writer.varint(health.pendingChanges)
            writer.varint(health.oldestUnsyncedAgeMillis)
            writer.varint(health.openConflicts)
            writer.varint(health.schemaVersion)
        case let .purgeAck(scopes):
            precondition(ScopeList.violation(of: scopes) == nil, "a purge-ack's scopes are a valid scope list")
            ScopeList.encode(scopes, into: &writer)
        case let .review(decisions, after):
            ReviewCoding.encodeReview(decisions, after: after, into: &writer)
        case let .held(outcomes, more, items):
            ReviewCoding.encodeHeld(outcomes, more: more, items: items, into: &writer)
        case let .error(code, fatal, text):
            writer.varint(UInt64(code.rawValue))
            writer.byte(fatal ? 1 : 0)
            writer.string(text)
        case let .goodbye(reason):
            writer.varint(reason)
        case let .recover(origin, after, budget):
            writer.replica(origin)
            writer.varint(after)
            writer.varint(budget)
        case let .recovered(origin, next, more, changes, provenance):
            writer.replica(origin)
            writer.varint(next)
            writer.byte(more ? 1 : 0)
            changeList(changes, &writer)
            provenance.encode(into: &writer)
        case let .relayedBatch(next, more, encoded, provenance):
            writer.varint(next)
            writer.byte(more ? 1 : 0)
            encodedChangeList(encoded, &writer)
            provenance.encode(into: &writer)
        case let .relayedRecovered(origin, next, more, encoded, provenance):
            writer.replica(origin)
            writer.varint(next)
            writer.byte(more ? 1 : 0)
            encodedChangeList(encoded, &writer)
            provenance.encode(into: &writer)
        case let .fork(newReplica, deviceKey):
            precondition(deviceKey.count == DeviceCertificate.publicKeySize, "a fork's device key is 32 bytes")
            writer.replica(newReplica)
            writer.raw(deviceKey)
        case let .forked(newReplica, credential, certificate):
            writer.replica(newReplica)
            writer.lengthPrefixed(credential)
            DeviceCertificate.encodeField(certificate, into: &writer)
        }
        return writer.bytes
    }

    static func changeList(_ changes: [Change], _ writer: inout ByteWriter) {
        writer.varint(UInt64(changes.count))
        for change in changes { change.encode(into: &writer) }
    }

    /// Stored canonical encodings, as they are: the same bytes `changeList` writes for the changes.
    static func encodedChangeList(_ encoded: [[UInt8]], _ writer: inout ByteWriter) {
        writer.varint(UInt64(encoded.count))
        for bytes in encoded { writer.raw(bytes) }
    }

    // MARK: decoding

    /// The message in `frame`, decoded strictly.
    /// - Parameter frame: a frame from the frame decoder.
    /// - Returns: the message.
    /// - Throws: ``WireError`` with the code Protocol/errors.md gives the failure, the message kind,
    ///   and for a payload that does not decode the offset and field (and the ``ByteDecodingError`` as `cause`).
    public func decode(_ frame: Frame) throws(WireError) -> Message {
        // A frame decoded before the limit was lowered (the welcome) is checked again here.
        guard frame.payload.count + 2 <= maxBody else {
            throw WireError(.frameTooLarge, "frame of \(frame.payload.count + 2) bytes exceeds the \(maxBody)-byte limit")
        }
        guard let kind = Message.Kind(rawValue: frame.type) else {
            throw WireError(.unknownMessage, "unknown message type 0x\([frame.type].hexString)")
        }
        guard frame.flags & ~Frame.compressedFlag == 0 else {
            throw WireError(.reservedBits, "reserved flag bits set (0x\([frame.flags].hexString))")
        }
        var payload = frame.payload
        if frame.isCompressed {
            guard kind.mayCompress else { throw WireError(.badCompression, "\(kind) frames may not be compressed") }
            var reader = ByteReader(payload)
            let size: UInt64
            do { size = try reader.varint() } catch {
                throw WireError(.badCompression, "compressed payload has no valid size: \(error)", kind: kind, offset: error.offset,
                                field: "uncompressed_size", cause: error)
            }
            guard size <= UInt64(maxBody) else {
                throw WireError(.decompressionLimit, "declared size \(size) exceeds the \(maxBody)-byte limit")
            }
            payload = try PayloadCompression.decompress(Array(payload[reader.offset...]), expectedSize: Int(size), maxSize: maxBody)
        }
        var reader = ByteReader(payload, maxFieldLength: maxBody)
        do {
            let message = try Self.message(kind, &reader)
            try reader.expectEnd()
            return message
        } catch let error as ByteDecodingError {
            throw WireError(error.code == .trailingBytes ? .trailingBytes : .malformedMessage, decoding: error, in: kind)
        } catch var error as WireError {
            error.kind = error.kind ?? kind
            throw error
        } catch {
            // `message` throws only the two above; kept so a new error type cannot escape untyped.
            throw WireError(.malformedMessage, "\(kind): \(type(of: error))", kind: kind)
        }
    }

    /// The message in `bytes`, which must be exactly one frame.
    /// - Parameter bytes: one frame's bytes.
    /// - Returns: the message.
    /// - Throws: ``WireError``, as `decode(_:)`, or `MALFORMED_FRAME`/`TRAILING_BYTES` for a cut or long input.
    public func decode(bytes: [UInt8]) throws(WireError) -> Message {
        var buffer = ByteBuffer(bytes: bytes)
        var decoder = FrameDecoder(maxBody: maxBody)
        guard let frame = try decoder.decode(buffer: &buffer) else { throw WireError(.malformedFrame, "incomplete frame") }
        guard buffer.readableBytes == 0 else { throw WireError(.trailingBytes, "bytes after the frame") }
        return try decode(frame)
    }

    static func message(_ kind: Message.Kind, _ reader: inout ByteReader) throws -> Message {
        switch kind {
        case .hello:
            let min = try reader.varint()
            let max = try reader.varint()
            let schema = try reader.varint()
            let replica = try reader.replica()
            let app = try reader.string()
            let credential: Credential
            switch try reader.byte() {
            case 0: credential = .none
            case 1: credential = .enrolmentToken(try reader.string())
            case 2: credential = .device(try reader.lengthPrefixed())
            case let other:
                throw WireError(.malformedMessage, "unknown credential kind \(other)", offset: reader.offset - 1, field: "credential_kind")
            }
            let maxFrameBody = try reader.varint()
            let keyAt = reader.offset
            let deviceKey = Hello.carriesDeviceKey(protocolMax: max) ? try reader.lengthPrefixed() : []
            guard deviceKey.isEmpty || deviceKey.count == DeviceCertificate.publicKeySize else {
                throw ByteDecodingError(.invalidValue, offset: keyAt, field: "device_key", "a device key of \(deviceKey.count) bytes, not 0 or 32")
            }
            return .hello(Hello(protocolMin: min, protocolMax: max, schemaVersion: schema, replica: replica, appVersion: app,
                                credential: credential, maxFrameBody: maxFrameBody, deviceKey: deviceKey))
        case .welcome:
            return .welcome(Welcome(protocolVersion: try reader.varint(), schemaVersion: try reader.varint(), hub: try reader.replica(),
                                    maxFrameBody: try reader.varint(), issuedCredential: try reader.lengthPrefixed(),
                                    hubTimeMillis: try reader.varint(), heartbeatIntervalMillis: try reader.varint(),
                                    ownDurable: try reader.varint(), hubKey: try reader.raw(count: DeviceCertificate.publicKeySize),
                                    incarnation: try reader.raw(count: Welcome.incarnationSize),
                                    certificate: try DeviceCertificate.decodeField(from: &reader, field: "certificate"),
                                    purges: try ScopeList.decode(from: &reader, field: "purges")))
        case .reject:
            return .reject(code: try errorCode(&reader), retryAfterMillis: try reader.varint(), message: try reader.string())
        case .push:
            return .push(batch: try reader.varint(), changes: try changeList(&reader), provenance: try Provenance.decode(from: &reader))
        case .pushAck:
            return .pushAck(batch: try reader.varint(), durable: try VersionVector.decode(from: &reader), hubHead: try reader.varint())
        case .pull:
            return .pull(cursor: try reader.varint(), byteBudget: try reader.varint())
        case .batch:
            let next = try reader.varint()
            let more = try boolean(&reader)
            return .batch(nextCursor: next, more: more, changes: try changeList(&reader), provenance: try Provenance.decode(from: &reader))
        case .heartbeat:
            return .heartbeat(ReplicaHealth(pendingChanges: try reader.varint(), oldestUnsyncedAgeMillis: try reader.varint(),
                                            openConflicts: try reader.varint(), schemaVersion: try reader.varint()))
        case .purgeAck:
            return .purgeAck(scopes: try ScopeList.decode(from: &reader, field: "scopes"))
        case .review:
            return try ReviewCoding.decodeReview(&reader)
        case .held:
            return try ReviewCoding.decodeHeld(&reader)
        case .error:
            return .error(code: try errorCode(&reader), fatal: try boolean(&reader), message: try reader.string())
        case .goodbye:
            return .goodbye(reason: try reader.varint())
        case .recover:
            return .recover(origin: try reader.replica(), after: try reader.varint(), byteBudget: try reader.varint())
        case .recovered:
            let origin = try reader.replica()
            let next = try reader.varint()
            let more = try boolean(&reader)
            return .recovered(origin: origin, nextCounter: next, more: more, changes: try changeList(&reader),
                              provenance: try Provenance.decode(from: &reader))
        case .fork:
            return .fork(newReplica: try reader.replica(), deviceKey: try reader.raw(count: DeviceCertificate.publicKeySize))
        case .forked:
            return .forked(newReplica: try reader.replica(), issuedCredential: try reader.lengthPrefixed(),
                           certificate: try DeviceCertificate.decodeField(from: &reader, field: "certificate"))
        }
    }

    static func boolean(_ reader: inout ByteReader) throws -> Bool {
        switch try reader.byte() {
        case 0: return false
        case 1: return true
        case let other: throw WireError(.malformedMessage, "boolean byte \(other) is not 0 or 1", offset: reader.offset - 1)
        }
    }

    static func errorCode(_ reader: inout ByteReader) throws -> WireError.Code {
        let raw = try reader.varint()
        // Unknown codes from a newer peer are read as a generic malformed-message error rather
        // than refused: the peer is closing anyway and the code is informational.
        return raw <= UInt64(UInt16.max) ? WireError.Code(rawValue: UInt16(raw)) ?? .malformedMessage : .malformedMessage
    }

    static func changeList(_ reader: inout ByteReader) throws -> [Change] {
        var changes: [Change] = []
        let count = try reader.count(minimumItemSize: Change.minimumEncodedSize)
        changes.reserveCapacity(count)
        for _ in 0..<count { changes.append(try Change.decode(from: &reader)) }
        return changes
    }
}
