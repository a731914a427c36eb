import Foundation
import SyncCore
import SyncEngine
import SyncStore

/// A small domain-free schema exercising every policy, so the store is tested without care records.
enum TestSchema {
    static let lattice = StatusLattice(["draft", "open", "done", "void"], terminal: ["done", "void"])

    static let item = TableSchema("item", columns: [
        ColumnSchema("code", .text, .immutable),
        ColumnSchema("title", .text, .lastWriterWins),
        ColumnSchema("body", .text, .multiValue),
        ColumnSchema("status", .text, .monotonic(lattice)),
        ColumnSchema("tags", .text, .addWinsSet),
        ColumnSchema("consent", .text, .removeWinsSet),
        ColumnSchema("hits", .integer, .counter),
        ColumnSchema("size", .integer, .lastWriterWins),
    ])

    static let note = TableSchema("note", deletable: true, columns: [
        ColumnSchema("text", .text, .lastWriterWins),
        ColumnSchema("pinned", .integer, .lastWriterWins),
    ])

    static let v1 = ReplicaSchema(version: 1, tables: [item, note], migrations: [
        SchemaMigration("test-v1", sql: item.createStatement + ";" + note.createStatement),
    ])

    /// v2 adds a column to `note`; replicas on v1 keep changes to it until they upgrade.
    static let noteV2 = TableSchema("note", deletable: true, columns: note.columns + [ColumnSchema("colour", .text, .lastWriterWins)])
    static let v2 = ReplicaSchema(version: 2, tables: [item, noteV2], migrations: v1.migrations + [
        SchemaMigration("test-v2", sql: "ALTER TABLE note ADD COLUMN colour TEXT"),
    ])
}

/// A wall clock the test moves by hand.
final class ManualClock: WallClock, @unchecked Sendable {
    // Safety: tests drive each clock from one task at a time; the lock makes reads well-defined anyway.
    private let lock = NSLock()
    private var millis: UInt64

    init(_ millis: UInt64 = 1_750_000_000_000) { self.millis = millis }

    func nowMillis() -> UInt64 { lock.withLock { millis } }

    func advance(_ delta: UInt64) { lock.withLock { millis += delta } }
}

enum TestFiles {
    static func directory() -> String {
        let path = NSTemporaryDirectory() + "caresync-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
