import Foundation
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting

/// Options of `caresync-bench load`.
struct LoadOptions {
    var replicaCounts = [50, 250, 500, 1_000]
    var seconds = 20.0
    var warmUpSeconds = 3.0
    var fieldsPerSync = 3
    /// Teams the replicas are spread over (replica i is in team i mod T); 1 makes every replica
    /// pull every other's edits, the workload before team scoping.
    var teams = 50
    /// Young people each team holds, created during set-up by the team's first replica.
    var youngPeoplePerTeam = 20
    var seed = BenchRandom.seed()
    /// `perf record` the hub child process over each measured window into this file (N appended).
    var perfHub: String?
    /// Each replica stays connected (`LiveSync`): a sync is a round on its open session (push,
    /// ack, pull, caught up), with no TCP connect, hello, credential check or welcome.
    var live = false
}

/// Hub load: N simulated replicas in this one process, each a real `ReplicaStore` driven by the
/// real `ClientSession` (through `SyncClient.sync`, as the CLI syncs) over real loopback TCP to a
/// real hub in a child process (`caresync hub serve`, whose store opens at WAL + synchronous=FULL
/// and refuses anything else). Each replica waits a uniform random 0–2 s (seeded), writes one row
/// edit of a few fields, and syncs.
///
/// Team-scoped (issue 10): the replicas are enrolled in T teams (replica i in team i mod T) and the
/// hub scopes with the care records' rules. During set-up each team's first replica records the
/// team's young people (`young_person` rows whose id is their scope: their creator's team holds
/// them while nothing else names a team), and every replica pulls them. Each timed write is a new
/// row scoped to one of its team's young people, so a replica pulls only its team's edits (about
/// N/T a sync where T = 1 pulls about N). After each level the hub's file is read: no write may
/// have been quarantined and no purge may be owed.
///
/// A sync, as timed here: connect (a new TCP connection per sync, as `caresync sync` makes) →
/// hello/welcome → push → ack → pull → caught up → goodbye; with `--live`, a round on the
/// replica's open session (`LiveSync.sync()`: push → ack → pull → caught up), timed from the
/// moment the replica asks for it. Live sessions are opened 16 at a time before the timed part. Syncs that start inside the measured
/// window (after a warm-up) are counted; the figures are syncs/s completed, latency p50/p99/max,
/// the hub process's CPU (utime + stime from /proc, % of one core) and RSS, and this process's CPU
/// (the clients), because on a shared 2-core machine the clients compete with the hub.
///
/// The replicas' files live on tmpfs (/dev/shm): their fdatasyncs cost no disk time, so the disk
/// is the hub's alone; the hub's file is on the benchmark's work directory (the real disk).
func runLoadBenchmark(_ options: LoadOptions, emitJSON: Bool) async throws {
    raiseFileLimit()
    let context = RunContext()
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("caresync").path
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw BenchFailure("the load benchmark runs the hub as `caresync hub serve`: build the caresync product beside caresync-bench (swift build -c release)")
    }
    if !emitJSON {
        print("CareSync hub load benchmark (seed \(options.seed); \(context.line); \(options.seconds) s measured per level after \(options.warmUpSeconds) s warm-up)")
        print("a sync = \(loadLatencyMeasured(live: options.live)); one row edit of \(options.fieldsPerSync) fields per sync")
        print("\(options.teams) team(s), \(options.youngPeoplePerTeam) young people each; each edit is scoped to one of its team's young people\n")
    }
    var measures: [Measure] = []
    for replicas in options.replicaCounts {
        let level = try await runLoadLevel(replicas: replicas, options: options, binary: binary)
        let measure = level.measure(fieldsPerSync: options.fieldsPerSync)
        measures.append(measure)
        // Each level as it finishes (on standard error under --json), so a long run that fails late still reports.
        var line = level.line + "   " + measure.verdict
        // A quarantined write was not routed: its sync cost is not that of a team-scoped sync.
        if level.quarantined != 0 || level.purgesOwed != 0 { line += "   WORKLOAD NOT IN SCOPE: figures not comparable" }
        if emitJSON { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
    }
    if emitJSON {
        try printJSON(benchmark: "load", context: context, measures: measures, extra: ["seed": options.seed])
    }
}

