import Foundation
import GRDB
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore

/// End to end over loopback: replica A → hub → replica B, beside plain-SQLite upserts of the same
/// values (through the C API, the headline, and through GRDB); a fresh replica's catch-up (B's
/// pull); a small sync into a large replica beside the same plain upserts; bytes per change on the
/// wire; the peak memory of separate hub and client processes while a large backlog syncs; and the
/// care-records workload. Every in-process connection's `PRAGMA synchronous` is read back and
/// reported; the CLI processes open through the same `StoreFile` path, which refuses anything but FULL.
func runSyncBenchmark(quick: Bool, emitJSON: Bool) async throws {
    let context = RunContext()
    let work = NSTemporaryDirectory() + "caresync-syncbench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let (columns, table, schema) = benchSchema(fields: 5)
    var measures: [Measure] = []
    var readBack: [(name: String, synchronous: Int, journalMode: String)] = []
    func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    func record(_ name: String, _ pragmas: (synchronous: Int, journalMode: String)) {
        readBack.append((name, pragmas.synchronous, pragmas.journalMode))
    }

    func replica(_ name: String, _ id: UInt64) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(work)/\(name).db", schema: schema, replicaID: ReplicaID(high: id, low: id), name: name, wallClock: SystemWallClock())
    }

    func fill(_ store: ReplicaStore, rows: Int, fields: Int, generation: Int) throws {
        for start in stride(from: 0, to: rows, by: 5_000) {
            try store.write(author: "bench") { tx in
                for row in start..<min(start + 5_000, rows) {
                    var values: [String: FieldValue] = [:]
                    for field in 0..<fields { values[columns[field]] = .text("value \(generation)-\(row)-\(field) lorem ipsum") }
                    try tx.create("record", id: "r\(row)", values: values)
                }
            }
        }
    }
    let logger = Logger(label: "bench")

    // 1. End to end: 100,000 field changes (20,000 rows × 5 fields).
    for compressed in [true, false] {
        let rows = quick ? 2_000 : 20_000
        let a = try replica("a-\(compressed)", 1)
        let b = try replica("b-\(compressed)", 2)
        try fill(a, rows: rows, fields: 5, generation: 0)
        let hub = try await InProcessHub.start(path: "\(work)/hub-\(compressed).db", compression: compressed ? 1024 : nil)
        var configuration = ClientConfiguration()
        configuration.compressionThreshold = compressed ? 1024 : nil
        _ = try await SyncClient.sync(store: b, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(),
                                      configuration: configuration, logger: logger)
        let start = now()
        let push = try await SyncClient.sync(store: a, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(),
                                             configuration: configuration, logger: logger)
        let middle = now()
        let pull = try await SyncClient.sync(store: b, host: "127.0.0.1", port: hub.port, enrolmentToken: nil,
                                             configuration: configuration, logger: logger)
        let end = now()
        let label = compressed ? "compressed" : "uncompressed"
        // Read before the hub stops: it closes its store when it does.
        record("hub \(label)", try hub.pragmas())
        hub.stop()
        record("replica a \(label)", try a.connectionPragmas())
        record("replica b \(label)", try b.connectionPragmas())
        let batch = fieldChanges(try a.changes(notIn: VersionVector()))
        let seconds = Double(end - start) / 1e9
        let pullSeconds = Double(end - middle) / 1e9
        let details: [String: any Encodable] = ["changes": pull.summary.pulled, "field_changes": batch.count, "seconds": seconds,
                                      "push_s": Double(middle - start) / 1e9, "pull_s": pullSeconds,
                                      "push_bytes": push.bytesSent, "pull_bytes": pull.bytesReceived]
        measures.append(Measure(name: "synthetic workload: wire bytes per field change, \(label) (pull)",
                                figure: Double(pull.bytesReceived) / Double(batch.count), unit: "B", details: details))
        guard compressed else { continue }
        // Baselines: the same field values upserted into plain SQLite in one transaction.
        let plain = try StoreFile.openDurableQueue(path: "\(work)/plain-e2e.db", label: "bench.plain")
        try await plain.write { db in try db.execute(sql: table.createStatement) }
        let baselineStart = now()
        try await plain.write { db in
            for change in batch {
                try db.cachedStatement(sql: upsertStatement(change.column)).execute(arguments: [change.row, change.value.textValue])
            }
        }
        let grdbSeconds = Double(now() - baselineStart) / 1e9
        record("GRDB plain e2e", try StoreFile.pragmas(plain))
        let capi = try PlainSQLiteConnection(path: "\(work)/capi-e2e.db")
        try capi.execute(table.createStatement)
        let capiStart = now()
        try upsertThroughCAPI(batch, columns: columns, into: capi)
        let capiSeconds = Double(now() - capiStart) / 1e9
        record("C API plain e2e", try capi.pragmas())
        let perSecond = Double(batch.count)
        measures.append(Measure(name: "end to end A → hub → B, fsync on all three files", figure: perSecond / seconds, unit: "field changes/s",
                                baselineCAPI: perSecond / capiSeconds, baselineGRDB: perSecond / grdbSeconds,
                                target: 100_000, bound: .atLeast, stretch: 200_000,
                                details: details.merging(["baseline_c_api_upsert_s": capiSeconds, "baseline_grdb_upsert_s": grdbSeconds],
                                                         uniquingKeysWith: { first, _ in first })))
        measures.append(Measure(name: "fresh replica catch-up (B's pull)", figure: perSecond / pullSeconds, unit: "field changes/s",
                                baselineCAPI: perSecond / capiSeconds, baselineGRDB: perSecond / grdbSeconds,
                                target: 150_000, bound: .atLeast, stretch: 300_000, details: details))
    }

    // 2. Ten changes synced into a replica holding 1,000,000 rows (excluding connect).
    do {
        let bigRows = quick ? 100_000 : 1_000_000
        let big = try replica("big", 3)
        let bigStart = now()
        try fill(big, rows: bigRows, fields: 1, generation: 0)
        let fillSeconds = Double(now() - bigStart) / 1e9
        let small = try replica("small", 4)
        let hub = try await InProcessHub.start(path: "\(work)/hub-big.db", compression: 1024)
        _ = try await SyncClient.sync(store: big, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(), logger: logger)
        _ = try await SyncClient.sync(store: small, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(), logger: logger)
        try small.write(author: "bench") { tx in
            for row in 0..<10 { try tx.create("record", id: "new\(row)", values: ["f1": .text("ten new values \(row)")]) }
        }
        _ = try await SyncClient.sync(store: small, host: "127.0.0.1", port: hub.port, enrolmentToken: nil, logger: logger)
        let report = try await SyncClient.sync(store: big, host: "127.0.0.1", port: hub.port, enrolmentToken: nil, logger: logger)
        record("hub big", try hub.pragmas())
        hub.stop()
        record("replica big", try big.connectionPragmas())
        record("replica small", try small.connectionPragmas())
        // Baseline: ten plain upserts into a plain table of the same size.
        let plain = try StoreFile.openDurableQueue(path: "\(work)/plain-big.db", label: "bench.plain")
        try await plain.write { db in
            try db.execute(sql: table.createStatement)
            let insert = try db.makeStatement(sql: "INSERT INTO record (id, f1) VALUES (?, ?)")
            for row in 0..<bigRows { try insert.execute(arguments: ["r\(row)", "value 0-\(row)-0 lorem ipsum"]) }
        }
        let baselineStart = now()
        try await plain.write { db in
            for row in 0..<10 { try db.execute(sql: upsertStatement("f1"), arguments: ["new\(row)", "ten new values \(row)"]) }
        }
        let grdbSeconds = Double(now() - baselineStart) / 1e9
        record("GRDB plain big", try StoreFile.pragmas(plain))
        // The same table, rows and upserts through the C API.
        let capi = try PlainSQLiteConnection(path: "\(work)/capi-big.db")
        try capi.execute(table.createStatement)
        let capiInsert = try capi.prepare("INSERT INTO record (id, f1) VALUES (?, ?)")
        try capi.transaction {
            for row in 0..<bigRows { try capiInsert.run("r\(row)", "value 0-\(row)-0 lorem ipsum") }
        }
        let capiUpsert = try capi.prepare(upsertStatement("f1"))
        let capiStart = now()
        try capi.transaction {
            for row in 0..<10 { try capiUpsert.run("new\(row)", "ten new values \(row)") }
        }
        let capiSeconds = Double(now() - capiStart) / 1e9
        record("C API plain big", try capi.pragmas())
        measures.append(Measure(name: "10 changes into a replica of \(bigRows) rows, excl. connect", figure: report.sessionSeconds * 1000, unit: "ms",
                                baselineCAPI: capiSeconds * 1000, baselineGRDB: grdbSeconds * 1000, target: 5, stretch: 2,
                                details: ["rows": bigRows, "changes": report.summary.pulled, "total_ms": report.durationSeconds * 1000,
                                          "fill_s": fillSeconds]))
    }

    // 3. Peak memory of separate hub and client processes while a large backlog syncs.
    do {
        let backlogRows = quick ? 50_000 : 1_000_000
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("caresync").path
        if FileManager.default.isExecutableFile(atPath: binary) {
            let source = try replica("backlog-source", 5)
            try fill(source, rows: backlogRows, fields: 1, generation: 1)
            let sourceChanges = try source.status().totalChanges
            let hub = try ProcessProbe.start(binary, ["hub", "serve", "--db", "\(work)/hub-mem.db", "--port", "0"], work: work)
            defer { hub.terminate() }
            let address = try hub.waitForLine(containing: "listening on").components(separatedBy: "listening on ").last!
                .trimmingCharacters(in: .whitespacesAndNewlines)
            func enroll() throws -> String {
                try ProcessProbe.run(binary, ["hub", "enroll", "--db", "\(work)/hub-mem.db", "--team", "BENCH"], work: work)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try ProcessProbe.run(binary, ["init", "\(work)/receiver.db"], work: work)
            // The source uses the benchmark schema, so it is pushed in-process; the receiving
            // client is a separate `caresync sync` process (a care-records replica, which keeps
            // the unknown-table changes rather than merging them).
            let pushReport = try await SyncClient.sync(store: source, host: "127.0.0.1", port: Int(address.split(separator: ":").last!)!,
                                                       enrolmentToken: try enroll(), logger: logger)
            let client = try ProcessProbe.start(binary, ["sync", "--replica", "\(work)/receiver.db", "--hub", address, "--token", try enroll(),
                                                         "--json", "--quiet"], work: work)
            let clientPeak = Double(client.waitAndPeak()) / 1024
            let hubPeak = Double(hub.peakSoFar()) / 1024
            let details: [String: any Encodable] = ["backlog_changes": sourceChanges, "backlog_rows": backlogRows, "push_s": pushReport.durationSeconds]
            measures.append(Measure(name: "peak RSS, hub, \(sourceChanges)-change backlog", figure: hubPeak, unit: "MB", target: 64, stretch: 32, details: details))
            measures.append(Measure(name: "peak RSS, client, \(sourceChanges)-change backlog", figure: clientPeak, unit: "MB", target: 64, stretch: 32, details: details))
        }
    }

    // 4. The care-records workload (wire bytes per field change, end to end).
    measures += try await careMeasures(quick: quick, seed: 20261201)

    let allFull = readBack.allSatisfy { $0.synchronous == 2 && $0.journalMode == "wal" }
    if emitJSON {
        let synchronous = Dictionary(readBack.map { ($0.name, $0.synchronous) }, uniquingKeysWith: { first, _ in first })
        try printJSON(benchmark: "sync", context: context, measures: measures, extra: ["synchronous_read_back": synchronous, "quick": quick])
    } else {
        let pragmas = allFull ? "all wal synchronous=2 (FULL)" : readBack.map { "\($0.name) \($0.journalMode) synchronous=\($0.synchronous)" }.joined(separator: ", ")
        print("CareSync sync benchmark (\(quick ? "quick" : "full") run, loopback TCP; \(context.line); read back on \(readBack.count) in-process connections: \(pragmas))\n")
        printMeasures(measures)
    }
}

