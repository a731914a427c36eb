import SyncCore

/// The key an origin's heads must verify with.
public struct OriginKey: Hashable, Sendable {
    /// The Ed25519 public key: the device's, or the hub's for the hub's own origin and the catalogue publisher.
    public let publicKey: [UInt8]
    /// Hub attestations (signer 1) are accepted up to this counter; 0: none.
    public let attestedThrough: UInt64
    /// Whether `publicKey` is the hub key (the origin is hub-keyed, and needs no certificate).
    public let isHubKey: Bool

    /// An origin's key.
    public init(publicKey: [UInt8], attestedThrough: UInt64 = 0, isHubKey: Bool = false) {
        self.publicKey = publicKey
        self.attestedThrough = attestedThrough
        self.isHubKey = isHubKey
    }

    /// The key a verified certificate vouches for.
    public init(certificate: DeviceCertificate) {
        self.init(publicKey: certificate.publicKey, attestedThrough: certificate.attestedThrough)
    }
}

/// What a store holds that verification reads: the verified parts of each origin's log (a prefix,
/// or segments where it holds only part: Protocol/scope.md) and the keys it knows. Errors a lookup throws (a database failure) pass through ``RunVerifier/verify(_:canonicalBytes:provenance:ledger:)``.
public protocol ChainLedger {
    /// `chain(counter)` of `origin`, if the store holds change `counter` of it with its chain.
    func heldChain(origin: ReplicaID, counter: UInt64) throws -> [UInt8]?
    /// The canonical bytes of change `counter` of `origin`, if held.
    func heldBytes(origin: ReplicaID, counter: UInt64) throws -> [UInt8]?
    /// The held head of `origin` with the lowest counter ≥ `counter`, if any (an equivocation's evidence).
    func heldHead(origin: ReplicaID, covering counter: UInt64) throws -> SignedHead?
    /// The key `origin`'s heads verify with, if known (a hub-keyed origin, or a held certificate).
    func key(for origin: ReplicaID) throws -> OriginKey?
}

/// The outcome of verifying one message's changes.
public struct VerifiedChanges: Sendable {
    /// `chain(counter)` of each change, in the order given: what the store keeps beside it.
    public let chains: [[UInt8]]
    /// Per change, in the order given: false when the store already held these very bytes.
    public let isNew: [Bool]
    /// The heads that verified, for the store to keep and relay: every head inside a run, and each
    /// anchor that was used and is signed by the origin's own key (worth relaying: it lets another
    /// receiver start the same run). An attestation used as an anchor is not kept: the hub signs one
    /// for any receiver that needs it. Ascending by counter within each origin.
    public let heads: [SignedHead]
    /// The message's certificates that verified under the pinned hub key, for the store to keep.
    public let certificates: [DeviceCertificate]
}

/// Protocol/identity.md, "Verifying a run of changes", as Protocol/scope.md ("Verifying part of an
/// origin's log") amends it, for one message, pure: the store supplies what it holds through a
/// ``ChainLedger``. One SHA-256 per new change, one Ed25519 verification per head, anchor and
/// certificate. Any failure refuses the whole message.
///
/// An origin's changes in a message must ascend (other origins' may come between them: the result
/// keeps the message's order) and are split into maximal runs of consecutive counters, each
/// verified on its own. A run `a…b` starts from `chain(0)` when `a = 1`, else from the held
/// `chain(a − 1)`, else from an **anchor**: the message's head at `a − 1`, which must verify (the
/// origin's key, or the hub key for an attestation, at any counter: an anchor only says where the
/// run starts). A held chain wins: an anchor is then neither checked nor kept. The run still ends
/// at a head that verifies as identity.md says (an attestation only within `attestedThrough`), so
/// an anchor cannot make other bytes pass for the origin's.
public struct RunVerifier: Sendable {
    /// The pinned hub key: verifies certificates and hub attestations. Nil when none is pinned yet
    /// (certificates in a message are then not usable, and attestations never verify).
    public let hubKey: [UInt8]?

    /// A verifier trusting `hubKey` as the hub's.
    public init(hubKey: [UInt8]?) { self.hubKey = hubKey }

