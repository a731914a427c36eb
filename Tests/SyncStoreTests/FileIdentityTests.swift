import Foundation
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// A file's bytes, modification time and side files, to show an open left it exactly as it was.
struct FileFingerprint: Equatable {
    let bytes: Data?
    let modified: Date?
    let sideFiles: [String]

    init(_ path: String) {
        bytes = FileManager.default.contents(atPath: path)
        modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        sideFiles = ["-wal", "-shm", "-journal"].filter { FileManager.default.fileExists(atPath: path + $0) }
    }
}

/// Runs the system `sqlite3` on a file (outside our code, so it sees the file as anyone would).
func sqlite3(_ path: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [path, sql]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite("Store files: identified before any write, refused unchanged when not ours")
struct FileIdentityTests {
    let directory = TestFiles.directory()
    let clock = SimulatedClock()

    func openReplica(_ path: String, _ access: StoreAccess = .readWrite) throws -> ReplicaStore {
        try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock, access: access)
    }

    func openHub(_ path: String) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 1)
        return try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
    }

    func makeReplica(_ name: String = "r.db") throws -> String {
        let path = "\(directory)/\(name)"
        _ = try ReplicaStore.create(at: path, schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1), name: "r", wallClock: clock)
        return path
    }

    @Test("new files carry our application_id and format version", arguments: ["replica", "hub"])
    func stamped(_ kind: String) throws {
        let path = "\(directory)/\(kind).db"
        if kind == "replica" { _ = try makeReplica("replica.db") } else { _ = try openHub(path) }
        let expected = kind == "replica" ? 0x4353_5250 : 0x4353_4842
        #expect(try sqlite3(path, "PRAGMA application_id") == "\(expected)")
        #expect(try sqlite3(path, "PRAGMA user_version") == "1")
    }

    @Test("another application's SQLite file is refused, byte for byte unchanged and not switched to WAL",
          arguments: [0, 0x1234_5678])
    func foreignSQLite(_ applicationID: Int) throws {
        let path = "\(directory)/foreign.db"
        _ = try sqlite3(path, "PRAGMA application_id = \(applicationID); CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        let before = FileFingerprint(path)
        let replicaError = #expect(throws: StoreError.self) { try openReplica(path) }
        #expect(replicaError?.code == .notAReplica)
        #expect(replicaError?.message.contains("another application") == true)
        if applicationID != 0 { #expect(replicaError?.message.contains("0x12345678") == true) }
        #expect(throws: StoreError.self) { try openReplica(path, .readOnly) }
        let hubError = #expect(throws: StoreError.self) { try openHub(path) }
        #expect(hubError?.code == .notAHub)
        #expect(FileFingerprint(path) == before)
        #expect(try sqlite3(path, "PRAGMA journal_mode") == "delete")
    }

    @Test("an empty file is refused and stays empty; a missing one is not created by open")
    func emptyFile() throws {
        let path = "\(directory)/empty.db"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        let before = FileFingerprint(path)
        let error = #expect(throws: StoreError.self) { try openReplica(path) }
        #expect(error?.message.contains("empty file") == true)
        #expect(throws: StoreError.self) { try openReplica(path, .readOnly) }
        #expect(throws: StoreError.self) { try openHub(path) }
        #expect(throws: StoreError.self) { try SQLiteHubStore(readingAt: path) }
        #expect(FileFingerprint(path) == before)
        #expect(before.bytes?.isEmpty == true)
        let missing = "\(directory)/missing.db"
        #expect(throws: StoreError.self) { try openReplica(missing) }
        #expect(throws: StoreError.self) { try SQLiteHubStore(readingAt: missing) }
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test("a hub file given to the replica store and a replica file given to the hub store are refused unchanged")
    func wrongKind() throws {
        let replica = try makeReplica()
        let hub = "\(directory)/hub.db"
        _ = try openHub(hub)
        let replicaBefore = FileFingerprint(replica)
        let hubBefore = FileFingerprint(hub)
        let asHub = #expect(throws: StoreError.self) { try openHub(replica) }
        #expect(asHub?.message.contains("is a CareSync replica, not a CareSync hub database") == true)
        #expect(throws: StoreError.self) { try SQLiteHubStore(readingAt: replica) }
        let asReplica = #expect(throws: StoreError.self) { try openReplica(hub) }
        #expect(asReplica?.message.contains("is a CareSync hub database, not a CareSync replica") == true)
        #expect(FileFingerprint(replica) == replicaBefore)
        #expect(FileFingerprint(hub) == hubBefore)
        #expect(try sqlite3(replica, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'hub%'") == "0")
    }

    @Test("a read-only open reads, refuses writes, and leaves the file and its directory as they were")
    func readOnlyChangesNothing() throws {
        let path = try makeReplica()
        do {
            let store = try openReplica(path)
            try store.write(author: "ann") { tx in try tx.create("item", id: "x", values: ["title": .text("t")]) }
        }
        let before = FileFingerprint(path)
        #expect(before.sideFiles.isEmpty, "a closed replica has no -wal or -shm")
        do {
            let store = try openReplica(path, .readOnly)
            #expect(try store.read { try $0.row("item", id: "x") } != nil)
            #expect(try store.status().localChanges == 1, "one create, one row edit")
            #expect(throws: StoreError.self) {
                try store.write(author: "ann") { tx in try tx.create("item", id: "y", values: ["title": .text("t")]) }
            }
        }
        let hub = "\(directory)/hub.db"
        _ = try openHub(hub)
        let hubBefore = FileFingerprint(hub)
        #expect(try SQLiteHubStore(readingAt: hub).replicaSummaries().isEmpty)
        #expect(FileFingerprint(path) == before)
        #expect(FileFingerprint(hub) == hubBefore)
    }

    @Test("a read-only open while a writer is live reads the writer's commits")
    func readOnlyBesideWriter() throws {
        let path = try makeReplica()
        let writer = try openReplica(path)
        try writer.write(author: "ann") { tx in try tx.create("item", id: "x", values: ["title": .text("t")]) }
        let reader = try openReplica(path, .readOnly)
        #expect(try reader.read { try $0.row("item", id: "x") } != nil)
    }

    @Test("a replica made before files were stamped (application_id 0) is adopted: read as is, stamped by the first write open")
    func unstampedAdopted() throws {
        let path = try makeReplica()
        // As the current main made it: no stamp, and no record of the stamping migration.
        _ = try sqlite3(path, "PRAGMA application_id = 0; PRAGMA user_version = 0; DELETE FROM grdb_migrations WHERE identifier = 'file-identity-v1';")
        let before = FileFingerprint(path)
        _ = try openReplica(path, .readOnly)
        #expect(FileFingerprint(path) == before)
        let hubError = #expect(throws: StoreError.self) { try openHub(path) }
        #expect(hubError?.message.contains("is a CareSync replica") == true)
        _ = try openReplica(path)
        #expect(try sqlite3(path, "PRAGMA application_id") == "\(0x4353_5250)")
    }

    @Test("a replica file from a newer format is refused")
    func newerFormat() throws {
        let path = try makeReplica()
        _ = try sqlite3(path, "PRAGMA user_version = 99")
        let error = #expect(throws: StoreError.self) { try openReplica(path) }
        #expect(error?.code == .schemaTooNew)
    }
}
