import CareRecords
import Crypto
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting

/// Fuzz target (c): bundle import into a real replica with the CareRecords schema. Input: a bundle
/// without its trailing SHA-256, which the harness appends (a fuzzer cannot forge a checksum, and
/// the checksum check is a single comparison). The bundle is decoded and applied to a fresh copy
/// of a template replica. A refused bundle must leave the replica as it was; an applied one must
/// be idempotent (applying it again changes nothing).
enum BundleFuzzTarget {
    static let clock = FixedWallClock(millis: 1_800_000_000_000)

    /// The replica the valid bundle seeds come from (``BundleSeeds``): a fixed id, and a device key
    /// drawn from a fixed seed, so the seeds and the certificate the template holds are the same
    /// in every process.
    static let senderID = ReplicaID(high: 0xF022_5E4D, low: 0xB0D1E)

    /// Creates the seed sender at `path`, enrolled with SyncTesting's test hub key (which saves its
    /// own certificate, which its exports carry).
    static func makeSender(at path: String) throws -> CareReplica {
        let box = GeneratorBox(SeededGenerator(seed: 0x5E4D))
        let sender = try CareReplica.create(at: path, name: "fuzz-sender", wallClock: clock, random: RandomSource { box.next() },
                                            replicaID: senderID)
        try TestEnrolment.enrol([sender.store])
        return sender
    }

    /// A replica made once per process (schema, published entitlement catalogue), copied per input.
    /// Since bundle format 3 an import verifies the sender's signed heads: the template pins the
    /// test hub key and holds the seed sender's certificate (enrolled together, as replicas of one
    /// hub are), so the seeds apply and a fuzzed bundle reaches the merge, not only the verifier.
    static let template: Result<String, StoreSetupError> = {
        let path = FuzzScratch.path("template-replica.db")
        do {
            var random = SeededGenerator(seed: 0xB0D1E)
            let replica = try CareReplica.create(at: path, name: "fuzz", wallClock: clock, random: RandomSource { 0xB0D1E },
                                                 replicaID: ReplicaID.random(using: &random))
            let sender = try makeSender(at: FuzzScratch.path("template-sender.db"))
            try TestEnrolment.enrol([replica.store, sender.store])
            return .success(path)
        } catch {
            return .failure(StoreSetupError(description: "template replica: \(error)"))
        }
    }()

    static func run(_ input: [UInt8]) -> FuzzOutcome {
        let bundle: ChangeBundle
        do {
            bundle = try ChangeBundle.decode(input + SHA256.hash(data: input))
        } catch {
            return .refusal(error)
        }
        let store: ReplicaStore
        do {
            let path = FuzzScratch.path("replica.db")
            try FuzzScratch.copy(try template.get(), to: path)
            store = try ReplicaStore.open(at: path, schema: CareSchema.schema, wallClock: clock)
        } catch {
            return .invariantBroken("the fuzz replica could not be set up: \(error)")
        }
        let before = storeSummary(store)
        do {
            _ = try BundleExchange.apply(bundle, to: store)
        } catch {
            guard storeSummary(store) == before else { return .invariantBroken("a refused bundle changed the replica") }
            return .refusal(error)
        }
        let after = storeSummary(store)
        do {
            _ = try BundleExchange.apply(bundle, to: store)
        } catch {
            return .invariantBroken("a bundle applied once is refused the second time: \(error)")
        }
        guard storeSummary(store) == after else { return .invariantBroken("applying a bundle twice changed the replica again") }
        return .accepted
    }

    /// What a bundle import may change, as one comparable string (counts and clocks, no contents).
    static func storeSummary(_ store: ReplicaStore) -> String {
        guard let status = try? store.status() else { return "unreadable" }
        let vector = status.knownVector.counters.sorted { $0.key.hex < $1.key.hex }.map { "\($0.key.hex)=\($0.value)" }
        let rows = status.rowCounts.map { "\($0.table)=\($0.rows)" }
        return [String(status.totalChanges), String(status.parkedChanges), String(status.openConflicts),
                String(status.lastTimestamp.rawValue), vector.joined(separator: ","), rows.joined(separator: ",")]
            .joined(separator: ";")
    }
}

struct StoreSetupError: Error, CustomStringConvertible {
    let description: String
}
