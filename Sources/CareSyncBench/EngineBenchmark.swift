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

/// The bench's one source of unseeded randomness: hub secrets, record ids and, when no `--seed`
/// is given, the load benchmark's seed (which it prints, so a run can be repeated).
enum BenchRandom {
    static let system = RandomSource.system

    static func seed() -> UInt64 {
        var random = system
        return max(1, random.next())
    }
}

/// Runs `body`; with CARESYNC_BENCH_PHASES set, prints its CLOCK_MONOTONIC start and end to
/// standard error, for `perf record -k CLOCK_MONOTONIC` and `perf report --time start,end`.
func phase<Result>(_ name: String, _ body: () throws -> Result) rethrows -> Result {
    guard ProcessInfo.processInfo.environment["CARESYNC_BENCH_PHASES"] != nil else { return try body() }
    func monotonic() -> String {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return String(format: "%d.%06d", time.tv_sec, time.tv_nsec / 1_000)
    }
    let start = monotonic()
    let result = try body()
    FileHandle.standardError.write(Data("phase \(name): \(start),\(monotonic())\n".utf8))
    return result
}

/// One timed measure: the tracked store's seconds beside both plain baselines of the same workload,
/// its target a ratio to the C-API baseline.
func timed(_ name: String, tracked: Double, cAPI: Double, grdb: Double, targetRatio: Double, stretch: Double) -> Measure {
    Measure(name: name, figure: tracked, unit: "s", baselineCAPI: cAPI, baselineGRDB: grdb, targetOn: "ratio_c_api",
            target: targetRatio, stretch: stretch)
}

