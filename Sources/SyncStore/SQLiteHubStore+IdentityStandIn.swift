import Crypto
import Foundation
import SyncCore

// A minimal local stand-in for what the SyncIdentity module provides (OriginChain, SigningKey,
// IdentityFile), so the hub store could be built before that module landed. It is replaced by
// SyncIdentity's types when that branch is merged; nothing outside this file names these.

/// Protocol/identity.md, "The chain".
enum HubChain {
    /// `chain(0) = SHA-256("caresync/origin-log/v1" || origin)`.
    static func genesis(_ origin: ReplicaID) -> [UInt8] {
        var writer = ByteWriter(capacity: 40)
        writer.raw(Array("caresync/origin-log/v1".utf8))
        writer.replica(origin)
        return Array(SHA256.hash(data: writer.bytes))
    }

    /// `chain(c) = SHA-256(chain(c − 1) || canonical bytes of change c)`.
    static func next(_ previous: [UInt8], _ bytes: some Collection<UInt8>) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        hasher.update(data: Array(bytes))
        return Array(hasher.finalize())
    }
}

/// An Ed25519 key pair (the hub key).
struct HubSigningKey: Sendable {
    let privateKey: Curve25519.Signing.PrivateKey

    /// A new key from 32 bytes of `random`.
    init(random: inout some RandomNumberGenerator) {
        var seed: [UInt8] = []
        for _ in 0..<4 { withUnsafeBytes(of: random.next()) { seed.append(contentsOf: $0) } }
        // 32 bytes always make a key: the raw representation of an Ed25519 private key is its seed.
        privateKey = (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) ?? Curve25519.Signing.PrivateKey()
    }

    init(raw: [UInt8]) throws {
        privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
    }

    var publicKey: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }

    func sign(_ bytes: [UInt8]) -> [UInt8] {
        // Signing with a valid key does not fail; an empty result would fail every verification.
        (try? Array(privateKey.signature(for: bytes))) ?? []
    }

    static func verify(_ signature: [UInt8], of bytes: [UInt8], publicKey: [UInt8]) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: bytes)
    }
}

/// The hub's identity file `<hub.db>.identity` (Protocol/identity.md, "Identity file").
enum HubIdentityFile {
    static func path(for database: String) -> String { database + ".identity" }

    /// The key kept for `hub`, or nil when there is no file.
    static func load(database: String, hub: ReplicaID) throws -> HubSigningKey? {
        let path = path(for: database)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StoreError(.corrupt, "the hub identity file is unreadable", path: path)
        }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard fields["caresync-identity"] == "1", let key = fields["device-key"].flatMap(HexBytes.decode), key.count == 32 else {
            throw StoreError(.corrupt, "the hub identity file is not a CareSync identity file", path: path)
        }
        guard fields["replica"] == hub.hex else {
            throw StoreError(.corrupt, "the hub identity file belongs to another hub than \(hub.short)", path: path)
        }
        do {
            return try HubSigningKey(raw: key)
        } catch {
            throw StoreError(.corrupt, "the hub identity file holds no usable key", path: path, cause: error)
        }
    }

    /// Creates the file (0600, exclusive, synced with its directory).
    static func create(database: String, hub: ReplicaID, key: HubSigningKey) throws {
        let text = "caresync-identity: 1\nreplica: \(hub.hex)\ndevice-key: \(Array(key.privateKey.rawRepresentation).hexString)\ndevice-secret: \n"
        try DurableSideFile.create(path(for: database), contents: Array(text.utf8), exclusive: true)
    }

}
