import SyncCore
import SyncStore

/// Export and import of change bundles: the engine's file transport, used before a hub exists
/// and afterwards by teams that can only carry a file.
///
/// Everything here is bytes in, bytes out; reading and writing the file is the shell's
/// (`BundleExchange.export(from:for:to:)` and `importBundle(into:from:)` in SyncClient, which
/// write through NIO's transactional file creation and fsync the directory).
///
/// ```swift
/// let (bytes, summary) = try BundleExchange.export(from: alex, for: sam.replicaID)
/// // … carry `bytes` to Sam's machine …
/// let imported = try BundleExchange.importBundle(into: sam, bytes: bytes)
/// ```
public enum BundleExchange {
    /// What an export wrote.
    public struct ExportSummary: Sendable {
        /// Changes in the bundle.
        public let changes: Int
        /// Size of the encoded bundle, checksum included.
        public let bytes: Int
        /// True when the peer's knowledge was known and only its missing changes were written.
        public let incremental: Bool

        package init(changes: Int, bytes: Int, incremental: Bool) {
            self.changes = changes
            self.bytes = bytes
            self.incremental = incremental
        }
    }

    /// What an import applied.
    public struct ImportSummary: Sendable {
        /// The replica that wrote the bundle.
        public let sender: ReplicaID
        /// Changes in the bundle.
        public let received: Int
        /// What the store did with them (applied, already known, parked, conflicts).
        public let result: ApplySummary
    }

    /// Builds a bundle of the changes `peer` has not seen, as far as this replica knows (from the
    /// last bundle the peer sent). Without a peer, or for an unknown one, everything is exported:
    /// imports are idempotent, so extra changes cost bytes, never correctness.
    ///
    /// - Parameters:
    ///   - store: The replica to export from.
    ///   - peer: The receiving replica, if known.
    /// - Returns: The bundle, and whether it is incremental (the peer's knowledge was known).
    /// - Throws: `StoreError` if the replica cannot be read.
    public static func makeBundle(from store: ReplicaStore, for peer: ReplicaID?) throws -> (ChangeBundle, Bool) {
        let knowledge = try peer.map { try store.peerKnowledge($0) } ?? VersionVector()
        let changes = try store.changes(notIn: knowledge)
        let bundle = ChangeBundle(sender: store.replicaID, schemaVersion: store.schema.version,
                                  senderKnowledge: try store.versionVector(), changes: changes)
        return (bundle, !knowledge.counters.isEmpty)
    }

    /// The encoded bundle for `peer` (see `makeBundle(from:for:)`), ready to be written to a file.
    ///
    /// - Returns: The bundle's bytes and what they hold.
    /// - Throws: `StoreError` if the replica cannot be read.
    public static func export(from store: ReplicaStore, for peer: ReplicaID?) throws -> (bytes: [UInt8], summary: ExportSummary) {
        let (bundle, incremental) = try makeBundle(from: store, for: peer)
        let bytes = bundle.encoded()
        return (bytes, ExportSummary(changes: bundle.changes.count, bytes: bytes.count, incremental: incremental))
    }

    /// Verifies and applies an encoded bundle in one transaction. A bundle that fails any check is
    /// refused whole.
    ///
    /// - Throws: `BundleError` for bytes that are not a valid bundle; `StoreError` if applying fails
    ///   (then nothing is applied).
    public static func importBundle(into store: ReplicaStore, bytes: [UInt8]) throws -> ImportSummary {
        try apply(try ChangeBundle.decode(bytes), to: store)
    }

    /// Applies a decoded bundle in one transaction and remembers what its sender has seen, so the
    /// next export for the sender carries only what it lacks.
    ///
    /// - Throws: `StoreError` if applying fails (then nothing is applied).
    public static func apply(_ bundle: ChangeBundle, to store: ReplicaStore) throws -> ImportSummary {
        let result = try store.apply(bundle.changes)
        try store.recordPeerKnowledge(bundle.sender, bundle.senderKnowledge)
        return ImportSummary(sender: bundle.sender, received: bundle.changes.count, result: result)
    }
}
