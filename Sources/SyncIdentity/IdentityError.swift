import SyncCore

/// A run of changes, a head or a certificate that does not verify (Protocol/identity.md,
/// "Verifying a run of changes"), in the house shape: a stable ``code``, one line for a person,
/// the context as data (``origin``, ``counter``, ``expectedCounter``) and, for an equivocation,
/// the ``evidence``. Never a record's contents or a key's secret: ids, counters and digests only.
///
/// ```swift
/// do {
///     let verified = try RunVerifier(ledger: store, hubKey: pinned).verify(changes, provenance: provenance)
/// } catch let error as IdentityError where error.code == .equivocation {
///     // error.evidence: the change id, both versions' digests and the two signed heads
/// }
/// ```
public struct IdentityError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable error code. A struct over a private enum, so codes can be added without breaking
    /// a caller's `switch` (which needs a `default:`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Sendable {
            case signatureInvalid = "SIGNATURE_INVALID"
            case chainGap = "CHAIN_GAP"
            case unsignedChanges = "UNSIGNED_CHANGES"
            case unknownDevice = "UNKNOWN_DEVICE"
            case equivocation = "EQUIVOCATION"
            case keyUnreadable = "KEY_UNREADABLE"
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The code's stable name (`"CHAIN_GAP"`), for machine-readable output.
        public var name: String { wrapped.rawValue }

        /// The ``name``.
        public var description: String { name }

        /// A head's signature or chain, or a certificate's signature, does not verify.
        public static let signatureInvalid = Code(.signatureInvalid)
        /// A run starts above the receiver's contiguous counter + 1 for its origin, or skips a counter.
        public static let chainGap = Code(.chainGap)
        /// A run does not end at a head.
        public static let unsignedChanges = Code(.unsignedChanges)
        /// No key is known for a run's origin and no certificate for it came with the message.
        public static let unknownDevice = Code(.unknownDevice)
        /// Two different changes under one id, each under a head that verifies: ``IdentityError/evidence`` proves it.
        public static let equivocation = Code(.equivocation)
        /// Bytes that should be a private key are not one.
        public static let keyUnreadable = Code(.keyUnreadable)
    }

    /// The proof of an equivocation: one change id with two contents, each covered by a signed head.
    public struct Equivocation: Hashable, Sendable {
        /// The change id with two contents.
        public let change: ChangeID
        /// SHA-256 of the held version's canonical bytes.
        public let heldDigest: [UInt8]
        /// SHA-256 of the received version's canonical bytes.
        public let receivedDigest: [UInt8]
        /// The held head covering the held version, when the receiver holds one.
        public let heldHead: SignedHead?
        /// The received head, verified, covering the received version.
        public let receivedHead: SignedHead

        /// The evidence of an equivocation.
        public init(change: ChangeID, heldDigest: [UInt8], receivedDigest: [UInt8], heldHead: SignedHead?, receivedHead: SignedHead) {
            self.change = change
            self.heldDigest = heldDigest
            self.receivedDigest = receivedDigest
            self.heldHead = heldHead
            self.receivedHead = receivedHead
        }
    }

    /// What went wrong, stable across releases.
    public let code: Code
    /// One line for a person: what was wrong and where, with no record contents.
    public let message: String
    /// The origin whose run, head or certificate failed.
    public let origin: ReplicaID?
    /// The counter concerned (the head's, or the first change that failed).
    public let counter: UInt64?
    /// For a gap: the counter the run had to start at (or continue with).
    public let expectedCounter: UInt64?
    /// For an equivocation: the proof.
    public let evidence: Equivocation?

    /// Creates an error.
    /// - Parameters:
    ///   - code: the stable code.
    ///   - message: one line, ids and counters only.
    ///   - origin: the origin concerned, if any.
    ///   - counter: the counter concerned, if any.
    ///   - expectedCounter: the counter expected, for a gap.
    ///   - evidence: the proof of an equivocation.
    public init(_ code: Code, _ message: String, origin: ReplicaID? = nil, counter: UInt64? = nil, expectedCounter: UInt64? = nil,
                evidence: Equivocation? = nil) {
        self.code = code
        self.message = message
        self.origin = origin
        self.counter = counter
        self.expectedCounter = expectedCounter
        self.evidence = evidence
    }

    /// The ``message``.
    public var description: String { message }
}
