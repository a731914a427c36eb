import Foundation
import SyncCore
import SyncStore

/// Export and import of change bundles: the engine's file transport, used before a hub exists
/// and afterwards by teams that can only carry a file.
public enum BundleExchange {
    public struct ExportSummary: Sendable {
        public let changes: Int
        public let bytes: Int
        /// True when the peer's knowledge was known and only its missing changes were written.
        public let incremental: Bool
    }

    public struct ImportSummary: Sendable {
        public let sender: ReplicaID
        public let received: Int
        public let result: ApplySummary
    }

    /// Builds a bundle of the changes `peer` has not seen, as far as this replica knows (from the
    /// last bundle the peer sent). Without a peer, or for an unknown one, everything is exported:
    /// imports are idempotent, so extra changes cost bytes, never correctness.
    public static func makeBundle(from store: ReplicaStore, for peer: ReplicaID?) throws -> (ChangeBundle, Bool) {
        let knowledge = try peer.map { try store.peerKnowledge($0) } ?? VersionVector()
        let changes = try store.changes(notIn: knowledge)
        let bundle = ChangeBundle(sender: store.replicaID, schemaVersion: store.schema.version,
                                  senderKnowledge: try store.versionVector(), changes: changes)
        return (bundle, !knowledge.counters.isEmpty)
    }

    /// Writes the bundle for `peer` to `path` (atomically: a temporary file, fsync, rename).
    public static func export(from store: ReplicaStore, for peer: ReplicaID?, to path: String) throws -> ExportSummary {
        let (bundle, incremental) = try makeBundle(from: store, for: peer)
        let bytes = bundle.encoded()
        try DurableFile.write(bytes, to: path)
        return ExportSummary(changes: bundle.changes.count, bytes: bytes.count, incremental: incremental)
    }

    /// Reads, verifies and applies a bundle in one transaction. A bundle that fails any check is
    /// refused whole.
    public static func importBundle(into store: ReplicaStore, from path: String) throws -> ImportSummary {
        let bytes = try DurableFile.read(path, limit: ChangeBundle.maxBytes)
        let bundle = try ChangeBundle.decode(bytes)
        return try apply(bundle, to: store)
    }

    public static func apply(_ bundle: ChangeBundle, to store: ReplicaStore) throws -> ImportSummary {
        let result = try store.apply(bundle.changes)
        try store.recordPeerKnowledge(bundle.sender, bundle.senderKnowledge)
        return ImportSummary(sender: bundle.sender, received: bundle.changes.count, result: result)
    }
}

/// File reads and writes with limits and durability.
public enum DurableFile {
    public struct FileError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func read(_ path: String, limit: Int) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FileError(description: "cannot read \(path)") }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        guard size <= UInt64(limit) else { throw FileError(description: "\(path) is \(size) bytes, over the \(limit) byte limit") }
        try handle.seek(toOffset: 0)
        return Array(try handle.readToEnd() ?? Data())
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".partial"
        guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
            throw FileError(description: "cannot create \(temporary)")
        }
        guard let handle = FileHandle(forWritingAtPath: temporary) else { throw FileError(description: "cannot write \(temporary)") }
        do {
            try handle.write(contentsOf: bytes)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: temporary)
            throw FileError(description: "writing \(path) failed: \(error.localizedDescription)")
        }
        if rename(temporary, path) != 0 {
            try? FileManager.default.removeItem(atPath: temporary)
            throw FileError(description: "cannot move \(temporary) to \(path)")
        }
    }
}
