// caresync-bench: release-build benchmarks, every figure beside plain-SQLite baselines measured
// in the same run (through the C API, the headline, and through GRDB).
//   caresync-bench [--quick] [--json]             engine: local writes, batch apply, file overhead
//   caresync-bench sync [--quick] [--json]        end to end over loopback, small sync into a large
//                                                 replica, peak memory, and the care-records workload
//   caresync-bench care [--quick] [--json]        the care-records workload alone
//   caresync-bench provenance [--quick] [--json]  wire and bundle bytes per change before and after
//                                                 signed heads (issue 9), sizes only
//   caresync-bench load [--replicas N] [--teams T] [--young-people P] [--seconds S] [--seed S] [--fields F]
//                       [--perf-hub PATH] [--live] [--json]
//                                                 hub load at N = 50, 250, 500, 1,000 (or N) replicas
//                                                 in T teams (50) of P young people each (20); a
//                                                 connection per sync, or (--live) a round on each
//                                                 replica's open session
// `--json` prints one document per run: its context (date, load average) and one object per
// measure with `figure`, `baseline_c_api`, `ratio_c_api`, `target` and `met` (see Measure).
import Foundation
import Logging
import SyncTesting

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .error
    return handler
}
let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let emitJSON = arguments.contains("--json")

/// The value after `name`, if given; a value that does not parse stops the run with a message.
func option<Value>(_ name: String, _ parse: (String) -> Value?) -> Value? {
    guard let index = arguments.firstIndex(of: name) else { return nil }
    guard index + 1 < arguments.count, let value = parse(arguments[index + 1]) else {
        FileHandle.standardError.write(Data("caresync-bench: \(name) needs a valid value (see the comment at the top of main.swift)\n".utf8))
        exit(2)
    }
    return value
}

do {
    if arguments.contains("load") {
        var options = LoadOptions()
        if let replicas = option("--replicas", { Int($0) }) { options.replicaCounts = [max(replicas, 1)] }
        if let seconds = option("--seconds", { Double($0) }) { options.seconds = max(seconds, 1) }
        if let fields = option("--fields", { Int($0) }) { options.fieldsPerSync = min(max(fields, 1), 20) }
        if let teams = option("--teams", { Int($0) }) { options.teams = max(teams, 1) }
        if let people = option("--young-people", { Int($0) }) { options.youngPeoplePerTeam = max(people, 1) }
        if let seed = option("--seed", { SeededGenerator.parseSeed($0) }) { options.seed = seed }
        options.perfHub = option("--perf-hub", { $0 })
        options.live = arguments.contains("--live")
        try await runLoadBenchmark(options, emitJSON: emitJSON)
    } else if arguments.contains("provenance") {
        try runProvenanceBenchmark(quick: quick, emitJSON: emitJSON)
    } else if arguments.contains("care") {
        try await runCareBenchmark(quick: quick, emitJSON: emitJSON, seed: option("--seed", { SeededGenerator.parseSeed($0) }) ?? 20261201)
    } else if arguments.contains("sync") {
        try await runSyncBenchmark(quick: quick, emitJSON: emitJSON)
    } else {
        try runEngineBenchmark(quick: quick, emitJSON: emitJSON)
    }
} catch {
    FileHandle.standardError.write(Data("caresync-bench: \(error)\n".utf8))
    exit(1)
}
