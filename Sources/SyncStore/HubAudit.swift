import Crypto
import SyncCore

/// One event of the hub's audit trail: who did what to which record, from which device, when it
/// happened and when the hub received it.
///
/// An event names ids only. Record ids and young-person ids are pseudonymous UUIDs, the actor is a
/// worker id (a login or staff number), the device a replica id, and ``detail`` a short code
/// (`"OUT_OF_SCOPE"`, `"RELAYED_BY=<replica>"`, a count): never a field value, so the trail can be
/// shown to the hub operator and kept for as long as the records' history.
///
/// ```swift
/// let event = AuditEvent(kind: .quarantinedWrite, actor: change.author, device: push.replica, table: change.table,
///                        row: change.row, scope: change.scope, change: change.id,
///                        occurredAtMillis: change.timestamp.physicalMillis, receivedAtMillis: now, detail: "OUT_OF_SCOPE")
/// try store.recordAudit([event], in: db)   // inside the write transaction that quarantines it
/// ```
public struct AuditEvent: Hashable, Sendable {
    /// What happened. A struct over a private enum, so kinds can be added without breaking a
    /// caller's `switch` (which needs a `default:`); its ``name`` is what is stored, hashed and
    /// printed.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Sendable, CaseIterable {
            case create = "CREATE"
            case change = "CHANGE"
            case delete = "DELETE"
            case restrictedView = "RESTRICTED_VIEW"
            case purge = "PURGE"
            case quarantinedWrite = "QUARANTINED_WRITE"
            case rejectedWrite = "REJECTED_WRITE"
            case conflictResolution = "CONFLICT_RESOLUTION"
            case quarantineResolved = "QUARANTINE_RESOLVED"
            case scopeIn = "SCOPE_IN"
            case scopeOut = "SCOPE_OUT"
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The kind of a stored ``name``; nil for a name this version does not know.
        public init?(name: String) {
            guard let wrapped = Wrapped(rawValue: name) else { return nil }
            self.wrapped = wrapped
        }

        /// The kind's stable name (`"CREATE"`).
        public var name: String { wrapped.rawValue }

        /// The ``name``.
        public var description: String { name }