    /// Verifies `changes` (the changes of one push, batch, recovered answer or bundle) against
    /// `provenance` and what `ledger` holds.
    /// - Parameters:
    ///   - changes: the message's changes; each origin's ascending, as one run or several with gaps
    ///     between them.
    ///   - canonicalBytes: each change's canonical bytes, in the same order (computed once by the caller).
    ///   - provenance: the message's heads (inside runs, and anchors) and certificates.
    ///   - ledger: the receiver's store.
    /// - Returns: the chains, new-versus-held flags, heads and certificates to keep.
    /// - Throws: ``IdentityError`` (``IdentityError/Code/unknownDevice``, ``IdentityError/Code/chainGap``
    ///   for a run with neither a held `chain(a − 1)` nor an anchor, or an origin's changes not ascending,
    ///   ``IdentityError/Code/signatureInvalid`` for a head or anchor that does not verify,
    ///   ``IdentityError/Code/unsignedChanges``, ``IdentityError/Code/equivocation``), or whatever `ledger` throws.
    public func verify(_ changes: [Change], canonicalBytes: [[UInt8]], provenance: Provenance,
                       ledger: some ChainLedger) throws -> VerifiedChanges {
        precondition(changes.count == canonicalBytes.count, "one canonical encoding per change")
        let vouched = try verifiedCertificates(provenance.certificates)
        var byOrigin: [ReplicaID: [Int]] = [:]
        var origins: [ReplicaID] = []
        for (index, change) in changes.enumerated() {
            if byOrigin[change.id.replica] == nil { origins.append(change.id.replica) }
            byOrigin[change.id.replica, default: []].append(index)
        }
        // Provenance keeps heads ascending by origin, then counter: each origin's are ascending.
        var headsByOrigin: [ReplicaID: [SignedHead]] = [:]
        for head in provenance.heads { headsByOrigin[head.origin, default: []].append(head) }

        var chains = [[UInt8]](repeating: [], count: changes.count)
        var isNew = [Bool](repeating: true, count: changes.count)
        var kept: [SignedHead] = []
        for origin in origins {
            let indices = byOrigin[origin] ?? []
            guard let key = try ledger.key(for: origin) ?? vouched[origin].map(OriginKey.init(certificate:)) else {
                throw IdentityError(.unknownDevice, "no key is known for origin \(origin.short) and no certificate for it came with the changes",
                                    origin: origin, counter: changes[indices[0]].id.counter)
            }
            let heads = headsByOrigin[origin] ?? []
            // Every run's start first, so a gap is CHAIN_GAP whatever the runs' heads are.
            var chained: [(run: [Int], computed: ChainedRun)] = []
            var previousEnd: UInt64?
            for run in try Self.runs(indices, of: origin, changes: changes) {
                let first = changes[run[0]].id.counter
                let start = try startChain(of: origin, at: first, after: previousEnd, heads: heads, key: key, ledger: ledger)
                chained.append((run, try chainRun(run, of: origin, from: start, changes: changes, canonicalBytes: canonicalBytes, ledger: ledger)))
                previousEnd = changes[run[run.count - 1]].id.counter
            }
            var originHeads: [SignedHead] = []
            for (run, computed) in chained {
                for (offset, index) in run.enumerated() {
                    chains[index] = computed.chains[offset]
                    isNew[index] = computed.isNew[offset]
                }
                let runHeads = try verifyHeads(heads, of: origin, from: changes[run[0]].id.counter, chains: computed.chains, key: key)
                if let diverged = computed.divergence {
                    // The whole run's heads verified: the other version is signed too.
                    let received = runHeads.first { $0.counter >= diverged.change.counter } ?? runHeads[runHeads.count - 1]
                    let held = try ledger.heldHead(origin: origin, covering: diverged.change.counter)
                    throw IdentityError(.equivocation, "change \(diverged.change) arrived, signed, with other bytes than the version held",
                                        origin: origin, counter: diverged.change.counter,
                                        evidence: IdentityError.Equivocation(change: diverged.change, heldDigest: diverged.held,
                                                                             receivedDigest: diverged.received, heldHead: held, receivedHead: received))
                }
                if let anchor = computed.anchor, anchor.signer == .origin { originHeads.append(anchor) }
                originHeads += runHeads
            }
            kept += originHeads
        }
        return VerifiedChanges(chains: chains, isNew: isNew, heads: kept, certificates: Array(vouched.values).sorted { $0.replica < $1.replica })
    }

