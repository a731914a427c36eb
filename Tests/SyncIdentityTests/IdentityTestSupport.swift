import SyncCore
import Foundation
import SyncIdentity

/// An origin's log as a test builds it: changes, their bytes and chains, signed heads.
struct TestLog {
    let origin: ReplicaID
    let key: SigningKey
    var changes: [Change] = []
    var chains: [[UInt8]] = []

    init(origin: ReplicaID, key: SigningKey) {
        self.origin = origin
        self.key = key
    }

    /// Appends change `changes.count + 1`, its note field `text`.
    mutating func append(_ text: String, author: String = "amara.okafor") {
        let counter = UInt64(changes.count + 1)
        let change = TestLog.change(origin: origin, counter: counter, text: text, author: author)
        let previous = chains.last ?? OriginChain.genesis(of: origin)
        chains.append(OriginChain.next(after: previous, canonicalBytes: change.canonicalBytes))
        changes.append(change)
    }

    static func change(origin: ReplicaID, counter: UInt64, text: String, author: String = "amara.okafor") -> Change {
        Change(id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: 1_000 + counter, logical: 0),
               author: author, table: "note", row: "n\(counter)", causalLength: 1, setsLife: true,
               fields: [FieldEdit(column: "text", operation: .assign(.text(text)))])
    }

    func head(at counter: UInt64, signer: HeadSigner = .origin, by other: SigningKey? = nil) -> SignedHead {
        (other ?? key).head(origin: origin, counter: counter, chain: chains[Int(counter) - 1], signer: signer)
    }

    /// Changes `range` (1-based counters).
    func run(_ range: ClosedRange<UInt64>) -> [Change] { Array(changes[Int(range.lowerBound) - 1..<Int(range.upperBound)]) }
}

/// A ledger over dictionaries: what a store would hold.
struct MemoryLedger: ChainLedger {
    var chains: [ChangeID: [UInt8]] = [:]
    var bytes: [ChangeID: [UInt8]] = [:]
    var heads: [SignedHead] = []
    var keys: [ReplicaID: OriginKey] = [:]

    func heldChain(origin: ReplicaID, counter: UInt64) -> [UInt8]? { chains[ChangeID(replica: origin, counter: counter)] }
    func heldBytes(origin: ReplicaID, counter: UInt64) -> [UInt8]? { bytes[ChangeID(replica: origin, counter: counter)] }
    func heldHead(origin: ReplicaID, covering counter: UInt64) -> SignedHead? {
        heads.filter { $0.origin == origin && $0.counter >= counter }.min { $0.counter < $1.counter }
    }
    func key(for origin: ReplicaID) -> OriginKey? { keys[origin] }

    /// Holds `log`'s changes `1…through` as verified.
    mutating func hold(_ log: TestLog, through: UInt64) {
        for index in 0..<Int(through) {
            chains[log.changes[index].id] = log.chains[index]
            bytes[log.changes[index].id] = log.changes[index].canonicalBytes
        }
    }

    /// Applies what a verification returned, as a store would.
    mutating func keep(_ changes: [Change], _ verified: VerifiedChanges) {
        for (index, change) in changes.enumerated() where verified.isNew[index] {
            chains[change.id] = verified.chains[index]
            bytes[change.id] = change.canonicalBytes
        }
        heads += verified.heads
        for certificate in verified.certificates { keys[certificate.replica] = OriginKey(certificate: certificate) }
    }
}

extension RunVerifier {
    func verify(_ changes: [Change], _ provenance: Provenance, _ ledger: MemoryLedger) throws -> VerifiedChanges {
        try verify(changes, canonicalBytes: changes.map(\.canonicalBytes), provenance: provenance, ledger: ledger)
    }
}

func key(seed: UInt64) -> SigningKey {
    var random = SplitMix(seed: seed)
    return SigningKey(random: &random)
}

func identityError(_ body: () throws -> Void) -> IdentityError? {
    do { try body() } catch let error as IdentityError { return error } catch { return nil }
    return nil
}

/// SplitMix64, so this target needs nothing above SyncIdentity (SyncTesting's `SeededGenerator` is the same generator).
struct SplitMix: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
    mutating func index(below count: Int) -> Int { Int(next().multipliedFullWidth(by: UInt64(count)).high) }
    mutating func coin() -> Bool { next() & 1 == 1 }

    /// CARESYNC_SEED if set (decimal or 0x hex), else a fresh seed, which the caller prints.
    static func seed() -> UInt64 {
        guard let text = ProcessInfo.processInfo.environment["CARESYNC_SEED"] else { return UInt64.random(in: 1...UInt64.max) }
        return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) ?? 1 : UInt64(text) ?? 1
    }
}
