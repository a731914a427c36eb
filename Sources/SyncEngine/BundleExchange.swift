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
    /// Its own changes are signed (a head at every checkpoint and at the end of its run); another
    /// origin's run goes with the heads held inside it, cut at the last one, and that origin's
    /// certificate. The hub-keyed origins (the catalogue), which every replica has from its hub,
    /// are left out.
    ///
    /// - Returns: The bundle, and whether it is incremental (the peer's knowledge was known).
    /// - Throws: `StoreError` if the replica cannot be read, `.identityMissing` without a device key.
    public static func makeBundle(from store: ReplicaStore, for peer: ReplicaID?) throws -> (ChangeBundle, Bool) {
        let knowledge = try peer.map { try store.peerKnowledge($0) } ?? VersionVector()
        let hub = try store.hubLink()?.hubID
        var changes: [Change] = []
        for change in try store.changes(notIn: knowledge) where change.id.replica != hub && !store.hubKeyedOrigins.contains(change.id.replica) {
            changes.append(change)
        }
        changes = try signedRuns(changes, of: store)
        var provenance = try store.provenance(for: changes)
        // The receiver may never have heard of this replica from its hub: its own certificate goes too.
        if changes.contains(where: { $0.id.replica == store.replicaID }), let own = try store.certificate(for: store.replicaID) {
            provenance = Provenance(heads: provenance.heads,
                                    certificates: (provenance.certificates + [own]).sorted { $0.replica < $1.replica })
        }
        let bundle = ChangeBundle(sender: store.replicaID, schemaVersion: store.schema.version,
                                  senderKnowledge: try store.versionVector(), changes: changes, provenance: provenance)
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

    /// Applies a decoded bundle in one transaction, after verifying its runs against its signed
    /// heads, and remembers what its sender has seen, so the next export for the sender carries
    /// only what it lacks.
    ///
    /// - Throws: `IdentityError` (SyncIdentity) for changes that do not verify (a bundle edited by
    ///   hand); `StoreError` if applying fails. Either way nothing is applied.
    public static func apply(_ bundle: ChangeBundle, to store: ReplicaStore) throws -> ImportSummary {
        // Team scope (Protocol/scope.md): both teams are the hub's word, in certificates it signed.
        // The certificate in the bundle is checked against the pinned hub key when it is applied;
        // a bundle whose certificate does not verify is refused there.
        if let own = try store.certificate(for: store.replicaID)?.team,
           let sender = try bundle.provenance.certificates.first(where: { $0.replica == bundle.sender })?.team
               ?? store.certificate(for: bundle.sender)?.team,
           sender != own {
            throw BundleError.otherTeam
        }
        let result = try store.apply(bundle.changes, provenance: bundle.provenance)
        try store.recordPeerKnowledge(bundle.sender, bundle.senderKnowledge)
        return ImportSummary(sender: bundle.sender, received: bundle.changes.count, result: result)
    }

    /// Each run of another origin cut back to its last held head (dropped when it has none): a
    /// receiver verifies a run only up to a head. Own runs are signed wherever they end. A replica
    /// holding only segments of an origin's log (Protocol/scope.md) sends them as several runs:
    /// each must end at a held head, and the first that cannot is cut there with every later one
    /// of the origin (what follows a cut is sent next time, so nothing is skipped).
    package static func signedRuns(_ changes: [Change], of store: ReplicaStore) throws -> [Change] {
        var kept: [Change] = []
        kept.reserveCapacity(changes.count)
        var start = changes.startIndex
        while start < changes.endIndex {
            let origin = changes[start].id.replica
            var end = start
            while end < changes.endIndex && changes[end].id.replica == origin { end += 1 }
            let run = changes[start..<end]
            start = end
            if origin == store.replicaID {
                kept += run
                continue
            }
            var segment = run.startIndex
            while segment < run.endIndex {
                var end = segment + 1
                while end < run.endIndex && run[end].id.counter == run[end - 1].id.counter + 1 { end += 1 }
                let first = run[segment].id.counter
                let last = run[end - 1].id.counter
                guard let head = try store.heldHeads(origin: origin, in: first...last).last?.counter else { break }
                kept += run[segment..<end].prefix { $0.id.counter <= head }
                if head < last { break }
                segment = end
            }
        }
        return kept
    }
}
