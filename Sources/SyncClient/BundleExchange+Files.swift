import SyncCore
import SyncEngine
import SyncStore

/// Bundles as files: the engine encodes and decodes, `DurableFile` reads and writes.
extension BundleExchange {
    /// Writes the bundle for `peer` to `path` durably and all at once (`DurableFile.write`).
    ///
    /// ```swift
    /// let summary = try await BundleExchange.export(from: replica, for: sam, to: "to-sam.bundle")
    /// ```
    ///
    /// - Parameters:
    ///   - store: The replica to export from.
    ///   - peer: The receiving replica, if known: only what it lacks is written.
    ///   - path: The bundle file; an earlier bundle there is replaced, anything else is refused.
    /// - Returns: What was written.
    /// - Throws: `StoreError` if the replica cannot be read; `DurableFile.FileError` if the file
    ///   cannot be written (nothing is then left at the path, or what was there is left).
    public static func export(from store: ReplicaStore, for peer: ReplicaID?, to path: String) async throws -> ExportSummary {
        let (bytes, summary) = try export(from: store, for: peer)
        try await DurableFile.write(bytes, to: path, replacing: ChangeBundle.magic)
        return summary
    }

    /// Reads, verifies and applies the bundle file at `path` in one transaction. A bundle that
    /// fails any check is refused whole.
    ///
    /// ```swift
    /// let summary = try await BundleExchange.importBundle(into: replica, from: "from-alex.bundle")
    /// ```
    ///
    /// - Returns: What was received and applied.
    /// - Throws: `DurableFile.FileError` if the file cannot be read (or is over
    ///   `ChangeBundle.maxBytes`); `BundleError` if it is not a valid bundle; `StoreError` if
    ///   applying fails. In every case nothing is applied.
    public static func importBundle(into store: ReplicaStore, from path: String) async throws -> ImportSummary {
        let bytes = try await DurableFile.read(path, limit: ChangeBundle.maxBytes)
        return try importBundle(into: store, bytes: bytes)
    }
}
