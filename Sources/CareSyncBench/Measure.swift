import Foundation
import SyncStore

/// One figure of a benchmark run beside its same-run baselines and issue 7's target, as `--json`
/// prints it: a script checks `met` of every measure, or recomputes it from `figure`, `target` and
/// `target_is` ("at_most" or "at_least"), against `target_on` (the figure, or `ratio_c_api`).
/// `ratio_c_api` says how many times slower than the C-API baseline in the same run (null where a
/// measure has no plain equivalent, as for wire bytes); baselines are in the figure's unit.
struct Measure: Encodable {
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
    /// Figures of the run behind the measure (counts, seconds), printed beside its own keys.
    var details: [String: any Encodable] = [:]

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

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: JSONKey.self)
        for (key, value) in details { try container.encodeFinite(value, forKey: key) }
        try container.encode(name, forKey: "measure")
        try container.encodeFinite(figure, forKey: "figure")
        try container.encode(unit, forKey: "unit")
        try container.encodeFinite(baselineCAPI, forKey: "baseline_c_api")
        try container.encodeFinite(baselineGRDB, forKey: "baseline_grdb")
        try container.encodeFinite(ratioCAPI, forKey: "ratio_c_api")
        try container.encodeFinite(ratioGRDB, forKey: "ratio_grdb")
        try container.encodeFinite(target, forKey: "target")
        try container.encode(targetOn, forKey: "target_on")
        try container.encode(bound.rawValue, forKey: "target_is")
        try container.encodeFinite(stretch, forKey: "stretch")
        try container.encodeFinite(met, forKey: "met")
        try container.encodeFinite(stretchMet, forKey: "stretch_met")
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
struct RunContext: Encodable {
    let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(SystemWallClock().nowMillis()) / 1000))
    let loadAverage = RunContext.readLoadAverage()

    static func readLoadAverage() -> [Double] {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return [] }
        return text.split(separator: " ").prefix(3).compactMap { Double($0) }
    }

    var line: String {
        "\(date), load average \(loadAverage.map { String(format: "%.2f", $0) }.joined(separator: " ")), \(ProcessInfo.processInfo.activeProcessorCount) cores"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: JSONKey.self)
        try container.encode(date, forKey: "date")
        try container.encodeFinite(loadAverage, forKey: "load_average_at_start")
        try container.encodeFinite(RunContext.readLoadAverage(), forKey: "load_average_at_end")
        try container.encode(ProcessInfo.processInfo.activeProcessorCount, forKey: "cores")
    }
}

/// Prints one JSON document: the run's context, then one object per measure.
func printJSON(benchmark: String, context: RunContext, measures: [Measure], extra: [String: any Encodable] = [:]) throws {
    struct Document: Encodable {
        let benchmark: String, context: RunContext, measures: [Measure], extra: [String: any Encodable]

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: JSONKey.self)
            for (key, value) in extra { try container.encodeFinite(value, forKey: key) }
            try container.encode(benchmark, forKey: "benchmark")
            try container.encode(context, forKey: "run")
            try container.encode(measures, forKey: "measures")
        }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(Document(benchmark: benchmark, context: context, measures: measures, extra: extra))
    print(String(decoding: data, as: UTF8.self))
}

/// A key given as it is printed (the bench's keys are written snake_case).
struct JSONKey: CodingKey, ExpressibleByStringLiteral {
    let stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(stringLiteral value: String) { stringValue = value }
}

extension KeyedEncodingContainer<JSONKey> {
    /// JSON has no NaN or infinity (a level where no sync finished has no percentile), and an
    /// absent value is printed as null: both become null.
    mutating func encodeFinite(_ value: (any Encodable)?, forKey key: String) throws {
        let key = JSONKey(stringValue: key)
        switch value {
        case nil: try encodeNil(forKey: key)
        case let number as Double where !number.isFinite: try encodeNil(forKey: key)
        case let numbers as [Double]: try encode(numbers.map { $0.isFinite ? $0 : nil }, forKey: key)
        case let value?: try encode(value, forKey: key)
        }
    }
}
