import SyncCore

/// A framing, decoding or protocol failure, with the code to send the peer (Protocol/errors.md).
///
/// The shape is NIO's `FileSystemError`'s: a stable ``code`` a peer acts on, a ``detail`` for
/// people, the context as data (the message ``kind``, the byte ``offset`` into its payload, the
/// ``field``) and the underlying ``cause``. A wrapped ``ByteDecodingError`` keeps its offset and
/// field here, so a malformed message says where it broke without parsing the text. Nothing in it
/// holds record contents: ids, sizes, offsets and field names only.
///
/// ```swift
/// do {
///     let message = try MessageCodec().decode(frame)
/// } catch {
///     // error.code == .malformedMessage, error.kind == .push, error.offset == 41
///     send(.error(code: error.code, fatal: true, message: error.detail))
/// }
/// ```
public struct WireError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as the number and name Protocol/errors.md gives it.
    public var code: Code
    /// One line for people: sizes, offsets, ids; never record contents.
    public var detail: String
    /// The message being decoded, when the failure is inside one.
    public var kind: Message.Kind?
    /// The byte offset into the message's payload where decoding failed: into the inflated payload
    /// for a compressed frame, except for a bad size prefix, which is at the start of the frame's own.
    public var offset: Int?
    /// The field that failed, as Protocol/messages.md names it, when the decoder knows it.
    public var field: String?
    /// The error this one wraps (a ``ByteDecodingError`` for a payload that does not decode).
    public var cause: (any Error & Sendable)?

    /// A wire error.
    /// - Parameters:
    ///   - code: the code to send the peer.
    ///   - detail: one line for people, without record contents.
    ///   - kind: the message being decoded, if any.
    ///   - offset: the byte offset into its payload, if known.
    ///   - field: the failing field's name, if known.
    ///   - cause: the underlying error, if any.
    public init(_ code: Code, _ detail: String, kind: Message.Kind? = nil, offset: Int? = nil, field: String? = nil,
                cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.detail = detail
        self.kind = kind
        self.offset = offset
        self.field = field
        self.cause = cause
    }

    /// A payload of `kind` that does not decode: `code` (`MALFORMED_MESSAGE` unless the failure says
    /// otherwise), with the decoding error's offset and field kept and the error itself as `cause`.
    package init(_ code: Code, decoding error: ByteDecodingError, in kind: Message.Kind) {
        self.init(code, "\(kind): \(error)", kind: kind, offset: error.offset, field: error.field, cause: error)
    }

    /// `CODE_NAME: detail`.
    public var description: String { "\(code.name): \(detail)" }
}

extension WireError: Equatable {
    /// Same code, detail and context, and causes that describe themselves alike (a cause is any
    /// error, so it is compared by its text; every cause in this module is content-free).
    public static func == (lhs: WireError, rhs: WireError) -> Bool {
        lhs.code == rhs.code && lhs.detail == rhs.detail && lhs.kind == rhs.kind && lhs.offset == rhs.offset
            && lhs.field == rhs.field && lhs.cause.map { "\($0)" } == rhs.cause.map { "\($0)" }
    }
}


