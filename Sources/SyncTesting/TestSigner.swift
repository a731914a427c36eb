import SyncCore
import SyncIdentity

/// Device keys and signed heads for tests that push to a hub store: each origin's key is made from
/// its id (the same in every test), and a signer remembers how far it has chained each origin, so
/// consecutive pushes continue the chain (Protocol/identity.md, "The chain", "Signed heads").
///
/// ```swift
/// var signer = TestSigner()
/// let heads = signer.heads(changes)                      // a head at each origin's last change
/// try hub.redeemEnrolmentToken(token, replica: a, deviceKey: TestSigner.publicKey(a), …)
/// ```
public struct TestSigner: Sendable {
    /// Per origin: the last counter chained and its chain hash.
    public private(set) var chains: [ReplicaID: (counter: UInt64, chain: [UInt8])] = [:]

    /// A signer that has chained nothing yet.
    public init() {}

    /// The device key of `origin`: from a digest of its id, so the same in every test.
    public static func key(_ origin: ReplicaID) -> SigningKey {
        let seed = OriginChain.digest(of: Array("test-device-\(origin.hex)".utf8))
        guard let key = try? SigningKey(rawRepresentation: seed) else { preconditionFailure("a 32-byte seed is always an Ed25519 key") }
        return key
    }

    /// The public key of `origin`'s test device key.
    public static func publicKey(_ origin: ReplicaID) -> [UInt8] { key(origin).publicKey }

    /// Chains `changes` on from what this signer chained before (from `chain(0)` for a run that
    /// starts at 1), and signs a head at each origin's last change, at every counter in `alsoAt` and,
    /// with `atBoundaries`, at every change followed in `changes` by its origin's next change in
    /// another scope (Protocol/scope.md, "Boundary heads"), with the origin's test key unless `key`
    /// is given.
    /// - Returns: the heads, ascending by origin then counter.
    public mutating func heads(_ changes: [Change], alsoAt: Set<UInt64> = [], atBoundaries: Bool = false, key: SigningKey? = nil) -> [SignedHead] {
        var heads: [SignedHead] = []
        var last: [ReplicaID: UInt64] = [:]
        var scopes: [ChangeID: String] = [:]
        for change in changes {
            last[change.id.replica] = change.id.counter
            if atBoundaries { scopes[change.id] = change.scope }
        }
        for change in changes {
            let origin = change.id.replica
            let previous = change.id.counter == 1 ? OriginChain.genesis(of: origin) : chains[origin]?.chain ?? OriginChain.genesis(of: origin)
            let chain = OriginChain.next(after: previous, canonicalBytes: change.canonicalBytes)
            chains[origin] = (change.id.counter, chain)
            let boundary = atBoundaries && change.id.counter < .max
                && Checkpoints.isBoundary(previousScope: change.scope, nextScope: scopes[ChangeID(replica: origin, counter: change.id.counter + 1)] ?? change.scope)
            if last[origin] == change.id.counter || alsoAt.contains(change.id.counter) || boundary {
                heads.append((key ?? Self.key(origin)).head(origin: origin, counter: change.id.counter, chain: chain))
            }
        }
        return heads.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) }
    }
}
