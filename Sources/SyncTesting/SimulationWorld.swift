import Foundation
import SyncCore
import SyncStore

/// A domain-free schema exercising every merge policy, for simulations and store and engine tests
/// (one schema for all of them, so no test target keeps its own copy).
public enum SimulationSchema {
    /// The `item.status` order: two terminal states.
    public static let lattice = StatusLattice(["draft", "open", "done", "void"], terminal: ["done", "void"])

    /// A row of every policy: immutable, last writer wins (text and integer), multi-value,
    /// monotonic status, add-wins and remove-wins sets, counter. Not deletable.
    public static let item = TableSchema("item", columns: [
        ColumnSchema("code", .text, .immutable),
        ColumnSchema("title", .text, .lastWriterWins),
        ColumnSchema("body", .text, .multiValue),
        ColumnSchema("status", .text, .monotonic(lattice)),
        ColumnSchema("tags", .text, .addWinsSet),
        ColumnSchema("consent", .text, .removeWinsSet),
        ColumnSchema("hits", .integer, .counter),
        ColumnSchema("size", .integer, .lastWriterWins),
    ])

    /// A deletable row.
    public static let note = TableSchema("note", deletable: true, columns: [
        ColumnSchema("text", .text, .lastWriterWins),
        ColumnSchema("pinned", .integer, .lastWriterWins),
    ])

    /// Version 1: `item` and `note`.
    public static let v1 = ReplicaSchema(version: 1, tables: [item, note], migrations: [
        SchemaMigration("simulation-v1", sql: item.createStatement + ";" + note.createStatement),
    ])

    /// The schema simulations run: version 1.
    public static let schema = v1

    /// `note` in version 2, with a `colour` column.
    public static let noteV2 = TableSchema("note", deletable: true, columns: note.columns + [ColumnSchema("colour", .text, .lastWriterWins)])

    /// Version 2 adds `note.colour`; replicas on version 1 keep changes to it until they upgrade.
    public static let v2 = ReplicaSchema(version: 2, tables: [item, noteV2], migrations: v1.migrations + [
        SchemaMigration("simulation-v2", sql: "ALTER TABLE note ADD COLUMN colour TEXT"),
    ])
}

/// A wall clock for tests and simulated machines: true ("world") time, which the test or the
/// simulator sets or advances, plus an offset that drifts or jumps; optionally stepped, moving on
/// by `step` milliseconds after every read, so consecutive writes get distinct times without
/// the test moving the clock.
public final class SimulatedClock: WallClock, @unchecked Sendable {
    // Safety: every access to the mutable state goes through the lock (the simulator is
    // single-threaded; a test may read a clock from another task).
    private let lock = NSLock()
    private var world: UInt64
    private var offset: Int64
    private let step: UInt64

    /// A clock at `world` milliseconds since the epoch, `offset` off it.
    ///
    /// - Parameters:
    ///   - world: True time, in milliseconds since the Unix epoch.
    ///   - offset: How far this clock is off true time (negative: behind).
    ///   - step: Milliseconds true time moves on after each read; 0 keeps it where it is set.
    public init(world: UInt64, offset: Int64 = 0, step: UInt64 = 0) {
        self.world = world
        self.offset = offset
        self.step = step
    }

    /// A clock at `millis`, exact, moved only by the test: the store tests' clock.
    ///
    /// - Parameter millis: Milliseconds since the Unix epoch (default: 15 June 2025).
    public convenience init(_ millis: UInt64 = 1_750_000_000_000) { self.init(world: millis) }

    /// World time plus the offset (never before the epoch); then a stepped clock moves on.
    public func nowMillis() -> UInt64 {
        lock.withLock {
            let now = UInt64(max(0, Int64(world) + offset))
            world &+= step
            return now
        }
    }

    /// Sets true time.
    public func set(world: UInt64) { lock.withLock { self.world = world } }

    /// Moves true time on by `delta` milliseconds.
    public func advance(_ delta: UInt64) { lock.withLock { world &+= delta } }

    /// Drift by `delta` milliseconds, kept within ±`bound`.
    public func drift(by delta: Int64, bound: Int64) { lock.withLock { offset = max(-bound, min(bound, offset + delta)) } }

    /// Jump to `offset` milliseconds from world time (an NTP step, a machine resumed; 0 sets it right).
    public func jump(to offset: Int64) { lock.withLock { self.offset = offset } }
}

/// Random local edits over `SimulationSchema`, the same mix in every simulation and test.
public struct RandomEditor {
    /// Ids of the `item` rows this editor knows, made here or learnt.
    public private(set) var items: [String] = []
    /// Ids of the `note` rows this editor knows.
    public private(set) var notes: [String] = []

    /// An editor that knows no rows yet.
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
    /// The snapshot of `store`: one line per row and per kept merge state, in a stable order.
    ///
    /// - Parameter store: The replica.
    /// - Returns: Its snapshot.
    /// - Throws: `StoreError` when the store cannot be read.
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
