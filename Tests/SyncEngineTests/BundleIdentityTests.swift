import Crypto
import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// Bundle format 3 (Protocol/README.md, "Change bundle file"): the changes travel with their signed
/// heads and certificates, and an import verifies them (Protocol/identity.md).
@Suite("Bundles: signed runs")
struct BundleIdentityTests {
    static let hubKey = TestSigner.key(ReplicaID(high: 9, low: 9))

    /// Two replicas of one hub (its key pinned, the sender's certificate held), `a` with one note.
    static func pair(_ directory: String) throws -> (ReplicaStore, ReplicaStore) {
        func replica(_ name: String, _ id: UInt64) throws -> ReplicaStore {
            let store = try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: id, low: id),
                                                name: name, wallClock: FixedWallClock(millis: 1_800_000_000_000))
            try store.pinHubKey(hubKey.publicKey)
            try store.saveCertificate(hubKey.certificate(replica: store.replicaID, publicKey: try #require(store.signingKey).publicKey, team: "T",
                                                         issuedAtMillis: 0, attestedThrough: 0))
            return store
        }
        let a = try replica("a", 1), b = try replica("b", 2)
        try a.write(author: "amara") { try $0.create("note", id: "n", values: ["text": .text("signed")]) }
        return (a, b)
    }

    /// The bundle's bytes with a new checksum, as a hand edit would leave them.
    static func resealed(_ body: [UInt8]) -> [UInt8] { body + Array(SHA256.hash(data: body)) }

    @Test("an export carries the sender's signed head and certificate; the import verifies it and applies")
    func roundTrip() throws {
        let directory = TestFiles.directory("bundle-identity")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (a, b) = try Self.pair(directory)
        let (bytes, summary) = try BundleExchange.export(from: a, for: nil)
        let bundle = try ChangeBundle.decode(bytes)
        #expect(bundle.provenance.heads.map(\.counter) == [1] && bundle.provenance.certificates.map(\.replica) == [a.replicaID])
        #expect(try BundleExchange.importBundle(into: b, bytes: bytes).result.applied == summary.changes)
    }

    @Test("a bundle edited by hand with its SHA-256 recomputed is refused SIGNATURE_INVALID, nothing applied; a format-2 bundle is refused, saying to export again")
    func handEditRefused() throws {
        let directory = TestFiles.directory("bundle-identity")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (a, b) = try Self.pair(directory)
        let (bytes, _) = try BundleExchange.export(from: a, for: nil)
        var body = Array(bytes.dropLast(32))
        let marker = Array("signed".utf8)
        let at = try #require((0...(body.count - marker.count)).first { Array(body[$0..<($0 + marker.count)]) == marker })
        body.replaceSubrange(at..<(at + marker.count), with: Array("forged".utf8))
        let edited = Self.resealed(body)
        #expect(throws: IdentityError.self) { try BundleExchange.importBundle(into: b, bytes: edited) }
        do {
            _ = try BundleExchange.importBundle(into: b, bytes: edited)
        } catch let error as IdentityError {
            #expect(error.code == .signatureInvalid)
        }
        #expect(try b.changes(notIn: VersionVector()).isEmpty, "nothing of the edited bundle applied")
        // Format 2 (unsigned): refused before anything is read, with what to do.
        var old = Array(bytes.dropLast(32))
        old[9] = 2
        #expect(throws: BundleError.unsupportedVersion(2)) { try ChangeBundle.decode(Self.resealed(old)) }
        #expect(BundleError.unsupportedVersion(2).description.contains("export it again from a replica upgraded"))
    }
}
