import SyncCore

/// Why a bundle was refused. Nothing of a refused bundle is applied.
///
/// The shape of GRDB's `DatabaseError` and NIO's `FileSystemError`: a stable `code` to match on
/// (a struct, so codes can be added without breaking a `switch`), the context as data (`bytes`,
/// `version`, `offset`) and the decoding error underneath as `cause`. No record contents appear in
/// it: a malformed bundle is described by its offset and the decoder's code, never by its bytes.
///
/// ```swift
/// do {
///     let bundle = try ChangeBundle.decode(bytes)
/// } catch let error as BundleError where error.code == .checksumMismatch {
///     // truncated or altered in transit: ask the sender for the file again
/// }
/// ```
public struct BundleError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable code, e.g. `BUNDLE_CHECKSUM`; match on the static members, show `name`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable {
            case notABundle = "NOT_A_BUNDLE"
            case tooLarge = "BUNDLE_TOO_LARGE"
            case checksumMismatch = "BUNDLE_CHECKSUM"
            case unsupportedVersion = "BUNDLE_VERSION"
            case malformed = "BUNDLE_MALFORMED"
            case otherTeam = "BUNDLE_OTHER_TEAM"
        }

        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// Wrong magic, or shorter than the smallest bundle.
        public static let notABundle = Code(.notABundle)
        /// Larger than `ChangeBundle.maxBytes`.
        public static let tooLarge = Code(.tooLarge)
        /// The SHA-256 at the end does not match: truncated or altered.
        public static let checksumMismatch = Code(.checksumMismatch)
        /// A format version this code does not read.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// The checksum matched, yet the contents do not decode.
        public static let malformed = Code(.malformed)
        /// Its sender's certificate names another team than the receiver's: a replica holds only
        /// its own team's young people (Protocol/scope.md).
        public static let otherTeam = Code(.otherTeam)

        /// The code as shown to people and scripts, e.g. `BUNDLE_CHECKSUM`.
        public var name: String { kind.rawValue }
        /// The code's name.
        public var description: String { name }
    }

    /// What was wrong.
    public let code: Code
    /// The bundle's size, for `tooLarge`.
    public let bytes: Int?
    /// The bundle's format version, for `unsupportedVersion`.
    public let version: UInt16?
    /// The decoding error, for `malformed`: its code and the offset in the bundle where decoding
    /// stopped (`ByteDecodingError.offset`).
    public let cause: ByteDecodingError?

    private init(_ code: Code, bytes: Int? = nil, version: UInt16? = nil, cause: ByteDecodingError? = nil) {
        self.code = code
        self.bytes = bytes
        self.version = version
        self.cause = cause
    }

    /// Wrong magic, or too short to be a bundle.
    public static let notABundle = BundleError(.notABundle)
    /// The SHA-256 at the end does not match the bytes before it.
    public static let checksumMismatch = BundleError(.checksumMismatch)

    /// A bundle of `bytes` bytes, over `ChangeBundle.maxBytes`.
    public static func tooLarge(bytes: Int) -> BundleError { BundleError(.tooLarge, bytes: bytes) }

    /// A bundle of format `version`, which this code does not read.
    public static func unsupportedVersion(_ version: UInt16) -> BundleError { BundleError(.unsupportedVersion, version: version) }

    /// Contents that do not decode although the checksum matched.
    public static func malformed(_ cause: ByteDecodingError) -> BundleError { BundleError(.malformed, cause: cause) }

    /// A bundle from a replica of another team.
    public static let otherTeam = BundleError(.otherTeam)

    /// One line for a person, without record contents.
    public var description: String {
        switch code {
        case .notABundle: return "not a CareSync bundle (wrong magic or too short); nothing applied"
        case .tooLarge: return "bundle of \(bytes ?? 0) bytes exceeds the \(ChangeBundle.maxBytes) byte limit; nothing applied"
        case .checksumMismatch: return "bundle checksum does not match: the file is truncated or corrupt; nothing applied"
        case .unsupportedVersion:
            let version = version ?? 0
            return "bundle format version \(version) is not supported (this program reads \(ChangeBundle.formatVersion)"
                + (version < ChangeBundle.formatVersion
                    ? ", signed: export it again from a replica upgraded to this version" : "")
                + "); nothing applied"
        case .otherTeam:
            return "the bundle comes from a replica of another team: a replica holds only its own team's young people; nothing applied"
        default:
            return "bundle is malformed (\(cause.map { "\($0)" } ?? "no detail")); nothing applied"
        }
    }
}
