import Foundation
import SyncCore
import SyncIdentity

/// What a replica's identity file holds (Protocol/identity.md, "Identity file"): its replica id,
/// its device key and, once enrolled, its device secret. Secret: never in an error, log or description.
public struct ReplicaIdentity: Sendable {
    /// The replica the file belongs to: must be the database's.
    public let replica: ReplicaID
    /// The device's Ed25519 key.
    public let deviceKey: SigningKey
    /// The device secret the hub issued at enrolment; nil until then.
    public let deviceSecret: [UInt8]?

    /// An identity.
    public init(replica: ReplicaID, deviceKey: SigningKey, deviceSecret: [UInt8]? = nil) {
        self.replica = replica
        self.deviceKey = deviceKey
        self.deviceSecret = deviceSecret
    }
}

/// What a hub's identity file holds: the hub's id and its Ed25519 key.
public struct HubIdentity: Sendable {
    /// The hub's id.
    public let hub: ReplicaID
    /// The hub key: signs certificates, the hub's own origin log and attestations.
    public let hubKey: SigningKey

    /// An identity.
    public init(hub: ReplicaID, hubKey: SigningKey) {
        self.hub = hub
        self.hubKey = hubKey
    }
}

/// The identity files beside a replica (`<replica.db>.identity`) and a hub (`<hub.db>.identity`):
/// text, one `key: value` per line in a fixed order, mode 0600. Created with `O_CREAT|O_EXCL`,
/// written, fsynced, then the directory fsynced; replaced atomically (a 0600 temporary file,
/// fsynced, renamed over, the directory fsynced). Read strictly: an unknown version, a missing,
/// extra or reordered line is refused, never guessed at.
///
/// ```swift
/// let path = IdentityFile.path(forStore: "replica.db")
/// try IdentityFile.create(ReplicaIdentity(replica: id, deviceKey: SigningKey(random: &random)), at: path)
/// let identity = try IdentityFile.readReplica(at: path, expecting: id)
/// if try !IdentityFile.isPrivate(path) { /* warn: others can read the key */ }
/// ```
public enum IdentityFile {
    /// The identity file of the store at `storePath`.
    public static func path(forStore storePath: String) -> String { storePath + ".identity" }

    static let replicaVersionLine = "caresync-identity"
    static let hubVersionLine = "caresync-hub-identity"

    /// The file's text for a replica.
    static func text(_ identity: ReplicaIdentity) -> String {
        """
        \(replicaVersionLine): 1
        replica: \(identity.replica.hex)
        device-key: \(identity.deviceKey.rawRepresentation.hexString)
        device-secret: \(identity.deviceSecret?.hexString ?? "")

        """
    }

    /// The file's text for a hub.
    static func text(_ identity: HubIdentity) -> String {
        """
        \(hubVersionLine): 1
        hub: \(identity.hub.hex)
        hub-key: \(identity.hubKey.rawRepresentation.hexString)

        """
    }

    /// Creates a replica's identity file; fails if anything is at `path`.
    /// - Throws: ``StoreError`` `.alreadyExists`, or `.identityUnreadable` when the file cannot be written.
    public static func create(_ identity: ReplicaIdentity, at path: String) throws {
        try create(text: text(identity), at: path, calls: .system)
    }

    /// Creates a hub's identity file; fails if anything is at `path`.
    /// - Throws: ``StoreError`` `.alreadyExists`, or `.identityUnreadable` when the file cannot be written.
    public static func create(_ identity: HubIdentity, at path: String) throws {
        try create(text: text(identity), at: path, calls: .system)
    }

    /// Replaces a replica's identity file atomically (a new device secret, or a new identity after a fork).
    /// - Throws: ``StoreError`` `.identityUnreadable` when it cannot be written.
    public static func replace(_ identity: ReplicaIdentity, at path: String) throws {
        try replace(text: text(identity), at: path, calls: .system)
    }

    /// Reads a replica's identity file.
    /// - Parameters:
    ///   - path: the file.
    ///   - replica: the database's replica id, which the file must name; nil to read any.
    /// - Throws: ``StoreError`` `.identityMissing` (no file), `.identityMismatch` (another replica's),
    ///   `.identityUnreadable` (not an identity file of version 1).
    public static func readReplica(at path: String, expecting replica: ReplicaID?) throws -> ReplicaIdentity {
        let values = try fields(at: path, version: replicaVersionLine, keys: ["replica", "device-key", "device-secret"])
        guard let id = ReplicaID(hex: values[0]) else { throw unreadable(path, "its replica line is not 32 hex digits") }
        if let replica, replica != id {
            throw StoreError(.identityMismatch, "\(path) is the identity of replica \(id.short), not of this replica \(replica.short)", path: path)
        }
        guard let raw = Hex.bytes(values[1]), let key = try? SigningKey(rawRepresentation: raw) else {
            throw unreadable(path, "its device-key line is not 64 hex digits")
        }
        guard let secret = values[2].isEmpty ? [] : Hex.bytes(values[2]) else { throw unreadable(path, "its device-secret line is not hex") }
        return ReplicaIdentity(replica: id, deviceKey: key, deviceSecret: values[2].isEmpty ? nil : secret)
    }

