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
        try DurableFile.write(bytes, to: path, replacing: ChangeBundle.magic)
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
        // A directory reports a size of 2^63 - 1 and a pipe or device blocks or never ends.
        if let kind = kind(of: URL(fileURLWithPath: path).resolvingSymlinksInPath().path), kind != .typeRegular {
            throw FileError(description: "\(path) is not a regular file (\(describe(kind))); nothing read")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FileError(description: "cannot read \(path)") }
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        guard size <= UInt64(limit) else { throw FileError(description: "\(path) is \(size) bytes, over the \(limit) byte limit") }
        try handle.seek(toOffset: 0)
        return Array(try handle.readToEnd() ?? Data())
    }

    /// Writes `bytes` to `path` atomically (a temporary file, fsync, rename). What is already at
    /// `path` is replaced only if it is an empty regular file or one starting with `replacing`
    /// (an earlier file of the same kind): a mistyped path must not turn a replica, a hub
    /// database or a device into a bundle.
    public static func write(_ bytes: [UInt8], to path: String, replacing magic: [UInt8]) throws {
        if let kind = kind(of: path) {
            guard kind == .typeRegular else {
                throw FileError(description: "\(path) exists and is not a regular file (\(describe(kind))); left as it is; choose another path")
            }
            let head = FileHandle(forReadingAtPath: path).flatMap { handle in
                defer { try? handle.close() }
                return try? handle.read(upToCount: magic.count)
            } ?? Data()
            guard head.isEmpty || Array(head) == magic else {
                throw FileError(description: "\(path) exists and is not a CareSync bundle; left as it is; choose another path")
            }
        }
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

    /// The type of what is at `path` (a symbolic link is not followed), or nil if nothing is.
    static func kind(of path: String) -> FileAttributeType? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType
    }

    static func describe(_ kind: FileAttributeType) -> String {
        switch kind {
        case .typeDirectory: "a directory"
        case .typeSymbolicLink: "a symbolic link"
        case .typeCharacterSpecial, .typeBlockSpecial: "a device"
        case .typeSocket: "a socket"
        default: "a pipe or special file"
        }
    }
}
