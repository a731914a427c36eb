import CSQLiteFaultVFS
import Foundation
import SyncCore
import SyncIdentity
@testable import SyncStore
import SyncTesting
import Testing

/// Purging a young person's bundle (issue 10, "Scope changes"): nothing of it left in the file,
/// its free pages or its WAL; the other bundles untouched; verification of later runs unbroken.
@Suite("Replica store: purging a young person's bundle")
struct PurgeTests {
    let directory = TestFiles.directory("purge")
    let clock = SimulatedClock()
    static let hub = ReplicaID(high: 0x4B, low: 0x4B)
    static let leaving = "yp-ZQXMARKER-S"
    static let staying = "yp-ZQXMARKER-T"

    func make(_ name: String, id: UInt64, schema: ReplicaSchema = SimulationSchema.v1,
              options: StoreConnectionOptions = StoreConnectionOptions()) throws -> ReplicaStore {
        let store = try ReplicaStore.create(at: "\(directory)/\(name).db", schema: schema, replicaID: ReplicaID(high: id, low: id), name: name,
                                            wallClock: clock, options: options)
        try store.recordHub(Self.hub, address: "hub.test:7000", credential: nil)
        return store
    }

    /// The hub holds everything the store holds.
    func acknowledge(_ store: ReplicaStore) throws {
        try store.recordPeerKnowledge(Self.hub, try store.versionVector())
    }

    /// Items and notes of `scope` with `marker` in every text field, ids and author, each text
    /// field rewritten several times so that old values sit in freed space; one note deleted.
    func fill(_ store: ReplicaStore, scope: String, marker: String, author: String) throws {
        try store.write(author: author) { tx in
            for index in 0..<3 {
                let id = "item-\(marker)-\(index)"
                try tx.create("item", id: id, values: [
                    "code": .text("\(marker)-code-\(index)"), "title": .text("\(marker)-title-\(index)-v0"),
                    "body": .text("\(marker)-body-\(index)-v0"), "status": .text("draft"), "size": .integer(Int64(index)),
                ], scope: scope)
                try tx.add("item", id: id, column: "tags", element: .text("\(marker)-tag-\(index)"))
                try tx.add("item", id: id, column: "consent", element: .text("\(marker)-consent-\(index)"))
                try tx.remove("item", id: id, column: "consent", element: .text("\(marker)-consent-\(index)"))
                try tx.increment("item", id: id, column: "hits", by: 3)
            }
            for index in 0..<2 {
                try tx.create("note", id: "note-\(marker)-\(index)", values: ["text": .text("\(marker)-note-\(index)-v0")], scope: scope)
            }
        }
        for version in 1...4 {
            try store.write(author: author) { tx in
                for index in 0..<3 {
                    try tx.update("item", id: "item-\(marker)-\(index)", values: [
                        "title": .text("\(marker)-title-\(index)-v\(version)"), "body": .text("\(marker)-body-\(index)-v\(version)"),
                    ])
                }
                try tx.update("note", id: "note-\(marker)-0", values: ["text": .text("\(marker)-note-0-v\(version)")])
            }
        }
        try store.write(author: author) { tx in try tx.delete("note", id: "note-\(marker)-1") }
    }

    /// Where `marker` occurs in the replica's files (the database, its WAL and wal-index), as UTF-8
    /// and as UTF-16 in either byte order.
    func occurrences(of marker: String, in store: ReplicaStore) -> [String] {
        let encodings: [(String, Data)] = [
            ("utf8", Data(marker.utf8)),
            ("utf16le", marker.data(using: .utf16LittleEndian) ?? Data()),
            ("utf16be", marker.data(using: .utf16BigEndian) ?? Data()),
        ]
        var found: [String] = []
        for suffix in ["", "-wal", "-shm"] {
            guard let bytes = FileManager.default.contents(atPath: store.path + suffix) else { continue }
            for (name, pattern) in encodings where bytes.range(of: pattern) != nil { found.append("\(suffix.isEmpty ? "db" : suffix) \(name)") }
        }
        return found
    }

    func fileSize(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }

    static func storeCode(_ body: () throws -> Void) -> StoreError.Code? {
        do { try body() } catch let error as StoreError { return error.code } catch { return nil }
        return nil
    }

