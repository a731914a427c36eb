import CSQLiteFaultVFS
import Foundation
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// Changes and files for the hub store tests, made without a replica.
enum HubFixture {
    static let author = "ann"

    /// One change of `origin`, editing the title of `row`.
    static func change(_ origin: ReplicaID, _ counter: UInt64, row: String, text: String = "t", scope: String = "") -> Change {
        Change(table: "item", row: row, column: "title",
               write: FieldWrite(id: ChangeID(replica: origin, counter: counter),
                                 timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000 + counter % 1000, logical: 0),
                                 author: author, operation: .assign(.text(text))),
               scope: scope)
    }

    /// The per-field encoding hub-v1/v2 files hold (table, row, column, field write).
    static func legacyBytes(table: String, row: String, column: String, write: FieldWrite) -> [UInt8] {
        var writer = ByteWriter()
        writer.string(table)
        writer.string(row)
        writer.string(column)
        write.encode(into: &writer)
        return writer.bytes
    }

    /// The change a migrated legacy row must become.
    static func migrated(table: String, row: String, column: String, write: FieldWrite) -> Change {
        ChangeV1.rowEdit(table: table, row: row, column: column, write: write)
    }

    /// Runs the `sqlite3` shell on `path` (to build old files and look at tables no API shows).
    @discardableResult
    static func sqlite(_ path: String, _ sql: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sqlite3", path, sql]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "sqlite3 failed on \(sql.prefix(80))")
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func enrol(_ replica: ReplicaID, in hub: SQLiteHubStore, random: inout SeededGenerator) throws {
        let token = try hub.issueEnrolmentToken(team: "north", expiresAtMillis: .max, random: &random)
        guard case .enrolled = try hub.redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica), nowMillis: 1,
                                                            random: &random) else {
            Issue.record("enrolment of \(replica.short) refused")
            return
        }
    }

    static func all(_ hub: SQLiteHubStore) throws -> HubPage {
        try hub.changes(after: 0, excludingOrigin: ReplicaID(high: 9, low: 9), byteBudget: 1 << 24, maxCount: 100_000)
    }
}

/// Set from one thread, read from another.
final class Flag: @unchecked Sendable {
    // Safety: `value` is read and written only under `lock`.
    private let lock = NSLock()
    private var value = false

    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

@Suite("Hub store: relays stored bytes, group commit, reader connection, unsynced bookkeeping")
struct HubStoreTests {
    static let a = ReplicaID(high: 0xA, low: 1)
    static let b = ReplicaID(high: 0xB, low: 2)
    static let c = ReplicaID(high: 0xC, low: 3)
    static let d = ReplicaID(high: 0xD, low: 4)