    /// One origin's changes (indices into `changes`, in the message's order) split into maximal runs
    /// of consecutive counters. They must ascend: stores append an origin's changes in the order given.
    private static func runs(_ indices: [Int], of origin: ReplicaID, changes: [Change]) throws(IdentityError) -> [[Int]] {
        var runs: [[Int]] = []
        for index in indices {
            let counter = changes[index].id.counter
            if let last = runs.last?.last {
                let previous = changes[last].id.counter
                guard counter > previous else {
                    throw IdentityError(.chainGap, "origin \(origin.short)'s changes go from \(previous) to \(counter): they must ascend",
                                        origin: origin, counter: counter, expectedCounter: previous + 1)
                }
                if counter == previous + 1 {
                    runs[runs.count - 1].append(index)
                    continue
                }
            }
            runs.append([index])
        }
        return runs
    }

    /// Where a run starting at `first` starts from: `chain(0)`, the held `chain(first − 1)`, or the
    /// message's anchor at `first − 1` (`after`: the end of the origin's previous run in the message).
    private func startChain(of origin: ReplicaID, at first: UInt64, after previousEnd: UInt64?, heads: [SignedHead], key: OriginKey,
                            ledger: some ChainLedger) throws -> (chain: [UInt8], anchor: SignedHead?) {
        if first == 1 { return (OriginChain.genesis(of: origin), nil) }
        if let held = try ledger.heldChain(origin: origin, counter: first - 1) { return (held, nil) }
        guard let anchor = Self.head(at: first - 1, in: heads) else {
            if let previousEnd {
                throw IdentityError(.chainGap, "origin \(origin.short)'s changes go from \(previousEnd) to \(first), with no chain held at \(first - 1) and no anchor there",
                                    origin: origin, counter: first, expectedCounter: previousEnd + 1)
            }
            throw IdentityError(.chainGap, "origin \(origin.short)'s run starts at \(first), past the changes held of it, with no anchor at \(first - 1)",
                                origin: origin, counter: first)
        }
        let verifies = switch anchor.signer {
        case .origin: anchor.verifies(with: key.publicKey)
        // No attestedThrough limit: the run's end head is what vouches for its bytes.
        case .hubAttestation: hubKey.map { anchor.verifies(with: $0) } == true
        }
        guard verifies else {
            throw IdentityError(.signatureInvalid, "the anchor of origin \(origin.short) at \(anchor.counter) does not verify",
                                origin: origin, counter: anchor.counter)
        }
        return (anchor.chain, anchor)
    }

    /// The head at `counter` in `heads` (ascending by counter), by binary search.
    private static func head(at counter: UInt64, in heads: [SignedHead]) -> SignedHead? {
        let index = lowerBound(counter, in: heads)
        return index < heads.count && heads[index].counter == counter ? heads[index] : nil
    }