    /// Every domain row of both tables, by table and id.
    func domainRows(_ store: ReplicaStore) throws -> [String: [String: FieldValue]] {
        try store.read { view in
            var rows: [String: [String: FieldValue]] = [:]
            for table in ["item", "note"] {
                for row in try view.rows(table) { rows["\(table)/\(row["id"]?.textValue ?? "?")"] = row }
            }
            return rows
        }
    }

    @Test("a purged bundle leaves no marker in the file, its free pages or its WAL; the other bundle is untouched")
    func noMarkerLeft() throws {
        let alice = try make("alice", id: 1)
        // The system SQLite here is built with SQLITE_SECURE_DELETE; SQLite's default is off, and
        // then an update leaves the old value in the page's free space: written that way here.
        #expect(try alice.connectionPragma("secure_delete", set: 0) == "0")
        let bea = try make("bea", id: 2, schema: SimulationSchema.v2)
        try fill(alice, scope: Self.staying, marker: "ZQXMARKER-T", author: "ann")
        try fill(alice, scope: Self.leaving, marker: "ZQXMARKER-S", author: "worker-ZQXMARKER-S")
        // Bea, on a newer schema, writes the bundle concurrently with Alice (an open conflict) and a
        // note with a column Alice's schema does not know yet (parked at Alice).
        _ = try bea.apply(try alice.changes(notIn: VersionVector()))
        let item = "item-ZQXMARKER-S-0"
        try bea.write(author: "bea") { tx in
            try tx.update("item", id: item, values: ["body": .text("ZQXMARKER-S-body-from-bea")])
            try tx.create("note", id: "note-ZQXMARKER-S-bea", values: ["text": .text("ZQXMARKER-S-bea-text"), "colour": .text("ZQXMARKER-S-colour")],
                          scope: Self.leaving)
        }
        try alice.write(author: "ann") { try $0.update("item", id: item, values: ["body": .text("ZQXMARKER-S-body-concurrent")]) }
        let fromBea = try bea.changes(notIn: VersionVector()).filter { $0.id.replica == bea.replicaID }
        #expect(try alice.apply(fromBea).parked == 1)
        #expect(try alice.read { try $0.openConflicts("item", id: item) } == 1)
        // A peer's change that names the leaving scope on a row of the staying one wins its field.
        let stray = Change(id: ChangeID(replica: ReplicaID(high: 3, low: 3), counter: 1),
                           timestamp: HybridTimestamp(physicalMillis: clock.nowMillis(), logical: 9000), author: "mallory", table: "item",
                           row: "item-ZQXMARKER-T-0", scope: Self.leaving, causalLength: 1, setsLife: false,
                           fields: [FieldEdit(column: "title", operation: .assign(.text("ZQXMARKER-S-stray")))])
        #expect(try alice.apply([stray]).applied == 1)
        #expect(try alice.read { try $0.row("item", id: "item-ZQXMARKER-T-0")?["title"] } == .text("ZQXMARKER-S-stray"))
        // Two writes of another team's replica held for review (Protocol/scope.md, "Quarantine
        // review"), one of them dismissed with a reason: they leave with the bundle.
        let other = ReplicaID(high: 5, low: 5)
        try alice.receiveHeld((1...2).map { counter in
            HeldItem(fromReplica: other, reason: .outOfScope, receivedAtMillis: 1, change: Change(
                id: ChangeID(replica: other, counter: counter), timestamp: HybridTimestamp(physicalMillis: clock.nowMillis(), logical: 1),
                author: "held-author-ZQXMARKER-S", table: "note", row: "note-ZQXMARKER-S-0", scope: Self.leaving, causalLength: 1,
                setsLife: false, fields: [FieldEdit(column: "text", operation: .assign(.text("ZQXMARKER-S-held-\(counter)")))]))
        })
        let dismissed = try #require(try alice.heldItems().first)
        try alice.dismissHeld(id: dismissed.id, worker: "ann", reason: "reason-ZQXMARKER-S")
        try acknowledge(alice)

        let expectedRows = try domainRows(alice).filter { !$0.key.contains("ZQXMARKER-S") }
        let staying = try alice.bundleSize(scope: Self.staying)
        let leaving = try alice.bundleSize(scope: Self.leaving)
        #expect(leaving.rows == 6 && leaving.changes > 20 && leaving.fields > 0 && leaving.held == 2)
        // The test can fail: before the purge, the markers are in the files.
        #expect(!occurrences(of: "ZQXMARKER-S", in: alice).isEmpty)
        #expect(!occurrences(of: "worker-ZQXMARKER-S", in: alice).isEmpty)

        let summary = try alice.purge(scope: Self.leaving)
        #expect(summary == leaving)
        #expect(occurrences(of: "ZQXMARKER-S", in: alice) == [])
        #expect(occurrences(of: "QXMARKER-S", in: alice) == [])
        #expect(occurrences(of: "ZQXMARKER-T", in: alice).contains("db utf8"))
        #expect(try alice.bundleSize(scope: Self.leaving).isEmpty)
        // The staying bundle lost only the stray change; its row shows Alice's last title again.
        var stayingAfter = staying
        stayingAfter.changes -= 1
        #expect(try alice.bundleSize(scope: Self.staying) == stayingAfter)
        var rows = expectedRows
        rows["item/item-ZQXMARKER-T-0"]?["title"] = .text("ZQXMARKER-T-title-0-v4")
        #expect(try domainRows(alice) == rows)
        let status = try alice.status()
        #expect(status.openConflicts == 0 && status.parkedChanges == 0)
        #expect(try alice.history(table: "item", row: item).isEmpty)
        #expect(try alice.heldItems().isEmpty)
        // The file is whole, and reads the same after a reopen.
        try alice.close()
        #expect(try sqlite3(alice.path, "PRAGMA integrity_check") == "ok")
        let reopened = try ReplicaStore.open(at: alice.path, schema: SimulationSchema.v1, wallClock: clock)
        #expect(try domainRows(reopened) == rows)
        try reopened.close()
    }