        /// A change that gives a row a life: it sets an odd causal length (a create, or a re-create
        /// after a delete, which says `RECREATED` in its detail).
        public static let create = Kind(.create)
        /// A change that edits fields of a row without creating or deleting it.
        public static let change = Kind(.change)
        /// A change that ends a row's life (sets an even causal length).
        public static let delete = Kind(.delete)
        /// A worker viewed a restricted record (recorded by the replica, uploaded).
        public static let restrictedView = Kind(.restrictedView)
        /// A replica was told to purge a young person's bundle, or acknowledged it did.
        public static let purge = Kind(.purge)
        /// A write outside the sending replica's scope, held for the owning team instead of applied.
        public static let quarantinedWrite = Kind(.quarantinedWrite)
        /// A push the hub refused (a signature that does not verify, an unknown device, a second
        /// version of a change id…); the detail names the refusal's code.
        public static let rejectedWrite = Kind(.rejectedWrite)
        /// A person resolved a conflict between candidate values.
        public static let conflictResolution = Kind(.conflictResolution)
        /// A replica of the owning team decided on a quarantined write: its detail says `ACCEPTED`
        /// (re-authored as a new change by the reviewer) or `DISMISSED`; never the reviewer's reason.
        public static let quarantineResolved = Kind(.quarantineResolved)
        /// A team became involved with a young person: its replicas receive the bundle.
        public static let scopeIn = Kind(.scopeIn)
        /// A team stopped being involved with a young person: its replicas purge the bundle.
        public static let scopeOut = Kind(.scopeOut)
    }

    /// What happened.
    public let kind: Kind
    /// The worker the change names as its author; empty when there is none (a refused push, whose
    /// authors are unverified claims).
    public let actor: String
    /// The device: the origin replica of a change, or the replica that sent a push.
    public let device: ReplicaID?
    /// The record kind (table) concerned; empty for none.
    public let table: String
    /// The record id concerned; empty for none.
    public let row: String
    /// The young person the record belongs to; empty for none.
    public let scope: String
    /// The change concerned, if any.
    public let change: ChangeID?
    /// When it happened: the change's hybrid-clock wall time, or the time the replica stated.
    /// Saturated at 2^63-1 (SQLite's largest integer).
    public let occurredAtMillis: UInt64
    /// When the hub received it, on the hub's clock. Saturated at 2^63-1.
    public let receivedAtMillis: UInt64
    /// A short code or count (`"OUT_OF_SCOPE"`, `"SIGNATURE_INVALID changes=3"`), never a value.
    public let detail: String

    /// An event. Text is kept as given but for U+0000, which becomes U+FFFD: SQLite's text
    /// readers stop at it, so the event could not be read back as it was hashed.
    ///
    /// - Parameters:
    ///   - kind: What happened.
    ///   - actor: The worker id; empty for none.
    ///   - device: The origin or sending replica.
    ///   - table: The record kind; empty for none.
    ///   - row: The record id; empty for none.
    ///   - scope: The young person's id; empty for none.
    ///   - change: The change concerned.
    ///   - occurredAtMillis: When it happened (the change's wall time, or the replica's stated time).
    ///   - receivedAtMillis: When the hub received it.
    ///   - detail: A short code, never a value.
    public init(kind: Kind, actor: String = "", device: ReplicaID?, table: String = "", row: String = "", scope: String = "",
                change: ChangeID? = nil, occurredAtMillis: UInt64, receivedAtMillis: UInt64, detail: String = "") {
        self.kind = kind
        self.actor = Self.storable(actor)
        self.device = device
        self.table = Self.storable(table)
        self.row = Self.storable(row)
        self.scope = Self.storable(scope)
        self.change = change
        self.occurredAtMillis = min(occurredAtMillis, UInt64(Int64.max))
        self.receivedAtMillis = min(receivedAtMillis, UInt64(Int64.max))
        self.detail = Self.storable(detail)
    }

    private static func storable(_ text: String) -> String {
        guard text.unicodeScalars.contains("\u{0}") else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\u{0}" ? "\u{FFFD}" : $0 }))
    }

    /// The canonical encoding the chain hashes: the kind's name, actor, device (a presence byte,
    /// then 16 bytes), table, row, scope, change (a presence byte, then its id), both times as
    /// varints, detail. Strings are length-prefixed UTF-8, so no two events share an encoding.
    package func encode(into writer: inout ByteWriter) {
        writer.string(kind.name)
        writer.string(actor)
        if let device {
            writer.byte(1)
            writer.replica(device)
        } else {
            writer.byte(0)
        }
        writer.string(table)
        writer.string(row)
        writer.string(scope)
        if let change {
            writer.byte(1)
            change.encode(into: &writer)
        } else {
            writer.byte(0)
        }
        writer.varint(occurredAtMillis)
        writer.varint(receivedAtMillis)
        writer.string(detail)
    }

    /// The canonical encoding.
    package var canonicalBytes: [UInt8] {
        var writer = ByteWriter(capacity: 96)
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes one event, strictly (presence bytes are 0 or 1; the kind is one this version knows).
    package static func decode(from reader: inout ByteReader) throws(ByteDecodingError) -> AuditEvent {
        let kindAt = reader.offset
        let name = try reader.string()
        guard let kind = Kind(name: name) else { throw ByteDecodingError(.invalidValue, offset: kindAt, field: "kind", "an unknown audit kind") }
        let actor = try reader.string()
        let device: ReplicaID? = try present(&reader, "device") ? reader.replica() : nil
        let table = try reader.string()
        let row = try reader.string()
        let scope = try reader.string()
        let change: ChangeID? = try present(&reader, "change") ? ChangeID.decode(from: &reader) : nil
        let occurred = try reader.varint()
        let received = try reader.varint()
        let detail = try reader.string()
        return AuditEvent(kind: kind, actor: actor, device: device, table: table, row: row, scope: scope, change: change,
                          occurredAtMillis: occurred, receivedAtMillis: received, detail: detail)
    }

    private static func present(_ reader: inout ByteReader, _ field: String) throws(ByteDecodingError) -> Bool {
        let at = reader.offset
        switch try reader.byte() {
        case 0: return false
        case 1: return true
        default: throw ByteDecodingError(.invalidValue, offset: at, field: field, "a presence byte other than 0 or 1")
        }
    }
}

