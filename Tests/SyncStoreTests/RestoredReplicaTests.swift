import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// A replica file restored from a backup or copied, at the store level: own changes that come
/// back move the counter past them; another version of a change id is refused; a fork re-issues
/// the copy's own writes under a new identity and rebuilds the same state from the log.
@Suite("Restored replica store")
struct RestoredReplicaTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    func make(_ name: String, id: UInt64) throws -> ReplicaStore { try Self.make(name, id: id, in: directory, clock: clock) }

    static func make(_ name: String, id: UInt64, in directory: String, clock: SimulatedClock) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: id, low: id),
                                name: name, wallClock: clock)
    }

    func restore(_ backup: String, as name: String) throws -> ReplicaStore {
        let path = "\(directory)/\(name).db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: backup, toPath: path)
        return try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock)
    }

    @Test("a restored replica that imports a bundle of its own later changes keeps writing, past their counters")
    func ownChangesInABundle() throws {
        var store: ReplicaStore? = try make("a", id: 1)
        let peer = try make("peer", id: 2)
        // Bundles verify between replicas enrolled with one hub (the backup holds the enrolment).
        try TestEnrolment.enrol([store!, peer])
        try store!.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("one")]) }
        try store!.backup(to: "\(directory)/backup.db")
        for word in ["two", "three"] {
            clock.advance(10)
            try store!.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text(word)]) }
        }
        // A peer received everything and sends it back later in a bundle.
        _ = try BundleExchange.apply(try BundleExchange.makeBundle(from: store!, for: nil).0, to: peer)
        store = nil
        let restored = try restore("\(directory)/backup.db", as: "a")
        #expect(try restored.status().localChanges == 1, "the create, one row edit")
        _ = try BundleExchange.apply(try BundleExchange.makeBundle(from: peer, for: nil).0, to: restored)
        clock.advance(10)
        // Before the fix: UNIQUE constraint failed on sync_change (counter 2 reused), for every write.
        let ids = try restored.write(author: "ann") { tx in
            try tx.update("note", id: "n", values: ["text": .text("four")])
            return tx.changeIDs
        }
        #expect(ids.map(\.counter) == [4], "past the create and the two updates the bundle brought back")
        #expect(try restored.read { try $0.row("note", id: "n")?["text"] } == .text("four"))
    }

    @Test("own changes recovered from the hub are applied, and a later edit is stamped after them even on a clock set back")
    func recoveredThenEdited() throws {
        var store: ReplicaStore? = try make("a", id: 1)
        try store!.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("one")]) }
        try store!.backup(to: "\(directory)/backup.db")
        clock.advance(60_000)
        try store!.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text("two")]) }
        let onHub = try store!.changes(notIn: VersionVector()).filter { $0.id.counter > 1 }
        store = nil
        _ = try restore("\(directory)/backup.db", as: "a")
        // The restored machine's clock is behind the lost edit (set back, or another machine).
        let restored = try ReplicaStore.open(at: "\(directory)/a.db", schema: SimulationSchema.v1, wallClock: SimulatedClock(1_750_000_000_010))
        let hub = ReplicaID(high: 0xAB, low: 0xAB)
        let check = try restored.recoverOwnChanges(onHub, hub: hub)
        #expect(check == { var expected = OwnOriginCheck(); expected.recovered = 1; return expected }())
        #expect(try restored.peerKnowledge(hub)[restored.replicaID] == 2, "what was checked is known to be on the hub")
        #expect(try restored.read { try $0.row("note", id: "n")?["text"] } == .text("two"))
        try restored.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text("three")]) }
        #expect(try restored.read { try $0.row("note", id: "n")?["text"] } == .text("three"), "the newer edit wins")
        // And it wins everywhere: a replica receiving the same changes agrees (a local edit is
        // applied as the winner, so a stamp behind the recovered edit would split the replicas).
        let other = try make("other", id: 2)
        _ = try other.apply(try restored.changes(notIn: VersionVector()))
        #expect(try other.read { try $0.row("note", id: "n")?["text"] } == .text("three"))
        let again = try restored.recoverOwnChanges(onHub, hub: hub)
        #expect(again.identical == 1 && again.recovered == 0 && again.firstDivergent == nil)
    }

    @Test("own changes recovered from the hub and then purged with their young person: the next write takes a counter past them")
    func recoveredThenPurged() throws {
        var store: ReplicaStore? = try make("a", id: 1)
        try store!.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("one")], scope: "p-y") }
        try store!.backup(to: "\(directory)/backup.db")
        clock.advance(10)
        try store!.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text("two")]) }
        let onHub = try store!.changes(notIn: VersionVector()).filter { $0.id.counter > 1 }
        store = nil
        let restored = try restore("\(directory)/backup.db", as: "a")
        let hub = ReplicaID(high: 0xAB, low: 0xAB)
        try restored.recordHub(hub, address: "127.0.0.1:1", credential: nil)
        #expect(try restored.recoverOwnChanges(onHub, hub: hub).recovered == 1)
        // The young person leaves the replica's scope: the recovered change goes with the bundle.
        #expect(try restored.purge(scope: "p-y").changes == 2)
        clock.advance(10)
        // Before the fix: counter 2 again (the log's highest was gone, the counter was the
        // backup's), a second version of a change the hub holds, which the hub refuses for ever.
        let ids = try restored.write(author: "ann") { tx in
            try tx.create("note", id: "m", values: ["text": .text("other")], scope: "p-z")
            return tx.changeIDs
        }
        #expect(ids.map(\.counter) == [3], "past the recovered change, purged or not")
    }

    @Test("another version of a change id already held is refused whole, with a specific error")
    func equivocationRefused() throws {
        let store = try make("a", id: 1)
        try store.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("mine")]) }
        let mine = try store.changes(notIn: VersionVector())
        let other = mine.map { change in
            Change(table: change.table, row: change.row, column: change.column, write: FieldWrite(
                id: change.id, timestamp: change.write.timestamp, causalLength: change.write.causalLength,
                author: change.write.author,
                operation: change.isRowLife ? change.write.operation : .assign(.text("someone else's")),
                supersedes: change.write.supersedes))
        }
        let before = try ReplicaSnapshot.capture(store)
        #expect(throws: StoreError.self) { try store.apply(other) }
        do { _ = try store.apply(other) } catch let error as StoreError { #expect(error.code == .equivocation) }
        #expect(try ReplicaSnapshot.capture(store) == before, "nothing applied")
        #expect(try store.apply(mine).duplicates == mine.count, "the same version again is an ordinary duplicate")
    }

    @Test("a fork re-issues the copy's own writes under a new id and rebuilds exactly the state a fresh replica would have")
    func forkRebuilds() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("RestoredReplicaTests.forkRebuilds seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        let store = try make("a", id: 1)
        let other = try make("b", id: 2)
        var editors = [RandomEditor(), RandomEditor()]
        for _ in 0..<40 {
            clock.advance(7)
            _ = try editors[0].edit(store, author: "ann", random: &random)
            _ = try editors[1].edit(other, author: "bo", random: &random)
            if random.index(below: 5) == 0 {
                _ = try store.apply(try other.changes(notIn: VersionVector()))
                try editors[0].learn(from: store)
            }
        }
        let old = store.replicaID
        let own = try store.changes(notIn: VersionVector()).filter { $0.id.replica == old }
        let from = own[own.count / 2].id.counter
        let newID = ReplicaID(high: 9, low: 9)
        let reissued = try store.fork(into: newID, credential: [1, 2, 3], divergentFrom: from)
        #expect(reissued == own.filter { $0.id.counter >= from }.count)
        #expect(store.replicaID == newID)
        let after = try store.changes(notIn: VersionVector())
        #expect(!after.contains { $0.id.replica == old && $0.id.counter >= from }, "nothing of the old id from the divergence on")
        #expect(after.filter { $0.id.replica == newID }.map(\.id.counter) == Array(1...UInt64(reissued)))
        for change in after {
            #expect(!change.write.supersedes.contains { $0.replica == old && $0.counter >= from }, "supersedes point at the new ids")
        }
        // The rebuilt state is the state of a fresh replica that receives the same log.
        let fresh = try make("fresh", id: 3)
        _ = try fresh.apply(after)
        #expect(try ReplicaSnapshot.capture(store) == ReplicaSnapshot.capture(fresh), "seed \(seed)")
        #expect(try store.hubLink()?.forkedFrom == nil, "no hub link yet: nothing to record")
        // Writing goes on under the new identity, after the re-issued changes.
        let next = try store.write(author: "ann") { tx in
            try tx.create("note", id: "after-fork", values: ["text": .text("x")])
            return tx.changeIDs
        }
        #expect(next.first == ChangeID(replica: newID, counter: UInt64(reissued) + 1))
    }
}