    @Test("a bundle holding changes the hub does not hold yet is refused (UNSYNCED_CHANGES), nothing removed; once pushed it purges")
    func refusedWhileUnsynced() throws {
        let alice = try make("alice", id: 1)
        let bea = try make("bea", id: 2)
        try fill(alice, scope: Self.staying, marker: "ZQXMARKER-T", author: "ann")
        try acknowledge(alice)
        try alice.write(author: "ann") { try $0.create("note", id: "n-own", values: ["text": .text("ZQXMARKER-S-own")], scope: Self.leaving) }
        // Bea's change came in a bundle file, not from the hub: Alice relays it.
        try bea.write(author: "bea") { try $0.create("note", id: "n-relayed", values: ["text": .text("ZQXMARKER-S-relayed")], scope: Self.leaving) }
        _ = try alice.apply(try bea.changes(notIn: VersionVector()))
        #expect(try alice.pendingChanges(scope: Self.leaving) == 2)
        #expect(try alice.pendingChanges(scope: Self.staying) == 0)
        let before = try alice.bundleSize(scope: Self.leaving)
        #expect(Self.storeCode { _ = try alice.purge(scope: Self.leaving) } == .unsyncedChanges)
        #expect(try alice.bundleSize(scope: Self.leaving) == before)
        #expect(try alice.read { try $0.row("note", id: "n-own")?["text"] } == .text("ZQXMARKER-S-own"))
        // The hub acknowledges Alice's own change: Bea's is still owed.
        try alice.recordPeerKnowledge(Self.hub, VersionVector([alice.replicaID: try alice.status().localChanges]))
        #expect(try alice.pendingChanges(scope: Self.leaving) == 1)
        #expect(Self.storeCode { _ = try alice.purge(scope: Self.leaving) } == .unsyncedChanges)
        try acknowledge(alice)
        #expect(try alice.pendingChanges(scope: Self.leaving) == 0)
        #expect(try alice.purge(scope: Self.leaving) == before)
    }