/// Local writes, batch apply and metadata size, each beside plain SQLite in the same run.
func runEngineBenchmark(quick: Bool, emitJSON: Bool) throws {
    let rows = quick ? 2_000 : 20_000
    let batchSize = 1_000
    let singleTransactions = quick ? 50 : 300
    let fieldsPerRow = 5

    let (columns, table, schema) = benchSchema(fields: fieldsPerRow)
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

    var figures: [Measure] = []
    let context = RunContext()

    // 1. Tracked local writes vs plain SQLite, batched (1,000 edits per transaction).
    let tracked = try ReplicaStore.create(at: "\(work)/tracked.db", schema: schema, replicaID: ReplicaID(high: 1, low: 1),
                                          name: "bench", wallClock: SystemWallClock())
    let plain = try plainQueue("plain")
    let capi = try plainConnection("capi")
    let insertColumns = (["id"] + columns).joined(separator: ", ")
    let insertMarks = Array(repeating: "?", count: fieldsPerRow + 1).joined(separator: ", ")

    let trackedInsert = try phase("tracked insert") { try seconds {
        for start in stride(from: 0, to: rows, by: batchSize) {
            try tracked.write(author: "bench") { tx in
                for row in start..<min(start + batchSize, rows) {
                    var values: [String: FieldValue] = [:]
                    for (index, column) in columns.enumerated() { values[column] = .text(value(row, index, 0)) }
                    try tx.create("record", id: "r\(row)", values: values)
                }
            }
        }
    } }
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
    figures.append(timed("insert \(rows) rows × \(fieldsPerRow) fields, \(batchSize)/txn", tracked: trackedInsert, cAPI: capiInsert, grdb: plainInsert, targetRatio: 2.0, stretch: 1.5))

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
    figures.append(timed("update \(rows) single fields, \(batchSize)/txn", tracked: trackedUpdate, cAPI: capiUpdate, grdb: plainUpdate, targetRatio: 2.0, stretch: 1.5))

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
    figures.append(timed("update, one edit per transaction (\(singleTransactions) commits)", tracked: trackedSingle, cAPI: capiSingle, grdb: plainSingle, targetRatio: 1.2, stretch: 1.1))

    // 2. Applying a 100,000-field-change batch vs a plain upsert of the same values.
    let source = try ReplicaStore.create(at: "\(work)/source.db", schema: schema, replicaID: ReplicaID(high: 2, low: 2),
                                         name: "source", wallClock: SystemWallClock())
    let batchRows = (quick ? 10_000 : 100_000) / fieldsPerRow
    for start in stride(from: 0, to: batchRows, by: 5_000) {
        try source.write(author: "bench") { tx in
            for row in start..<min(start + 5_000, batchRows) {
                try tx.create("record", id: "r\(row)", values: Dictionary(uniqueKeysWithValues: columns.enumerated().map { ($1, .text(value(row, $0, 3))) }))
            }
        }
    }
    let allChanges = try source.changes(notIn: VersionVector())
    let batch = fieldChanges(allChanges)
    let receiver = try ReplicaStore.create(at: "\(work)/receiver.db", schema: schema, replicaID: ReplicaID(high: 3, low: 3),
                                           name: "receiver", wallClock: SystemWallClock())
    let trackedApply = try phase("tracked apply") { try seconds { _ = try receiver.apply(allChanges) } }
    let upsertTarget = try plainQueue("upsert")
    let plainApply = try seconds {
        try upsertTarget.write { db in
            var statements: [String: Statement] = [:]
            for column in columns {
                statements[column] = try db.makeStatement(sql: upsertStatement(column))
            }
            for change in batch {
                try statements[change.column]!.execute(arguments: [change.row, change.value.textValue])
            }
        }
    }
    let capiUpsertTarget = try plainConnection("capi-upsert")
    let capiApply = try seconds { try upsertThroughCAPI(batch, columns: columns, into: capiUpsertTarget) }
    var apply = timed("apply \(batch.count) field changes, one txn", tracked: trackedApply, cAPI: capiApply, grdb: plainApply,
                      targetRatio: 2.0, stretch: 1.5)
    apply.details["changes"] = allChanges.count
    figures.append(apply)

    // 3. Metadata bytes per tracked field.
    let fieldCount = rows * fieldsPerRow
    let perField = try tracked.metadataBytesPerField()
    let trackedBytes = fileBytes("\(work)/tracked.db")
    let plainBytes = fileBytes("\(work)/plain.db")
    let receiverBytes = fileBytes("\(work)/receiver.db")
    let upsertBytes = fileBytes("\(work)/upsert.db")

    // 4. Bundle size per field change.
    let bundleBytes = ChangeBundle(sender: source.replicaID, schemaVersion: 1, senderKnowledge: VersionVector(), changes: allChanges).encoded().count

    // Read back, not assumed: every side must run at WAL + FULL (2) for the ratios to mean anything.
    let readBack = [("tracked", try tracked.connectionPragmas()), ("receiver", try receiver.connectionPragmas()),
                    ("GRDB plain", try StoreFile.pragmas(plain)), ("GRDB upsert", try StoreFile.pragmas(upsertTarget)),
                    ("C API plain", try capi.pragmas()), ("C API upsert", try capiUpsertTarget.pragmas())]
    let localOverhead = Double(trackedBytes - plainBytes) / Double(fieldCount)
    figures.append(Measure(name: "replica file overhead incl. history, local writes", figure: localOverhead, unit: "B per field",
                           target: 80, stretch: 50, details: ["tracked_bytes": trackedBytes, "plain_bytes": plainBytes, "fields": fieldCount]))
    figures.append(Measure(name: "replica file overhead incl. history, applied batch", figure: Double(receiverBytes - upsertBytes) / Double(batch.count),
                           unit: "B per field", details: ["tracked_bytes": receiverBytes, "plain_bytes": upsertBytes, "fields": batch.count]))
    figures.append(Measure(name: "bundle bytes per field change", figure: Double(bundleBytes) / Double(batch.count), unit: "B",
                           details: ["bundle_bytes": bundleBytes, "changes": allChanges.count, "field_changes": batch.count]))
    if let perField {
        figures.append(Measure(name: "per-field clock metadata (dbstat)", figure: Double(perField.bytes) / Double(perField.fields), unit: "B per field"))
    }
    if emitJSON {
        let synchronous = Dictionary(readBack.map { ($0.0, $0.1.synchronous) }, uniquingKeysWith: { first, _ in first })
        try printJSON(benchmark: "engine", context: context, measures: figures, extra: ["synchronous_read_back": synchronous, "quick": quick])
        return
    }
    let pragmas = readBack.map { "\($0) \($1.journalMode) synchronous=\($1.synchronous)" }.joined(separator: ", ")
    print("CareSync engine benchmark (\(quick ? "quick" : "full") run; \(context.line); SQLite \(try capi.text("select sqlite_version()") ?? "?"); read back: \(pragmas); 2 = FULL)")
    print("")
    func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
    print(pad("measure", 52) + pad("tracked", 10) + pad("C API", 10) + pad("vs C API", 10) + pad("GRDB", 10) + pad("vs GRDB", 9) + "target")
    for figure in figures {
        guard let capiSeconds = figure.baselineCAPI, let grdbSeconds = figure.baselineGRDB, let ratio = figure.ratioCAPI,
              let grdbRatio = figure.ratioGRDB else { continue }
        print(pad(figure.name, 52) + pad(String(format: "%.3f s", figure.figure), 10) + pad(String(format: "%.3f s", capiSeconds), 10)
              + pad(String(format: "%.2f×", ratio), 10) + pad(String(format: "%.3f s", grdbSeconds), 10)
              + pad(String(format: "%.2f×", grdbRatio), 9) + figure.verdict)
    }
    print("")
    printMeasures(figures.filter { $0.baselineCAPI == nil })
    print(String(format: "throughput: tracked inserts %.0f fields/s; batch apply %.0f field changes/s", Double(fieldCount) / trackedInsert,
                 Double(batch.count) / trackedApply))
}

/// Upserts one column of the benchmark table.
func upsertStatement(_ column: String) -> String {
    "INSERT INTO record (id, \(column)) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET \(column) = excluded.\(column)"
}

/// The plain baseline of applying a batch: each field change upserted into its column through the
/// C API, one statement prepared per column, all in one transaction (as the tracked apply is).
func upsertThroughCAPI(_ changes: [FieldChange], columns: [String], into connection: PlainSQLiteConnection) throws {
    var statements: [String: PlainSQLiteStatement] = [:]
    for column in columns {
        statements[column] = try connection.prepare(upsertStatement(column))
    }
    try connection.transaction {
        for change in changes {
            guard let statement = statements[change.column] else { throw PlainSQLiteError("a change names a column outside the benchmark table") }
            try statement.run(change.row, change.value.textValue)
        }
    }
}

/// The benchmarks' schema: one table `record` of `fields` last-writer-wins text columns f1…fN.
func benchSchema(fields: Int) -> (columns: [String], table: TableSchema, schema: ReplicaSchema) {
    let columns = (1...max(fields, 1)).map { "f\($0)" }
    let table = TableSchema("record", columns: columns.map { ColumnSchema($0, .text, .lastWriterWins) })
    return (columns, table, ReplicaSchema(version: 1, tables: [table], migrations: [SchemaMigration("bench-v1", sql: table.createStatement)]))
}
