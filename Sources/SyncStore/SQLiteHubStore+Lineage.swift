import Foundation
import SyncCore

/// The side file `<hub.db>.lineage` (Protocol/identity.md, "Incarnation"): the incarnation and
/// the log head the hub had at its last start or shutdown. A database whose log head is below the
/// recorded one (or whose incarnation is another) was put back from an older copy: the replicas
/// that synced since hold changes it lacks, so it takes a new incarnation and they push again.
struct HubLineage: Equatable {
    let incarnation: [UInt8]
    let head: UInt64

    static func path(for database: String) -> String { database + ".lineage" }

    /// The recorded lineage, or nil when there is none (a new hub, or one made before lineage files).
    /// An unreadable file reads as none: the next open writes it again, and a missing record can
    /// only miss a restore, never invent one.
    static func read(database: String) -> HubLineage? {
        guard let text = try? String(contentsOfFile: path(for: database), encoding: .utf8) else { return nil }
        var incarnation: [UInt8]?
        var head: UInt64?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "incarnation": incarnation = Hex.bytes(parts[1])
            case "head": head = UInt64(parts[1])
            default: continue
            }
        }
        guard let incarnation, incarnation.count == SQLiteHubStore.incarnationSize, let head else { return nil }
        return HubLineage(incarnation: incarnation, head: head)
    }

    /// Whether a database at `incarnation` with log head `head` continues this lineage.
    func continued(by incarnation: [UInt8], head: UInt64) -> Bool {
        incarnation == self.incarnation && head >= self.head
    }

    /// Replaces the file durably (a temporary file synced, renamed over, the directory synced),
    /// owner-only like the identity file beside it.
    func write(database: String) throws {
        let text = "caresync-lineage: 1\nincarnation: \(incarnation.hexString)\nhead: \(head)\n"
        let path = Self.path(for: database)
        do {
            try IdentityFile.replace(text: text, at: path, calls: .system)
        } catch {
            throw StoreError(.database, "the hub's lineage file \(path) could not be written", path: path, cause: error as? StoreError)
        }
    }
}
