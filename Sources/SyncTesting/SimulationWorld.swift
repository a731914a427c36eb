import Foundation
import SyncCore
import SyncStore

/// A domain-free schema exercising every merge policy, for simulations and engine tests.
public enum SimulationSchema {
    public static let lattice = StatusLattice(["draft", "open", "done", "void"], terminal: ["done", "void"])

    public static let item = TableSchema("item", columns: [
        ColumnSchema("code", .text, .immutable),
        ColumnSchema("title", .text, .lastWriterWins),
        ColumnSchema("body", .text, .multiValue),
        ColumnSchema("status", .text, .monotonic(lattice)),
        ColumnSchema("tags", .text, .addWinsSet),
        ColumnSchema("consent", .text, .removeWinsSet),
        ColumnSchema("hits", .integer, .counter),
    ])

    public static let note = TableSchema("note", deletable: true, columns: [
        ColumnSchema("text", .text, .lastWriterWins),
    ])

    public static let schema = ReplicaSchema(version: 1, tables: [item, note], migrations: [
        SchemaMigration("simulation-v1", sql: item.createStatement + ";" + note.createStatement),
    ])
}

/// A wall clock for one simulated machine: world time plus a drifting offset.
public final class SimulatedClock: WallClock, @unchecked Sendable {
    // Safety: the simulator is single-threaded; the lock only makes reads well-defined if a test
    // reads a clock from another task.
    private let lock = NSLock()
    private var world: UInt64
    private var offset: Int64

    public init(world: UInt64, offset: Int64 = 0) {
        self.world = world
        self.offset = offset
    }

    public func nowMillis() -> UInt64 { lock.withLock { UInt64(max(0, Int64(world) + offset)) } }

    public func set(world: UInt64) { lock.withLock { self.world = world } }

    /// Drift by `delta` milliseconds, kept within ±`bound`.
    public func drift(by delta: Int64, bound: Int64) { lock.withLock { offset = max(-bound, min(bound, offset + delta)) } }
}

/// Random local edits over `SimulationSchema`, the same mix in every simulation and test.
public struct RandomEditor {
    public private(set) var items: [String] = []
    public private(set) var notes: [String] = []

    public init() {}

    /// One random edit; edits the policy refuses (a status moving backwards, a row unknown here)
    /// are skipped, as a user would be told no. Returns whether something was written.
    @discardableResult
    public mutating func edit(_ store: ReplicaStore, author: String, random: inout SeededGenerator) throws -> Bool {
        let words = ["alpha", "beta", "gamma", "delta"]
        let choice = random.index(below: 12)
        do {
            try store.write(author: author) { tx in
                if choice == 0 || items.isEmpty {
                    let id = "item-\(store.replicaID.short)-\(items.count)"
                    try tx.create("item", id: id, values: ["code": .text(id), "title": .text("t"), "status": .text("draft")])
                    items.append(id)
                    return
                }
                if choice == 1 || notes.isEmpty {
                    let id = "note-\(random.index(below: 3))"
                    if !notes.contains(id) { notes.append(id) }
                    try tx.create("note", id: id, values: ["text": .text(random.element(of: words))])
                    return
                }
                let id = random.element(of: items)
                let word = FieldValue.text(random.element(of: words))
                switch choice {
                case 2: try tx.update("item", id: id, values: ["title": word])
                case 3, 4: try tx.update("item", id: id, values: ["body": word])
                case 5: try tx.update("item", id: id, values: ["status": .text(random.element(of: SimulationSchema.lattice.order))])
                case 6: try tx.add("item", id: id, column: "tags", element: word)
                case 7: try tx.remove("item", id: id, column: "tags", element: word)
                case 8: try tx.add("item", id: id, column: "consent", element: word)
                case 9: try tx.remove("item", id: id, column: "consent", element: word)
                case 10: try tx.increment("item", id: id, column: "hits", by: Int64(random.index(below: 5)) - 2)
                default:
                    let note = random.element(of: notes)
                    if random.coin() { try tx.delete("note", id: note) } else { try tx.update("note", id: note, values: ["text": word]) }
                }
            }
            return true
        } catch let error as StoreError where [.rowNotFound, .rowExists, .statusBackwards].contains(error.code) {
            return false
        }
    }

    /// Learns ids created elsewhere, so later edits touch shared rows.
    public mutating func learn(from store: ReplicaStore) throws {
        let (itemIDs, noteIDs) = try store.read { view in
            (try view.rows("item").compactMap { $0["id"]?.textValue }, try view.rows("note").compactMap { $0["id"]?.textValue })
        }
        for id in itemIDs where !items.contains(id) { items.append(id) }
        for id in noteIDs where !notes.contains(id) { notes.append(id) }
    }
}

/// A replica's whole visible state: domain rows and every field's merge resolution. Equal
/// snapshots mean equal replicas.
public enum ReplicaSnapshot {
    public static func capture(_ store: ReplicaStore) throws -> String {
        try store.read { view in
            var lines: [String] = []
            for table in view.schema.tables {
                for row in try view.rows(table.name) {
                    let id = row["id"]?.description ?? "?"
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

    /// Lines in one snapshot and not the other, for failure messages.
    public static func difference(_ a: String, _ b: String) -> String {
        let left = Set(a.split(separator: "\n"))
        let right = Set(b.split(separator: "\n"))
        return "only in first: \(left.subtracting(right).sorted()); only in second: \(right.subtracting(left).sorted())"
    }
}
