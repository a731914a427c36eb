import SyncCore
import SyncIdentity
import SyncStore

/// What enrolment with one hub gives replicas, without a hub: each store pins `hubKey` and holds
/// every store's device certificate signed by it, so bundles between them verify
/// (Protocol/identity.md, "Device certificates"). For tests of bundle exchange below the sessions.
///
/// ```swift
/// try TestEnrolment.enrol([alex, sam])
/// _ = try BundleExchange.importBundle(into: sam, bytes: try BundleExchange.export(from: alex, for: nil).bytes)
/// ```
public enum TestEnrolment {
    /// A hub key that is the same in every test.
    public static let hubKey: SigningKey = TestSigner.key(ReplicaID(high: 0x7E57, low: 0x4B))

    /// Pins `hubKey` in every store and saves, in each, the certificate of every store's device key.
    /// - Throws: `StoreError` if a store cannot be written, or has no device key.
    public static func enrol(_ stores: [ReplicaStore], team: String = "T", hubKey: SigningKey = hubKey) throws {
        var certificates: [DeviceCertificate] = []
        for store in stores {
            guard let key = store.signingKey else {
                throw StoreError(.identityMissing, "replica \(store.replicaID.short) has no device key to certify")
            }
            certificates.append(hubKey.certificate(replica: store.replicaID, publicKey: key.publicKey, team: team, issuedAtMillis: 1))
        }
        for store in stores {
            try store.pinHubKey(hubKey.publicKey)
            for certificate in certificates { try store.saveCertificate(certificate) }
        }
    }
}
