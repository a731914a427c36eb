/// Who vouches for a head (Protocol/identity.md, "Signed heads").
public enum HeadSigner: UInt8, Sendable, CaseIterable {
    /// The origin's own device key.
    case origin = 0
    /// The hub's key: an attestation of changes written before protocol version 3, valid only up
    /// to the origin certificate's `attestedThrough`.
    case hubAttestation = 1
}

/// "Origin `origin`'s log up to `counter` has chain hash `chain`", signed (Protocol/identity.md,
/// "Signed heads"). Plain bytes here: signing and verifying live in SyncIdentity.
public struct SignedHead: Hashable, Sendable {
    /// The origin whose log this is.
    public let origin: ReplicaID
    /// The last change the head covers (≥ 1).
    public let counter: UInt64
    /// `chain(counter)`: 32 bytes.
    public let chain: [UInt8]
    /// Whose key made `signature`.
    public let signer: HeadSigner
    /// Ed25519 over `signedBytes`: 64 bytes.
    public let signature: [UInt8]

    /// A head; `chain` must be 32 bytes and `signature` 64 (preconditions: decoding checks them).
    /// - Parameters:
    ///   - origin: the log's origin.
    ///   - counter: the last change covered.
    ///   - chain: the chain hash at `counter`.
    ///   - signer: whose key signed.
    ///   - signature: the signature over `signedBytes(origin:counter:chain:signer:)`.
    public init(origin: ReplicaID, counter: UInt64, chain: [UInt8], signer: HeadSigner = .origin, signature: [UInt8]) {
        precondition(chain.count == Self.chainSize && signature.count == Self.signatureSize, "a head's chain is 32 bytes, its signature 64")
        self.origin = origin
        self.counter = counter
        self.chain = chain
        self.signer = signer
        self.signature = signature
    }

    /// Bytes of a chain hash (SHA-256).
    public static let chainSize = 32
    /// Bytes of an Ed25519 signature.
    public static let signatureSize = 64
    /// The smallest encoding: origin, a one-byte counter, chain, signer, signature.
    public static let minimumEncodedSize = 16 + 1 + chainSize + 1 + signatureSize

    /// What the signature covers: `"caresync/origin-head/v1" || origin || u64be(counter) || chain || signer`.
    public static func signedBytes(origin: ReplicaID, counter: UInt64, chain: [UInt8], signer: HeadSigner) -> [UInt8] {
        var writer = ByteWriter(capacity: 96)
        writer.raw(Array("caresync/origin-head/v1".utf8))
        writer.replica(origin)
        writer.fixed64(counter)
        writer.raw(chain)
        writer.byte(signer.rawValue)
        return writer.bytes
    }

    /// This head's `signedBytes`.
    public var signedBytes: [UInt8] { Self.signedBytes(origin: origin, counter: counter, chain: chain, signer: signer) }

    /// Protocol/identity.md, "Signed heads": origin, counter, chain, signer, signature.
    package func encode(into writer: inout ByteWriter) {
        writer.replica(origin)
        writer.varint(counter)
        writer.raw(chain)
        writer.byte(signer.rawValue)
        writer.raw(signature)
    }

    /// Strict: counter ≥ 1, a known signer.
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> SignedHead {
        let origin = try reader.replica()
        let counterAt = reader.offset
        let counter = try reader.varint()
        guard counter >= 1 else { throw ByteDecodingError(.invalidValue, offset: counterAt, field: "head counter", "head counter 0") }
        let chain = try reader.raw(count: chainSize)
        let signerAt = reader.offset
        guard let signer = HeadSigner(rawValue: try reader.byte()) else {
            throw ByteDecodingError(.invalidValue, offset: signerAt, field: "head signer", "unknown head signer")
        }
        let signature = try reader.raw(count: signatureSize)
        return SignedHead(origin: origin, counter: counter, chain: chain, signer: signer, signature: signature)
    }
}

