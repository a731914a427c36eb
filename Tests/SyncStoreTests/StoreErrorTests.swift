import Foundation
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// The shape of the store's errors: SQLite's error kept with its extended result code, a stored
/// blob that does not decode named by table, column and row with the decoding offset, and no
/// record contents or program commands anywhere in them.
@Suite("Store errors")
struct StoreErrorTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    /// A table whose names SQLite itself refuses past seven characters (a CHECK constraint).
    static let gadget = TableSchema("gadget", columns: [ColumnSchema("name", .text, .lastWriterWins)])
    static let checked = ReplicaSchema(version: 1, tables: [gadget], migrations: [
        SchemaMigration("checked-v1", sql: "CREATE TABLE gadget (id TEXT PRIMARY KEY NOT NULL, name TEXT CHECK (length(name) < 8))"),
    ])

    func make(_ name: String = "a", schema: ReplicaSchema = SimulationSchema.v1, id: UInt64 = 1) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(directory)/\(name).db", schema: schema, replicaID: ReplicaID(high: id, low: id),
                                name: name, wallClock: clock)
    }

    @Test("a SQLite failure keeps SQLite's extended result code and error as its cause, and no bound value")
    func sqliteFailureKeepsExtendedCode() throws {
        let store = try make(schema: Self.checked)
        let error = #expect(throws: StoreError.self) {
            try store.write(author: "ann") { try $0.create("gadget", id: "g", values: ["name": .text("MARKER-too-long")]) }
        }
        #expect(error?.code == .database)
        // SQLITE_CONSTRAINT_CHECK (275), not only the primary SQLITE_CONSTRAINT (19).
        #expect(error?.sqliteExtendedCode == 275)
        #expect(error?.cause != nil)
        for text in [error.map { "\($0)" }, error.map { String(reflecting: $0) }, error?.cause.map { String(reflecting: $0) }] {
            #expect(!(text ?? "").contains("MARKER"), "record contents in the error: \(text ?? "")")
        }
        #expect(try store.read { try $0.count("gadget") } == 0, "nothing of the refused edit written")
    }

    @Test("a SQLite failure inside GRDB (a migration breaking a UNIQUE constraint) keeps the extended code too")
    func grdbFailureKeepsExtendedCode() throws {
        let broken = ReplicaSchema(version: 1, tables: [], migrations: [
            SchemaMigration("broken-v1", sql: "CREATE TABLE twice (name TEXT UNIQUE); INSERT INTO twice VALUES ('a'), ('a')"),
        ])
        let error = #expect(throws: StoreError.self) { try make(schema: broken) }
        #expect(error?.code == .database)
        // SQLITE_CONSTRAINT_UNIQUE (2067), where the primary code would be SQLITE_CONSTRAINT (19).
        #expect(error?.sqliteExtendedCode == 2067)
    }

    @Test("unreadable merge state names its table, column and row and keeps the decoding offset, on reads and merges")
    func unreadableStateKeepsOffset() throws {
        let store = try make()
        try store.write(author: "ann") { try $0.create("item", id: "x", values: ["body": .text("MARKER-body")]) }
        // One byte short: the decoder runs out of bytes past the start of the blob.
        _ = try sqlite3("\(directory)/a.db", "UPDATE sync_field SET state = substr(state, 1, length(state) - 1)")
        let read = #expect(throws: StoreError.self) { try store.read { try $0.fieldState("item", id: "x", column: "body") } }
        let origin = ReplicaID(high: 7, low: 7)
        let remote = Change(table: "item", row: "x", column: "body", write: FieldWrite(
            id: ChangeID(replica: origin, counter: 1), timestamp: HybridTimestamp(physicalMillis: clock.nowMillis(), logical: 1),
            author: "bo", operation: .assign(.text("other"))))
        let merge = #expect(throws: StoreError.self) { try store.apply([remote]) }
        for error in [read, merge] {
            #expect(error?.code == .corrupt)
            #expect(error?.table == "item" && error?.column == "body" && error?.row == "x")
            #expect((error?.offset ?? 0) > 0, "the decoding error's offset is kept")
            #expect(error?.cause is ByteDecodingError)
            let message = error?.message ?? ""
            #expect(!message.contains("MARKER"))
        }
    }

    @Test("history refuses a logged operation it does not know, with the offset, instead of showing it as a set")
    func historyRefusesUnknownOperation() throws {
        let store = try make()
        try store.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("hi")]) }
        #expect(try store.history(table: "note", row: "n").count == 2)
        // The one field edit: a count (1), the column's name id (one byte), then the operation code.
        _ = try sqlite3("\(directory)/a.db", "UPDATE sync_change SET fields = substr(fields, 1, 2) || X'09' || substr(fields, 4)")
        let error = #expect(throws: StoreError.self) { try store.history(table: "note", row: "n") }
        #expect(error?.code == .corrupt)
        #expect(error?.table == "sync_change" && error?.column == "fields")
        #expect(error?.offset == 2)
        #expect((error?.cause as? ByteDecodingError)?.code == .invalidTag)
    }

    @Test("refused local edits name table, column and row as data; equality compares code and context")
    func refusalContext() throws {
        let store = try make()
        try store.write(author: "ann") { try $0.create("item", id: "x", values: ["status": .text("done")]) }
        let error = #expect(throws: StoreError.self) {
            try store.write(author: "ann") { try $0.update("item", id: "x", values: ["status": .text("open")]) }
        }
        #expect(error == StoreError(.statusBackwards, "other wording", table: "item", column: "status", row: "x"))
        #expect(error != StoreError(.statusBackwards, "", table: "item", column: "status", row: "y"))
        #expect(error?.code.name == "STATUS_BACKWARDS")
    }

    @Test("store messages name no command or flag of the CLI")
    func noCommandNames() throws {
        let missing = #expect(throws: StoreError.self) {
            try ReplicaStore.open(at: "\(directory)/missing.db", schema: SimulationSchema.v1, wallClock: clock)
        }
        #expect(missing?.code == .notAReplica && missing?.path == "\(directory)/missing.db")
        var random = SeededGenerator(seed: 1)
        let hubPath = "\(directory)/hub.db"
        _ = try SQLiteHubStore(path: hubPath, wallClock: clock, random: &random)
        let asReplica = #expect(throws: StoreError.self) { try ReplicaStore.open(at: hubPath, schema: SimulationSchema.v1, wallClock: clock) }
        _ = try make("r")
        let asHub = #expect(throws: StoreError.self) { try SQLiteHubStore(path: "\(directory)/r.db", wallClock: clock, random: &random) }
        for error in [missing, asReplica, asHub] {
            // The paths name the test directory, which itself says "caresync".
            let message = (error?.message ?? "").replacingOccurrences(of: directory, with: "<dir>")
            #expect(!message.contains("caresync") && !message.contains("--") && !message.contains("`"), "\(message)")
        }
    }

    @Test("the hub store stamps its creation time from the injected clock")
    func hubCreationTimeFromClock() throws {
        var random = SeededGenerator(seed: 2)
        let path = "\(directory)/hub.db"
        let fixed = FixedWallClock(millis: 1_234_567)
        let hub = try SQLiteHubStore(path: path, wallClock: fixed, random: &random)
        try hub.close()
        #expect(try sqlite3(path, "SELECT created_at FROM hub_state") == "1234567")
    }
}