    func openHub(_ path: String, seed: UInt64 = 1, options: StoreConnectionOptions = StoreConnectionOptions()) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: seed)
        return try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random, options: options)
    }

    @Test("pulls and recoveries hand out each change's canonical bytes as stored, beside its table, row and scope columns")
    func relaysStoredBytes() throws {
        let path = TestFiles.directory() + "/hub.db"
        let hub = try openHub(path)
        var random = SeededGenerator(seed: 8)
        try hub.enrolForTests([Self.a], random: &random)
        var signer = TestSigner()
        let changes = (1...4).map { HubFixture.change(Self.a, $0, row: "r\($0 % 2)", text: "v\($0)", scope: $0 == 4 ? "" : "yp-\($0 % 2)") }
        _ = try hub.append(changes, from: Self.a, heads: signer.heads(changes, alsoAt: [3]), receivedAtMillis: 5)
        #expect(try HubFixture.all(hub).encoded == changes.map(\.canonicalBytes))
        let recovered = try hub.changes(ofOrigin: Self.a, after: 1, byteBudget: 1 << 20, maxCount: 2)
        #expect(recovered.encoded == changes[1...2].map(\.canonicalBytes))
        #expect(recovered.nextCounter == 3 && recovered.more)
        #expect(try recovered.decodeChanges() == Array(changes[1...2]))
        #expect(try HubFixture.sqlite(path, "SELECT table_name, row_key, scope, counter FROM hub_log ORDER BY seq")
            == "item|r1|yp-1|1\nitem|r0|yp-0|2\nitem|r1|yp-1|3\nitem|r0||4")
        // Served without decoding: bytes put there behind the store's back come out as they are
        // (a replica's strict decode refuses them; the hub only relays).
        try HubFixture.sqlite(path, "UPDATE hub_log SET bytes = X'01020304' WHERE counter = 2")
        #expect(try HubFixture.all(hub).encoded[1] == [1, 2, 3, 4])
        #expect(throws: ByteDecodingError.self) { try HubFixture.all(hub).decodeChanges() }
    }

    @Test("a group of pushes is one transaction with one WAL sync, and a power cut after it returns loses none of them")
    func groupCommitSyncsOnce() throws {
        let disk = try FaultDisk()
        let path = "\(disk.directory)/hub.db"
        _ = try openHub(path, options: disk.options())
        var hub: SQLiteHubStore? = try openHub(path, options: disk.options())
        let origins = (1...10).map { ReplicaID(high: 0x100 + UInt64($0), low: 1) }
        var random = SeededGenerator(seed: 8)
        try hub?.enrolForTests(origins + [Self.a], random: &random)
        var signer = TestSigner()
        let pushes = origins.map { origin in
            signer.push((1...5).map { HubFixture.change(origin, $0, row: "\(origin.short)-\($0)") }, from: origin, receivedAtMillis: 9)
        }
        // The first commit into a fresh WAL also syncs the WAL header: not what is counted here.
        _ = try hub?.signedAppend([HubFixture.change(Self.a, 1, row: "warm-up")], from: Self.a, signer: &signer, receivedAtMillis: 9)
        let before = disk.walSyncs("hub.db")
        let results = try #require(hub?.append(pushes))
        #expect(disk.walSyncs("hub.db") - before == 1, "one fsync for all 10 pushes")
        #expect(fault_vfs_unsynced_bytes("\(path)-wal") == 0)
        for (origin, result) in zip(origins, results) {
            let stored = try result.get()
            #expect(stored.stored == 5 && stored.durable[origin] == 5 && stored.equivocations.isEmpty)
        }
        try disk.powerCut { hub = nil }
        let reopened = try openHub(path)
        #expect(try HubFixture.all(reopened).encoded.dropFirst() == pushes.flatMap(\.changes).map(\.canonicalBytes)[...])
        for origin in origins { #expect(try reopened.ownDurable(origin) == 5) }
    }

    @Test("in a group, a failing push and an equivocating push are rolled back alone: the others are stored, results in order")
    func failingPushLeavesOthersStored() throws {
        let hub = try openHub(TestFiles.directory() + "/hub.db")
        var random = SeededGenerator(seed: 8)
        try hub.enrolForTests([Self.a, Self.b, Self.c, Self.d], random: &random)
        var signer = TestSigner()
        let held = HubFixture.change(Self.c, 1, row: "c", text: "first")
        _ = try hub.signedAppend([held], from: Self.c, signer: &signer)
        let unsigned = [
            HubPush(changes: [HubFixture.change(Self.a, 1, row: "a1"), HubFixture.change(Self.a, 2, row: "a2")], replica: Self.a, receivedAtMillis: 2),
            // A counter no store can keep, after a good change that must be rolled back with it.
            HubPush(changes: [HubFixture.change(Self.b, 1, row: "b1"), HubFixture.change(Self.b, UInt64.max, row: "b2")], replica: Self.b, receivedAtMillis: 2),
            // C:1 again with other content, and a new C:2: nothing of it is stored.
            HubPush(changes: [HubFixture.change(Self.c, 1, row: "c", text: "second"), HubFixture.change(Self.c, 2, row: "c2")], replica: Self.c, receivedAtMillis: 2),
            HubPush(changes: [HubFixture.change(Self.d, 1, row: "d1")], replica: Self.d, receivedAtMillis: 2),
        ]
        let pushes = unsigned.map { signer.push($0.changes, from: $0.replica, receivedAtMillis: 2) }
        let results = hub.append(pushes)
        #expect(results.count == 4)
        #expect(try results[0].get().stored == 2)
        #expect(throws: StoreError.self) { try results[1].get() }
        if case let .failure(error) = results[1] { #expect((error as? StoreError)?.code == .limitExceeded) }
        let refused = try results[2].get()
        #expect(refused.equivocations == [held.id] && refused.stored == 0)
        #expect(try results[3].get().durable[Self.d] == 1)
        let ids = try HubFixture.all(hub).decodeChanges().map(\.id)
        #expect(ids == [held.id, ChangeID(replica: Self.a, counter: 1), ChangeID(replica: Self.a, counter: 2), ChangeID(replica: Self.d, counter: 1)])
        #expect(try hub.ownDurable(Self.b) == 0 && hub.ownDurable(Self.c) == 1)
        let evidence = try hub.equivocations()
        #expect(evidence.map(\.change) == [held.id], "the refused version is kept as evidence")
        // Proven: both versions under heads signed by the origin's key, the held one at C:1 and the
        // refused one at C:2 (the end of its run), which chain through the two contents.
        let heldHead = try #require(evidence.first?.heldHead)
        let refusedHead = try #require(evidence.first?.refusedHead)
        #expect(heldHead.counter == 1 && refusedHead.counter == 2)
        #expect(TestSigner.verifies(heldHead, publicKey: TestSigner.publicKey(Self.c)) && TestSigner.verifies(refusedHead, publicKey: TestSigner.publicKey(Self.c)))
        #expect(heldHead.chain == TestSigner.next(TestSigner.genesis(Self.c), held.canonicalBytes))
    }

    @Test("a group whose transaction cannot be written fails every push, in order, and stores nothing")
    func unwritableGroupFailsEveryPush() throws {
        let path = TestFiles.directory() + "/hub.db"
        var random = SeededGenerator(seed: 8)
        var signer = TestSigner()
        do {
            let hub = try openHub(path)
            try hub.enrolForTests([Self.a, Self.b], random: &random)
            _ = try hub.signedAppend([HubFixture.change(Self.a, 1, row: "a")], from: Self.a, signer: &signer)
        }
        let readOnly = try SQLiteHubStore(readingAt: path)
        let results = readOnly.append([
            signer.push([HubFixture.change(Self.a, 2, row: "a")], from: Self.a, receivedAtMillis: 2),
            signer.push([HubFixture.change(Self.b, 1, row: "b")], from: Self.b, receivedAtMillis: 2),
        ])
        #expect(results.count == 2)
        for result in results { #expect(throws: StoreError.self) { try result.get() } }
        #expect(try HubFixture.all(openHub(path)).encoded == [HubFixture.change(Self.a, 1, row: "a").canonicalBytes])
    }

    @Test("pulls, recoveries, head and summaries are served while the writer connection is held")
    func readsDoNotWaitForTheWriter() throws {
        let hub = try openHub(TestFiles.directory() + "/hub.db")
        var random = SeededGenerator(seed: 8)
        try hub.enrolForTests([Self.a], random: &random)
        var signer = TestSigner()
        _ = try hub.signedAppend((1...3).map { HubFixture.change(Self.a, $0, row: "r\($0)") }, from: Self.a, signer: &signer)
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let timedOut = Flag()
        DispatchQueue.global().async {
            _ = try? hub.holdingWriter {
                holding.signal()
                if release.wait(timeout: .now() + 5) == .timedOut { timedOut.set() }
            }
            finished.signal()
        }
        holding.wait()
        #expect(try hub.head() == 3)
        #expect(try HubFixture.all(hub).encoded.count == 3)
        #expect(try hub.changes(ofOrigin: Self.a, after: 0, byteBudget: 1 << 20, maxCount: 10).encoded.count == 3)
        #expect(try hub.ownDurable(Self.a) == 3)
        #expect(try hub.replicaSummaries().count == 1)
        release.signal()
        finished.wait()
        #expect(!timedOut.isSet, "a read waited for the writer to be released")
    }

    @Test("session bookkeeping commits without a WAL sync of its own; the next push syncs, and keeps it, through a power cut")
    func bookkeepingIsUnsynced() throws {
        let disk = try FaultDisk()
        let path = "\(disk.directory)/hub.db"
        var random = SeededGenerator(seed: 4)
        var hub: SQLiteHubStore? = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random, options: disk.options())
        try HubFixture.enrol(Self.a, in: try #require(hub), random: &random)
        let before = disk.walSyncs("hub.db")
        try hub?.recordSession(.hello(appVersion: "app-7", schemaVersion: 3), replica: Self.a, nowMillis: 10)
        try hub?.recordSession(.pulled(cursor: 0), replica: Self.a, nowMillis: 11)
        try hub?.recordSession(.health(pendingChanges: 4, oldestUnsyncedAgeMillis: 5, openConflicts: 6, schemaVersion: 3),
                               replica: Self.a, nowMillis: 12)
        #expect(disk.walSyncs("hub.db") == before, "bookkeeping no acknowledgement depends on is not synced")
        #expect(try hub?.connectionPragmas().synchronous == 2, "the writer is back at FULL")
        var signer = TestSigner()
        _ = try hub?.signedAppend([HubFixture.change(Self.a, 1, row: "r")], from: Self.a, signer: &signer, receivedAtMillis: 13)
        #expect(disk.walSyncs("hub.db") == before + 1, "the push is synced")
        try disk.powerCut { hub = nil }
        let reopened = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
        #expect(try reopened.ownDurable(Self.a) == 1)
        let summary = try #require(try reopened.replicaSummaries().first)
        #expect(summary.appVersion == "app-7" && summary.pendingChanges == 4 && summary.lastSeenMillis == 12)
        #expect(summary.changesStored == 1)
    }

    /// A hub file as hub-v2 code left it: its tables, migrations and stamp, and `rows` in `hub_change`.
    func legacyHub(at path: String, rows: [(seq: Int, origin: Int, counter: UInt64, bytes: [UInt8])]) throws {
        let values = rows.map { "(\($0.seq), \($0.origin), \($0.counter), X'\($0.bytes.hexString)', 77)" }.joined(separator: ", ")
        try HubFixture.sqlite(path, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
            INSERT INTO grdb_migrations VALUES ('hub-v1'), ('hub-v2-recovery'), ('hub-v2-enrolment'), ('file-identity-v1');
            CREATE TABLE hub_state (id INTEGER PRIMARY KEY CHECK (id = 1), hub_id TEXT NOT NULL, created_at INTEGER NOT NULL);
            CREATE TABLE hub_origin (id INTEGER PRIMARY KEY, replica_id TEXT NOT NULL UNIQUE, contiguous INTEGER NOT NULL);
            CREATE TABLE hub_change (
              seq INTEGER PRIMARY KEY, origin INTEGER NOT NULL, counter INTEGER NOT NULL, bytes BLOB NOT NULL,
              received_at INTEGER NOT NULL, UNIQUE (origin, counter));
            CREATE TABLE hub_token (hash TEXT PRIMARY KEY, team TEXT NOT NULL, expires_at INTEGER NOT NULL, used_by TEXT, used_at INTEGER,
              replica_id TEXT, spent_at INTEGER);
            CREATE TABLE hub_replica (
              replica_id TEXT PRIMARY KEY, team TEXT NOT NULL, secret_hash TEXT NOT NULL, revoked_at INTEGER,
              first_seen INTEGER, last_seen INTEGER, pull_cursor INTEGER NOT NULL DEFAULT 0, pending INTEGER,
              oldest_unsynced_ms INTEGER, open_conflicts INTEGER, schema_version INTEGER, app_version TEXT,
              last_error TEXT, changes_stored INTEGER NOT NULL DEFAULT 0, forked_from TEXT);
            CREATE TABLE hub_equivocation (
              id INTEGER PRIMARY KEY, origin TEXT NOT NULL, counter INTEGER NOT NULL, bytes BLOB NOT NULL, digest TEXT NOT NULL,
              from_replica TEXT NOT NULL, received_at INTEGER NOT NULL, UNIQUE (origin, counter, digest));
            PRAGMA application_id = \(0x4353_4842);
            PRAGMA user_version = 1;
            INSERT INTO hub_state VALUES (1, '\(Self.d.hex)', 1);
            INSERT INTO hub_origin VALUES (1, '\(Self.a.hex)', 2), (2, '\(Self.b.hex)', 1);
            INSERT INTO hub_replica (replica_id, team, secret_hash, pull_cursor, app_version, changes_stored)
              VALUES ('\(Self.a.hex)', 'north', 'x', 4, 'app-1', 2);
            INSERT INTO hub_change VALUES \(values);
            """)
    }

    @Test("a hub-v2 file is migrated on open: every change kept with its sequence, as canonical bytes with relay columns")
    func migratesLegacyLog() throws {
        let path = TestFiles.directory() + "/hub.db"
        let writes = [(Self.a, 1, "r1", "title"), (Self.b, 1, "r2", "title"), (Self.a, 2, "r1", "")].map { origin, counter, row, column in
            (row, column, FieldWrite(id: ChangeID(replica: origin, counter: UInt64(counter)),
                                     timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000, logical: UInt16(counter)),
                                     causalLength: column.isEmpty ? 2 : 1, author: "ann",
                                     operation: column.isEmpty ? .assign(.null) : .assign(.text("x\(counter)"))))
        }
        try legacyHub(at: path, rows: zip([3, 5, 9], zip([1, 2, 1], writes)).map { seq, entry in
            let (origin, (row, column, write)) = entry
            return (seq, origin, write.id.counter, HubFixture.legacyBytes(table: "item", row: row, column: column, write: write))
        })
        let hub = try openHub(path)
        #expect(hub.hubID == Self.d)
        let expected = writes.map { HubFixture.migrated(table: "item", row: $0.0, column: $0.1, write: $0.2) }
        let page = try HubFixture.all(hub)
        #expect(page.encoded == expected.map(\.canonicalBytes) && page.nextCursor == 9)
        #expect(try hub.changes(after: 3, excludingOrigin: Self.b, byteBudget: 1 << 20, maxCount: 10).encoded == [expected[2].canonicalBytes])
        #expect(try hub.changes(ofOrigin: Self.a, after: 0, byteBudget: 1 << 20, maxCount: 10).decodeChanges() == [expected[0], expected[2]])
        #expect(try hub.head() == 9 && hub.ownDurable(Self.a) == 2 && hub.ownDurable(Self.b) == 1)
        #expect(try HubFixture.sqlite(path, "SELECT seq, table_name, row_key FROM hub_log ORDER BY seq") == "3|item|r1\n5|item|r2\n9|item|r1")
        #expect(try HubFixture.sqlite(path, "SELECT count(*) FROM sqlite_master WHERE name = 'hub_change'") == "0")
        let summary = try #require(try hub.replicaSummaries().first)
        #expect(summary.appVersion == "app-1" && summary.changesStored == 2 && summary.lagChanges == 1)
        // New pushes go on after the migrated sequence, chained on from the migrated changes.
        var random = SeededGenerator(seed: 8)
        try hub.enrolForTests([Self.b], random: &random)
        var signer = TestSigner()
        _ = signer.heads([expected[1]])
        let next = try hub.signedAppend([HubFixture.change(Self.b, 2, row: "r3")], from: Self.b, signer: &signer)
        #expect(next.head == 10 && next.durable[Self.b] == 2)
    }

    @Test("a hub-v2 file with an unreadable change is refused with CORRUPT and left as it was")
    func unreadableLegacyRowRefused() throws {
        let path = TestFiles.directory() + "/hub.db"
        let write = FieldWrite(id: ChangeID(replica: Self.a, counter: 1), timestamp: HybridTimestamp(rawValue: 1), author: "ann",
                               operation: .assign(.integer(1)))
        try legacyHub(at: path, rows: [(1, 1, 1, HubFixture.legacyBytes(table: "item", row: "r", column: "n", write: write)),
                                       (2, 1, 2, [0xFF, 0x01])])
        let error = #expect(throws: StoreError.self) { try openHub(path) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("sequence 2") == true)
        #expect(try HubFixture.sqlite(path, "SELECT count(*) FROM hub_change") == "2")
        #expect(try HubFixture.sqlite(path, "SELECT count(*) FROM sqlite_master WHERE name = 'hub_log'") == "0")
    }
}
