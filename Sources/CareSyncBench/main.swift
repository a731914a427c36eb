// caresync-bench: release-build benchmarks, every figure beside plain-SQLite baselines measured
// in the same run (through the C API, the headline, and through GRDB). `caresync-bench` runs the
// engine benchmark, `caresync-bench sync` the end-to-end sync benchmark; `--quick` for smaller
// runs, `--json` for scripts.
import Foundation
import Logging

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}
let arguments = CommandLine.arguments
let quick = arguments.contains("--quick")
let emitJSON = arguments.contains("--json")
if arguments.contains("sync") {
    try await runSyncBenchmark(quick: quick, emitJSON: emitJSON)
} else {
    try runEngineBenchmark(quick: quick, emitJSON: emitJSON)
}
