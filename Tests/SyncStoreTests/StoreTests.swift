import Crypto
import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

@Suite("Replica store")
struct StoreTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    func make(_ name: String = "a", schema: ReplicaSchema = SimulationSchema.v1, id: UInt64 = 1) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(directory)/\(name).db", schema: schema, replicaID: ReplicaID(high: id, low: id),
                                name: name, wallClock: clock)
    }

    @Test("a local edit and its change-log entry commit together or not at all")
    func atomicLocalWrite() throws {
        let store = try make()
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try store.write(author: "ann") { tx in
                try tx.create("item", id: "x", values: ["title": .text("t")])
                throw Abort()
            }
        }
        #expect(try store.read { try $0.row("item", id: "x") } == nil)
        #expect(try store.status().localChanges == 0)
        #expect(try store.changes(notIn: VersionVector()).isEmpty)
        let ids = try store.write(author: "ann") { tx in
            try tx.create("item", id: "x", values: ["title": .text("t")])
            return tx.changeIDs
        }
        #expect(ids.map(\.counter) == [1], "a create with its field is one row edit, counters from 1")
        #expect(try store.status().localChanges == 1)
    }

    @Test("applying a batch twice changes nothing the second time")
    func idempotentApply() throws {
        let a = try make("a", id: 1)
        let b = try make("b", id: 2)
        try a.write(author: "ann") { tx in
            try tx.create("item", id: "x", values: ["title": .text("t"), "body": .text("b")])
            try tx.add("item", id: "x", column: "tags", element: .text("k"))
            try tx.increment("item", id: "x", column: "hits", by: 2)
        }
        let batch = try a.changes(notIn: VersionVector())
        let first = try b.apply(batch)
        let before = try ReplicaSnapshot.capture(b)
        let second = try b.apply(batch)
        #expect(first.applied == batch.count)
        #expect(second.applied == 0 && second.duplicates == batch.count)
        #expect(try ReplicaSnapshot.capture(b) == before)
        #expect(try b.read { try $0.row("item", id: "x")?["hits"] } == .integer(2), "a duplicate increment counts once")
    }

    @Test("policy refusals on local edits", arguments: ["immutable", "backwards", "deleteStatutory", "wrongType", "unknownColumn"])
    func refusals(case name: String) throws {
        let store = try make()
        try store.write(author: "ann") { try $0.create("item", id: "x", values: ["code": .text("C"), "status": .text("done")]) }
        let expected: StoreError.Code
        let body: (inout LocalTransaction) throws -> Void
        switch name {
        case "immutable": expected = .immutableField; body = { try $0.update("item", id: "x", values: ["code": .text("D")]) }
        case "backwards": expected = .statusBackwards; body = { try $0.update("item", id: "x", values: ["status": .text("open")]) }
        case "deleteStatutory": expected = .notDeletable; body = { try $0.delete("item", id: "x") }
        case "wrongType": expected = .wrongType; body = { try $0.update("item", id: "x", values: ["size": .text("big")]) }
        default: expected = .unknownColumn; body = { try $0.update("item", id: "x", values: ["nope": .text("1")]) }
        }
        let error = #expect(throws: StoreError.self) { try store.write(author: "ann", body) }
        #expect(error?.code == expected)
        #expect(try store.status().localChanges == 1, "nothing written by the refused edit")
    }

    @Test("changes to a column this schema does not know are kept and applied after upgrade")
    func unknownColumnsKept() throws {
        let newer = try make("newer", schema: SimulationSchema.v2, id: 1)
        let older = try make("older", schema: SimulationSchema.v1, id: 2)
        try newer.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("hi"), "colour": .text("blue")]) }
        let summary = try older.apply(try newer.changes(notIn: VersionVector()))
        #expect(summary.parked == 1)
        #expect(try older.read { try $0.row("note", id: "n")?["text"] } == .text("hi"))
        // Kept changes travel on: a third replica hears of them from the older one.
        #expect(try older.changes(notIn: VersionVector()).contains { $0.column == "colour" })
        let upgraded = try ReplicaStore.open(at: "\(directory)/older.db", schema: SimulationSchema.v2, wallClock: clock)
        #expect(try upgraded.read { try $0.row("note", id: "n")?["colour"] } == .text("blue"))
        #expect(try upgraded.status().parkedChanges == 0)
    }

    @Test("a batch with a timestamp too far ahead is refused whole")
    func clockSkewRefused() throws {
        let store = try make()
        let origin = ReplicaID(high: 5, low: 5)
        let now = clock.nowMillis()
        let good = Change.rowLife(table: "note", row: "n", id: ChangeID(replica: origin, counter: 1),
                                  timestamp: HybridTimestamp(physicalMillis: now, logical: 0), author: "x", causalLength: 1)
        let bad = Change(table: "note", row: "n", column: "text", write: FieldWrite(
            id: ChangeID(replica: origin, counter: 2), timestamp: HybridTimestamp(physicalMillis: now + 10 * 60_000, logical: 0),
            author: "x", operation: .assign(.text("future"))))
        let error = #expect(throws: StoreError.self) { try store.apply([good, bad]) }
        #expect(error?.code == .clockSkew)
        #expect(try store.status().totalChanges == 0)
        #expect(try store.read { try $0.row("note", id: "n") } == nil)
    }

    @Test("local timestamps after a sync exceed every timestamp seen")
    func clockAdvancesPastRemote() throws {
        let a = try make("a", id: 1)
        let b = try make("b", id: 2)
        clock.advance(60_000)
        try a.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("a")]) }
        let ahead = try a.changes(notIn: VersionVector())
        // b's wall clock is a minute behind a's (still within the 5-minute bound).
        let behind = try ReplicaStore.open(at: "\(directory)/b.db", schema: SimulationSchema.v1, wallClock: FixedWallClock(millis: clock.nowMillis() - 60_000))
        _ = try behind.apply(ahead)
        try behind.write(author: "bob") { try $0.update("note", id: "n", values: ["text": .text("b after seeing a")]) }
        _ = b
        _ = try a.apply(try behind.changes(notIn: VersionVector()))
        #expect(try a.read { try $0.row("note", id: "n")?["text"] } == .text("b after seeing a"),
                "an edit made after seeing another wins last-writer-wins even with a slower wall clock")
    }

    @Test("a bundle from a replica of another team (as certificates the hub signed say) is refused with nothing applied; one from the same team applies")
    func bundlesStayInTheTeam() throws {
        let a = try make("a", id: 1)
        let b = try make("b", id: 2)
        let c = try make("c", id: 3)
        try TestEnrolment.enrol([a, c], team: "CIN-1")
        try TestEnrolment.enrol([b], team: "PERM")
        try a.write(author: "ann") { try $0.create("item", id: "x", values: ["title": .text("t")], scope: "yp-1") }
        let (bytes, _) = try BundleExchange.export(from: a, for: nil)
        #expect(throws: BundleError.otherTeam) { try BundleExchange.importBundle(into: b, bytes: bytes) }
        #expect(try b.status().totalChanges == 0)
        #expect(try BundleExchange.importBundle(into: c, bytes: bytes).result.applied == 1)
    }

    @Test("bundles: round trip, and a corrupt or truncated file is refused with nothing applied")
    func bundles() throws {
        let a = try make("a", id: 1)
        let b = try make("b", id: 2)
        try TestEnrolment.enrol([a, b])
        try a.write(author: "ann") { try $0.create("item", id: "x", values: ["title": .text("t"), "body": .text("b")]) }
        // In memory: bundle files (DurableFile, in SyncClient) are tested in SyncIntegrationTests' BundleFileTests.
        let (encoded, exported) = try BundleExchange.export(from: a, for: nil)
        var bytes = encoded
        #expect(bytes.count == exported.bytes)
        #expect(try ChangeBundle.decode(bytes).changes.count == exported.changes)

        var flipped = bytes
        flipped[flipped.count / 2] ^= 0x01
        #expect(throws: BundleError.checksumMismatch) { try ChangeBundle.decode(flipped) }
        #expect(throws: BundleError.self) { try ChangeBundle.decode(Array(bytes.prefix(bytes.count - 7))) }
        #expect(throws: BundleError.notABundle) { try ChangeBundle.decode(Array("not a bundle at all, just text....................................".utf8)) }
        // A bundle of format 1 (single-field changes, written before row edits) is refused by its
        // version, checksum intact, before anything after it is read.
        var older = Array(bytes.dropLast(32))
        older[8] = 0
        older[9] = 1
        older += SHA256.hash(data: older)
        #expect(throws: BundleError.unsupportedVersion(1)) { try ChangeBundle.decode(older) }
        let message = "\(BundleError.unsupportedVersion(1))"
        #expect(message.contains("format version 1 is not supported (this program reads 3") && message.hasSuffix("nothing applied"), "\(message)")
        #expect(throws: BundleError.unsupportedVersion(1)) { try BundleExchange.importBundle(into: b, bytes: older) }
        #expect(throws: BundleError.self) { try BundleExchange.importBundle(into: b, bytes: Array(bytes.prefix(bytes.count / 2))) }
        #expect(try b.status().totalChanges == 0)

        let summary = try BundleExchange.importBundle(into: b, bytes: bytes)
        #expect(summary.result.applied == exported.changes)
        #expect(try ReplicaSnapshot.capture(b) == ReplicaSnapshot.capture(a))
        // b now knows what a has seen, so an export for a carries only b's own new changes.
        try b.write(author: "bob") { try $0.update("item", id: "x", values: ["title": .text("u")]) }
        let (incremental, known) = try BundleExchange.makeBundle(from: b, for: a.replicaID)
        #expect(known && incremental.changes.count == 1)
        bytes = []
    }

    @Test("current values are ordinary rows that the sqlite3 CLI reads")
    func sqliteReadable() throws {
        let store = try make()
        try store.write(author: "ann") { tx in
            try tx.create("item", id: "x", values: ["title": .text("Plain SQLite"), "status": .text("open")])
            try tx.add("item", id: "x", column: "tags", element: .text("b"))
            try tx.add("item", id: "x", column: "tags", element: .text("a"))
        }
        let sqlite = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let path = try #require(sqlite, "the sqlite3 CLI is installed by Tools/check-deps.sh")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = [store.path, "select title, status, tags from item"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(output == "Plain SQLite|open|[\"a\",\"b\"]\n")
    }

    @Test("opening something that is not a replica gives a clear error")
    func notAReplica() throws {
        let path = "\(directory)/junk.db"
        _ = FileManager.default.createFile(atPath: path, contents: Data("this is not sqlite at all".utf8))
        let error = #expect(throws: StoreError.self) { try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock) }
        #expect(error?.code == .notAReplica)
        #expect(throws: StoreError.self) { try ReplicaStore.open(at: "\(directory)/missing.db", schema: SimulationSchema.v1, wallClock: clock) }
        _ = try make("exists")
        let exists = #expect(throws: StoreError.self) { try make("exists") }
        #expect(exists?.code == .alreadyExists)
    }

    @Test("an edit of several fields over the change size limit, each field within its own, is refused whole and uses no counter")
    func multiFieldEditOverSizeLimit() throws {
        let store = try make()
        // Each value is within `maxValueBytes`; the two together are over `maxEncodedBytes`.
        let half = String(repeating: "a", count: ChangeLimits.maxEncodedBytes / 2 + 1)
        #expect(half.utf8.count <= ChangeLimits.maxValueBytes)
        let create = #expect(throws: StoreError.self) {
            try store.write(author: "ann") { try $0.create("item", id: "x", values: ["title": .text(half), "body": .text(half)]) }
        }
        #expect(create?.code == .limitExceeded)
        #expect(create?.message.contains("aaaa") == false, "the error names sizes, not contents")
        #expect(try store.read { try $0.row("item", id: "x") } == nil)
        #expect(try store.status().localChanges == 0)
        let created = try store.write(author: "ann") { tx in
            try tx.create("item", id: "x", values: ["title": .text(half)])
            return tx.changeIDs
        }
        #expect(created.map(\.counter) == [1], "the refused edit consumed no counter")
        let update = #expect(throws: StoreError.self) {
            try store.write(author: "ann") { tx in
                try tx.update("item", id: "x", values: ["size": .integer(1)])
                try tx.update("item", id: "x", values: ["title": .text(half + "b"), "body": .text(half)])
            }
        }
        #expect(update?.code == .limitExceeded)
        #expect(try store.read { try $0.row("item", id: "x")?["size"] } == .null, "the whole transaction is refused")
        #expect(try store.read { try $0.row("item", id: "x")?["title"] } == .text(half))
        #expect(try store.status().localChanges == 1)
        let updated = try store.write(author: "ann") { tx in
            try tx.update("item", id: "x", values: ["size": .integer(2)])
            return tx.changeIDs
        }
        #expect(updated.map(\.counter) == [2])
        // A caller that catches the refusal and goes on in the same transaction: the next edit
        // takes the next counter, so the origin's counters keep no gap.
        let caught = try store.write(author: "ann") { tx in
            do {
                try tx.update("item", id: "x", values: ["title": .text(half + "c"), "body": .text(half)])
                Issue.record("an edit over the size limit was accepted")
            } catch let error as StoreError {
                #expect(error.code == .limitExceeded)
            }
            try tx.update("item", id: "x", values: ["size": .integer(3)])
            return tx.changeIDs
        }
        #expect(caught.map(\.counter) == [3])
        #expect(try store.read { try $0.row("item", id: "x")?["size"] } == .integer(3))
        #expect(try store.changes(notIn: VersionVector()).map(\.id.counter) == [1, 2, 3], "the log has no gap and nothing refused")
    }

    @Test("metadata bytes per tracked field are measurable")
    func metadataSize() throws {
        let store = try make()
        try store.write(author: "ann") { tx in
            for index in 0..<200 { try tx.create("note", id: "n\(index)", values: ["text": .text("x"), "pinned": .integer(1)]) }
        }
        let measured = try #require(try store.metadataBytesPerField())
        #expect(measured.fields == 400)
        #expect(measured.bytes > 0)
    }

    @Test("changes of one row naming different scopes are each held and relayed as their origin wrote them")
    func scopeKeptPerChange() throws {
        let store = try make()
        let origin = ReplicaID(high: 7, low: 7)
        let time = HybridTimestamp(physicalMillis: clock.nowMillis(), logical: 0)
        let create = Change(id: ChangeID(replica: origin, counter: 1), timestamp: time, author: "ann", table: "note", row: "n",
                            scope: "yp-1", causalLength: 1, setsLife: true, fields: [FieldEdit(column: "text", operation: .assign(.text("a")))])
        // A broken or hostile peer names another scope for the same row.
        let update = Change(id: ChangeID(replica: origin, counter: 2), timestamp: time, author: "ann", table: "note", row: "n",
                            scope: "yp-2", causalLength: 1, fields: [FieldEdit(column: "text", operation: .assign(.text("b")))])
        _ = try store.apply([create, update])
        let held = try store.changes(notIn: VersionVector())
        #expect(held.map(\.canonicalBytes) == [create.canonicalBytes, update.canonicalBytes])
        // Re-applying what it relays is a duplicate, never an equivocation.
        #expect(try store.apply(held).duplicates == 2)
        // Local edits of the row carry the row's scope: the one it was first seen with.
        try store.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text("c")]) }
        #expect(try store.changes(notIn: VersionVector([origin: 2])).map(\.scope) == ["yp-1"])
    }
}