/// A child process whose resident memory is sampled while it runs (Linux /proc).
final class ProcessProbe: @unchecked Sendable {
    // Safety: the sampling thread and the caller share `peak` only under the lock.
    let process = Process()
    let output = Pipe()
    private let lock = NSLock()
    private var peak = 0
    private var sampler: Thread?

    /// `log`: a file for the child's standard error, written at `CARESYNC_LOG_LEVEL` `logLevel`.
    static func start(_ binary: String, _ arguments: [String], work: String, log: String? = nil, logLevel: String = "info") throws -> ProcessProbe {
        let probe = ProcessProbe()
        probe.process.executableURL = URL(fileURLWithPath: binary)
        probe.process.arguments = arguments
        probe.process.currentDirectoryURL = URL(fileURLWithPath: work)
        probe.process.standardOutput = probe.output
        if let log {
            FileManager.default.createFile(atPath: log, contents: nil)
            probe.process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            probe.process.environment = ProcessInfo.processInfo.environment.merging(["CARESYNC_LOG_LEVEL": logLevel]) { $1 }
        } else {
            probe.process.standardError = FileHandle.nullDevice
        }
        try probe.process.run()
        let thread = Thread { [probe] in
            while probe.process.isRunning {
                probe.sample()
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        probe.sampler = thread
        thread.start()
        return probe
    }

    @discardableResult
    static func run(_ binary: String, _ arguments: [String], work: String) throws -> String {
        let probe = try start(binary, arguments, work: work)
        probe.process.waitUntilExit()
        return String(decoding: probe.output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func sample() {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) else { return }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") || line.hasPrefix("VmRSS:") {
            let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
            lock.withLock { peak = max(peak, kilobytes) }
        }
    }

    func peakSoFar() -> Int {
        sample()
        return lock.withLock { peak }
    }

    func waitForLine(containing text: String) throws -> String {
        var collected = ""
        let handle = output.fileHandleForReading
        while !collected.contains(text) {
            let data = handle.availableData
            if data.isEmpty { throw CocoaError(.fileReadUnknown) }
            collected += String(decoding: data, as: UTF8.self)
        }
        return collected.split(separator: "\n").first { $0.contains(text) }.map(String.init) ?? collected
    }

    func waitAndPeak() -> Int {
        process.waitUntilExit()
        return lock.withLock { peak }
    }

    func terminate() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
