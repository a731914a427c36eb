// Engine benchmarks, each beside two plain-SQLite baselines measured in the same run, with the
// same rows, values and transaction pattern and the same pragmas (WAL, synchronous=FULL, read back):
// the headline one through the SQLite C API (PlainSQLiteConnection), and one through GRDB, opened
// by the stores' own StoreFile.openDurableQueue. Run with `swift run -c release caresync-bench`
// (see docs/BENCHMARKS.md).
import Foundation
import GRDB
import SyncCore
import SyncEngine
import SyncStore

struct Clock: WallClock {
    func nowMillis() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }
}

/// One measure: the tracked store's time beside both plain baselines of the same workload.
struct Figure {
    let name: String
    let tracked: Double
    /// Plain SQLite through the C API: the baseline the targets are set against.
    let cAPI: Double
    /// Plain SQLite through GRDB, our stores' library.
    let grdb: Double
    /// Issue 7's target: tracked time at most this multiple of the C-API baseline.
    let targetRatio: Double
    var ratioCAPI: Double { tracked / cAPI }
    var ratioGRDB: Double { tracked / grdb }
    var met: Bool { ratioCAPI <= targetRatio }
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

    func plainConnection(_ name: String) throws -> PlainSQLiteConnection {
        let connection = try PlainSQLiteConnection(path: "\(work)/\(name).db")
        try connection.execute(table.createStatement)
        return connection
    }

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
    let capi = try plainConnection("capi")
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
    let capiInsertStatement = try capi.prepare("INSERT INTO record (\(insertColumns)) VALUES (\(insertMarks))")
    let capiInsert = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try capi.transaction {
                for row in start..<min(start + batchSize, rows) {
                    try capiInsertStatement.bind("r\(row)", at: 1)
                    for field in 0..<fieldsPerRow { try capiInsertStatement.bind(value(row, field, 0), at: Int32(field + 2)) }
                    try capiInsertStatement.run()
                }
            }
        }
    }
    figures.append(Figure(name: "insert \(rows) rows × \(fieldsPerRow) fields, \(batchSize)/txn", tracked: trackedInsert,
                          cAPI: capiInsert, grdb: plainInsert, targetRatio: 2.0))

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
    let capiUpdateStatement = try capi.prepare("UPDATE record SET f2 = ? WHERE id = ?")
    let capiUpdate = try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try capi.transaction {
                for row in start..<min(start + batchSize, rows) { try capiUpdateStatement.run(value(row, 2, 1), "r\(row)") }
            }
        }
    }
    figures.append(Figure(name: "update \(rows) single fields, \(batchSize)/txn", tracked: trackedUpdate,
                          cAPI: capiUpdate, grdb: plainUpdate, targetRatio: 2.0))

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
    let capiSingleStatement = try capi.prepare("UPDATE record SET f3 = ? WHERE id = ?")
    let capiSingle = try seconds {
        for row in 0..<singleTransactions {
            try capi.transaction { try capiSingleStatement.run(value(row, 3, 2), "r\(row)") }
        }
    }
    figures.append(Figure(name: "update, one edit per transaction (\(singleTransactions) commits)", tracked: trackedSingle,
                          cAPI: capiSingle, grdb: plainSingle, targetRatio: 1.2))

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
    // Row edits: each create carries its row's five field changes.
    let batch = try source.changes(notIn: VersionVector())
    let receiver = try ReplicaStore.create(at: "\(work)/receiver.db", schema: schema, replicaID: ReplicaID(high: 3, low: 3),
                                           name: "receiver", wallClock: Clock())
    let allChanges = batch
    let trackedApply = try seconds { _ = try receiver.apply(allChanges) }
    let upsertTarget = try plainQueue("upsert")
    let plainApply = try seconds {
        try upsertTarget.write { db in
            var statements: [String: Statement] = [:]
            for column in columns {
                statements[column] = try db.makeStatement(sql: "INSERT INTO record (id, \(column)) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET \(column) = excluded.\(column)")
            }
            for change in batch {
                for field in change.fields {
                    try statements[field.column]!.execute(arguments: [change.row, field.value.textValue])
                }
            }
        }
    }
    let capiUpsertTarget = try plainConnection("capi-upsert")
    let capiApply = try seconds { try upsertThroughCAPI(batch, columns: columns, into: capiUpsertTarget) }
    figures.append(Figure(name: "apply \(batch.reduce(0) { $0 + $1.fields.count }) field changes (\(batch.count) row edits) in one txn",
                          tracked: trackedApply, cAPI: capiApply, grdb: plainApply, targetRatio: 2.0))

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
            // `baseline_s` and `ratio` keep their old meaning (the GRDB baseline) for older scripts.
            object[figure.name] = ["tracked_s": figure.tracked, "baseline_c_api_s": figure.cAPI, "ratio_c_api": figure.ratioCAPI,
                                   "baseline_grdb_s": figure.grdb, "ratio_grdb": figure.ratioGRDB,
                                   "baseline_s": figure.grdb, "ratio": figure.ratioGRDB,
                                   "target_ratio_c_api": figure.targetRatio, "met": figure.met]
        }
        object["synchronous_read_back"] = ["tracked": try tracked.connectionPragmas().synchronous, "receiver": try receiver.connectionPragmas().synchronous,
                                           "grdb": try StoreFile.pragmas(plain).synchronous, "c_api": try capi.pragmas().synchronous,
                                           "c_api_upsert": try capiUpsertTarget.pragmas().synchronous]
        if let perField { object["sync_field_bytes_per_field"] = Double(perField.bytes) / Double(perField.fields) }
        object["file_overhead_bytes_per_field_local"] = Double(trackedBytes - plainBytes) / Double(fieldCount)
        object["file_overhead_bytes_per_field_applied"] = Double(receiverBytes - upsertBytes) / Double(batch.count)
        object["bundle_bytes_per_change"] = Double(bundleBytes) / Double(allChanges.count)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        // Read back, not assumed: every side must run at WAL + FULL (2) for the ratios to mean anything.
        let readBack = [("tracked", try tracked.connectionPragmas()), ("receiver", try receiver.connectionPragmas()),
                        ("GRDB plain", try StoreFile.pragmas(plain)), ("GRDB upsert", try StoreFile.pragmas(upsertTarget)),
                        ("C API plain", try capi.pragmas()), ("C API upsert", try capiUpsertTarget.pragmas())]
            .map { "\($0) \($1.journalMode) synchronous=\($1.synchronous)" }.joined(separator: ", ")
        print("CareSync engine benchmark (\(quick ? "quick" : "full") run; SQLite \(try capi.text("select sqlite_version()") ?? "?"); read back: \(readBack); 2 = FULL)")
        print("")
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        print(pad("measure", 62) + pad("tracked", 10) + pad("C API", 10) + pad("vs C API", 10) + pad("GRDB", 10) + pad("vs GRDB", 9) + "target (vs C API)")
        for figure in figures {
            print(pad(figure.name, 62) + pad(String(format: "%.3f s", figure.tracked), 10) + pad(String(format: "%.3f s", figure.cAPI), 10)
                  + pad(String(format: "%.2f×", figure.ratioCAPI), 10) + pad(String(format: "%.3f s", figure.grdb), 10)
                  + pad(String(format: "%.2f×", figure.ratioGRDB), 9) + String(format: "≤ %.1f× %@", figure.targetRatio, figure.met ? "met" : "not met"))
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

/// The plain baseline of applying a batch: each field change upserted into its column through the
/// C API, one statement prepared per column, all in one transaction (as the tracked apply is).
func upsertThroughCAPI(_ changes: [Change], columns: [String], into connection: PlainSQLiteConnection) throws {
    var statements: [String: PlainSQLiteStatement] = [:]
    for column in columns {
        statements[column] = try connection.prepare("INSERT INTO record (id, \(column)) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET \(column) = excluded.\(column)")
    }
    try connection.transaction {
        for change in changes {
            for field in change.fields {
                guard let statement = statements[field.column] else { throw PlainSQLiteError("a change names a column outside the benchmark table") }
                try statement.run(change.row, field.value.textValue)
            }
        }
    }
}
