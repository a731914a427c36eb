/// Error codes on the wire (Protocol/errors.md). Stable numbers: a peer acts on the code, never
/// on the message text, which is for people and carries no record contents.
public enum WireErrorCode: UInt16, Sendable, CaseIterable {
    case malformedFrame = 1
    case frameTooLarge = 2
    case unknownMessage = 3
    case reservedBits = 4
    case trailingBytes = 5
    case badCompression = 6
    case decompressionLimit = 7
    case unexpectedMessage = 8
    case unsupportedVersion = 9
    case schemaMismatch = 10
    case authenticationFailed = 11
    case enrolmentInvalid = 12
    case timeout = 13
    case busy = 14
    case clockSkew = 15
    case storageFailure = 16
    case shuttingDown = 17
    case limitExceeded = 18
    case malformedMessage = 19
    /// A change id the hub already holds arrived with different content (a restored or copied
    /// replica reused its counters). Nothing of the push is stored; the replica recovers.
    case equivocation = 20

    public var name: String {
        switch self {
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
        }
    }

    /// Whether a client may retry later (with backoff) after this error.
    public var retryable: Bool {
        switch self {
        // EQUIVOCATION: the next session's handshake shows the replica what the hub holds of its own
        // origin, and it recovers (Protocol/session.md), so reconnecting is the way forward.
        case .timeout, .busy, .storageFailure, .shuttingDown, .equivocation: true
        default: false
        }
    }
}

/// A decoding or protocol failure, with the code to send the peer.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: WireErrorCode
    public let detail: String

    public init(_ code: WireErrorCode, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(code.name): \(detail)" }
}
