/// What proves who wrote the changes of a push, batch or recovered answer (Protocol/identity.md,
/// "Messages in protocol version 3"): the signed heads of its runs, and device certificates for
/// origins the receiver may not know. Plain bytes: verifying them is SyncIdentity's.
///
/// One value has one encoding: heads strictly ascending by origin then counter, certificates
/// strictly ascending by replica. The decoder refuses any other order rather than sorting, so the
/// bytes a hub relays are the bytes it received.
///
/// ```swift
/// let provenance = Provenance(heads: [head], certificates: [])
/// var writer = ByteWriter()
/// provenance.encode(into: &writer)   // writer.bytes.count == provenance.encodedSize
/// ```
public struct Provenance: Hashable, Sendable {
    /// Signed heads, strictly ascending by origin, then counter.
    public let heads: [SignedHead]
    /// Device certificates, strictly ascending by replica (so no replica twice).
    public let certificates: [DeviceCertificate]

    /// No heads and no certificates: what a message carries when it holds no changes, and what
    /// callers pass until they sign.
    public static let none = Provenance(heads: [], certificates: [])

    /// A provenance; both lists must already be in their canonical order (a precondition: the
    /// decoder refuses any other, so an encoder must never write one).
    /// - Parameters:
    ///   - heads: strictly ascending by origin, then counter.
    ///   - certificates: strictly ascending by replica.
    public init(heads: [SignedHead] = [], certificates: [DeviceCertificate] = []) {
        precondition(Self.isAscending(heads), "heads must be strictly ascending by origin, then counter")
        precondition(Self.isAscending(certificates), "certificates must be strictly ascending by replica")
        self.heads = heads
        self.certificates = certificates
    }

    /// For the decoder, which has checked both orders as it read them.
    private init(checkedHeads heads: [SignedHead], certificates: [DeviceCertificate]) {
        self.heads = heads
        self.certificates = certificates
    }

    /// A provenance from heads and certificates in any order: sorted here (by origin then counter,
    /// and by replica). Duplicates are a precondition failure, as in `init(heads:certificates:)`.
    /// - Parameters:
    ///   - heads: the heads, any order.
    ///   - certificates: the certificates, any order.
    public init(sorting heads: [SignedHead], certificates: [DeviceCertificate] = []) {
        self.init(heads: heads.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) },
                  certificates: certificates.sorted { $0.replica < $1.replica })
    }

    /// Whether `heads` are strictly ascending by origin, then counter.
    public static func isAscending(_ heads: [SignedHead]) -> Bool {
        zip(heads, heads.dropFirst()).allSatisfy { precedes($0, $1) }
    }

    /// Whether `certificates` are strictly ascending by replica.
    public static func isAscending(_ certificates: [DeviceCertificate]) -> Bool {
        zip(certificates, certificates.dropFirst()).allSatisfy { $0.replica < $1.replica }
    }

    private static func precedes(_ lhs: SignedHead, _ rhs: SignedHead) -> Bool {
        (lhs.origin, lhs.counter) < (rhs.origin, rhs.counter)
    }

    /// The smallest encoding of one certificate in the list: a one-byte length, then the certificate.
    static let minimumCertificateItemSize = 1 + DeviceCertificate.minimumEncodedSize

    /// Bytes `encode(into:)` writes: the room a frame must leave for this provenance. Computed, not
    /// encoded, so sizing a batch costs no allocation.
    public var encodedSize: Int {
        var size = Self.varintSize(UInt64(heads.count)) + Self.varintSize(UInt64(certificates.count))
        for head in heads { size += SignedHead.minimumEncodedSize - 1 + Self.varintSize(head.counter) }
        for certificate in certificates {
            let length = certificate.encodedSize
            size += Self.varintSize(UInt64(length)) + length
        }
        return size
    }

    /// Bytes of `value` as a varint.
    package static func varintSize(_ value: UInt64) -> Int {
        var size = 1
        var rest = value >> 7
        while rest != 0 { size += 1; rest >>= 7 }
        return size
    }

    /// A list of heads, then a list of certificates, each a `bytes` (Protocol/identity.md).
    package func encode(into writer: inout ByteWriter) {
        writer.varint(UInt64(heads.count))
        for head in heads { head.encode(into: &writer) }
        writer.varint(UInt64(certificates.count))
        for certificate in certificates { DeviceCertificate.encodeField(certificate, into: &writer) }
    }

    /// Strict: each count checked against the bytes left before anything is allocated, heads and
    /// certificates in their canonical order, each certificate exactly its `bytes` length.
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> Provenance {
        var heads: [SignedHead] = []
        let headCount = try reader.count(minimumItemSize: SignedHead.minimumEncodedSize)
        heads.reserveCapacity(headCount)
        for _ in 0..<headCount {
            let start = reader.offset
            let head = try SignedHead.decode(from: &reader)
            if let previous = heads.last, !precedes(previous, head) {
                throw ByteDecodingError(.invalidValue, offset: start, field: "heads", "heads not strictly ascending by origin, then counter")
            }
            heads.append(head)
        }
        var certificates: [DeviceCertificate] = []
        let certificateCount = try reader.count(minimumItemSize: minimumCertificateItemSize)
        certificates.reserveCapacity(certificateCount)
        for _ in 0..<certificateCount {
            let start = reader.offset
            guard let certificate = try DeviceCertificate.decodeField(from: &reader, field: "certificates") else {
                throw ByteDecodingError(.invalidValue, offset: start, field: "certificates", "an empty certificate in the list")
            }
            if let previous = certificates.last, !(previous.replica < certificate.replica) {
                throw ByteDecodingError(.invalidValue, offset: start, field: "certificates", "certificates not strictly ascending by replica")
            }
            certificates.append(certificate)
        }
        return Provenance(checkedHeads: heads, certificates: certificates)
    }
}

extension DeviceCertificate {
    /// Bytes of `encoded`, computed without encoding.
    public var encodedSize: Int {
        let teamBytes = team.utf8.count
        return 16 + Self.publicKeySize + Provenance.varintSize(UInt64(teamBytes)) + teamBytes
            + Provenance.varintSize(issuedAtMillis) + Provenance.varintSize(attestedThrough) + SignedHead.signatureSize
    }

    /// A `bytes` field holding one certificate, or nothing for nil (Protocol/identity.md: a
    /// welcome's or forked's `certificate`, and each item of a certificate list).
    package static func encodeField(_ certificate: DeviceCertificate?, into writer: inout ByteWriter) {
        guard let certificate else { writer.byte(0); return }
        writer.varint(UInt64(certificate.encodedSize))
        certificate.encode(into: &writer)
    }

    /// Reads what `encodeField` writes: nil for an empty field; otherwise exactly one certificate
    /// filling the field's length, decoded in place so an error keeps its offset into the input.
    package static func decodeField(from reader: inout ByteReader, field: String) throws(ByteDecodingError) -> DeviceCertificate? {
        let start = reader.offset
        let length = try reader.varint()
        guard length > 0 else { return nil }
        let body = reader.offset
        guard length <= UInt64(reader.remaining) else {
            throw ByteDecodingError(.truncated, offset: start, field: field, "certificate of \(length) bytes, \(reader.remaining) left")
        }
        let certificate = try DeviceCertificate.decode(from: &reader)
        guard reader.offset - body == Int(length) else {
            throw ByteDecodingError(.invalidValue, offset: start, field: field,
                                    "a \(length)-byte certificate field holding a certificate of \(reader.offset - body) bytes")
        }
        return certificate
    }
}
