import Foundation

/// One figure of a benchmark run beside its same-run baselines and issue 7's target, as `--json`
/// prints it: a script checks `met` of every measure, or recomputes it from `figure`, `target` and
/// `target_is` ("at_most" or "at_least"), against `target_on` (the figure, or `ratio_c_api`).
/// `ratio_c_api` says how many times slower than the C-API baseline in the same run (null where a
/// measure has no plain equivalent, as for wire bytes); baselines are in the figure's unit.
struct Measure {
    enum Bound: String { case atMost = "at_most", atLeast = "at_least" }

    let name: String
    let figure: Double
    let unit: String
    var baselineCAPI: Double?
    var baselineGRDB: Double?
    /// What the target bounds: the figure itself, or its ratio to the C-API baseline.
    var targetOn: String = "figure"
    var target: Double?
    var bound: Bound = .atMost
    var stretch: Double?
    var details: [String: Any] = [:]

    /// How many times slower than the baseline: time over baseline time, or, for a throughput
    /// (a measure whose target is a least value), baseline throughput over ours.
    var ratioCAPI: Double? { baselineCAPI.map(ratio) }
    var ratioGRDB: Double? { baselineGRDB.map(ratio) }

    private func ratio(_ baseline: Double) -> Double { bound == .atLeast ? baseline / figure : figure / baseline }

    /// The value the target is checked against.
    var checked: Double? { targetOn == "ratio_c_api" ? ratioCAPI : figure }

    var met: Bool? {
        guard let target, let checked else { return nil }
        return bound == .atMost ? checked <= target : checked >= target
    }

    var stretchMet: Bool? {
        guard let stretch, let checked else { return nil }
        return bound == .atMost ? checked <= stretch : checked >= stretch
    }

    var object: [String: Any] {
        var object = details
        object["measure"] = name
        object["figure"] = figure
        object["unit"] = unit
        object["baseline_c_api"] = baselineCAPI ?? NSNull()
        object["baseline_grdb"] = baselineGRDB ?? NSNull()
        object["ratio_c_api"] = ratioCAPI ?? NSNull()
        object["ratio_grdb"] = ratioGRDB ?? NSNull()
        object["target"] = target ?? NSNull()
        object["target_on"] = targetOn
        object["target_is"] = bound.rawValue
        object["stretch"] = stretch ?? NSNull()
        object["met"] = met ?? NSNull()
        object["stretch_met"] = stretchMet ?? NSNull()
        return object
    }

    /// "met", "not met" or "" (no target), for the human-readable tables.
    var verdict: String {
        guard let met else { return "" }
        let sign = bound == .atMost ? "≤" : "≥"
        let what = targetOn == "ratio_c_api" ? "×" : " \(unit)"
        return "\(sign) \(formatted(target ?? 0))\(what): \(met ? "met" : "not met")"
    }
}

func formatted(_ value: Double) -> String {
    value >= 1_000 ? String(format: "%.0f", value) : value >= 10 ? String(format: "%.1f", value) : String(format: "%.3g", value)
}

/// When and under what load a run was made, printed beside every figure.
struct RunContext {
    let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(BenchClock().nowMillis()) / 1000))
    let loadAverage = RunContext.readLoadAverage()

    static func readLoadAverage() -> [Double] {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return [] }
        return text.split(separator: " ").prefix(3).compactMap { Double($0) }
    }

    var line: String {
        "\(date), load average \(loadAverage.map { String(format: "%.2f", $0) }.joined(separator: " ")), \(ProcessInfo.processInfo.activeProcessorCount) cores"
    }

    var object: [String: Any] {
        ["date": date, "load_average_at_start": loadAverage, "load_average_at_end": RunContext.readLoadAverage(),
         "cores": ProcessInfo.processInfo.activeProcessorCount]
    }
}

/// Prints one JSON document: the run's context, then one object per measure.
func printJSON(benchmark: String, context: RunContext, measures: [Measure], extra: [String: Any] = [:]) throws {
    var document: [String: Any] = extra
    document["benchmark"] = benchmark
    document["run"] = context.object
    document["measures"] = measures.map(\.object)
    let data = try JSONSerialization.data(withJSONObject: jsonSafe(document), options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// JSON has no NaN or infinity (a level where no sync finished has no percentile): they become null.
func jsonSafe(_ value: Any) -> Any {
    switch value {
    case let number as Double: number.isFinite ? number : NSNull()
    case let object as [String: Any]: object.mapValues(jsonSafe)
    case let array as [Any]: array.map(jsonSafe)
    default: value
    }
}
