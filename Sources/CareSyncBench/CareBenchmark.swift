import CareRecords
import Foundation
import Logging
import SyncClient
import SyncEngine
import SyncCore
import SyncHub
import SyncStore
import SyncTesting

/// The care-records workload: young people, each with a pathway plan, goals and case notes of
/// seeded narrative text (`CareNarrative`), written through the CareRecords domain API (so the
/// changes are the real ones, automatic fields and all), then synced A → hub → B over loopback,
/// once with compression and once without. Reports wire bytes per field change, raw and
/// compressed, the per-field overhead excluding value bytes, and end-to-end field changes/s.
func runCareBenchmark(quick: Bool, emitJSON: Bool, seed: UInt64) async throws {
    let context = RunContext()
    let measures = try await careMeasures(quick: quick, seed: seed)
    if emitJSON {
        try printJSON(benchmark: "care", context: context, measures: measures, extra: ["seed": seed])
    } else {
        print("CareSync care-records workload (seed \(seed); \(context.line))\n")
        printMeasures(measures)
    }
}

func printMeasures(_ measures: [Measure]) {
    for measure in measures {
        var line = "\(measure.name): \(formatted(measure.figure)) \(measure.unit)"
        if let capi = measure.baselineCAPI, let ratio = measure.ratioCAPI { line += String(format: " (C API %@ → %.2f×)", formatted(capi), ratio) }
        if let grdb = measure.baselineGRDB, let ratio = measure.ratioGRDB { line += String(format: " (GRDB %@ → %.2f×)", formatted(grdb), ratio) }
        if !measure.verdict.isEmpty { line += "   target " + measure.verdict }
        print(line)
    }
}

/// The workload's size and what it wrote.
private struct CareWorkload {
    let people: Int
    let records: Int
    let writeSeconds: Double
}

