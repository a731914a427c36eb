import Crypto
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// Device keys and signed heads for the hub-store tests, computed here from Protocol/identity.md
/// alone (not with the store's code): each origin's key is made from its id, and a signer
/// remembers how far it has chained each origin, so consecutive pushes continue the chain.
struct TestSigner {
    private(set) var chains: [ReplicaID: (counter: UInt64, chain: [UInt8])] = [:]

    /// The device key of `origin` (the same in every test).
    static func key(_ origin: ReplicaID) -> Curve25519.Signing.PrivateKey {
        let seed = Array(SHA256.hash(data: Array("test-device-\(origin.hex)".utf8)))
        // A 32-byte seed is always a valid key.
        return (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) ?? Curve25519.Signing.PrivateKey()
    }

    /// The public key of `origin`'s device key.
    static func publicKey(_ origin: ReplicaID) -> [UInt8] { Array(key(origin).publicKey.rawRepresentation) }

    /// `chain(0)` of `origin`.
    static func genesis(_ origin: ReplicaID) -> [UInt8] {
        var writer = ByteWriter()
        writer.raw(Array("caresync/origin-log/v1".utf8))
        writer.replica(origin)
        return Array(SHA256.hash(data: writer.bytes))
    }

    static func next(_ chain: [UInt8], _ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: chain + bytes)) }

    /// A head of `origin` at `counter`, signed by `key` (the origin's own unless given).
    static func head(_ origin: ReplicaID, _ counter: UInt64, chain: [UInt8], signer: HeadSigner = .origin,
                     key: Curve25519.Signing.PrivateKey? = nil) -> SignedHead {
        let bytes = SignedHead.signedBytes(origin: origin, counter: counter, chain: chain, signer: signer)
        let signature = (try? Array((key ?? Self.key(origin)).signature(for: bytes))) ?? []
        return SignedHead(origin: origin, counter: counter, chain: chain, signer: signer, signature: signature)
    }

    /// Chains `changes` on from what this signer chained before (from `chain(0)` for an origin it
    /// has not seen, or whose run starts at 1), and signs a head at each origin's last change and
    /// at every counter in `alsoAt`.
    mutating func heads(_ changes: [Change], alsoAt: Set<UInt64> = [], key: Curve25519.Signing.PrivateKey? = nil) -> [SignedHead] {
        var heads: [SignedHead] = []
        var last: [ReplicaID: UInt64] = [:]
        for change in changes { last[change.id.replica] = change.id.counter }
        for change in changes {
            let origin = change.id.replica
            let previous = change.id.counter == 1 ? Self.genesis(origin) : chains[origin]?.chain ?? Self.genesis(origin)
            let chain = Self.next(previous, change.canonicalBytes)
            chains[origin] = (change.id.counter, chain)
            if last[origin] == change.id.counter || alsoAt.contains(change.id.counter) {
                heads.append(Self.head(origin, change.id.counter, chain: chain, key: key))
            }
        }
        return heads
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
        Provenance(heads: heads.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) }, certificates: [])
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
