import Crypto
import SyncCore

/// A file of changes carried from one replica to another (USB stick, e-mail) when there is no
/// network path to the hub.
///
/// Layout (all integers big-endian or canonical LEB128 varints, as in `Protocol/README.md`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `CSBUNDLE` |
/// | 8 | 2 | format version (3: signed; 2 was unsigned row edits, 1 held single field writes: both refused) |
/// | 10 | 16 | sender replica id |
/// | 26 | varint | sender schema version |
/// | … | … | sender's version vector (what it has seen; the receiver remembers it) |
/// | … | varint | change count, then each change |
/// | … | … | provenance: the list of signed heads, then the list of certificates (as in a push) |
/// | end−32 | 32 | SHA-256 of every byte before it |
///
/// The checksum covers everything, so a truncated or damaged file is refused whole and nothing
/// is applied. It authenticates nothing: a file edited by hand with its checksum recomputed is
/// refused by the signed heads instead (Protocol/identity.md), when it is imported.
public struct ChangeBundle: Equatable, Sendable {
    /// The first 8 bytes of every bundle, `CSBUNDLE`.
    public static let magic: [UInt8] = Array("CSBUNDLE".utf8)
    /// The format this code writes and the only one it reads.
    public static let formatVersion: UInt16 = 3
    /// Refuse absurd files before reading them into memory.
    public static let maxBytes = 1 << 30

    /// The replica that wrote the bundle.
    public let sender: ReplicaID
    /// The sender's schema version.
    public let schemaVersion: Int
    /// What the sender had seen when it wrote the bundle; the receiver remembers it, so its next
    /// export for the sender carries only what the sender lacks.
    public let senderKnowledge: VersionVector
    /// The changes, in the sender's log order.
    public let changes: [Change]
    /// The signed heads of the changes' runs and the certificates of the origins in them.
    public let provenance: Provenance

    /// - Parameters:
    ///   - sender: The writing replica.
    ///   - schemaVersion: Its schema version.
    ///   - senderKnowledge: Its version vector.
    ///   - changes: The changes to carry.
    ///   - provenance: Their runs' signed heads, and certificates.
    public init(sender: ReplicaID, schemaVersion: Int, senderKnowledge: VersionVector, changes: [Change], provenance: Provenance = .none) {
        self.sender = sender
        self.schemaVersion = schemaVersion
        self.senderKnowledge = senderKnowledge
        self.changes = changes
        self.provenance = provenance
    }

    /// The bundle's bytes, checksum included (the layout above).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 64 + changes.count * 64)
        writer.raw(Self.magic)
        writer.byte(UInt8(Self.formatVersion >> 8))
        writer.byte(UInt8(Self.formatVersion & 0xFF))
        writer.replica(sender)
        writer.varint(UInt64(schemaVersion))
        senderKnowledge.encode(into: &writer)
        writer.varint(UInt64(changes.count))
        for change in changes { change.encode(into: &writer) }
        provenance.encode(into: &writer)
        let checksum = Array(SHA256.hash(data: writer.bytes))
        writer.raw(checksum)
        return writer.bytes
    }

    /// Decodes and verifies a bundle: the size, the magic, the checksum, the format version, then
    /// every change.
    ///
    /// - Parameter bytes: A whole bundle.
    /// - Returns: The bundle.
    /// - Throws: `BundleError`; nothing of a refused bundle is returned.
    public static func decode(_ bytes: [UInt8]) throws(BundleError) -> ChangeBundle {
        guard bytes.count <= maxBytes else { throw .tooLarge(bytes: bytes.count) }
        guard bytes.count >= magic.count + 2 + 16 + 32, Array(bytes.prefix(magic.count)) == magic else {
            throw .notABundle
        }
        let body = Array(bytes.dropLast(32))
        guard SHA256.hash(data: body).elementsEqual(bytes.suffix(32)) else { throw .checksumMismatch }
        var reader = ByteReader(body)
        do {
            _ = try reader.raw(count: magic.count)
            let version = UInt16(try reader.byte()) << 8 | UInt16(try reader.byte())
            guard version == formatVersion else { throw BundleError.unsupportedVersion(version) }
            let sender = try reader.replica()
            let schemaVersion = try reader.varint()
            let knowledge = try VersionVector.decode(from: &reader)
            var changes: [Change] = []
            let count = try reader.count(minimumItemSize: Change.minimumEncodedSize)
            changes.reserveCapacity(count)
            for _ in 0..<count { changes.append(try Change.decode(from: &reader)) }
            let provenance = try Provenance.decode(from: &reader)
            try reader.expectEnd()
            return ChangeBundle(sender: sender, schemaVersion: Int(clamping: schemaVersion), senderKnowledge: knowledge,
                                changes: changes, provenance: provenance)
        } catch let error as ByteDecodingError {
            throw .malformed(error)
        } catch let error as BundleError {
            throw error
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }
}