/// What one level (one replica count) measured.
struct LoadLevel {
    let replicas: Int
    let teams: Int
    let live: Bool
    let windowSeconds: Double
    let latencies: [Double]
    let failures: [String: Int]
    let hubCPUSeconds: Double
    let clientCPUSeconds: Double
    let hubRSSMB: Double
    let hubPeakRSSMB: Double
    let pulledPerSync: Double
    /// Writes the hub quarantined (outside the writer's scope) over the whole level: must be 0.
    let quarantined: Int
    /// Purges the hub owes and has not had acknowledged at the end: must be 0.
    let purgesOwed: Int
    /// Connections the hub ended before their hello to admit newer ones (its log's notice lines).
    let evictions: Int
    /// Live sessions made again after a loss, over the level (0 when not live).
    let reconnects: Int
    /// The same run's baseline: a plain C-API transaction of one row at WAL + FULL on the hub
    /// file's disk (one `fdatasync`, the floor of a push), p50 and p99 in ms, measured before the hub starts.
    let plainCommit: (p50: Double, p99: Double)
    let loadAverage: [Double]

    var syncsPerSecond: Double { Double(latencies.count) / windowSeconds }

    func percentile(_ fraction: Double) -> Double {
        guard !latencies.isEmpty else { return .nan }
        let sorted = latencies.sorted()
        // Nearest rank.
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    var line: String {
        String(format: "%5d replicas / %d teams, %@: %6.1f syncs/s (offered ~%d/s), p50 %7.1f ms, p99 %8.1f ms, max %8.1f ms, failed %d%@; hub CPU %3.0f %% of a core, RSS %.1f MB (peak %.1f); clients' CPU %3.0f %%; pulled %.1f changes/sync; quarantined %d, purges owed %d; evicted before hello %d, reconnects %d; plain C-API commit (FULL) p50 %.1f ms, p99 %.1f ms; load %@",
               replicas, teams, live ? "live sessions" : "a connection per sync", syncsPerSecond, replicas, percentile(0.5) * 1000, percentile(0.99) * 1000, (latencies.max() ?? .nan) * 1000,
               failures.values.reduce(0, +), failures.isEmpty ? "" : " \(failures)", hubCPUSeconds / windowSeconds * 100,
               hubRSSMB, hubPeakRSSMB, clientCPUSeconds / windowSeconds * 100, pulledPerSync, quarantined, purgesOwed,
               evictions, reconnects, plainCommit.p50, plainCommit.p99, loadAverage.map { String(format: "%.2f", $0) }.joined(separator: " "))
    }

    func measure(fieldsPerSync: Int) -> Measure {
        // Issue 7: 500 replicas p99 < 250 ms; issue 10: 1,000 replicas across 50 teams p99 < 250 ms.
        Measure(name: "hub load: \(replicas) replicas in \(teams) team(s) syncing every 0–2 s, FULL\(live ? ", live sessions" : "")", figure: percentile(0.99) * 1000,
                unit: "ms p99", baselineCAPI: plainCommit.p99, target: replicas == 500 || (replicas == 1_000 && teams == 50) ? 250 : nil, stretch: nil,
                       details: ["replicas": replicas, "teams": teams, "quarantined": quarantined, "purges_owed": purgesOwed,
                                 "live": live, "evictions_before_hello": evictions, "reconnects": reconnects,
                                 "plain_commit_p50_ms": plainCommit.p50, "plain_commit_p99_ms": plainCommit.p99,
                                 "syncs_per_s": syncsPerSecond, "p50_ms": percentile(0.5) * 1000,
                                 "p99_ms": percentile(0.99) * 1000, "max_ms": (latencies.max() ?? .nan) * 1000,
                                 "syncs": latencies.count, "failed": failures.values.reduce(0, +), "failures": failures,
                                 "window_s": windowSeconds, "hub_cpu_percent_of_core": hubCPUSeconds / windowSeconds * 100,
                                 "clients_cpu_percent_of_core": clientCPUSeconds / windowSeconds * 100,
                                 // Per sync, so that a figure measured on a loaded machine still says what a sync costs.
                                 "hub_cpu_ms_per_sync": hubCPUSeconds * 1000 / Double(max(latencies.count, 1)),
                                 "clients_cpu_ms_per_sync": clientCPUSeconds * 1000 / Double(max(latencies.count, 1)),
                                 "hub_rss_mb": hubRSSMB, "hub_peak_rss_mb": hubPeakRSSMB, "pulled_changes_per_sync": pulledPerSync,
                                 "fields_per_sync": fieldsPerSync, "load_average_at_end": loadAverage,
                                 "latency_measured": loadLatencyMeasured(live: live)])
    }
}

/// What the replica tasks record, shared between them.
private actor LoadRecorder {
    var latencies: [Double] = []
    var failures: [String: Int] = [:]
    var pulled = 0

    func record(seconds: Double, pulled: Int) {
        latencies.append(seconds)
        self.pulled += pulled
    }

    func fail(_ code: String) { failures[code, default: 0] += 1 }
}

/// What one timed sync is, for the output.
func loadLatencyMeasured(live: Bool) -> String {
    live ? "a round on the replica's open session: push → ack → pull → caught up (no connect, hello or welcome)"
         : "new TCP connection → hello/welcome → push → ack → pull → caught up → goodbye"
}

/// A failed sync's code and, from its message (ids and codes only, never contents), which deadline
/// or refusal it was: the TIMEOUTs of a loaded hub have several causes.
func loadFailureKind(_ failure: SyncFailure) -> String {
    let causes = [("admitting newer", "evicted before hello"), ("no hello within", "hub handshake deadline"),
                  ("no welcome", "client handshake deadline"), ("request deadline", "request deadline"),
                  ("failed or broke", "connection failed"), ("closed the connection", "hub closed")]
    let cause = causes.first { failure.message.contains($0.0) }?.1 ?? "other"
    return "\(failure.code.name) (\(cause))"
}

private func runLoadLevel(replicas: Int, options: LoadOptions, binary: String) async throws -> LoadLevel {
    let work = NSTemporaryDirectory() + "caresync-load-\(UUID().uuidString)"
    let replicaDirectory = "/dev/shm/caresync-load-\(UUID().uuidString)"
    for directory in [work, replicaDirectory] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    defer {
        try? FileManager.default.removeItem(atPath: work)
        try? FileManager.default.removeItem(atPath: replicaDirectory)
    }
    let hubPath = "\(work)/hub.db"
    let plainCommit = try plainCommitMillis(directory: work)
    // Tokens are issued before the hub process opens the file: one writer per SQLite file.
    var tokens: [String] = []
    let teams = min(max(options.teams, 1), replicas)
    do {
        var random = BenchRandom.system
        let store = try SQLiteHubStore(path: hubPath, wallClock: SystemWallClock(), random: &random)
        let pragmas = try store.connectionPragmas()
        guard pragmas.synchronous == 2, pragmas.journalMode == "wal" else { throw BenchFailure("the hub store did not open at WAL + FULL") }
        for _ in 0..<replicas {
            tokens.append(try store.issueEnrolmentToken(team: "team-\(tokens.count % teams)", expiresAtMillis: SystemWallClock().nowMillis() + 3_600_000, random: &random))
        }
    }
    // The hub's log at notice: its admission evictions are counted from it.
    let hubLog = "\(work)/hub.log"
    let hub = try ProcessProbe.start(binary, ["hub", "serve", "--db", hubPath, "--port", "0", "--max-connections", "\(replicas + 64)"],
                                     work: work, log: hubLog, logLevel: "notice")
    defer { hub.terminate() }
    let address = try hub.waitForLine(containing: "listening on").components(separatedBy: "listening on ").last!
        .trimmingCharacters(in: .whitespacesAndNewlines)
    guard let port = address.split(separator: ":").last.flatMap({ Int($0) }) else { throw BenchFailure("the hub printed no port") }

    let schema = loadSchema(fields: options.fieldsPerSync)
    var created: [ReplicaStore] = []
    for index in 0..<replicas {
        created.append(try ReplicaStore.create(at: "\(replicaDirectory)/r\(index).db", schema: schema,
                                              replicaID: ReplicaID(high: 0x10AD, low: UInt64(index + 1)), name: "r\(index)", wallClock: SystemWallClock()))
    }
    let stores = created
    let logger = Logger(label: "bench.load")
    // One attempt per sync: a failure is counted, not hidden behind a backoff.
    let single = RetryPolicy(attempts: 1)
    let enrolment = tokens
    /// One sync of each of `indices`, a few at a time.
    func syncEach(_ indices: [Int], token: @escaping @Sendable (Int) -> String?) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (position, index) in indices.enumerated() {
                if position >= 16 { try await group.next() }
                let store = stores[index]
                group.addTask {
                    _ = try await SyncClient.sync(store: store, host: "127.0.0.1", port: port, enrolmentToken: token(index), logger: logger)
                }
            }
            try await group.waitForAll()
        }
    }
    // Enrol every replica (one sync each, nothing to push or pull yet).
    try await syncEach(Array(stores.indices)) { enrolment[$0] }
    // Each team's first replica records the team's young people; then every replica pulls them,
    // so that the measured syncs pull only the edits of the window.
    let youngPeople = max(options.youngPeoplePerTeam, 1)
    for team in 0..<teams {
        try stores[team].write(author: "load") { tx in
            for number in 0..<youngPeople {
                let id = loadYoungPerson(team: team, number)
                try tx.create(loadScopeTable, id: id, values: ["label": .text("young person \(number) of team \(team)")], scope: id)
            }
        }
    }
    try await syncEach(Array(0..<teams)) { _ in nil }
    try await syncEach(Array(stores.indices)) { _ in nil }
    let sessions = options.live ? try await openLiveSessions(stores, port: port) : nil
    defer { sessions?.stop() }

    let recorder = LoadRecorder()
    let root = SeededGenerator(seed: options.seed).stream("load-\(replicas)")
    let start = DispatchTime.now().uptimeNanoseconds
    let windowStart = start + UInt64(options.warmUpSeconds * 1e9)
    let windowEnd = windowStart + UInt64(options.seconds * 1e9)
    let fields = options.fieldsPerSync
    let hubPID = hub.process.processIdentifier
    let perf = options.perfHub.map { path in PerfRecording(pid: hubPID, output: "\(path).\(replicas)") }
    let measuring = Task {
        try await Task.sleep(nanoseconds: windowStart - DispatchTime.now().uptimeNanoseconds)
        try perf?.start(seconds: options.seconds)
        return (cpuSeconds(of: hubPID), ownCPUSeconds())
    }
    await withTaskGroup(of: Void.self) { group in
        for (index, store) in stores.enumerated() {
            let stream = root.stream("replica-\(index)")
            group.addTask {
                var random = stream
                var sequence = 0
                let team = index % teams
                while true {
                    let wait = UInt64(random.index(below: 2_000_001)) * 1_000  // 0–2 s, in ns
                    try? await Task.sleep(nanoseconds: wait)
                    let began = DispatchTime.now().uptimeNanoseconds
                    guard began < windowEnd else { return }
                    sequence += 1
                    do {
                        let scope = loadYoungPerson(team: team, random.index(below: youngPeople))
                        try store.write(author: "load") { tx in
                            var values: [String: FieldValue] = [:]
                            for field in 1...fields { values["f\(field)"] = .text("replica \(index) edit \(sequence) field \(field)") }
                            try tx.create("record", id: "r\(index)-\(sequence)", values: values, scope: scope)
                        }
                        let pulled: Int
                        if let sessions {
                            pulled = try await sessions.sync(index)
                        } else {
                            pulled = try await SyncClient.sync(store: store, host: "127.0.0.1", port: port, enrolmentToken: nil,
                                                               retry: single, logger: logger).summary.pulled
                        }
                        let seconds = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
                        if began >= windowStart { await recorder.record(seconds: seconds, pulled: pulled) }
                    } catch let failure as SyncFailure {
                        if began >= windowStart { await recorder.fail(loadFailureKind(failure)) }
                    } catch {
                        if began >= windowStart { await recorder.fail(String(describing: type(of: error))) }
                    }
                }
            }
        }
    }
    let ended = DispatchTime.now().uptimeNanoseconds
    perf?.wait()
    let (hubCPUStart, ownCPUStart) = try await measuring.value
    // The last syncs started before the window's end finish after it; the window counts until then.
    let windowSeconds = Double(ended - windowStart) / 1e9
    let latencies = await recorder.latencies
    let hubCPU = cpuSeconds(of: hubPID) - hubCPUStart
    let clientCPU = ownCPUSeconds() - ownCPUStart
    let rss = Double(memory(of: hubPID, "VmRSS:")) / 1024
    let peakRSS = Double(memory(of: hubPID, "VmHWM:")) / 1024
    let reconnects = await sessions?.reconnects() ?? 0
    sessions?.stop()
    // The hub's own record of what it did not route, read once it has stopped (one writer a file).
    hub.terminate()
    let hubFile = try PlainSQLiteConnection(path: hubPath)
    func count(_ sql: String) throws -> Int { Int(try hubFile.text(sql) ?? "") ?? -1 }
    let evictions = ((try? String(contentsOfFile: hubLog, encoding: .utf8)) ?? "")
        .components(separatedBy: "unauthenticated connection ended to admit a newer one").count - 1
    return LoadLevel(replicas: replicas, teams: teams, live: options.live, windowSeconds: windowSeconds, latencies: latencies, failures: await recorder.failures,
                     hubCPUSeconds: hubCPU, clientCPUSeconds: clientCPU, hubRSSMB: rss, hubPeakRSSMB: peakRSS,
                     pulledPerSync: Double(await recorder.pulled) / Double(max(latencies.count, 1)),
                     quarantined: try count("SELECT count(*) FROM hub_quarantine"),
                     purgesOwed: try count("SELECT count(*) FROM hub_purge WHERE acked_at IS NULL"),
                     evictions: evictions, reconnects: reconnects, plainCommit: plainCommit,
                     loadAverage: RunContext.readLoadAverage())
}

