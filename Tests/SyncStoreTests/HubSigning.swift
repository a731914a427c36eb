import Crypto
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// Checks of `TestSigner`'s output computed here from Protocol/identity.md alone, with
/// swift-crypto directly (not with SyncIdentity's code).
extension TestSigner {
    /// `chain(0)` of `origin`.
    static func genesis(_ origin: ReplicaID) -> [UInt8] {
        var writer = ByteWriter()
        writer.raw(Array("caresync/origin-log/v1".utf8))
        writer.replica(origin)
        return Array(SHA256.hash(data: writer.bytes))
    }

    static func next(_ chain: [UInt8], _ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: chain + bytes)) }

    /// A head of `origin` at `counter`, signed by `key` (the origin's test key unless given).
    static func head(_ origin: ReplicaID, _ counter: UInt64, chain: [UInt8], signer: HeadSigner = .origin, key: SigningKey? = nil) -> SignedHead {
        (key ?? Self.key(origin)).head(origin: origin, counter: counter, chain: chain, signer: signer)
    }

    /// A push of `changes` with their heads.
    mutating func push(_ changes: [Change], from replica: ReplicaID, receivedAtMillis: UInt64 = 1) -> HubPush {
        HubPush(changes: changes, replica: replica, provenance: .of(heads(changes)), receivedAtMillis: receivedAtMillis)
    }

    /// Whether `head` verifies under `publicKey` (a certificate's key, or the hub's).
    static func verifies(_ head: SignedHead, publicKey: [UInt8]) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(head.signature, for: head.signedBytes)
    }
}

extension Provenance {
    /// `heads` in their canonical order, with no certificates.
    static func of(_ heads: [SignedHead]) -> Provenance {
        Provenance(sorting: heads)
    }
}

extension HubPage {
    var heads: [SignedHead] { provenance.heads }
    var certificates: [DeviceCertificate] { provenance.certificates }
}

extension HubOriginPage {
    var heads: [SignedHead] { provenance.heads }
    var certificates: [DeviceCertificate] { provenance.certificates }
}

extension SQLiteHubStore {
    /// A push with these heads and no certificates.
    func append(_ changes: [Change], from replica: ReplicaID, heads: [SignedHead], receivedAtMillis: UInt64) throws -> HubAppendResult {
        try append(changes, from: replica, provenance: .of(heads), receivedAtMillis: receivedAtMillis)
    }

    /// Enrols `replicas` with their test device keys (team "north").
    func enrolForTests(_ replicas: [ReplicaID], random: inout SeededGenerator) throws {
        for replica in replicas {
            let token = try issueEnrolmentToken(team: "north", expiresAtMillis: .max, random: &random)
            let result = try redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica), nowMillis: 1, random: &random)
            guard case .enrolled = result else {
                Issue.record("enrolment of \(replica.short) refused: \(result)")
                return
            }
        }
    }

    /// Appends `changes` as `signer` signs them (a head at each origin's last change).
    func signedAppend(_ changes: [Change], from replica: ReplicaID, signer: inout TestSigner, receivedAtMillis: UInt64 = 1) throws -> HubAppendResult {
        try append(changes, from: replica, provenance: .of(signer.heads(changes)), receivedAtMillis: receivedAtMillis)
    }
}