    @Test("changes of the hub's own origin are never pending: the hub holds them")
    func hubOriginNotPending() throws {
        let alice = try make("alice", id: 1)
        let change = Change(id: ChangeID(replica: Self.hub, counter: 1), timestamp: HybridTimestamp(physicalMillis: clock.nowMillis(), logical: 1),
                            author: "hub", table: "note", row: "n-hub", scope: Self.leaving, causalLength: 1, setsLife: true,
                            fields: [FieldEdit(column: "text", operation: .assign(.text("x")))])
        _ = try alice.apply([change])
        #expect(try alice.pendingChanges(scope: Self.leaving) == 0)
        #expect(try alice.purge(scope: Self.leaving).changes == 1)
    }

    @Test("a purge is idempotent: an absent or purged scope returns an empty summary and leaves the files byte for byte")
    func idempotent() throws {
        let alice = try make("alice", id: 1)
        try fill(alice, scope: Self.staying, marker: "ZQXMARKER-T", author: "ann")
        try fill(alice, scope: Self.leaving, marker: "ZQXMARKER-S", author: "ann")
        try acknowledge(alice)
        let absentBefore = (FileManager.default.contents(atPath: alice.path), FileManager.default.contents(atPath: alice.path + "-wal"))
        #expect(try alice.purge(scope: "yp-never-held") == PurgeSummary())
        #expect(FileManager.default.contents(atPath: alice.path) == absentBefore.0)
        #expect(FileManager.default.contents(atPath: alice.path + "-wal") == absentBefore.1)
        #expect(try alice.purge(scope: Self.leaving).rows == 5)
        let before = (FileManager.default.contents(atPath: alice.path), FileManager.default.contents(atPath: alice.path + "-wal"))
        #expect(try alice.purge(scope: Self.leaving) == PurgeSummary())
        #expect(FileManager.default.contents(atPath: alice.path) == before.0)
        #expect(FileManager.default.contents(atPath: alice.path + "-wal") == before.1)
        #expect(try alice.bundleSize(scope: Self.staying).rows == 5)
    }

    @Test("after a purge the connection reads back synchronous=FULL and WAL, secure_delete is as it was, and the WAL is empty")
    func pragmasAfterPurge() throws {
        let alice = try make("alice", id: 1)
        try fill(alice, scope: Self.leaving, marker: "ZQXMARKER-S", author: "ann")
        try acknowledge(alice)
        #expect(fileSize(alice.path + "-wal") > 0)
        let secureDelete = try alice.connectionPragma("secure_delete")
        let tempStore = try alice.connectionPragma("temp_store")
        _ = try alice.purge(scope: Self.leaving)
        #expect(try alice.connectionPragmas() == (2, "wal"))
        #expect(try alice.connectionPragma("secure_delete") == secureDelete)
        #expect(try alice.connectionPragma("temp_store") == tempStore)
        #expect(fileSize(alice.path + "-wal") == 0)
        #expect(try alice.reclaimOwed() == false)
        // Still durable for the next write.
        try alice.write(author: "ann") { try $0.create("note", id: "after", values: ["text": .text("t")], scope: Self.staying) }
        #expect(try alice.connectionPragmas() == (2, "wal"))
    }