/// The hub vouching for a device key (Protocol/identity.md, "Device certificates").
public struct DeviceCertificate: Hashable, Sendable {
    /// The replica the key belongs to.
    public let replica: ReplicaID
    /// Its Ed25519 public key: 32 bytes.
    public let publicKey: [UInt8]
    /// The team the replica was enrolled for.
    public let team: String
    /// When the hub issued the certificate (ms since 1970).
    public let issuedAtMillis: UInt64
    /// Heads signed by the hub (attestations) are accepted for this origin up to this counter; 0 for
    /// a device enrolled under protocol version 3.
    public let attestedThrough: UInt64
    /// Ed25519 by the hub key over `signedBytes`: 64 bytes.
    public let signature: [UInt8]

    /// Bytes of an Ed25519 public key.
    public static let publicKeySize = 32
    /// The smallest encoding: replica, key, a one-byte team length, two one-byte varints, signature.
    public static let minimumEncodedSize = 16 + publicKeySize + 1 + 1 + 1 + SignedHead.signatureSize

    /// A certificate; `publicKey` must be 32 bytes and `signature` 64 (preconditions).
    /// - Parameters:
    ///   - replica: the device's replica id.
    ///   - publicKey: its public key.
    ///   - team: its team.
    ///   - issuedAtMillis: when it was issued.
    ///   - attestedThrough: the last counter hub attestations may cover.
    ///   - signature: the hub's signature over `signedBytes`.
    public init(replica: ReplicaID, publicKey: [UInt8], team: String, issuedAtMillis: UInt64, attestedThrough: UInt64 = 0, signature: [UInt8]) {
        precondition(publicKey.count == Self.publicKeySize && signature.count == SignedHead.signatureSize,
                     "a certificate's key is 32 bytes, its signature 64")
        self.replica = replica
        self.publicKey = publicKey
        self.team = team
        self.issuedAtMillis = issuedAtMillis
        self.attestedThrough = attestedThrough
        self.signature = signature
    }

    /// What the hub signs: `"caresync/device-cert/v1" ||` the encoded fields before the signature.
    public static func signedBytes(replica: ReplicaID, publicKey: [UInt8], team: String, issuedAtMillis: UInt64, attestedThrough: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 96)
        writer.raw(Array("caresync/device-cert/v1".utf8))
        encodeFields(replica: replica, publicKey: publicKey, team: team, issuedAtMillis: issuedAtMillis, attestedThrough: attestedThrough,
                     into: &writer)
        return writer.bytes
    }

    /// This certificate's `signedBytes`.
    public var signedBytes: [UInt8] {
        Self.signedBytes(replica: replica, publicKey: publicKey, team: team, issuedAtMillis: issuedAtMillis, attestedThrough: attestedThrough)
    }

    private static func encodeFields(replica: ReplicaID, publicKey: [UInt8], team: String, issuedAtMillis: UInt64, attestedThrough: UInt64,
                                     into writer: inout ByteWriter) {
        writer.replica(replica)
        writer.raw(publicKey)
        writer.string(team)
        writer.varint(issuedAtMillis)
        writer.varint(attestedThrough)
    }

    /// The certificate's bytes (Protocol/identity.md, "Device certificates").
    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 160)
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes exactly one certificate from `bytes`.
    /// - Throws: ``ByteDecodingError`` for bytes that are not one certificate.
    public init(encoded bytes: [UInt8]) throws(ByteDecodingError) {
        var reader = ByteReader(bytes)
        self = try Self.decode(from: &reader)
        try reader.expectEnd()
    }

    /// Replica, key, team, issued_at_ms, attested_through, signature.
    package func encode(into writer: inout ByteWriter) {
        Self.encodeFields(replica: replica, publicKey: publicKey, team: team, issuedAtMillis: issuedAtMillis, attestedThrough: attestedThrough,
                          into: &writer)
        writer.raw(signature)
    }

    /// Strict: a non-empty team.
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> DeviceCertificate {
        let replica = try reader.replica()
        let key = try reader.raw(count: publicKeySize)
        let teamAt = reader.offset
        let team = try reader.string()
        guard !team.isEmpty else { throw ByteDecodingError(.invalidValue, offset: teamAt, field: "team", "a certificate with no team") }
        let issued = try reader.varint()
        let attested = try reader.varint()
        let signature = try reader.raw(count: SignedHead.signatureSize)
        return DeviceCertificate(replica: replica, publicKey: key, team: team, issuedAtMillis: issued, attestedThrough: attested, signature: signature)
    }
}
