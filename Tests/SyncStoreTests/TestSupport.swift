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

/// SplitMix64: tiny, seedable, good enough to generate test cases.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum TestFiles {
    static func directory() -> String {
        let path = NSTemporaryDirectory() + "caresync-tests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func seed() -> UInt64 {
        if let text = ProcessInfo.processInfo.environment["CARESYNC_SEED"], let seed = UInt64(text) { return seed }
        return UInt64.random(in: 1...UInt64.max)
    }
}

extension ReplicaStore {
    /// Domain rows of every table plus every field's merged resolution: equal snapshots mean
    /// equal replicas.
    func snapshot() throws -> String {
        try read { view in
            var lines: [String] = []
            for table in view.schema.tables {
                for row in try view.rows(table.name) {
                    let id = row["id"]!.description
                    lines.append("\(table.name) \(id) " + row.keys.sorted().map { "\($0)=\(row[$0]!)" }.joined(separator: " "))
                    for column in table.columns where column.policy.keepsState {
                        if let resolution = try view.resolution(table.name, id: id, column: column.name) {
                            lines.append("  \(table.name) \(id) \(column.name) candidates=\(resolution.candidates.map(\.id)) quarantined=\(resolution.quarantined.map(\.id))")
                        }
                    }
                }
            }
            return lines.joined(separator: "\n")
        }
    }
}