/// The floor of a push on this disk, for the same run's baseline: `commits` plain C-API
/// transactions of one row insert each at WAL + FULL (one `fdatasync` each), p50 and p99 in ms.
private func plainCommitMillis(directory: String, commits: Int = 200) throws -> (p50: Double, p99: Double) {
    let path = "\(directory)/plain-baseline.db"
    defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
    let connection = try PlainSQLiteConnection(path: path)
    try connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    let insert = try connection.prepare("INSERT INTO t (v) VALUES (?)")
    var times: [Double] = []
    for number in 0..<commits {
        let began = DispatchTime.now().uptimeNanoseconds
        try connection.transaction { try insert.run("row \(number)") }
        times.append(Double(DispatchTime.now().uptimeNanoseconds - began) / 1e6)
    }
    times.sort()
    return (times[commits / 2], times[Int((0.99 * Double(commits)).rounded(.up)) - 1])
}

/// Every replica's live session (`--live`), opened 16 at a time (each waits for its first round),
/// so that 1,000 connections do not all arrive inside the hub's unauthenticated budget at once.
final class LiveSessions: Sendable {
    let lives: [LiveSync]
    let tasks: [Task<Void, any Error>]
    /// The connection each replica's last round ran on (1 unless it was made again).
    private let connections: LoadConnections

