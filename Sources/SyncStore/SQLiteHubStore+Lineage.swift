import Foundation
import SyncCore

/// The side file `<hub.db>.lineage` (Protocol/identity.md, "Incarnation"): the incarnation and
/// the log head the hub had at its last start or shutdown. A database whose log head is below the
/// recorded one (or whose incarnation is another) was put back from an older copy: the replicas
/// that synced since hold changes it lacks, so it takes a new incarnation and they push again.
struct HubLineage: Equatable {
    let incarnation: [UInt8]
    let head: UInt64

    static func path(for database: String) -> String { database + ".lineage" }

    /// The recorded lineage, or nil when there is none (a new hub, or one made before lineage files).
    /// An unreadable file reads as none: the next open writes it again, and a missing record can
    /// only miss a restore, never invent one.
    static func read(database: String) -> HubLineage? {
        guard let text = try? String(contentsOfFile: path(for: database), encoding: .utf8) else { return nil }
        var incarnation: [UInt8]?
        var head: UInt64?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "incarnation": incarnation = HexBytes.decode(parts[1])
            case "head": head = UInt64(parts[1])
            default: continue
            }
        }
        guard let incarnation, incarnation.count == SQLiteHubStore.incarnationSize, let head else { return nil }
        return HubLineage(incarnation: incarnation, head: head)
    }

    /// Whether a database at `incarnation` with log head `head` continues this lineage.
    func continued(by incarnation: [UInt8], head: UInt64) -> Bool {
        incarnation == self.incarnation && head >= self.head
    }

    /// Replaces the file durably (a temporary file synced, renamed over, the directory synced).
    func write(database: String) throws {
        let text = "caresync-lineage: 1\nincarnation: \(incarnation.hexString)\nhead: \(head)\n"
        try DurableSideFile.create(Self.path(for: database), contents: Array(text.utf8), exclusive: false)
    }
}

/// Lowercase hex text to bytes.
enum HexBytes {
    static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}

/// Small files beside a store, written so that a power cut leaves the old or the new contents:
/// owner-only (0600), synced, then their directory synced.
enum DurableSideFile {
    /// Writes `contents` at `path`. `exclusive`: create only (refused if something is there);
    /// otherwise a temporary file is renamed over the old one.
    static func create(_ path: String, contents: [UInt8], exclusive: Bool) throws {
        let target = exclusive ? path : path + ".tmp"
        let flags = O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC)
        let descriptor = open(target, flags, 0o600)
        guard descriptor >= 0 else { throw failure("cannot create", target) }
        let written = contents.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == contents.count, synced else { throw failure("cannot write", target) }
        if !exclusive {
            guard rename(target, path) == 0 else { throw failure("cannot replace", path) }
        }
        let directory = (path as NSString).deletingLastPathComponent
        let handle = open(directory.isEmpty ? "." : directory, O_RDONLY)
        guard handle >= 0 else { throw failure("cannot sync the directory of", path) }
        defer { close(handle) }
        guard fsync(handle) == 0 else { throw failure("cannot sync the directory of", path) }
    }

    private static func failure(_ what: String, _ path: String) -> StoreError {
        StoreError(.database, "\(what) \(path) (errno \(errno))", path: path)
    }
}
