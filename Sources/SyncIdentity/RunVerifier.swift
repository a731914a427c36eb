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

/// What a store holds that verification reads: its verified prefix of each origin's log and the keys
/// it knows. Errors a lookup throws (a database failure) pass through ``RunVerifier/verify(_:canonicalBytes:provenance:ledger:)``.
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
    /// The heads that verified (every head inside a run), for the store to keep and relay.
    public let heads: [SignedHead]
    /// The message's certificates that verified under the pinned hub key, for the store to keep.
    public let certificates: [DeviceCertificate]
}

/// Protocol/identity.md, "Verifying a run of changes", for one message, pure: the store supplies
/// what it holds through a ``ChainLedger``. One SHA-256 per new change, one Ed25519 verification
/// per head and per certificate. Any failure refuses the whole message.
public struct RunVerifier: Sendable {
    /// The pinned hub key: verifies certificates and hub attestations. Nil when none is pinned yet
    /// (certificates in a message are then not usable, and attestations never verify).
    public let hubKey: [UInt8]?

    /// A verifier trusting `hubKey` as the hub's.
    public init(hubKey: [UInt8]?) { self.hubKey = hubKey }

    /// Verifies `changes` (the changes of one push, batch, recovered answer or bundle) against
    /// `provenance` and what `ledger` holds.
    /// - Parameters:
    ///   - changes: the message's changes; each origin's must be consecutive and ascending.
    ///   - canonicalBytes: each change's canonical bytes, in the same order (computed once by the caller).
    ///   - provenance: the message's heads and certificates.
    ///   - ledger: the receiver's store.
    /// - Returns: the chains, new-versus-held flags, heads and certificates to keep.
    /// - Throws: ``IdentityError`` (``IdentityError/Code/unknownDevice``, ``IdentityError/Code/chainGap``,
    ///   ``IdentityError/Code/signatureInvalid``, ``IdentityError/Code/unsignedChanges``,
    ///   ``IdentityError/Code/equivocation``), or whatever `ledger` throws.
    public func verify(_ changes: [Change], canonicalBytes: [[UInt8]], provenance: Provenance,
                       ledger: some ChainLedger) throws -> VerifiedChanges {
        precondition(changes.count == canonicalBytes.count, "one canonical encoding per change")
        let vouched = try verifiedCertificates(provenance.certificates)
        var runs: [ReplicaID: [Int]] = [:]
        var origins: [ReplicaID] = []
        for (index, change) in changes.enumerated() {
            if runs[change.id.replica] == nil { origins.append(change.id.replica) }
            runs[change.id.replica, default: []].append(index)
        }
        var headsByOrigin: [ReplicaID: [SignedHead]] = [:]
        for head in provenance.heads { headsByOrigin[head.origin, default: []].append(head) }

        var chains = [[UInt8]](repeating: [], count: changes.count)
        var isNew = [Bool](repeating: true, count: changes.count)
        var kept: [SignedHead] = []
        for origin in origins {
            let run = runs[origin] ?? []
            guard let key = try ledger.key(for: origin) ?? vouched[origin].map(OriginKey.init(certificate:)) else {
                throw IdentityError(.unknownDevice, "no key is known for origin \(origin.short) and no certificate for it came with the changes",
                                    origin: origin, counter: changes[run[0]].id.counter)
            }
            let computed = try chainRun(run, of: origin, changes: changes, canonicalBytes: canonicalBytes, ledger: ledger)
            for (offset, index) in run.enumerated() {
                chains[index] = computed.chains[offset]
                isNew[index] = computed.isNew[offset]
            }
            let first = changes[run[0]].id.counter
            let heads = try verifyHeads(headsByOrigin[origin] ?? [], of: origin, from: first, chains: computed.chains, key: key)
            if let diverged = computed.divergence {
                // The whole run's heads verified: the other version is signed too.
                let received = heads.first { $0.counter >= diverged.change.counter } ?? heads[heads.count - 1]
                let held = try ledger.heldHead(origin: origin, covering: diverged.change.counter)
                throw IdentityError(.equivocation, "change \(diverged.change) arrived, signed, with other bytes than the version held",
                                    origin: origin, counter: diverged.change.counter,
                                    evidence: IdentityError.Equivocation(change: diverged.change, heldDigest: diverged.held,
                                                                         receivedDigest: diverged.received, heldHead: held, receivedHead: received))
            }
            kept += heads
        }
        return VerifiedChanges(chains: chains, isNew: isNew, heads: kept, certificates: Array(vouched.values).sorted { $0.replica < $1.replica })
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

    /// Steps 2 and 3: the chain over one origin's run, from the held `chain(a − 1)`.
    private func chainRun(_ run: [Int], of origin: ReplicaID, changes: [Change], canonicalBytes: [[UInt8]],
                          ledger: some ChainLedger) throws -> (chains: [[UInt8]], isNew: [Bool], divergence: Divergence?) {
        let first = changes[run[0]].id.counter
        guard var previous = first == 1 ? OriginChain.genesis(of: origin) : try ledger.heldChain(origin: origin, counter: first - 1) else {
            throw IdentityError(.chainGap, "origin \(origin.short)'s run starts at \(first), past the changes held of it",
                                origin: origin, counter: first)
        }
        var chains: [[UInt8]] = []
        var isNew: [Bool] = []
        chains.reserveCapacity(run.count)
        isNew.reserveCapacity(run.count)
        var divergence: Divergence?
        for (offset, index) in run.enumerated() {
            let counter = changes[index].id.counter
            let expected = first + UInt64(offset)
            guard counter == expected else {
                throw IdentityError(.chainGap, "origin \(origin.short)'s run goes from \(expected - 1) to \(counter), not to \(expected)",
                                    origin: origin, counter: counter, expectedCounter: expected)
            }
            let bytes = canonicalBytes[index]
            var chain: [UInt8]?
            var held = false
            // Past a divergence, held chains are the other version's: compute.
            if divergence == nil, let heldBytes = try ledger.heldBytes(origin: origin, counter: counter) {
                if heldBytes == bytes {
                    held = true
                    chain = try ledger.heldChain(origin: origin, counter: counter)
                } else {
                    divergence = Divergence(change: changes[index].id, held: OriginChain.digest(of: heldBytes), received: OriginChain.digest(of: bytes))
                }
            }
            previous = chain ?? OriginChain.next(after: previous, canonicalBytes: bytes)
            chains.append(previous)
            isNew.append(!held)
        }
        return (chains, isNew, divergence)
    }

    /// Step 4: every head of the run matches the computed chain and verifies with the right key;
    /// the run ends at one. Heads outside the run are neither checked nor kept.
    private func verifyHeads(_ heads: [SignedHead], of origin: ReplicaID, from first: UInt64, chains: [[UInt8]],
                             key: OriginKey) throws(IdentityError) -> [SignedHead] {
        let last = first + UInt64(chains.count) - 1
        var inside: [SignedHead] = []
        for head in heads where head.counter >= first && head.counter <= last {
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
        return inside.sorted { $0.counter < $1.counter }
    }

    /// A head signed by the origin's key, or an attestation by the hub key within `attestedThrough`.
    private func signatureVerifies(_ head: SignedHead, key: OriginKey) -> Bool {
        switch head.signer {
        case .origin: head.verifies(with: key.publicKey)
        case .hubAttestation: head.counter <= key.attestedThrough && hubKey.map { head.verifies(with: $0) } == true
        }
    }
}