    init(lives: [LiveSync], tasks: [Task<Void, any Error>], connections: LoadConnections) {
        self.lives = lives
        self.tasks = tasks
        self.connections = connections
    }

    func reconnects() async -> Int { await connections.reconnects }

    /// A round on replica `index`'s session; returns the changes it pulled.
    func sync(_ index: Int) async throws -> Int {
        let round = try await lives[index].sync()
        await connections.saw(index, connection: round.connection)
        return round.pulled
    }

    func stop() { lives.forEach { $0.stop() } }
}

/// The highest connection number each live replica's round ran on.
actor LoadConnections {
    private var highest: [Int: Int] = [:]
    func saw(_ index: Int, connection: Int) { highest[index] = max(highest[index] ?? 1, connection) }
    var reconnects: Int { highest.values.reduce(0) { $0 + $1 - 1 } }
}

private func openLiveSessions(_ stores: [ReplicaStore], port: Int) async throws -> LiveSessions {
    var logger = Logger(label: "bench.live")
    logger.logLevel = .warning
    // Reconnects with the default backoff; a benchmark run is short.
    let lives = stores.map { LiveSync(store: $0, host: "127.0.0.1", port: port, logger: logger) }
    var tasks: [Task<Void, any Error>] = []
    let connections = LoadConnections()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (position, live) in lives.enumerated() {
            if position >= 16 { try await group.next() }
            // Connected only now: 1,000 connections at once would be evicted before their hellos.
            tasks.append(Task { try await live.run() })
            group.addTask { await connections.saw(position, connection: try await live.sync().connection) }
        }
        try await group.waitForAll()
    }
    return LiveSessions(lives: lives, tasks: tasks, connections: connections)
}

