import SyncCore
import SyncWire

/// How a replica syncs: what it says in its hello, how it cuts its batches, and its deadlines.
///
/// ```swift
/// var configuration = ClientConfiguration(appVersion: "caresync/0.2")
/// configuration.pushBatchChanges = 1_000
/// ```
public struct ClientConfiguration: Sendable {
    /// The client software and its version, sent in the hello for the hub operator's view (e.g.
    /// `caresync/0.4.0`; the hub keeps 64 bytes). Supplied by the shell: the engine does not know
    /// which program runs it.
    public var appVersion: String
    /// The largest frame body this replica accepts; the hub's welcome may lower it.
    public var maxFrameBody: Int = Frame.defaultMaxBody
    /// Push batches are cut at this many changes.
    public var pushBatchChanges = 5_000
    /// Push batches are cut below this many encoded bytes (well under the frame limit).
    public var pushBatchBytes = 1024 * 1024
    /// Kept at 512 KiB: a pulled batch is buffered whole before its transaction commits, and the
    /// client's peak memory follows it.
    public var pullBudget: UInt64 = 512 * 1024
    /// Compress push payloads at or above this many bytes; nil sends them uncompressed.
    public var compressionThreshold: Int? = 1024
    /// The handshake deadline: hello sent until welcome or reject (Protocol/session.md, "Timeouts").
    public var handshakeMillis = ProtocolConstants.handshakeMillis
    /// The request deadline: a request sent until its answer.
    public var responseMillis = ProtocolConstants.responseMillis
    /// The frame deadline: a frame's first byte received until its last.
    public var frameCompletionMillis = ProtocolConstants.frameCompletionMillis
    /// Stay connected after a sync (Protocol/session.md, client `idle`): heartbeat every
    /// `heartbeat_interval_ms` of the welcome, and push and pull again when the shell says there
    /// are new local changes (`ClientSession.syncAgain()`) or `pullIntervalMillis` has passed. False
    /// (the default, as `caresync sync`) says goodbye as soon as the pull is caught up.
    public var staysConnected = false
    /// Staying connected: the longest wait in `idle` before the next round pulls the hub's new changes.
    public var pullIntervalMillis: UInt64 = 30_000

    /// - Parameters:
    ///   - appVersion: The client software and version, for the hub operator's view; tests and
    ///     tools that do not care get `unnamed`.
    public init(appVersion: String = "unnamed") {
        self.appVersion = appVersion
    }
}

/// Totals of one sync (all its attempts, in `SyncReport`), for a summary to print.
public struct SyncSummary: Equatable, Sendable {
    /// Own changes the hub acknowledged as stored.
    public var pushed = 0
    /// Push batches acknowledged.
    public var pushBatches = 0
    /// Changes received from the hub.
    public var pulled = 0
    /// Batches received from the hub.
    public var pullBatches = 0
    /// Received changes that changed this replica (not already held).
    public var applied = 0
    /// Received changes this replica already held.
    public var duplicates = 0
    /// Conflicts the received changes opened.
    public var conflictsOpened = 0
    /// Requests answered by the hub.
    public var roundTrips = 0
    /// True when this sync exchanged an enrolment token for a device secret.
    public var enrolled = false
    /// The hub that welcomed this replica.
    public var hub: ReplicaID?
    /// Own changes the hub held and this replica lacked (it was restored from a backup or copied).
    public var recovered = 0
    /// Set when this replica diverged from what the hub holds of its origin and took a new identity.
    public var forkedFrom: ReplicaID?
    /// Own changes re-issued under the new identity.
    public var reissued = 0
    /// Scopes purged at the hub's word (a team no longer involved with the young person).
    public var purged = 0
    /// Scopes the hub owes a purge of that were left for a later session: they held own changes
    /// the hub had not acknowledged.
    public var purgesWaiting = 0
    /// Writes the hub holds for this replica's review, received in this sync (Protocol/scope.md,
    /// "Quarantine review"); stored as held, never merged.
    public var heldReceived = 0
    /// Decisions on held writes the hub recorded (or had recorded already) in this sync.
    public var heldDecisionsRecorded = 0

    /// Nothing done yet.
    public init() {}
}