extension AuditEvent {
    /// The event of a change the hub stored: `create` when the change sets an odd causal length
    /// (the row alive from nothing, or again after a delete: detail `RECREATED`), `delete` when it
    /// sets an even one, `change` otherwise. Decided from the change alone: the hub does not merge
    /// rows, so a create that reaches it after a concurrent one is still the create its author made.
    /// The device is the origin; a change sent by another replica (relayed) says so in its detail
    /// (`RELAYED_BY=<replica id>`).
    ///
    /// - Parameters:
    ///   - change: The stored change.
    ///   - sender: The replica whose push carried it.
    ///   - receivedAtMillis: When the hub received the push.
    package static func stored(_ change: Change, from sender: ReplicaID, receivedAtMillis: UInt64) -> AuditEvent {
        let kind: Kind
        var detail: [String] = []
        if change.setsLife && CausalLength.isAlive(change.causalLength) {
            kind = .create
            if change.causalLength > 1 { detail.append("RECREATED") }
        } else {
            kind = change.setsLife ? .delete : .change
        }
        if sender != change.id.replica { detail.append("RELAYED_BY=\(sender.hex)") }
        return AuditEvent(kind: kind, actor: change.author, device: change.id.replica, table: change.table, row: change.row,
                          scope: change.scope, change: change.id, occurredAtMillis: change.timestamp.physicalMillis,
                          receivedAtMillis: receivedAtMillis, detail: detail.joined(separator: " "))
    }

    /// The event of a push the hub refused: the sending replica, the change the refusal names
    /// (with its table, row and scope as the push gave them), and the refusal's code with the
    /// push's size as detail (`"SIGNATURE_INVALID changes=3"`). The push's authors are not
    /// recorded: nothing of a refused push was verified.
    ///
    /// - Parameters:
    ///   - push: The refused push.
    ///   - code: The refusal's stable code name.
    ///   - change: The change the refusal names, if any.
    package static func rejected(_ push: HubPush, code: String, change: ChangeID?) -> AuditEvent {
        let named = change.flatMap { id in push.changes.first { $0.id == id } }
        return AuditEvent(kind: .rejectedWrite, device: push.replica, table: named?.table ?? "", row: named?.row ?? "",
                          scope: named?.scope ?? "", change: change, occurredAtMillis: push.receivedAtMillis,
                          receivedAtMillis: push.receivedAtMillis, detail: "\(code) changes=\(push.changes.count)")
    }
}

/// One stored event: its sequence in the trail (from 1), the event, and the chain hash after it.
public struct AuditRecord: Hashable, Sendable {
    /// The event's position in the trail, from 1, without gaps.
    public let seq: UInt64
    /// The event.
    public let event: AuditEvent
    /// `hash(seq)` of the chain (``AuditChain``): 32 bytes.
    public let hash: [UInt8]

    /// A stored event.
    /// - Parameters:
    ///   - seq: Its position, from 1.
    ///   - event: The event.
    ///   - hash: The chain hash after it.
    public init(seq: UInt64, event: AuditEvent, hash: [UInt8]) {
        self.seq = seq
        self.event = event
        self.hash = hash
    }
}