private func writeCareWorkload(into replica: CareReplica, people: Int, seed: UInt64) throws -> CareWorkload {
    var narrative = CareNarrative(seed: seed)
    let families = ["Okafor", "Smith", "Nowak", "Begum", "Jones", "Hughes", "Ahmed", "Kowalski", "Campbell", "Le Brun", "Murphy", "Patel"]
    let domains = ["health", "education", "accommodation", "family", "identity", "emotional", "finance", "independent_living"]
    let categories = ["contact", "visit", "phone_call", "meeting", "school", "health", "missing_episode", "direct_work"]
    let started = DispatchTime.now().uptimeNanoseconds
    var records = 0
    for _ in 0..<people {
        let name = narrative.givenName()
        let born = String(format: "20%02d-%02d-%02d", 5 + narrative.index(below: 4), 1 + narrative.index(below: 12), 1 + narrative.index(below: 28))
        let person = try replica.add("young_person", fields: [
            "legal_given_name": name, "legal_family_name": families[narrative.index(below: families.count)], "date_of_birth": born,
            "preferred_name": name, "legal_status": ["cla", "care_leaver"][narrative.index(below: 2)],
            "risk_rating": ["green", "amber", "red"][narrative.index(below: 3)],
        ], author: "worker-\(narrative.index(below: 20))")
        let plan = try replica.add("plan", fields: [
            "yp_id": person, "kind": "pathway", "title": "Pathway plan for \(name)", "summary": narrative.statement(name: name),
            "child_views": narrative.statement(name: name), "contact_arrangements": narrative.statement(name: name),
        ], author: "worker-\(narrative.index(below: 20))")
        records += 2
        for _ in 0..<(2 + narrative.index(below: 3)) {
            try replica.add("goal", fields: [
                "plan_id": plan, "domain": domains[narrative.index(below: domains.count)], "statement": narrative.statement(name: name),
                "success_measure": narrative.statement(name: name), "target_date": "2027-0\(1 + narrative.index(below: 9))-15",
            ], author: "worker-\(narrative.index(below: 20))")
            records += 1
        }
        for note in 0..<(4 + narrative.index(below: 9)) {
            try replica.add("case_note", fields: [
                "yp_id": person, "category": categories[narrative.index(below: categories.count)],
                "occurred_at": String(format: "2026-%02d-%02d", 1 + note % 11, 1 + narrative.index(below: 28)), "body": narrative.caseNote(name: name),
            ], author: "worker-\(narrative.index(below: 20))")
            records += 1
        }
    }
    return CareWorkload(people: people, records: records, writeSeconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
}

func careMeasures(quick: Bool, seed: UInt64) async throws -> [Measure] {
    let work = NSTemporaryDirectory() + "caresync-carebench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let people = quick ? 20 : 150
    let source = try CareReplica.create(at: "\(work)/a.db", name: "a", wallClock: SystemWallClock(), random: BenchRandom.system)
    let workload = try writeCareWorkload(into: source, people: people, seed: seed)
    // The replica's own changes: the entitlement catalogue every care replica starts with is not the workload.
    let all = try source.store.changes(notIn: VersionVector()).filter { $0.id.replica == source.store.replicaID }
    let fields = fieldChanges(all)
    let valueBytes = fields.reduce(0) { $0 + $1.valueBytes }
    var measures: [Measure] = []
    for compressed in [false, true] {
        let threshold = compressed ? 1024 : nil
        let hub = try await InProcessHub.start(path: "\(work)/hub-\(compressed).db", compression: threshold)
        defer { hub.stop() }
        var configuration = ClientConfiguration()
        configuration.compressionThreshold = threshold
        let receiver = try CareReplica.create(at: "\(work)/b-\(compressed).db", name: "b", wallClock: SystemWallClock(), random: BenchRandom.system)
        let logger = Logger(label: "bench.care")
        _ = try await SyncClient.sync(store: receiver.store, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(),
                                      configuration: configuration, logger: logger)
        // Each run pushes from a fresh copy of the same records, so both see the same changes.
        let copy = "\(work)/a-\(compressed).db"
        try source.store.backup(to: copy)
        let sender = try CareReplica.open(at: copy, wallClock: SystemWallClock(), random: BenchRandom.system)
        let started = DispatchTime.now().uptimeNanoseconds
        let push = try await SyncClient.sync(store: sender.store, host: "127.0.0.1", port: hub.port, enrolmentToken: try hub.token(),
                                             configuration: configuration, logger: logger)
        let pull = try await SyncClient.sync(store: receiver.store, host: "127.0.0.1", port: hub.port, enrolmentToken: nil,
                                             configuration: configuration, logger: logger)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let label = compressed ? "compressed" : "raw"
        let perField = Double(pull.bytesReceived) / Double(fields.count)
        let details: [String: any Encodable] = ["people": people, "records": workload.records, "changes": all.count, "field_changes": fields.count,
                                      "value_bytes_per_field": Double(valueBytes) / Double(fields.count),
                                      "pull_bytes": pull.bytesReceived, "push_bytes": push.bytesSent,
                                      "push_bytes_per_field_change": Double(push.bytesSent) / Double(fields.count),
                                      "pulled_changes": pull.summary.pulled, "seed": seed]
        measures.append(Measure(name: "care workload: wire bytes per field change, \(label) (pull)", figure: perField, unit: "B",
                                target: compressed ? 16 : 40, details: details))
        if !compressed {
            measures.append(Measure(name: "care workload: wire overhead per field change excluding value bytes, raw (pull)",
                                    figure: Double(pull.bytesReceived - valueBytes) / Double(fields.count), unit: "B", details: details))
        }
        measures.append(Measure(name: "care workload: end to end A → hub → B, \(label)", figure: Double(fields.count) / seconds,
                                unit: "field changes/s", target: 100_000, bound: .atLeast, stretch: 200_000,
                                details: details.merging(["seconds": seconds, "records_written_per_s": Double(workload.records) / workload.writeSeconds],
                                                         uniquingKeysWith: { first, _ in first })))
    }
    return measures
}

/// A hub in this process on a free loopback port, for the end-to-end runs.
final class InProcessHub: Sendable {
    let server: HubServer
    let task: Task<Void, Error>
    let port: Int

    private init(server: HubServer, task: Task<Void, Error>, port: Int) {
        self.server = server
        self.task = task
        self.port = port
    }

    static func start(path: String, compression: Int?) async throws -> InProcessHub {
        var random = BenchRandom.system
        let store = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
        var configuration = HubServerConfiguration()
        configuration.port = 0
        configuration.compressionThreshold = compression
        let server = HubServer(store: store, configuration: configuration, logger: Logger(label: "bench.hub"), wallClock: SystemWallClock())
        let task = Task { try await server.run() }
        let port = try await server.listeningPort()
        return InProcessHub(server: server, task: task, port: port)
    }

    func token() throws -> String {
        var random = BenchRandom.system
        return try server.store.issueEnrolmentToken(team: "BENCH", expiresAtMillis: SystemWallClock().nowMillis() + 3_600_000, random: &random)
    }

    func pragmas() throws -> (synchronous: Int, journalMode: String) {
        guard let store = server.store as? SQLiteHubStore else { throw BenchFailure("the hub's store is not the SQLite one") }
        return try store.connectionPragmas()
    }

    func stop() { task.cancel() }
}