/// The table of the scope rows: the care records' rules take a `young_person` row whose id is its
/// scope as the young person's own record.
let loadScopeTable = "young_person"

/// Young person `number` of `team`: the id of its `young_person` row and the scope of its rows.
func loadYoungPerson(team: Int, _ number: Int) -> String { "yp-\(team)-\(number)" }

/// The bench schema's `record` table (F text fields) and a `young_person` table for the scopes.
func loadSchema(fields: Int) -> ReplicaSchema {
    let record = benchSchema(fields: fields).table
    let person = TableSchema(loadScopeTable, columns: [ColumnSchema("label", .text, .lastWriterWins)])
    return ReplicaSchema(version: 1, tables: [record, person],
                         migrations: [SchemaMigration("load-v1", sql: record.createStatement + ";\n" + person.createStatement)])
}

/// A benchmark set-up that could not run, with what to do about it.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Each replica holds its SQLite file (three descriptors with WAL) and a socket; the hub a socket
/// per replica. The soft limit is raised to the hard one, which the hub child inherits.
func raiseFileLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// utime + stime of a process, in seconds (Linux /proc/<pid>/stat, fields 14 and 15).
func cpuSeconds(of pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return .nan }
    // Fields after the command name (which may hold spaces) start at field 3.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// This process's CPU (user + system), in seconds.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// A /proc/<pid>/status memory line (VmRSS:, VmHWM:) in KiB.