/// What one change id means must survive storage byte for byte, or a replica relays other content
/// than its origin wrote and refuses its own copy when it comes back.
@Suite("One id, one version")
struct OneVersionTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    func make(_ name: String, id: UInt64) throws -> ReplicaStore { try RestoredReplicaTests.make(name, id: id, in: directory, clock: clock) }

    func change(_ counter: UInt64, table: String = "note", row: String = "n", column: String = "text", author: String = "ann",
                _ value: FieldValue) -> Change {
        Change(table: table, row: row, column: column, write: FieldWrite(
            id: ChangeID(replica: ReplicaID(high: 7, low: 7), counter: counter),
            timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000, logical: UInt16(counter)), author: author,
            operation: .assign(value)))
    }

    @Test("a U+0000 in a name, row id, author or text value is refused whole at import and at a local edit")
    func nulRefused() throws {
        let store = try make("a", id: 1)
        let poisoned = [change(1, column: "\u{0}\u{0}st", .text("x")), change(2, row: "n\u{0}", .text("x")),
                        change(3, author: "a\u{0}b", .text("x")), change(4, .text("before\u{0}after"))]
        for bad in poisoned {
            #expect(throws: StoreError.self, "\(bad.id)") { try store.apply([change(9, .text("fine")), bad]) }
        }
        #expect(try store.changes(notIn: VersionVector()).isEmpty, "nothing of a refused batch applied")
        #expect(throws: StoreError.self) {
            try store.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("a\u{0}b")]) }
        }
    }

    @Test("recovered own changes a hub could not have accepted (U+0000, NaN) are refused whole")
    func recoveredContentChecked() throws {
        let store = try make("a", id: 7)
        let hub = ReplicaID(high: 0xAB, low: 0xAB)
        for bad in [change(1, .text("a\u{0}b")), change(1, table: "item", row: "i", column: "size", .real(.nan))] {
            #expect(throws: StoreError.self) { try store.recoverOwnChanges([bad], hub: hub) }
        }
        #expect(try store.changes(notIn: VersionVector()).isEmpty)
    }

    @Test("a NaN real is refused whole: SQLite would keep it as NULL, another version of the change")
    func nanRefused() throws {
        let store = try make("a", id: 1)
        #expect(throws: StoreError.self) { try store.apply([change(1, table: "item", row: "i", column: "size", .real(.nan))]) }
        #expect(try store.changes(notIn: VersionVector()).isEmpty)
    }

    @Test("the same id twice in one batch with different content is refused whole")
    func twiceInOneBatch() throws {
        let store = try make("a", id: 1)
        #expect(throws: StoreError.self) { try store.apply([change(1, .text("one")), change(1, .text("two"))]) }
        #expect(try store.changes(notIn: VersionVector()).isEmpty)
        #expect(try store.apply([change(1, .text("one")), change(1, .text("one"))]).duplicates == 1, "the same version twice is fine")
    }
}
