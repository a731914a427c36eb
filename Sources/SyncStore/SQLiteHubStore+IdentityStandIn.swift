import Foundation
import SyncCore
import SyncIdentity

// A minimal local stand-in for SyncIdentity's IdentityFile (the hub identity file), so the hub
// store could be built before it landed; it is replaced by IdentityFile when that is merged.

/// The hub's identity file `<hub.db>.identity` (Protocol/identity.md, "Identity file").
enum HubIdentityFile {
    static func path(for database: String) -> String { database + ".identity" }

    /// The key kept for `hub`, or nil when there is no file.
    static func load(database: String, hub: ReplicaID) throws -> SigningKey? {
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
            return try SigningKey(rawRepresentation: key)
        } catch {
            throw StoreError(.corrupt, "the hub identity file holds no usable key", path: path, cause: error)
        }
    }

    /// Creates the file (0600, exclusive, synced with its directory).
    static func create(database: String, hub: ReplicaID, key: SigningKey) throws {
        let text = "caresync-identity: 1\nreplica: \(hub.hex)\ndevice-key: \(key.rawRepresentation.hexString)\ndevice-secret: \n"
        try DurableSideFile.create(path(for: database), contents: Array(text.utf8), exclusive: true)
    }

}
