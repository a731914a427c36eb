import CareRecords
import Foundation
import SyncCore
import SyncIdentity
import SyncStore

/// The identity faults of a simulation (Protocol/identity.md; issue 9, "Clones and restores,
/// proven") and the checks that signatures hold through all of them.
extension Simulation {
    // MARK: faults

    /// The replica's database is copied to a second machine without its identity file: the copy
    /// reads and writes locally but holds no key. Before it next syncs its user re-enrols it
    /// (`reenrol(_:)`).
    func copyWithoutIdentity(_ replica: Int) throws {
        let original = replicas[replica]
        guard replicaCount < tokens.count, report.keylessCopies < maxKeylessCopies, keylessCopiedAt[replica] == nil,
              original.signingKey != nil, try original.hubLink()?.credential != nil else { return }
        let index = replicaCount
        let path = "\(directory)/r\(index).db"
        try original.backup(to: path)
        clocks.append(SimulatedClock(world: world, offset: Self.startingOffset(faults, using: &random)))
        let copy = try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[index])
        replicas.append(copy)
        editors.append(editors[replica])
        keylessCopiedAt[index] = try Self.ownCounter(of: copy)
        replicaCount += 1
        report.keylessCopies += 1
    }

    /// The highest counter of `store`'s own log.
    static func ownCounter(of store: ReplicaStore) throws -> UInt64 {
        try store.changes(notIn: VersionVector()).filter { $0.id.replica == store.replicaID }.map(\.id.counter).max() ?? 0
    }

    /// A key-less copy re-enrolled as a new device, as its user must (Protocol/identity.md,
    /// "Identity file"): first the check that it cannot sign under the old identity; then its own
    /// writes the hub lacks are re-issued under a new replica id (the fork's re-issue), a new
    /// identity file with a new key is made for that id, and the next sync enrols it with a token
    /// of its own.
    func reenrol(_ index: Int) throws {
        guard let copiedAt = keylessCopiedAt[index] else { return }
        let store = replicas[index]
        if store.signingKey != nil || (try? store.ownHeads(in: 1...max(1, copiedAt))) != nil {
            report.violations.append("replica \(index), a copy without its identity file, can sign under \(store.replicaID.short)")
        }
        let newReplica = ReplicaID.random(using: &random)
        try store.fork(into: newReplica, credential: [], divergentFrom: try firstUnsynced(of: store))
        try store.close()
        let path = "\(directory)/r\(index).db"
        try IdentityFile.create(ReplicaIdentity(replica: newReplica, deviceKey: SigningKey(random: &random)), at: IdentityFile.path(forStore: path))
        replicas[index] = try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[index])
        // No device secret: the next hello enrols the new identity with this index's token.
        try replicas[index].setDeviceSecret(nil)
        keylessCopiedAt[index] = nil
        report.reenrolments += 1
    }

    /// The first counter of `store`'s own log that the hub does not hold as it is: from there on
    /// its writes are unsynced, and only this copy may hold them (the original may since have been
    /// restored from an older backup and written other changes under those counters). The
    /// simulator reads the hub's log directly, as a recovery exchange would.
    func firstUnsynced(of store: ReplicaStore) throws -> UInt64 {
        let origin = store.replicaID
        let own = try store.changes(notIn: VersionVector()).filter { $0.id.replica == origin }.sorted { $0.id.counter < $1.id.counter }
        let held = try hubStore.changes(ofOrigin: origin, after: 0, byteBudget: 1 << 24, maxCount: own.count).decodeChanges()
        for (offset, change) in own.enumerated() where offset >= held.count || !held[offset].isSameVersion(as: change) {
            return change.id.counter
        }
        return UInt64(own.count) + 1
    }

    /// A malicious replica signs, with its own key, a second change under one of the counters of
    /// its origin that the hub holds, and sends it straight to the hub (a raw-protocol push) and to
    /// every other replica that holds the first (a bundle): the hub must refuse it as an
    /// equivocation and keep both signed heads as evidence; no replica may apply it.
    func equivocate(_ replica: Int) throws {
        let store = replicas[replica]
        guard let key = store.signingKey else { return }
        let origin = store.replicaID
        let held = try hubStore.ownDurable(origin)
        guard held > 0 else { return }
        let counter = 1 + UInt64(random.index(below: Int(min(held, 500))))
        let log = try hubStore.changes(ofOrigin: origin, after: 0, byteBudget: 1 << 24, maxCount: Int(counter)).decodeChanges()
        guard log.count == Int(counter), let original = log.last else { return }
        let previous = log.dropLast().reduce(OriginChain.genesis(of: origin)) { OriginChain.next(after: $0, canonicalBytes: $1.canonicalBytes) }
        let forged = Change(id: original.id, timestamp: original.timestamp, author: original.author, table: "note", row: "equivocation",
                            causalLength: 1, setsLife: true, fields: [FieldEdit(column: "text", operation: .assign(.text("the other version")))])
        guard !forged.isSameVersion(as: original) else { return }
        let head = key.head(origin: origin, counter: counter, chain: OriginChain.next(after: previous, canonicalBytes: forged.canonicalBytes))
        let certificates = try hubStore.certificate(for: origin).map { [$0] } ?? []
        let provenance = Provenance(heads: [head], certificates: certificates)
        let result: HubAppendResult
        do {
            result = try hubStore.append([forged], from: origin, provenance: provenance, receivedAtMillis: hubNow)
        } catch let error as StoreError where error.code == .clockSkew {
            return
        } catch {
            report.violations.append("equivocation \(original.id): the hub failed with \(error) instead of refusing it as an equivocation")
            return
        }
        report.equivocations += 1
        if result.stored > 0 || result.equivocations != [original.id] {
            report.violations.append("equivocation \(original.id): the hub stored \(result.stored), reported \(result.equivocations)")
        }
        let evidence = try hubStore.equivocations().filter { $0.change == original.id }
        if !evidence.contains(where: { record in
            [record.heldHead, record.refusedHead].allSatisfy { $0?.counter == counter && $0?.verifies(with: key.publicKey) == true }
                && record.heldHead?.chain != record.refusedHead?.chain
        }) {
            report.violations.append("equivocation \(original.id): the hub kept no evidence with both signed heads")
        }
        for (index, other) in replicas.enumerated() where other.replicaID != origin {
            guard try other.changes(notIn: VersionVector()).contains(where: { $0.id == original.id }) else { continue }
            if (try? other.apply([forged], provenance: provenance)) != nil {
                report.violations.append("replica \(index) applied equivocation \(original.id) over the version it held")
            }
        }
    }

    /// The hub's database is backed up while it runs (its file and write-ahead log copied between
    /// two steps, when no write is in progress: the consistent copy `sqlite3 .backup` makes); a
    /// later time, once its log has grown past the copy, the hub is stopped and restored from it:
    /// its log loses what came after, its store makes a new incarnation, and replicas push again
    /// what it lost. A backup older than a device's enrolment, a re-issued secret or a fork would
    /// forget that device, which then needs its operator to enrol it again (a gap of the design,
    /// not simulated): such a backup is dropped and a fresh one taken rather than restored.
    func backUpOrRestoreHub() throws {
        let path = "\(directory)/hub.db"
        let backup = "\(directory)/hub-backup.db"
        let now = (head: try hubStore.head(), devices: try deviceCredentials())
        if let held = hubBackup, now.devices == held.devices, now.head > held.head {
            for replica in connections.keys.sorted() { cut(replica, reason: "hub stopped") }
            slowStorage = []
            writerBusyUntil = 0
            try hubStore.close()
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            try copyDatabase(from: backup, to: path)
            hubBackup = nil
            var hubSeed = SeededGenerator(seed: random.next())
            hubStore = try Self.openHub(path: path, wallClock: hubClock, random: &hubSeed, scoped: scoped != nil)
            report.hubRestores += 1
            if hubStore.renewedIncarnation { report.renewedIncarnations += 1 }
            report.restarts += 1
        } else if hubBackup == nil || now.devices != hubBackup?.devices {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: backup + suffix) }
            try copyDatabase(from: path, to: backup)
            hubBackup = now
            report.hubBackups += 1
        }
    }

    /// Every replica's id and device secret: what a hub backup must not forget. A restore is done
    /// only while these are what they were at the backup (no enrolment, re-issued secret or fork
    /// since), as a restored hub does not know the devices it registered after its backup.
    func deviceCredentials() throws -> [[UInt8]] {
        replicas.map { Array($0.replicaID.hex.utf8) + ($0.deviceSecret ?? []) }
    }

    /// A stopped SQLite database's file and its write-ahead log, if it has one.
    func copyDatabase(from source: String, to destination: String) throws {
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: source + suffix) {
            try FileManager.default.copyItem(atPath: source + suffix, toPath: destination + suffix)
        }
    }

    // MARK: checks

    /// Signatures held: no store holds a change whose chain does not verify under the heads it
    /// holds, and no change is attributed to an origin whose registered key did not sign a head
    /// covering it (Protocol/identity.md, "Verifying a run of changes"); every replica has
    /// recorded the hub's incarnation.
    func checkProvenance() throws {
        let hubKey = hubStore.hubKey
        var keys: [ReplicaID: [UInt8]?] = [:]
        func key(_ origin: ReplicaID) throws -> [UInt8]? {
            if let known = keys[origin] { return known }
            // The hub's own origins (the catalogue's publisher, the escrow desk) sign with its key.
            if EntitlementCatalogue.hubOrigins.contains(origin) { return hubKey }
            let certificate = try hubStore.certificate(for: origin)
            let key = certificate.flatMap { $0.verifies(with: hubKey) ? $0.publicKey : nil }
            keys[origin] = key
            return key
        }
        for (index, replica) in replicas.enumerated() {
            if try replica.incarnation() != hubStore.incarnation {
                report.violations.append("replica \(index) has not recorded the hub's incarnation after the heal")
            }
            // A scoped replica holds segments of origins' logs, each verified when it arrived
            // (Protocol/scope.md, "Verifying part of an origin's log"): only the hub's whole logs are checked here.
            if scoped != nil { continue }
            let byOrigin = Dictionary(grouping: try replica.changes(notIn: VersionVector()), by: \.id.replica)
            for (origin, changes) in byOrigin.sorted(by: { $0.key < $1.key }) {
                let own = origin == replica.replicaID
                let heads = try replica.heldHeads(origin: origin, in: 1...UInt64(Int64.max))
                if let problem = Self.provenanceProblem(changes, heads: heads, key: own ? replica.signingKey?.publicKey : try key(origin),
                                                        hubKey: hubKey, mustEndAtHead: !own) {
                    report.violations.append("replica \(index): \(problem)")
                    return
                }
            }
        }
        let (changes, heads) = try hubChangesWithHeads()
        let byOrigin = Dictionary(grouping: changes, by: \.id.replica)
        for (origin, changes) in byOrigin.sorted(by: { $0.key < $1.key }) {
            if let problem = Self.provenanceProblem(changes, heads: heads[origin] ?? [], key: try key(origin), hubKey: hubKey, mustEndAtHead: true) {
                report.violations.append("hub: \(problem)")
                return
            }
        }
    }

    /// Why one origin's held changes do not verify, or nil when they do: they must be its log from
    /// counter 1, each head among `heads` must carry the chain of those changes and the signature
    /// of `key` (the hub key for an attestation), and, where `mustEndAtHead`, the last change must
    /// be at a head (a relayed log ends at a signed head, or nobody signed its end).
    package static func provenanceProblem(_ changes: [Change], heads: [SignedHead], key: [UInt8]?, hubKey: [UInt8], mustEndAtHead: Bool) -> String? {
        let log = changes.sorted { $0.id.counter < $1.id.counter }
        guard let origin = log.first?.id.replica else { return nil }
        var chains: [[UInt8]] = []
        var chain = OriginChain.genesis(of: origin)
        for (offset, change) in log.enumerated() {
            guard change.id.counter == UInt64(offset + 1) else {
                return "holds \(origin.short)'s change \(change.id.counter) without the log below it (\(offset) changes held)"
            }
            chain = OriginChain.next(after: chain, canonicalBytes: change.canonicalBytes)
            chains.append(chain)
        }
        for head in heads where head.counter >= 1 && head.counter <= UInt64(chains.count) {
            guard head.chain == chains[Int(head.counter) - 1] else {
                return "the head of \(origin.short) at \(head.counter) does not match the chain of the changes held"
            }
            guard let signer = head.signer == .hubAttestation ? hubKey : key, head.verifies(with: signer) else {
                return "the head of \(origin.short) at \(head.counter) is not signed by \(origin.short)'s registered key"
            }
        }
        if mustEndAtHead, !heads.contains(where: { $0.counter == UInt64(log.count) }) {
            return "\(origin.short)'s change \(log.count) is at no signed head: attributed to an origin that did not sign it"
        }
        return nil
    }

    /// Every change the hub holds, with the heads its pages carry, by origin.
    func hubChangesWithHeads() throws -> ([Change], [ReplicaID: [SignedHead]]) {
        var changes: [Change] = []
        var heads: [ReplicaID: [SignedHead]] = [:]
        var cursor: UInt64 = 0
        while true {
            let page = try hubStore.logPage(after: cursor, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 24, maxCount: 100_000)
            changes += try page.decodeChanges()
            for head in page.provenance.heads { heads[head.origin, default: []].append(head) }
            cursor = page.nextCursor
            if !page.more { return (changes, heads) }
        }
    }
}
