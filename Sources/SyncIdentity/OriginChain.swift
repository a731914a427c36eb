import Crypto
import SyncCore

/// The hash chain of an origin's log (Protocol/identity.md, "The chain"):
///
/// ```text
/// chain(0) = SHA-256("caresync/origin-log/v1" || origin)
/// chain(c) = SHA-256(chain(c − 1) || canonical bytes of change c)
/// ```
///
/// ```swift
/// var chain = OriginChain.genesis(of: origin)
/// for change in changes { chain = OriginChain.next(after: chain, canonicalBytes: change.canonicalBytes) }
/// ```
public enum OriginChain {
    /// The domain-separation prefix of `chain(0)`.
    static let genesisLabel = Array("caresync/origin-log/v1".utf8)

    /// `chain(0)` of `origin`'s log: 32 bytes.
    public static func genesis(of origin: ReplicaID) -> [UInt8] {
        var writer = ByteWriter(capacity: genesisLabel.count + 16)
        writer.raw(genesisLabel)
        writer.replica(origin)
        return Array(SHA256.hash(data: writer.bytes))
    }

    /// `chain(c)` from `chain(c − 1)` and change `c`'s canonical bytes: 32 bytes.
    /// - Parameters:
    ///   - previous: `chain(c − 1)`, 32 bytes.
    ///   - canonicalBytes: change `c`'s canonical encoding.
    public static func next(after previous: [UInt8], canonicalBytes: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        hasher.update(data: canonicalBytes)
        return Array(hasher.finalize())
    }

    /// The SHA-256 of one change's canonical bytes: how evidence names a version without its contents.
    public static func digest(of canonicalBytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: canonicalBytes)) }
}
