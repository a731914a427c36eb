import Foundation
import SyncCore
import SyncIdentity
@testable import SyncStore
import SyncTesting
import Testing

@Suite("Replica store: identity file, chained log, signed heads, verified batches")
struct ReplicaIdentityTests {
    let directory = TestFiles.directory("replica-identity")
    let clock = SimulatedClock()
    static let hubKey = { var random = SeededGenerator(seed: 0x4B); return SigningKey(random: &random) }()

    func make(_ name: String, id: UInt64, key: SigningKey? = nil, hubKeyed: Set<ReplicaID> = []) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: id, low: id), name: name,
                                wallClock: clock, deviceKey: key, hubKeyedOrigins: hubKeyed)
    }

    /// A store that trusts the test hub key and holds `certified`'s certificate.
    func receiver(_ name: String, id: UInt64, certified: [ReplicaStore] = [], hubKeyed: Set<ReplicaID> = []) throws -> ReplicaStore {
        let store = try make(name, id: id, hubKeyed: hubKeyed)
        try store.pinHubKey(Self.hubKey.publicKey)
        for other in certified { try store.saveCertificate(Self.certificate(of: other)) }
        return store
    }

    static func certificate(of store: ReplicaStore) throws -> DeviceCertificate {
        hubKey.certificate(replica: store.replicaID, publicKey: try #require(store.signingKey).publicKey, team: "north", issuedAtMillis: 1)
    }

    func write(_ store: ReplicaStore, _ count: Int, text: String = "note", size: Int = 8) throws {
        for index in 0..<count {
            try store.write(author: "amara.okafor") { try $0.create("item", id: "\(text)-\(index)", values: ["title": .text(String(repeating: "x", count: size))]) }
        }
    }

    func chains(of store: ReplicaStore, _ origin: ReplicaID) throws -> [[UInt8]?] {
        let output = try sqlite3(store.path, """
            SELECT CASE WHEN chain IS NULL THEN '-' ELSE lower(hex(chain)) END FROM sync_change WHERE origin = (SELECT id FROM sync_origin WHERE replica_id = '\(origin.hex)') ORDER BY counter
            """)
        return output.split(separator: "\n").map { $0 == "-" ? nil : Hex.bytes(String($0)) }
    }

    static func expectedChains(_ changes: [Change]) -> [[UInt8]] {
        var chain = OriginChain.genesis(of: changes[0].id.replica)
        return changes.map { chain = OriginChain.next(after: chain, canonicalBytes: $0.canonicalBytes); return chain }
    }

    static func identityCode(_ body: () throws -> Void) -> IdentityError.Code? {
        do { try body() } catch let error as IdentityError { return error.code } catch { return nil }
        return nil
    }

    static func storeCode(_ body: () throws -> Void) -> StoreError.Code? {
        do { try body() } catch let error as StoreError { return error.code } catch { return nil }
        return nil
    }

    @Test("create makes a 0600 identity file with the key; open reads it; another replica's file is IDENTITY_MISMATCH")
    func identityFileAtCreateAndOpen() throws {
        let store = try make("a", id: 1)
        let key = try #require(store.signingKey)
        #expect(store.identityPath == store.path + ".identity")
        #expect(try store.identityIsPrivate() == true)
        try store.close()
        let reopened = try ReplicaStore.open(at: store.path, schema: SimulationSchema.v1, wallClock: clock)
        #expect(reopened.signingKey?.publicKey == key.publicKey)
        try reopened.close()
        // Someone else's identity file beside this database.
        let other = try make("b", id: 2)
        try other.close()
        try FileManager.default.removeItem(atPath: store.identityPath)
        try FileManager.default.copyItem(atPath: other.identityPath, toPath: store.identityPath)
        #expect(Self.storeCode { _ = try ReplicaStore.open(at: store.path, schema: SimulationSchema.v1, wallClock: clock) } == .identityMismatch)
        // Something already at the identity file's path refuses a create.
        try "x".write(toFile: "\(directory)/c.db.identity", atomically: false, encoding: .utf8)
        #expect(Self.storeCode { _ = try make("c", id: 3) } == .alreadyExists)
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/c.db"))
    }

    @Test("without its identity file a replica reads and writes locally but cannot sign (IDENTITY_MISSING)")
    func missingIdentity() throws {
        let store = try make("a", id: 1)
        try write(store, 2)
        try store.close()
        try FileManager.default.removeItem(atPath: store.identityPath)
        let copy = try ReplicaStore.open(at: store.path, schema: SimulationSchema.v1, wallClock: clock, upgradeKey: Self.hubKey)
        #expect(copy.signingKey == nil, "a key is made only for a replica upgraded from before identity files")
        #expect(!FileManager.default.fileExists(atPath: copy.identityPath))
        try write(copy, 1, text: "more")
        #expect(try copy.status().localChanges == 3)
        #expect(Self.storeCode { _ = try copy.ownHeads(in: 1...3) } == .identityMissing)
        #expect(Self.storeCode { _ = try copy.provenance(for: copy.changes(notIn: VersionVector())) } == .identityMissing)
        #expect(Self.storeCode { try copy.setDeviceSecret([1]) } == .identityMissing)
    }

    @Test("local writes chain each change over the previous and mark checkpoints past 16,384 bytes; heads fall on them")
    func chainsAndCheckpoints() throws {
        let store = try make("a", id: 1)
        try write(store, 12, size: 3_000)
        let changes = try store.changes(notIn: VersionVector())
        #expect(try chains(of: store, store.replicaID) == Self.expectedChains(changes))
        let expected = Checkpoints.indices(sizes: changes.map(\.canonicalBytes.count)).map { UInt64($0 + 1) }
        #expect(!expected.isEmpty)
        let heads = try store.ownHeads(in: 1...12)
        #expect(heads.map(\.counter) == expected + [12])
        let key = try #require(store.signingKey)
        #expect(heads.allSatisfy { $0.verifies(with: key.publicKey) && $0.chain == Self.expectedChains(changes)[Int($0.counter) - 1] })
        // Writes in one transaction chain the same way.
        try store.write(author: "ann") { tx in
            for index in 0..<3 { try tx.create("item", id: "batch-\(index)", values: ["title": .text("t")]) }
        }
        #expect(try chains(of: store, store.replicaID) == Self.expectedChains(try store.changes(notIn: VersionVector())))
    }

    @Test("a batch verified against its provenance is applied with its chains and heads, and relayed with them")
    func verifiedApplyAndRelay() throws {
        let alice = try make("alice", id: 1)
        try write(alice, 5)
        let changes = try alice.changes(notIn: VersionVector())
        let provenance = try alice.provenance(for: changes)
        #expect(provenance.heads.map(\.counter) == [5] && provenance.certificates.isEmpty)
        let bob = try receiver("bob", id: 2, certified: [alice])
        let summary = try bob.apply(changes, provenance: provenance)
        #expect(summary.applied == 5)
        #expect(try chains(of: bob, alice.replicaID) == Self.expectedChains(changes))
        #expect(try bob.heldHeads(origin: alice.replicaID, in: 1...5) == provenance.heads)
        // Bob relays Alice's changes with her head and certificate to Carol, who holds no certificate of Alice's.
        let relayed = try bob.provenance(for: changes)
        let aliceCertificate = try Self.certificate(of: alice)
        #expect(relayed.heads == provenance.heads && relayed.certificates == [aliceCertificate])
        let carol = try receiver("carol", id: 3)
        #expect(try carol.apply(changes, provenance: relayed).applied == 5)
        #expect(try carol.certificate(for: alice.replicaID) == aliceCertificate)
        // A replay changes nothing.
        #expect(try carol.apply(changes, provenance: relayed).duplicates == 5)
        // A run that does not end at a held head cannot be relayed.
        #expect(Self.identityCode { _ = try bob.provenance(for: Array(changes.prefix(3))) } == .unsignedChanges)
    }

    @Test("a forged author, a forged origin, an unknown device and a gap refuse the whole batch, nothing applied")
    func refusals() throws {
        let alice = try make("alice", id: 1)
        try write(alice, 3)
        let changes = try alice.changes(notIn: VersionVector())
        let provenance = try alice.provenance(for: changes)
        let bob = try receiver("bob", id: 2, certified: [alice])
        var forged = changes
        let victim = changes[1]
        forged[1] = Change(id: victim.id, timestamp: victim.timestamp, author: "someone.else", table: victim.table, row: victim.row,
                           scope: victim.scope, causalLength: victim.causalLength, setsLife: victim.setsLife, fields: victim.fields)
        #expect(Self.identityCode { _ = try bob.apply(forged, provenance: provenance) } == .signatureInvalid)
        // Mallory signs Alice's origin with her own key.
        let mallory = try make("mallory", id: 9)
        let malloryKey = try #require(mallory.signingKey)
        let chain = try #require(provenance.heads.last).chain
        let forgedHead = malloryKey.head(origin: alice.replicaID, counter: 3, chain: chain)
        #expect(Self.identityCode { _ = try bob.apply(changes, provenance: Provenance(heads: [forgedHead])) } == .signatureInvalid)
        let stranger = try receiver("stranger", id: 4)
        #expect(Self.identityCode { _ = try stranger.apply(changes, provenance: provenance) } == .unknownDevice)
        #expect(Self.identityCode { _ = try bob.apply(Array(changes.dropFirst()), provenance: provenance) } == .chainGap)
        #expect(Self.identityCode { _ = try bob.apply(changes, provenance: .none) } == .unsignedChanges)
        #expect(try bob.changes(notIn: VersionVector()).isEmpty, "nothing of a refused batch is applied")
        #expect(try bob.heldHeads(origin: alice.replicaID, in: 1...3).isEmpty)
    }

    @Test("a clone signing other changes under the same ids is an EQUIVOCATION with both heads")
    func equivocation() throws {
        let alice = try make("alice", id: 1)
        try write(alice, 2)
        let bob = try receiver("bob", id: 2, certified: [alice])
        let original = try alice.changes(notIn: VersionVector())
        _ = try bob.apply(original, provenance: try alice.provenance(for: original))
        // The clone: Alice's id and key, its own writes.
        let clone = try ReplicaStore.create(at: "\(directory)/clone.db", schema: SimulationSchema.v1, replicaID: alice.replicaID, name: "clone",
                                            wallClock: clock, deviceKey: alice.signingKey)
        try write(clone, 2, text: "other")
        let cloned = try clone.changes(notIn: VersionVector())
        do {
            _ = try bob.apply(cloned, provenance: try clone.provenance(for: cloned))
            Issue.record("the equivocation was applied")
        } catch let error as IdentityError {
            #expect(error.code == .equivocation && error.counter == 1)
            #expect(error.evidence?.heldHead == (try alice.ownHeads(in: 1...2)).last)
            #expect(error.evidence?.receivedHead == (try clone.ownHeads(in: 1...2)).last)
        }
        #expect(try bob.changes(notIn: VersionVector()) == original)
    }

    @Test("a hub-keyed origin verifies with the pinned hub key only")
    func hubKeyedOrigin() throws {
        let publisher = ReplicaID(high: 0, low: 0xCA7A_10)
        let source = try make("publisher", id: 7, key: Self.hubKey)
        try write(source, 2)
        // The publisher's changes as the hub would sign them: its origin renamed.
        let changes = try source.changes(notIn: VersionVector()).map {
            Change(id: ChangeID(replica: publisher, counter: $0.id.counter), timestamp: $0.timestamp, author: $0.author, table: $0.table,
                   row: $0.row, scope: $0.scope, causalLength: $0.causalLength, setsLife: $0.setsLife, fields: $0.fields)
        }
        let chain = Self.expectedChains(changes)[1]
        let replica = try receiver("replica", id: 2, hubKeyed: [publisher])
        let forger = try #require(try make("forger", id: 8).signingKey)
        #expect(Self.identityCode {
            _ = try replica.apply(changes, provenance: Provenance(heads: [forger.head(origin: publisher, counter: 2, chain: chain)]))
        } == .signatureInvalid)
        #expect(try replica.apply(changes, provenance: Provenance(heads: [Self.hubKey.head(origin: publisher, counter: 2, chain: chain)])).applied == 2)
    }

    @Test("unverified applies keep chains wherever the log below is held, filling in once a gap closes")
    func unverifiedChains() throws {
        let alice = try make("alice", id: 1)
        try write(alice, 4)
        let changes = try alice.changes(notIn: VersionVector())
        let bob = try make("bob", id: 2)
        _ = try bob.apply(Array(changes[2...3]))
        #expect(try chains(of: bob, alice.replicaID) == [nil, nil])
        _ = try bob.apply(Array(changes[0...1]))
        #expect(try chains(of: bob, alice.replicaID) == Self.expectedChains(changes))
    }

    @Test("the hub key is pinned once; the incarnation and device secret are kept (the secret in the identity file only)")
    func hubLinkState() throws {
        let store = try make("a", id: 1)
        #expect(try store.pinnedHubKey() == nil)
        #expect(try store.incarnation() == nil)
        try store.pinHubKey(Self.hubKey.publicKey)
        try store.pinHubKey(Self.hubKey.publicKey)
        #expect(try store.pinnedHubKey() == Self.hubKey.publicKey)
        #expect(Self.storeCode { try store.pinHubKey([UInt8](repeating: 1, count: 32)) } == .identityMismatch)
        try store.setIncarnation([UInt8](repeating: 7, count: 16))
        #expect(try store.incarnation() == [UInt8](repeating: 7, count: 16))
        try store.recordHub(ReplicaID(high: 5, low: 5), address: "hub:1", credential: [0xAA, 0xBB])
        #expect(store.deviceSecret == [0xAA, 0xBB])
        #expect(try store.hubLink()?.credential == [0xAA, 0xBB])
        #expect(try sqlite3(store.path, "SELECT credential IS NULL FROM sync_hub") == "1")
        #expect(try IdentityFile.readReplica(at: store.identityPath, expecting: store.replicaID).deviceSecret == [0xAA, 0xBB])
        #expect(try store.identityIsPrivate() == true)
    }

    @Test("the migration chains the held prefix, marks own checkpoints, and moves the device secret into a new identity file")
    func migration() throws {
        let store = try make("a", id: 1)
        try write(store, 8, size: 4_000)
        let other = try make("b", id: 2)
        try write(other, 3)
        let theirs = try other.changes(notIn: VersionVector())
        _ = try store.apply([theirs[0], theirs[2]])
        let expectedHeads = try store.ownHeads(in: 1...8)
        try store.close()
        // Back to how a file was before identity files, with the secret in the database.
        _ = try sqlite3(store.path, """
            ALTER TABLE sync_change DROP COLUMN chain; ALTER TABLE sync_change DROP COLUMN checkpoint;
            ALTER TABLE sync_state DROP COLUMN since_checkpoint; DROP TABLE sync_head; DROP TABLE sync_device;
            ALTER TABLE sync_hub DROP COLUMN hub_key; ALTER TABLE sync_hub DROP COLUMN incarnation;
            INSERT INTO sync_hub (id, address, credential, pull_cursor) VALUES (1, 'hub:1', x'0102', 0);
            DELETE FROM grdb_migrations WHERE identifier = 'sync-v5-identity';
            """)
        try FileManager.default.removeItem(atPath: store.identityPath)
        let upgraded = try ReplicaStore.open(at: store.path, schema: SimulationSchema.v1, wallClock: clock, upgradeKey: Self.hubKey)
        #expect(upgraded.signingKey?.publicKey == Self.hubKey.publicKey)
        #expect(upgraded.deviceSecret == [1, 2])
        #expect(try upgraded.hubLink()?.credential == [1, 2])
        #expect(try sqlite3(store.path, "SELECT credential IS NULL FROM sync_hub") == "1")
        #expect(try upgraded.identityIsPrivate() == true)
        #expect(try chains(of: upgraded, upgraded.replicaID) == Self.expectedChains(try upgraded.changes(notIn: VersionVector()).filter { $0.id.replica == upgraded.replicaID }))
        #expect(try chains(of: upgraded, other.replicaID) == [Self.expectedChains(theirs)[0], nil], "only the contiguous prefix is chained")
        #expect(try upgraded.ownHeads(in: 1...8).map(\.counter) == expectedHeads.map(\.counter))
        // The next local write continues the chain and the checkpoint count.
        try write(upgraded, 1, text: "after", size: 4_000)
        #expect(try chains(of: upgraded, upgraded.replicaID) == Self.expectedChains(try upgraded.changes(notIn: VersionVector()).filter { $0.id.replica == upgraded.replicaID }))
    }

    @Test("a fork rewrites the identity file for the new replica id, and chains the re-issued changes")
    func fork() throws {
        let store = try make("a", id: 1)
        try write(store, 3)
        let newID = ReplicaID(high: 0xF0, low: 0xF0)
        var random = SeededGenerator(seed: 77)
        let newKey = SigningKey(random: &random)
        try store.fork(into: newID, credential: [9], divergentFrom: 2, deviceKey: newKey)
        let identity = try IdentityFile.readReplica(at: store.identityPath, expecting: newID)
        #expect(identity.deviceKey.publicKey == newKey.publicKey && identity.deviceSecret == [9])
        let reissued = try store.changes(notIn: VersionVector()).filter { $0.id.replica == newID }
        #expect(reissued.count == 2)
        #expect(try chains(of: store, newID) == Self.expectedChains(reissued))
        #expect(try store.ownHeads(in: 1...2).allSatisfy { $0.verifies(with: newKey.publicKey) })
        try store.close()
        #expect(try ReplicaStore.open(at: store.path, schema: SimulationSchema.v1, wallClock: clock).signingKey?.publicKey == newKey.publicKey)
    }
}