func memory(of pid: Int32, _ key: String) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    let line = status.split(separator: "\n").first { $0.hasPrefix(key) }
    return line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") } ?? 0
}

/// `perf record -g` of one process for a fixed time (`perf record … -- sleep S`), spawned with an
/// empty signal mask: a child started by Foundation's `Process` here inherits a mask that blocks
/// SIGINT and SIGCHLD, and perf then neither stops on an interrupt nor sees its `sleep` end.
final class PerfRecording: @unchecked Sendable {
    // Safety: started and waited for from one task in sequence; `child` is not shared otherwise.
    let pid: Int32
    let output: String
    private var child: pid_t = 0

    init(pid: Int32, output: String) {
        self.pid = pid
        self.output = output
    }

    func start(seconds: Double) throws {
        let arguments = ["/usr/bin/perf", "record", "-F", "199", "-g", "-p", "\(pid)", "-o", output, "--", "sleep", String(format: "%.1f", seconds)]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let status = posix_spawn(&child, arguments[0], &actions, &attributes, argv, environ)
        guard status == 0 else { throw BenchFailure("could not start perf (errno \(status)): install it (apt-get install linux-perf)") }
    }

    func wait() {
        guard child > 0 else { return }
        var status: Int32 = 0
        waitpid(child, &status, 0)
    }
}