    /// The index of the first head of `heads` (ascending by counter) at or above `counter`.
    private static func lowerBound(_ counter: UInt64, in heads: [SignedHead]) -> Int {
        var low = 0
        var high = heads.count
        while low < high {
            let middle = (low + high) / 2
            if heads[middle].counter < counter { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The message's certificates that verify under the hub key, by replica. One that does not
    /// verify refuses the message; without a pinned key none is usable.
    private func verifiedCertificates(_ certificates: [DeviceCertificate]) throws(IdentityError) -> [ReplicaID: DeviceCertificate] {
        guard let hubKey else { return [:] }
        var result: [ReplicaID: DeviceCertificate] = [:]
        for certificate in certificates {
            guard certificate.verifies(with: hubKey) else {
                throw IdentityError(.signatureInvalid, "the certificate of replica \(certificate.replica.short) is not signed by the hub key",
                                    origin: certificate.replica)
            }
            result[certificate.replica] = certificate
        }
        return result
    }

    /// A change held with other bytes: the id, and both versions' digests.
    private struct Divergence {
        let change: ChangeID
        let held: [UInt8]
        let received: [UInt8]
    }

    /// One run's computed chains, which of its changes are new, the first held change with other
    /// bytes, and the anchor it started from (if it needed one).
    private struct ChainedRun {
        var chains: [[UInt8]] = []
        var isNew: [Bool] = []
        var divergence: Divergence?
        var anchor: SignedHead?
    }

    /// Step 3: the chain over one run of consecutive counters, from `start` (step 2).
    private func chainRun(_ run: [Int], of origin: ReplicaID, from start: (chain: [UInt8], anchor: SignedHead?), changes: [Change],
                          canonicalBytes: [[UInt8]], ledger: some ChainLedger) throws -> ChainedRun {
        var result = ChainedRun(anchor: start.anchor)
        result.chains.reserveCapacity(run.count)
        result.isNew.reserveCapacity(run.count)
        var previous = start.chain
        // Held changes after new ones (a gap filled below a held segment): their held chains are
        // verified, so the new changes must lead to them. Computed and compared, never taken, or
        // forged changes before a held segment would pass on the held segment's heads.
        var computing = false
        for index in run {
            let counter = changes[index].id.counter
            let bytes = canonicalBytes[index]
            var chain: [UInt8]?
            var held = false
            // Past a divergence, held chains are the other version's: compute.
            if result.divergence == nil, let heldBytes = try ledger.heldBytes(origin: origin, counter: counter) {
                if heldBytes == bytes {
                    held = true
                    chain = try ledger.heldChain(origin: origin, counter: counter)
                    if computing, let heldChain = chain {
                        chain = OriginChain.next(after: previous, canonicalBytes: bytes)
                        guard chain == heldChain else {
                            throw IdentityError(.signatureInvalid, "origin \(origin.short)'s changes before \(counter) do not lead to the chain held there",
                                                origin: origin, counter: counter)
                        }
                    }
                } else {
                    result.divergence = Divergence(change: changes[index].id, held: OriginChain.digest(of: heldBytes),
                                                   received: OriginChain.digest(of: bytes))
                }
            }
            if chain == nil { computing = true }
            previous = chain ?? OriginChain.next(after: previous, canonicalBytes: bytes)
            result.chains.append(previous)
            result.isNew.append(!held)
        }
        return result
    }

    /// Step 4: every head of the run matches the computed chain and verifies with the right key;
    /// the run ends at one. Heads outside the run are neither checked nor kept.
    private func verifyHeads(_ heads: [SignedHead], of origin: ReplicaID, from first: UInt64, chains: [[UInt8]],
                             key: OriginKey) throws(IdentityError) -> [SignedHead] {
        let last = first + UInt64(chains.count) - 1
        var inside: [SignedHead] = []
        for head in heads[Self.lowerBound(first, in: heads)...] {
            guard head.counter <= last else { break }
            // The chain first: a cheap compare before the signature.
            guard head.chain == chains[Int(head.counter - first)], signatureVerifies(head, key: key) else {
                throw IdentityError(.signatureInvalid, "the head of origin \(origin.short) at \(head.counter) does not verify",
                                    origin: origin, counter: head.counter)
            }
            inside.append(head)
        }
        guard inside.contains(where: { $0.counter == last }) else {
            throw IdentityError(.unsignedChanges, "origin \(origin.short)'s run ends at \(last) with no head there", origin: origin, counter: last)
        }
        return inside
    }

    /// A head signed by the origin's key, or an attestation by the hub key within `attestedThrough`.
    private func signatureVerifies(_ head: SignedHead, key: OriginKey) -> Bool {
        switch head.signer {
        case .origin: head.verifies(with: key.publicKey)
        case .hubAttestation: head.counter <= key.attestedThrough && hubKey.map { head.verifies(with: $0) } == true
        }
    }
}
