import Crypto
import SyncCore

/// An Ed25519 private key (RFC 8032, swift-crypto's `Curve25519.Signing`): a device's key or the
/// hub's (Protocol/identity.md, "Keys"). Its raw representation is the 32-byte seed the identity
/// file keeps; it never appears in an error, a log or a description.
///
/// ```swift
/// var random = SeededGenerator(seed: 7)
/// let key = SigningKey(random: &random)
/// let head = key.head(origin: origin, counter: 12, chain: chain)
/// assert(head.verifies(with: key.publicKey))
/// ```
public struct SigningKey: Sendable {
    private let key: Curve25519.Signing.PrivateKey

    /// Bytes of the raw representation.
    public static let rawSize = 32

    /// A new key from 32 bytes of `random`: the same generator state gives the same key, so a
    /// seeded simulation replays.
    public init(random: inout some RandomNumberGenerator) {
        var seed: [UInt8] = []
        seed.reserveCapacity(Self.rawSize)
        for _ in 0..<(Self.rawSize / 8) {
            let word = random.next()
            for shift in stride(from: 56, through: 0, by: -8) { seed.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        do {
            key = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
        } catch {
            // Any 32 bytes are an Ed25519 seed: only a wrong length is refused.
            preconditionFailure("an Ed25519 seed of 32 bytes was refused")
        }
    }

    /// The key with this 32-byte raw representation (as kept in an identity file).
    /// - Throws: ``IdentityError`` with code ``IdentityError/Code/keyUnreadable`` for another length.
    public init(rawRepresentation: [UInt8]) throws(IdentityError) {
        guard rawRepresentation.count == Self.rawSize,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: rawRepresentation) else {
            throw IdentityError(.keyUnreadable, "a private key is \(Self.rawSize) bytes, found \(rawRepresentation.count)")
        }
        self.key = key
    }

    /// The 32-byte seed: secret, for the identity file only.
    public var rawRepresentation: [UInt8] { Array(key.rawRepresentation) }

    /// The public key: 32 bytes.
    public var publicKey: [UInt8] { Array(key.publicKey.rawRepresentation) }

    /// Ed25519 over `message`.
    public func signature(for message: [UInt8]) -> [UInt8] {
        do {
            return Array(try key.signature(for: message))
        } catch {
            // BoringSSL's ED25519_sign cannot fail; swift-crypto's signature is `throws` for other backends.
            preconditionFailure("Ed25519 signing failed")
        }
    }

    /// A head over `origin`'s log up to `counter`, signed with this key.
    /// - Parameters:
    ///   - origin: the log's origin.
    ///   - counter: the last change covered (≥ 1).
    ///   - chain: `chain(counter)`.
    ///   - signer: ``HeadSigner/origin`` for a device's own log, ``HeadSigner/hubAttestation`` for
    ///     the hub attesting an unsigned log.
    public func head(origin: ReplicaID, counter: UInt64, chain: [UInt8], signer: HeadSigner = .origin) -> SignedHead {
        let bytes = SignedHead.signedBytes(origin: origin, counter: counter, chain: chain, signer: signer)
        return SignedHead(origin: origin, counter: counter, chain: chain, signer: signer, signature: signature(for: bytes))
    }

    /// A device certificate for `publicKey`, signed with this key (the hub's).
    /// - Parameters:
    ///   - replica: the device's replica id.
    ///   - publicKey: its public key, 32 bytes.
    ///   - team: the team it is enrolled for (not empty).
    ///   - issuedAtMillis: when (ms since 1970).
    ///   - attestedThrough: the last counter hub attestations may cover; 0 for a device enrolled under protocol 3.
    public func certificate(replica: ReplicaID, publicKey: [UInt8], team: String, issuedAtMillis: UInt64,
                            attestedThrough: UInt64 = 0) -> DeviceCertificate {
        let bytes = DeviceCertificate.signedBytes(replica: replica, publicKey: publicKey, team: team, issuedAtMillis: issuedAtMillis,
                                                  attestedThrough: attestedThrough)
        return DeviceCertificate(replica: replica, publicKey: publicKey, team: team, issuedAtMillis: issuedAtMillis,
                                 attestedThrough: attestedThrough, signature: signature(for: bytes))
    }
}

/// Verifies Ed25519 signatures.
enum Ed25519 {
    /// Whether `signature` is `publicKey`'s over `message`; false for a key or signature of the wrong size.
    static func verifies(_ signature: [UInt8], of message: [UInt8], with publicKey: [UInt8]) -> Bool {
        guard publicKey.count == DeviceCertificate.publicKeySize, signature.count == SignedHead.signatureSize,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

extension SignedHead {
    /// Whether the signature is `publicKey`'s over this head's `signedBytes`. Which key a head needs
    /// (the origin's, or the hub's for an attestation) is the caller's rule: ``RunVerifier`` applies it.
    public func verifies(with publicKey: [UInt8]) -> Bool {
        Ed25519.verifies(signature, of: signedBytes, with: publicKey)
    }
}

extension DeviceCertificate {
    /// Whether the hub key `hubKey` signed this certificate.
    public func verifies(with hubKey: [UInt8]) -> Bool {
        Ed25519.verifies(signature, of: signedBytes, with: hubKey)
    }
}