extension WireError {
    /// An error code on the wire (Protocol/errors.md). Stable numbers: a peer acts on the code,
    /// never on the message text. A struct over a private enum, so codes can be added without
    /// breaking a `switch` in another module.
    public struct Code: Hashable, Sendable, CaseIterable, CustomStringConvertible {
        private enum Wrapped: UInt16, CaseIterable {
            case malformedFrame = 1, frameTooLarge, unknownMessage, reservedBits, trailingBytes, badCompression,
                 decompressionLimit, unexpectedMessage, unsupportedVersion, schemaMismatch, authenticationFailed,
                 enrolmentInvalid, timeout, busy, clockSkew, storageFailure, shuttingDown, limitExceeded,
                 malformedMessage, equivocation, cursorAhead, signatureInvalid, chainGap, unsignedChanges, unknownDevice,
                 hubKeyChanged
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The code with this number, or nil for a number this version does not define (a reader
        /// treats that as ``malformedMessage``, Protocol/errors.md).
        /// - Parameter rawValue: the number on the wire.
        public init?(rawValue: UInt16) {
            guard let wrapped = Wrapped(rawValue: rawValue) else { return nil }
            self.wrapped = wrapped
        }

        /// The number on the wire.
        public var rawValue: UInt16 { wrapped.rawValue }

        /// Every code this version defines, in number order.
        public static var allCases: [Code] { Wrapped.allCases.map(Code.init) }

        /// 1: a frame length below 2, or the stream ended inside a frame.
        public static let malformedFrame = Code(.malformedFrame)
        /// 2: a frame length above the limit.
        public static let frameTooLarge = Code(.frameTooLarge)
        /// 3: a message type this protocol version does not define.
        public static let unknownMessage = Code(.unknownMessage)
        /// 4: a reserved flag bit was set.
        public static let reservedBits = Code(.reservedBits)
        /// 5: bytes after a payload's last field, or after a zlib stream's end.
        public static let trailingBytes = Code(.trailingBytes)
        /// 6: compression where it is not allowed, or a bad zlib stream or size.
        public static let badCompression = Code(.badCompression)
        /// 7: a compressed payload declaring more than the size or ratio limit.
        public static let decompressionLimit = Code(.decompressionLimit)
        /// 8: a valid message not allowed in the session's state.
        public static let unexpectedMessage = Code(.unexpectedMessage)
        /// 9: no protocol version in common.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// 10: the hello's schema version is not acceptable.
        public static let schemaMismatch = Code(.schemaMismatch)
        /// 11: the device secret is unknown, revoked or bound to another replica, or missing.
        public static let authenticationFailed = Code(.authenticationFailed)
        /// 12: the enrolment token is unknown, spent, expired or bound elsewhere.
        public static let enrolmentInvalid = Code(.enrolmentInvalid)
        /// 13: a deadline passed.
        public static let timeout = Code(.timeout)
        /// 14: the hub is at its connection cap, or the address is past its failed-hello budget.
        public static let busy = Code(.busy)
        /// 15: a pushed change is too far ahead of the hub's clock; nothing of the push was stored.
        public static let clockSkew = Code(.clockSkew)
        /// 16: the hub could not commit; nothing was stored.
        public static let storageFailure = Code(.storageFailure)
        /// 17: the hub is shutting down.
        public static let shuttingDown = Code(.shuttingDown)
        /// 18: a limit other than the frame length.
        public static let limitExceeded = Code(.limitExceeded)
        /// 19: a payload that does not decode; also how an unknown error code is read.
        public static let malformedMessage = Code(.malformedMessage)
        /// 20: a change id the hub already holds arrived with different content (a restored or
        /// copied replica reused its counters). Nothing of the push is stored; the replica recovers.
        public static let equivocation = Code(.equivocation)
        /// 21: a pull cursor above the hub's last sequence.
        public static let cursorAhead = Code(.cursorAhead)
        /// 22: a head's signature or chain does not verify, or a certificate's signature does not;
        /// nothing of the message was stored (Protocol/identity.md, "Verifying a run of changes").
        public static let signatureInvalid = Code(.signatureInvalid)
        /// 23: a run starts above the receiver's contiguous counter + 1 for its origin.
        public static let chainGap = Code(.chainGap)
        /// 24: a run of changes does not end at a signed head.
        public static let unsignedChanges = Code(.unsignedChanges)
        /// 25: no key is known for a run's origin, and no certificate for it came with the message.
        public static let unknownDevice = Code(.unknownDevice)
        /// 26: a welcome's hub key is not the one pinned at enrolment (the client's refusal; never
        /// retried).
        public static let hubKeyChanged = Code(.hubKeyChanged)

        /// The name Protocol/errors.md gives the code, e.g. `MALFORMED_MESSAGE`.
        public var name: String {
            switch wrapped {
            case .malformedFrame: "MALFORMED_FRAME"
            case .frameTooLarge: "FRAME_TOO_LARGE"
            case .unknownMessage: "UNKNOWN_MESSAGE"
            case .reservedBits: "RESERVED_BITS"
            case .trailingBytes: "TRAILING_BYTES"
            case .badCompression: "BAD_COMPRESSION"
            case .decompressionLimit: "DECOMPRESSION_LIMIT"
            case .unexpectedMessage: "UNEXPECTED_MESSAGE"
            case .unsupportedVersion: "UNSUPPORTED_VERSION"
            case .schemaMismatch: "SCHEMA_MISMATCH"
            case .authenticationFailed: "AUTHENTICATION_FAILED"
            case .enrolmentInvalid: "ENROLMENT_INVALID"
            case .timeout: "TIMEOUT"
            case .busy: "BUSY"
            case .clockSkew: "CLOCK_SKEW"
            case .storageFailure: "STORAGE_FAILURE"
            case .shuttingDown: "SHUTTING_DOWN"
            case .limitExceeded: "LIMIT_EXCEEDED"
            case .malformedMessage: "MALFORMED_MESSAGE"
            case .equivocation: "EQUIVOCATION"
            case .cursorAhead: "CURSOR_AHEAD"
            case .signatureInvalid: "SIGNATURE_INVALID"
            case .chainGap: "CHAIN_GAP"
            case .unsignedChanges: "UNSIGNED_CHANGES"
            case .unknownDevice: "UNKNOWN_DEVICE"
            case .hubKeyChanged: "HUB_KEY_CHANGED"
            }
        }

        /// The name, e.g. `CLOCK_SKEW`.
        public var description: String { name }

        /// Whether a client may retry later (with backoff) after this error.
        public var retryable: Bool {
            switch wrapped {
            // EQUIVOCATION: the next session's handshake shows the replica what the hub holds of its own
            // origin, and it recovers (Protocol/session.md), so reconnecting is the way forward.
            // CURSOR_AHEAD: the client starts its pulls again from 0 before it retries.
            // The identity codes (22–26) are not retryable: the same bytes, keys and chain would fail
            // the same way, so a person (or a re-enrolment) must change something first.
            case .timeout, .busy, .storageFailure, .shuttingDown, .equivocation, .cursorAhead: true
            default: false
            }
        }
    }
}