    @Test("after purging an origin's last changes, its next verified run applies, and this replica's own chain continues")
    func verificationAfterPurge() throws {
        let alice = try make("alice", id: 1)
        let bob = try make("bob", id: 2)
        let carol = try make("carol", id: 3)
        try TestEnrolment.enrol([alice, bob, carol])
        // Alice's last two changes are about the leaving young person.
        for index in 0..<3 {
            try alice.write(author: "ann") { try $0.create("note", id: "t\(index)", values: ["text": .text("ZQXMARKER-T-\(index)")], scope: Self.staying) }
        }
        for index in 0..<2 {
            try alice.write(author: "ann") { try $0.create("note", id: "s\(index)", values: ["text": .text("ZQXMARKER-S-\(index)")], scope: Self.leaving) }
        }
        let first = try alice.changes(notIn: VersionVector())
        #expect(try bob.apply(first, provenance: try alice.provenance(for: first)).applied == 5)
        // Bob's own last change is about the leaving young person too; Carol holds it.
        try bob.write(author: "bo") { try $0.create("note", id: "b0", values: ["text": .text("ZQXMARKER-S-bob")], scope: Self.leaving) }
        let bobs = try bob.changes(notIn: VersionVector([alice.replicaID: 5]))
        #expect(try carol.apply(bobs, provenance: try bob.provenance(for: bobs)).applied == 1)
        try acknowledge(bob)

        #expect(try bob.purge(scope: Self.leaving).changes == 3)
        #expect(try bob.versionVector() == VersionVector([alice.replicaID: 5, bob.replicaID: 1]))
        // The purged changes' heads still read, with their chains (3: alice's boundary head, where
        // her log moves from one young person to the other).
        #expect(try bob.heldHeads(origin: alice.replicaID, in: 1...5).map(\.counter) == [3, 5])

        // Alice's next run starts after the purged changes.
        try alice.write(author: "ann") { try $0.create("note", id: "t3", values: ["text": .text("later")], scope: Self.staying) }
        let next = try alice.changes(notIn: VersionVector([alice.replicaID: 5]))
        #expect(next.map(\.id.counter) == [6])
        #expect(try bob.apply(next, provenance: try alice.provenance(for: next)).applied == 1)
        #expect(try bob.versionVector()[alice.replicaID] == 6)
        // Bob's next own change chains on from the purged one: Carol verifies it.
        try bob.write(author: "bo") { try $0.create("note", id: "b1", values: ["text": .text("later")], scope: Self.staying) }
        let bobNext = try bob.changes(notIn: VersionVector([alice.replicaID: 6, bob.replicaID: 1]))
        #expect(bobNext.map(\.id.counter) == [2])
        #expect(try carol.apply(bobNext, provenance: try bob.provenance(for: bobNext)).applied == 1)
    }

    @Test("the contiguous counter steps over purged changes held past a gap; a purged change sent again is applied as new")
    func contiguityOverPurged() throws {
        let source = try make("source", id: 5)
        try source.write(author: "ann") { try $0.create("note", id: "n1", values: ["text": .text("a")], scope: Self.staying) }
        try source.write(author: "ann") { try $0.create("note", id: "n2", values: ["text": .text("b")], scope: Self.staying) }
        try source.write(author: "ann") { try $0.create("note", id: "n3", values: ["text": .text("ZQXMARKER-S-3")], scope: Self.leaving) }
        let changes = try source.changes(notIn: VersionVector())
        let alice = try make("alice", id: 1)
        _ = try alice.apply([changes[0], changes[2]])
        try acknowledge(alice)
        try alice.recordPeerKnowledge(Self.hub, VersionVector([source.replicaID: 3]))
        #expect(try alice.purge(scope: Self.leaving).changes == 1)
        _ = try alice.apply([changes[1]])
        #expect(try alice.versionVector()[source.replicaID] == 3)
        // The young person comes back into scope: the change is held again.
        #expect(try alice.apply([changes[2]]).applied == 1)
        #expect(try alice.read { try $0.row("note", id: "n3")?["text"] } == .text("ZQXMARKER-S-3"))
    }

    @Test("a power cut right after a purge returns loses nothing of it: no marker comes back with the WAL")
    func durableBeforeReturning() throws {
        let disk = try FaultDisk()
        let path = "\(disk.directory)/alice.db"
        var alice: ReplicaStore? = try ReplicaStore.create(at: path, schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1),
                                                            name: "alice", wallClock: clock, options: disk.options())
        try alice?.recordHub(Self.hub, address: "hub.test:7000", credential: nil)
        try fill(try #require(alice), scope: Self.staying, marker: "ZQXMARKER-T", author: "ann")
        try fill(try #require(alice), scope: Self.leaving, marker: "ZQXMARKER-S", author: "ann")
        try acknowledge(try #require(alice))
        #expect(try alice?.purge(scope: Self.leaving).rows == 5)
        try disk.powerCut { alice = nil }
        let reopened = try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock, options: disk.options())
        #expect(occurrences(of: "ZQXMARKER-S", in: reopened) == [])
        #expect(try reopened.bundleSize(scope: Self.leaving).isEmpty)
        #expect(try reopened.bundleSize(scope: Self.staying).rows == 5)
        #expect(try reopened.reclaimOwed() == false)
        try reopened.close()
    }
}
