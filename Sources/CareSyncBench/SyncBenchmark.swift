import Foundation
import GRDB
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore

/// End to end over loopback: replica A → hub → replica B, beside plain-SQLite upserts of the same
/// values (through the C API, the headline, and through GRDB); a small sync into a large replica
/// beside the same plain upserts; bytes per change on the wire; and the peak memory of separate hub
/// and client processes while a large backlog syncs. Every in-process connection's
/// `PRAGMA synchronous` is read back and reported; the CLI processes open through the same
/// `StoreFile` path, which refuses anything but FULL.
func runSyncBenchmark(quick: Bool, emitJSON: Bool) async throws {
    let work = NSTemporaryDirectory() + "caresync-syncbench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let columns = (1...5).map { "f\($0)" }
    let table = TableSchema("record", columns: columns.map { ColumnSchema($0, .text, .lastWriterWins) })
    let schema = ReplicaSchema(version: 1, tables: [table], migrations: [SchemaMigration("bench-v1", sql: table.createStatement)])
    var lines: [String] = []
    var json: [String: Any] = [:]
    var readBack: [(name: String, synchronous: Int, journalMode: String)] = []
    func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    func record(_ name: String, _ pragmas: (synchronous: Int, journalMode: String)) {
        readBack.append((name, pragmas.synchronous, pragmas.journalMode))
    }
    func recordHub(_ name: String, _ server: HubServer) throws {
        guard let store = server.store as? SQLiteHubStore else { throw CocoaError(.featureUnsupported) }
        record(name, try store.connectionPragmas())
    }

    func replica(_ name: String, _ id: UInt64) throws -> ReplicaStore {
        try ReplicaStore.create(at: "\(work)/\(name).db", schema: schema, replicaID: ReplicaID(high: id, low: id), name: name, wallClock: Clock())
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

    func startHub(_ name: String, compression: Int?) async throws -> (HubServer, Task<Void, Error>, Int) {
        var random = SystemRandomNumberGenerator()
        let store = try SQLiteHubStore(path: "\(work)/\(name).db", random: &random)
        var configuration = HubServerConfiguration()
        configuration.port = 0
        configuration.compressionThreshold = compression
        let server = HubServer(store: store, configuration: configuration, logger: Logger(label: "bench.hub")) {
            UInt64(Date().timeIntervalSince1970 * 1000)
        }
        let task = Task { try await server.run() }
        for _ in 0..<500 where server.boundPort == nil { try await Task.sleep(nanoseconds: 5_000_000) }
        guard let port = server.boundPort else { throw CocoaError(.featureUnsupported) }
        return (server, task, port)
    }

    func token(_ server: HubServer) throws -> String {
        var random = SystemRandomNumberGenerator()
        return try server.store.issueEnrolmentToken(team: "BENCH", expiresAtMillis: Clock().nowMillis() + 3_600_000, random: &random)
    }

    // 1. End to end: 100,000 field changes (20,000 rows × 5 fields, plus their row creations).
    for compressed in [true, false] {
        let rows = quick ? 2_000 : 20_000
        let a = try replica("a-\(compressed)", 1)
        let b = try replica("b-\(compressed)", 2)
        try fill(a, rows: rows, fields: 5, generation: 0)
        let (server, task, port) = try await startHub("hub-\(compressed)", compression: compressed ? 1024 : nil)
        var configuration = ClientConfiguration()
        configuration.compressionThreshold = compressed ? 1024 : nil
        _ = try await SyncClient.sync(store: b, host: "127.0.0.1", port: port, enrolmentToken: try token(server),
                                      configuration: configuration, logger: Logger(label: "bench"))
        let start = now()
        let push = try await SyncClient.sync(store: a, host: "127.0.0.1", port: port, enrolmentToken: try token(server),
                                             configuration: configuration, logger: Logger(label: "bench"))
        let middle = now()
        let pull = try await SyncClient.sync(store: b, host: "127.0.0.1", port: port, enrolmentToken: nil,
                                             configuration: configuration, logger: Logger(label: "bench"))
        let end = now()
        let run = compressed ? "compressed" : "uncompressed"
        // Read before the hub stops: it closes its store when it does.
        try recordHub("hub \(run)", server)
        task.cancel()
        record("replica a \(run)", try a.connectionPragmas())
        record("replica b \(run)", try b.connectionPragmas())
        let changes = pull.summary.pulled
        let fieldChanges = rows * 5
        let seconds = Double(end - start) / 1e9
        let label = compressed ? "compressed" : "uncompressed"
        let wirePush = Double(push.bytesSent) / Double(push.summary.pushed)
        let wirePull = Double(pull.bytesReceived) / Double(max(changes, 1))
        json["e2e_\(label)"] = ["changes": changes, "seconds": seconds, "changes_per_s": Double(changes) / seconds,
                                "push_s": Double(middle - start) / 1e9, "pull_s": Double(end - middle) / 1e9,
                                "push_bytes_per_change": wirePush, "pull_bytes_per_change": wirePull]
        if compressed {
            // Baseline: the same field values upserted into plain SQLite in one transaction.
            let plain = try StoreFile.openDurableQueue(path: "\(work)/plain-e2e.db", label: "bench.plain")
            try await plain.write { db in try db.execute(sql: table.createStatement) }
            let batch = try a.changes(notIn: VersionVector())
            let baselineStart = now()
            try await plain.write { db in
                for change in batch {
                    for field in change.fields {
                        try db.cachedStatement(sql: "INSERT INTO record (id, \(field.column)) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET \(field.column) = excluded.\(field.column)")
                            .execute(arguments: [change.row, field.value.textValue])
                    }
                }
            }
            let baseline = Double(now() - baselineStart) / 1e9
            record("GRDB plain e2e", try StoreFile.pragmas(plain))
            let capi = try PlainSQLiteConnection(path: "\(work)/capi-e2e.db")
            try capi.execute(table.createStatement)
            let capiStart = now()
            try upsertThroughCAPI(batch, columns: columns, into: capi)
            let capiBaseline = Double(now() - capiStart) / 1e9
            record("C API plain e2e", try capi.pragmas())
            let fieldChangesPerSecond = Double(fieldChanges) / seconds
            let met = fieldChangesPerSecond >= 100_000
            json["e2e_baseline_plain_upsert_s"] = baseline
            json["e2e_baseline_c_api_upsert_s"] = capiBaseline
            json["e2e_ratio_c_api"] = seconds / capiBaseline
            json["e2e_ratio_grdb"] = seconds / baseline
            json["e2e_field_changes_per_s"] = fieldChangesPerSecond
            json["e2e_target_field_changes_per_s"] = 100_000
            json["e2e_met"] = met
            lines.append(String(format: "end to end A → hub → B over loopback: %d changes (%d field changes + row creations) in %.2f s = %.0f changes/s, %.0f field changes/s (push %.2f s, pull %.2f s)",
                                changes, fieldChanges, seconds, Double(changes) / seconds, fieldChangesPerSecond, Double(middle - start) / 1e9, Double(end - middle) / 1e9))
            lines.append(String(format: "  plain SQLite upsert of the same %d field values, one transaction: C API %.3f s → ratio %.1f×; GRDB %.3f s → ratio %.1f×",
                                batch.count, capiBaseline, seconds / capiBaseline, baseline, seconds / baseline))
            lines.append(String(format: "  target ≥ 100,000 field changes/s: %@ (%.0f/s)", met ? "met" : "not met", fieldChangesPerSecond))
        }
        lines.append(String(format: "  bytes on the wire per change, %@: push %.1f, pull %.1f", label, wirePush, wirePull))
    }

    // 2. Ten changes synced into a replica holding 1,000,000 rows (excluding connect).
    do {
        let bigRows = quick ? 100_000 : 1_000_000
        let big = try replica("big", 3)
        let bigStart = now()
        try fill(big, rows: bigRows, fields: 1, generation: 0)
        let fillSeconds = Double(now() - bigStart) / 1e9
        let small = try replica("small", 4)
        let (server, task, port) = try await startHub("hub-big", compression: 1024)
        _ = try await SyncClient.sync(store: big, host: "127.0.0.1", port: port, enrolmentToken: try token(server), logger: Logger(label: "bench"))
        _ = try await SyncClient.sync(store: small, host: "127.0.0.1", port: port, enrolmentToken: try token(server), logger: Logger(label: "bench"))
        try small.write(author: "bench") { tx in
            for row in 0..<10 { try tx.create("record", id: "new\(row)", values: ["f1": .text("ten new values \(row)")]) }
        }
        _ = try await SyncClient.sync(store: small, host: "127.0.0.1", port: port, enrolmentToken: nil, logger: Logger(label: "bench"))
        let report = try await SyncClient.sync(store: big, host: "127.0.0.1", port: port, enrolmentToken: nil, logger: Logger(label: "bench"))
        try recordHub("hub big", server)
        task.cancel()
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
            for row in 0..<10 {
                try db.execute(sql: "INSERT INTO record (id, f1) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET f1 = excluded.f1",
                               arguments: ["new\(row)", "ten new values \(row)"])
            }
        }
        let baseline = Double(now() - baselineStart) / 1e9
        record("GRDB plain big", try StoreFile.pragmas(plain))
        // The same table, rows and upserts through the C API.
        let capi = try PlainSQLiteConnection(path: "\(work)/capi-big.db")
        try capi.execute(table.createStatement)
        let capiInsert = try capi.prepare("INSERT INTO record (id, f1) VALUES (?, ?)")
        try capi.transaction {
            for row in 0..<bigRows { try capiInsert.run("r\(row)", "value 0-\(row)-0 lorem ipsum") }
        }
        let capiUpsert = try capi.prepare("INSERT INTO record (id, f1) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET f1 = excluded.f1")
        let capiStart = now()
        try capi.transaction {
            for row in 0..<10 { try capiUpsert.run("new\(row)", "ten new values \(row)") }
        }
        let capiBaseline = Double(now() - capiStart) / 1e9
        record("C API plain big", try capi.pragmas())
        let met = report.sessionSeconds * 1000 <= 5
        json["small_into_large"] = ["rows": bigRows, "changes": report.summary.pulled, "session_ms": report.sessionSeconds * 1000,
                                    "total_ms": report.durationSeconds * 1000, "baseline_ms": baseline * 1000, "fill_s": fillSeconds,
                                    "baseline_grdb_ms": baseline * 1000, "baseline_c_api_ms": capiBaseline * 1000,
                                    "ratio_c_api": report.sessionSeconds / capiBaseline, "ratio_grdb": report.sessionSeconds / baseline,
                                    "target_ms": 5, "met": met]
        lines.append(String(format: "10 new rows (%d changes) synced into a replica of %d rows: %.2f ms excluding connect (%.2f ms with it)",
                            report.summary.pulled, bigRows, report.sessionSeconds * 1000, report.durationSeconds * 1000))
        lines.append(String(format: "  plain upsert of the same 10 rows, one transaction: C API %.2f ms → ratio %.1f×; GRDB %.2f ms → ratio %.1f×",
                            capiBaseline * 1000, report.sessionSeconds / capiBaseline, baseline * 1000, report.sessionSeconds / baseline))
        lines.append(String(format: "  target ≤ 5 ms excluding connect: %@", met ? "met" : "not met"))
    }

    // 3. Peak memory of separate hub and client processes while a large backlog syncs.
    do {
        let backlogRows = quick ? 50_000 : 500_000
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
            // The backlog goes up from a CLI replica? The source uses a benchmark schema, so it is
            // pushed in-process; the receiving client is a separate `caresync sync` process.
            let pushReport = try await SyncClient.sync(store: source, host: "127.0.0.1", port: Int(address.split(separator: ":").last!)!,
                                                       enrolmentToken: try enroll(), logger: Logger(label: "bench"))
            let client = try ProcessProbe.start(binary, ["sync", "--replica", "\(work)/receiver.db", "--hub", address, "--token", try enroll(),
                                                         "--json", "--quiet"], work: work)
            let clientPeak = client.waitAndPeak()
            let hubPeak = hub.peakSoFar()
            json["peak_memory"] = ["backlog_changes": sourceChanges, "hub_peak_rss_mb": Double(hubPeak) / 1024,
                                   "client_peak_rss_mb": Double(clientPeak) / 1024, "push_s": pushReport.durationSeconds]
            lines.append(String(format: "peak RSS while a %d-change backlog syncs (separate processes): hub %.1f MB, pulling client %.1f MB   (target flat, < 64 MB)",
                                sourceChanges, Double(hubPeak) / 1024, Double(clientPeak) / 1024))
        } else {
            lines.append("peak memory: skipped (build the caresync product beside caresync-bench)")
        }
    }

    json["synchronous_read_back"] = Dictionary(readBack.map { ($0.name, $0.synchronous) }, uniquingKeysWith: { first, _ in first })
    if emitJSON {
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        let allFull = readBack.allSatisfy { $0.synchronous == 2 && $0.journalMode == "wal" }
        print("CareSync sync benchmark (\(quick ? "quick" : "full") run, loopback TCP; read back on \(readBack.count) in-process connections: \(allFull ? "all wal synchronous=2 (FULL)" : readBack.map { "\($0.name) \($0.journalMode) synchronous=\($0.synchronous)" }.joined(separator: ", ")))\n")
        for line in lines { print(line) }
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

    static func start(_ binary: String, _ arguments: [String], work: String) throws -> ProcessProbe {
        let probe = ProcessProbe()
        probe.process.executableURL = URL(fileURLWithPath: binary)
        probe.process.arguments = arguments
        probe.process.currentDirectoryURL = URL(fileURLWithPath: work)
        probe.process.standardOutput = probe.output
        probe.process.standardError = FileHandle.nullDevice
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