@Suite("Local edits over changes that arrived out of order")
struct LocalEditOrderTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    @Test("a local edit in a row's older life does not beat a stored write from its later life")
    func localEditOfOlderLifeLoses() throws {
        let a = try ReplicaStore.create(at: "\(directory)/a.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1),
                                        name: "a", wallClock: clock)
        let reference = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 3, low: 3),
                                                name: "r", wallClock: clock)
        try a.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("first")]) }
        // Replica b deleted and re-created the note (lives 2 and 3), then wrote its text in life 3.
        let b = ReplicaID(high: 2, low: 2)
        let now = clock.nowMillis()
        func at(_ logical: UInt16) -> HybridTimestamp { HybridTimestamp(physicalMillis: now, logical: logical) }
        let delete = Change.rowLife(table: "note", row: "n", id: ChangeID(replica: b, counter: 1), timestamp: at(1), author: "bo",
                                    causalLength: 2)
        let recreate = Change.rowLife(table: "note", row: "n", id: ChangeID(replica: b, counter: 2), timestamp: at(2), author: "bo",
                                      causalLength: 3)
        let text = Change(table: "note", row: "n", column: "text", write: FieldWrite(
            id: ChangeID(replica: b, counter: 3), timestamp: at(3), causalLength: 3, author: "bo", operation: .assign(.text("later life"))))
        // The write of life 3 arrives first; a's row is still in life 1 when ann edits it.
        _ = try a.apply([text])
        clock.advance(1)
        try a.write(author: "ann") { try $0.update("note", id: "n", values: ["text": .text("older life")]) }
        _ = try a.apply([delete, recreate])
        _ = try reference.apply(try a.changes(notIn: VersionVector()) + [delete, recreate, text])
        let expected = try reference.read { try $0.row("note", id: "n")?["text"] }
        #expect(expected == .text("later life"), "causal length orders last-writer-wins before time")
        #expect(try a.read { try $0.row("note", id: "n")?["text"] } == expected, "the replica that made the edit agrees")
    }
}