/// The hash chain over the audit trail, and the head the hub key signs.
///
/// ```
/// hash(0) = SHA-256("caresync/audit/v1")
/// hash(n) = SHA-256(hash(n-1) || encoding(event n) || u64be(n))
/// head    = count, hash(count), Ed25519 by the hub key over
///           "caresync/audit-head/v1" || hub id || u64be(count) || hash(count)
/// ```
///
/// A changed event breaks the chain at that event (or, if its stored hash was rewritten to
/// match, at the next one); a removed or reordered one leaves a gap in the sequence; removed last
/// events, which a chain alone cannot show, leave the signed head's count above the last event.
/// The head names the hub, so one hub's trail cannot pass for another's; its label differs from
/// those of the other things the hub key signs (origin heads, device certificates) in its first
/// bytes, so no signature of one kind is a signature of another.
package enum AuditChain {
    /// `hash(0)`.
    package static let genesis: [UInt8] = Array(SHA256.hash(data: Array("caresync/audit/v1".utf8)))

    /// `hash(seq)` from `hash(seq - 1)`.
    package static func next(after previous: [UInt8], event: AuditEvent, seq: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 160)
        writer.raw(previous)
        event.encode(into: &writer)
        writer.fixed64(seq)
        return Array(SHA256.hash(data: writer.bytes))
    }

    /// What the hub key signs for a head of `count` events ending at `hash`.
    package static func headSignedBytes(hub: ReplicaID, count: UInt64, hash: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 96)
        writer.raw(Array("caresync/audit-head/v1".utf8))
        writer.replica(hub)
        writer.fixed64(count)
        writer.raw(hash)
        return writer.bytes
    }
}

/// What ``SQLiteHubStore/verifyAudit()`` found: every event and the signed head intact, or the
/// first place where the trail is broken.
public struct AuditVerification: Hashable, Sendable {
    /// Why a trail does not verify. A struct over a private enum, so reasons can be added.
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Sendable {
            case changed = "CHANGED"
            case removed = "REMOVED"
            case tailRemoved = "TAIL_REMOVED"
            case headMismatch = "HEAD_MISMATCH"
            case headSignatureInvalid = "HEAD_SIGNATURE_INVALID"
            case unreadable = "UNREADABLE"
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The reason's stable name (`"CHANGED"`), for machine-readable output.
        public var name: String { wrapped.rawValue }

        /// The ``name``.
        public var description: String { name }

        /// The event's hash is not the chain's at its place: it (or the event before it, with its
        /// stored hash rewritten) was changed.
        public static let changed = Reason(.changed)
        /// Events are missing before this one, or out of order: the sequence has a gap there.
        public static let removed = Reason(.removed)
        /// The signed head counts more events than the trail holds: the last ones were removed.
        public static let tailRemoved = Reason(.tailRemoved)
        /// The signed head does not match the trail: events after the count it signed, or another
        /// hash at its count.
        public static let headMismatch = Reason(.headMismatch)
        /// The head's signature is not the hub key's.
        public static let headSignatureInvalid = Reason(.headSignatureInvalid)
        /// An event or the head cannot be read (a missing head, an unknown kind, a bad id).
        public static let unreadable = Reason(.unreadable)
    }

    /// Where and why the trail is broken.
    public struct Break: Hashable, Sendable {
        /// The first event (sequence) that does not verify; for a head that does not match, the
        /// first event the head and the trail disagree on.
        public let seq: UInt64
        /// Why.
        public let reason: Reason
        /// One line for a person: what was found, with ids and counts only.
        public let message: String
    }

    /// Events that verified, from the first (all of them when intact).
    public let verifiedEvents: UInt64
    /// The chain hash after the verified events: when intact, the signed head's, worth keeping
    /// elsewhere (a trail reset to empty is only seen against a count or hash kept outside it).
    public let headHash: [UInt8]
    /// Nil when intact.
    public let broken: Break?

    /// Whether every event and the signed head verified.
    public var isIntact: Bool { broken == nil }

    init(verifiedEvents: UInt64, headHash: [UInt8], broken: Break? = nil) {
        self.verifiedEvents = verifiedEvents
        self.headHash = headHash
        self.broken = broken
    }

    static func failure(_ seq: UInt64, _ reason: Reason, _ message: String, verified: UInt64, hash: [UInt8]) -> AuditVerification {
        AuditVerification(verifiedEvents: verified, headHash: hash, broken: Break(seq: seq, reason: reason, message: message))
    }
}