    /// Reads a hub's identity file.
    /// - Parameters:
    ///   - path: the file.
    ///   - hub: the hub database's id, which the file must name; nil to read any.
    /// - Throws: ``StoreError`` `.identityMissing`, `.identityMismatch`, `.identityUnreadable`.
    public static func readHub(at path: String, expecting hub: ReplicaID?) throws -> HubIdentity {
        let values = try fields(at: path, version: hubVersionLine, keys: ["hub", "hub-key"])
        guard let id = ReplicaID(hex: values[0]) else { throw unreadable(path, "its hub line is not 32 hex digits") }
        if let hub, hub != id {
            throw StoreError(.identityMismatch, "\(path) is the identity of hub \(id.short), not of this hub \(hub.short)", path: path)
        }
        guard let raw = Hex.bytes(values[1]), let key = try? SigningKey(rawRepresentation: raw) else {
            throw unreadable(path, "its hub-key line is not 64 hex digits")
        }
        return HubIdentity(hub: id, hubKey: key)
    }

    /// Whether only the file's owner can read or write it (`mode & 0o077 == 0`).
    /// - Throws: ``StoreError`` `.identityMissing` when there is no file.
    public static func isPrivate(_ path: String) throws -> Bool {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw StoreError(.identityMissing, "no file at \(path)", path: path)
        }
        return status.st_mode & 0o077 == 0
    }

    // MARK: reading

    private static func unreadable(_ path: String, _ why: String) -> StoreError {
        StoreError(.identityUnreadable, "\(path) is not a CareSync identity file of version 1: \(why)", path: path)
    }

    /// The values of `keys`, in that order, after the version line `version: 1`.
    private static func fields(at path: String, version: String, keys: [String]) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.identityMissing, "no identity file at \(path)", path: path)
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw unreadable(path, "it cannot be read as UTF-8 text")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let first = lines.first, let found = value(of: version, in: first) else {
            throw unreadable(path, "its first line is not \(version): 1")
        }
        guard found == "1" else { throw unreadable(path, "it is version \(found.prefix(8)), this program reads version 1") }
        guard lines.count == keys.count + 1 else { throw unreadable(path, "it has \(lines.count) lines, not \(keys.count + 1)") }
        return try zip(keys, lines.dropFirst()).enumerated().map { index, pair in
            guard let value = value(of: pair.0, in: pair.1) else { throw unreadable(path, "line \(index + 2) is not \(pair.0): …") }
            return value
        }
    }

    /// The value of `key: value` (or an empty `key:`), nil if the line is another key's.
    private static func value(of key: String, in line: String) -> String? {
        if line == key + ":" { return "" }
        guard line.hasPrefix(key + ": ") else { return nil }
        return String(line.dropFirst(key.count + 2))
    }

    // MARK: writing

    /// The system calls that make a write durable, a seam so a test can see their order.
    package struct Calls: Sendable {
        /// `fsync(descriptor)` of `path` (a file or a directory).
        package var fsync: @Sendable (_ descriptor: Int32, _ path: String) -> Int32
        /// `rename(from, to)`.
        package var rename: @Sendable (_ from: String, _ to: String) -> Int32

        package init(fsync: @escaping @Sendable (Int32, String) -> Int32, rename: @escaping @Sendable (String, String) -> Int32) {
            self.fsync = fsync
            self.rename = rename
        }

        /// The real ones.
        package static let system = Calls(fsync: { descriptor, _ in Foundation.fsync(descriptor) },
                                          rename: { from, to in Foundation.rename(from, to) })
    }

    package static func create(text: String, at path: String, calls: Calls) throws {
        if FileManager.default.fileExists(atPath: path) {
            throw StoreError(.alreadyExists, "an identity file already exists at \(path)", path: path)
        }
        try writeNew(text: text, at: path, calls: calls)
        try syncDirectory(of: path, calls: calls)
    }

    package static func replace(text: String, at path: String, calls: Calls) throws {
        let temporary = path + ".tmp"
        // A temporary file a crash left behind holds nothing the real file lacks.
        _ = unlink(temporary)
        try writeNew(text: text, at: temporary, calls: calls)
        guard calls.rename(temporary, path) == 0 else {
            let failure = errno
            _ = unlink(temporary)
            throw failed(path, "renamed over", failure)
        }
        try syncDirectory(of: path, calls: calls)
    }

    /// `O_CREAT|O_EXCL` with mode 0600, every byte written, fsynced, closed.
    private static func writeNew(text: String, at path: String, calls: Calls) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let failure = errno
            if failure == EEXIST { throw StoreError(.alreadyExists, "a file already exists at \(path)", path: path) }
            throw failed(path, "created", failure)
        }
        var bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeMutableBytes { Foundation.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else {
                let failure = errno
                close(descriptor)
                _ = unlink(path)
                throw failed(path, "written", failure)
            }
            written += result
        }
        // The secret must not linger in this process's heap longer than needed.
        for index in bytes.indices { bytes[index] = 0 }
        guard calls.fsync(descriptor, path) == 0 else {
            let failure = errno
            close(descriptor)
            _ = unlink(path)
            throw failed(path, "fsynced", failure)
        }
        close(descriptor)
    }

    /// Fsyncs the directory holding `path`, so its new name survives a power cut.
    private static func syncDirectory(of path: String, calls: Calls) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = directory.isEmpty ? "." : directory
        let descriptor = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw failed(name, "opened", errno) }
        defer { close(descriptor) }
        guard calls.fsync(descriptor, name) == 0 else { throw failed(name, "fsynced", errno) }
    }

    private static func failed(_ path: String, _ what: String, _ code: Int32) -> StoreError {
        StoreError(.identityUnreadable, "the identity file \(path) could not be \(what): \(String(cString: strerror(code)))", path: path)
    }
}

/// Reads lowercase hex (written with SyncCore's `hexString`), for the identity files.
enum Hex {
    static func bytes(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(of: utf8[index]), let low = value(of: utf8[index + 1]) else { return nil }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }

    /// Lowercase digits only: the files are written so, and read strictly.
    private static func value(of digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
