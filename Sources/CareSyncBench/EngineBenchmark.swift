// Engine benchmarks, each beside a plain-SQLite baseline measured in the same run
// with the same library (GRDB), the same pragmas (WAL, synchronous=FULL, opened by the stores' own
// StoreFile.openDurableQueue, which reads FULL back) and the same transaction
// pattern. Run with `swift run -c release caresync-bench` (see docs/BENCHMARKS.md).
import Foundation
import GRDB
import SyncCore
import SyncEngine
import SyncStore

struct Clock: WallClock {
    func nowMillis() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}

struct Figure {
    let name: String
    let tracked: Double
    let baseline: Double
    let unit: String
    let target: String
    var ratio: Double { tracked / baseline }
}

/// Local writes, batch apply and metadata size, each beside plain SQLite in the same run.
func runEngineBenchmark(quick: Bool, emitJSON: Bool) throws {
    let rows = quick ? 2_000 : 20_000
    let batchSize = 1_000
    let singleTransactions = quick ? 50 : 300
    let fieldsPerRow = 5

    let columns = (1...fieldsPerRow).map { "f\($0)" }
    let table = TableSchema("record", columns: columns.map { ColumnSchema($0, .text, .lastWriterWins) })
    let schema = ReplicaSchema(version: 1, tables: [table], migrations: [SchemaMigration("bench-v1", sql: table.createStatement)])
    let work = NSTemporaryDirectory() + "caresync-bench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }

    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    func value(_ row: Int, _ field: Int, _ generation: Int) -> String { "value \(generation)-\(row)-\(field) lorem ipsum" }

    func plainQueue(_ name: String) throws -> DatabaseQueue {
        // The stores' own opening (WAL + synchronous=FULL, read back), so the baselines pay the same syncs.
        let queue = try StoreFile.openDurableQueue(path: "\(work)/\(name).db", label: "bench.plain")
        try queue.write { db in try db.execute(sql: table.createStatement) }
        return queue
    }

    func fileBytes(_ path: String) -> Int {
        ["", "-wal"].reduce(0) { total, suffix in
            total + ((try? FileManager.default.attributesOfItem(atPath: path + suffix)[.size] as? Int) ?? 0)
        }
    }

    var figures: [Figure] = []

    // 1. Tracked local writes vs plain SQLite, batched (1,000 edits per transaction).
    let tracked = try ReplicaStore.create(at: "\(work)/tracked.db", schema: schema, replicaID: ReplicaID(high: 1, low: 1),
                                          name: "bench", wallClock: Clock())
    let plain = try plainQueue("plain")
    let insertColumns = (["id"] + columns).joined(separator: ", ")
    let insertMarks = Array(repeating: "?", count: fieldsPerRow + 1).joined(separator: ", ")

    let trackedInsert = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try tracked.write(author: "bench") { tx in
                for row in start..<min(start + batchSize, rows) {
                    var values: [String: FieldValue] = [:]
                    for (index, column) in columns.enumerated() { values[column] = .text(value(row, index, 0)) }
                    try tx.create("record", id: "r\(row)", values: values)
                }
            }
        }
    }
    let plainInsert = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try plain.write { db in
                let statement = try db.cachedStatement(sql: "INSERT INTO record (\(insertColumns)) VALUES (\(insertMarks))")
                for row in start..<min(start + batchSize, rows) {
                    try statement.execute(arguments: StatementArguments(["r\(row)"] + (0..<fieldsPerRow).map { value(row, $0, 0) }))
                }
            }
        }
    }
    figures.append(Figure(name: "insert \(rows) rows × \(fieldsPerRow) fields, \(batchSize)/txn", tracked: trackedInsert,
                          baseline: plainInsert, unit: "s", target: "≤ 1.5× (cr-sqlite 2.5×)"))

    let trackedUpdate = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try tracked.write(author: "bench") { tx in
                for row in start..<min(start + batchSize, rows) {
                    try tx.update("record", id: "r\(row)", values: ["f2": .text(value(row, 2, 1))])
                }
            }
        }
    }
    let plainUpdate = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try plain.write { db in
                let statement = try db.cachedStatement(sql: "UPDATE record SET f2 = ? WHERE id = ?")
                for row in start..<min(start + batchSize, rows) { try statement.execute(arguments: [value(row, 2, 1), "r\(row)"]) }
            }
        }
    }
    figures.append(Figure(name: "update \(rows) single fields, \(batchSize)/txn", tracked: trackedUpdate, baseline: plainUpdate,
                          unit: "s", target: "≤ 1.5×"))

    // 1b. One edit per transaction, as a social worker saves: each commit is fsynced.
    let trackedSingle = try seconds {
        for row in 0..<singleTransactions {
            try tracked.write(author: "bench") { tx in try tx.update("record", id: "r\(row)", values: ["f3": .text(value(row, 3, 2))]) }
        }
    }
    let plainSingle = try seconds {
        for row in 0..<singleTransactions {
            try plain.write { db in try db.execute(sql: "UPDATE record SET f3 = ? WHERE id = ?", arguments: [value(row, 3, 2), "r\(row)"]) }
        }
    }
    figures.append(Figure(name: "update, one edit per transaction (\(singleTransactions) commits)", tracked: trackedSingle,
                          baseline: plainSingle, unit: "s", target: "≤ 1.5×"))

    // 2. Applying a 100,000-field-change batch vs a plain upsert of the same values.
    let source = try ReplicaStore.create(at: "\(work)/source.db", schema: schema, replicaID: ReplicaID(high: 2, low: 2),
                                         name: "source", wallClock: Clock())
    let batchRows = (quick ? 10_000 : 100_000) / fieldsPerRow
    for start in stride(from: 0, to: batchRows, by: 5_000) {
        try source.write(author: "bench") { tx in
            for row in start..<min(start + 5_000, batchRows) {
                try tx.create("record", id: "r\(row)", values: Dictionary(uniqueKeysWithValues: columns.enumerated().map { ($1, .text(value(row, $0, 3))) }))
            }
        }
    }
    let batch = try source.changes(notIn: VersionVector()).filter { !$0.isRowLife }
    let lifeChanges = try source.changes(notIn: VersionVector()).filter(\.isRowLife)
    let receiver = try ReplicaStore.create(at: "\(work)/receiver.db", schema: schema, replicaID: ReplicaID(high: 3, low: 3),
                                           name: "receiver", wallClock: Clock())
    let allChanges = lifeChanges + batch
    let trackedApply = try seconds { _ = try receiver.apply(allChanges) }
    let upsertTarget = try plainQueue("upsert")
    let plainApply = try seconds {
        try upsertTarget.write { db in
            var statements: [String: Statement] = [:]
            for column in columns {
                statements[column] = try db.makeStatement(sql: "INSERT INTO record (id, \(column)) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET \(column) = excluded.\(column)")
            }
            for change in batch {
                try statements[change.column]!.execute(arguments: [change.row, change.write.value.textValue])
            }
        }
    }
    figures.append(Figure(name: "apply \(batch.count) field changes (+\(lifeChanges.count) row creations) in one txn",
                          tracked: trackedApply, baseline: plainApply, unit: "s", target: "≤ 2×"))

    // 3. Metadata bytes per tracked field.
    let fieldCount = rows * fieldsPerRow
    let perField = try tracked.metadataBytesPerField()
    let trackedBytes = fileBytes("\(work)/tracked.db")
    let plainBytes = fileBytes("\(work)/plain.db")
    let receiverBytes = fileBytes("\(work)/receiver.db")
    let upsertBytes = fileBytes("\(work)/upsert.db")

    // 4. Bundle size per field change.
    let bundleBytes = ChangeBundle(sender: source.replicaID, schemaVersion: 1, senderKnowledge: VersionVector(), changes: allChanges).encoded().count

    if emitJSON {
        var object: [String: Any] = [:]
        for figure in figures {
            object[figure.name] = ["tracked_s": figure.tracked, "baseline_s": figure.baseline, "ratio": figure.ratio, "target": figure.target]
        }
        if let perField { object["sync_field_bytes_per_field"] = Double(perField.bytes) / Double(perField.fields) }
        object["file_overhead_bytes_per_field_local"] = Double(trackedBytes - plainBytes) / Double(fieldCount)
        object["file_overhead_bytes_per_field_applied"] = Double(receiverBytes - upsertBytes) / Double(batch.count)
        object["bundle_bytes_per_change"] = Double(bundleBytes) / Double(allChanges.count)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        // Read back, not assumed: both sides must run at WAL + FULL (2) for the ratios to mean anything.
        let trackedPragmas = try tracked.connectionPragmas()
        let plainPragmas = try StoreFile.pragmas(plain)
        print("CareSync engine benchmark (\(quick ? "quick" : "full") run; SQLite \(try plain.read { try String.fetchOne($0, sql: "select sqlite_version()") ?? "?" }); read back: tracked \(trackedPragmas.journalMode) synchronous=\(trackedPragmas.synchronous), plain \(plainPragmas.journalMode) synchronous=\(plainPragmas.synchronous); 2 = FULL)")
        print("")
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        print(pad("measure", 62) + pad("tracked", 11) + pad("plain", 11) + pad("ratio", 8) + "target")
        for figure in figures {
            print(pad(figure.name, 62) + pad(String(format: "%.3f s", figure.tracked), 11) + pad(String(format: "%.3f s", figure.baseline), 11)
                  + pad(String(format: "%.2f×", figure.ratio), 8) + figure.target)
        }
        print("")
        if let perField {
            print(String(format: "per-field clock metadata (sync_field pages via dbstat): %.1f bytes/field  (SQLite Sync publishes 60–100 bytes per metadata row)",
                         Double(perField.bytes) / Double(perField.fields)))
        }
        print(String(format: "whole-file overhead incl. change log, local writes:      %.1f bytes/field (%d vs %d bytes for %d fields)",
                     Double(trackedBytes - plainBytes) / Double(fieldCount), trackedBytes, plainBytes, fieldCount))
        print(String(format: "whole-file overhead incl. change log, applied batch:     %.1f bytes/field", Double(receiverBytes - upsertBytes) / Double(batch.count)))
        print(String(format: "bundle size: %.1f bytes per change (%d changes, %d bytes)", Double(bundleBytes) / Double(allChanges.count), allChanges.count, bundleBytes))
        print(String(format: "throughput: tracked inserts %.0f fields/s; batch apply %.0f changes/s", Double(fieldCount) / trackedInsert, Double(allChanges.count) / trackedApply))
    }

}
