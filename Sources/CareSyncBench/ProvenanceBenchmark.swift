import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// What signed origin logs cost on the wire (issue 9: "at most ~2 bytes per change amortised"):
/// the same changes encoded as push frames, cut the same way, with no provenance (the shape before
/// issue 9, but for the two empty list counts) and with the heads the replica signs (one at every
/// checkpoint and one at each push's end); and a bundle's size per change beside the heads a
/// bundle of the same changes carries. Sizes only: no network, so the figures are exact and the
/// same in every build; encoded by SyncWire's codec, raw and compressed.
func provenanceMeasures(quick: Bool, work: String) throws -> [Measure] {
    let rows = quick ? 2_000 : 20_000
    var measures: [Measure] = []
    // Two shapes: the synthetic workload's rows of 5 fields (~190 canonical bytes a change), and
    // single-field status edits (~60 bytes), the small changes where a head weighs most.
    for (label, fields, value) in [("5-field rows", 5, "lorem ipsum dolor sit amet"), ("1-field status edits", 1, "open")] {
        let (columns, _, schema) = benchSchema(fields: fields)
        let store = try ReplicaStore.create(at: "\(work)/provenance-\(fields).db", schema: schema, replicaID: ReplicaID(high: 9, low: UInt64(fields)),
                                            name: "provenance", wallClock: SystemWallClock())
        for start in stride(from: 0, to: rows, by: 5_000) {
            try store.write(author: "bench") { transaction in
                for row in start..<min(start + 5_000, rows) {
                    var values: [String: FieldValue] = [:]
                    for column in columns { values[column] = .text("\(value) \(row)") }
                    try transaction.create("record", id: "r\(row)", values: values)
                }
            }
        }
        let changes = try store.changes(notIn: VersionVector())
        let canonical = changes.reduce(0) { $0 + $1.canonicalBytes.count }
        for compressed in [false, true] {
            let codec = MessageCodec(compressionThreshold: compressed ? PayloadCompression.threshold : nil)
            let unsigned = try pushBytes(changes, store: store, codec: codec, signed: false)
            let signed = try pushBytes(changes, store: store, codec: codec, signed: true)
            let perChange = Double(signed.bytes - unsigned.bytes) / Double(changes.count)
            measures.append(Measure(
                name: "provenance: push bytes added per change, \(label), \(compressed ? "compressed" : "uncompressed")",
                figure: perChange, unit: "B", target: 2,
                details: ["changes": changes.count, "frames": signed.frames, "heads": signed.heads, "canonical_bytes_per_change": canonical / changes.count,
                          "bytes_per_change_before": Double(unsigned.bytes) / Double(changes.count),
                          "bytes_per_change_after": Double(signed.bytes) / Double(changes.count)]))
        }
        // The same bundle (format 3) with its heads, and with none.
        let (bundle, _) = try BundleExchange.makeBundle(from: store, for: nil)
        let after = bundle.encoded().count
        let before = ChangeBundle(sender: bundle.sender, schemaVersion: bundle.schemaVersion, senderKnowledge: bundle.senderKnowledge,
                                  changes: bundle.changes).encoded().count
        measures.append(Measure(
            name: "provenance: bundle bytes added per change, \(label)", figure: Double(after - before) / Double(changes.count), unit: "B", target: 2,
            details: ["changes": changes.count, "heads": bundle.provenance.heads.count,
                      "bundle_bytes_per_change_before": Double(before) / Double(changes.count),
                      "bundle_bytes_per_change_after": Double(after) / Double(changes.count)]))
        // A sync of a few edits pays one head whatever its size: the fixed cost per origin and push.
        let few = Array(changes.prefix(3))
        let codec = MessageCodec(compressionThreshold: nil)
        let small = try pushBytes(few, store: store, codec: codec, signed: true).bytes - pushBytes(few, store: store, codec: codec, signed: false).bytes
        measures.append(Measure(name: "provenance: bytes added to a push of 3 changes, \(label)", figure: Double(small), unit: "B",
                                details: ["changes": few.count]))
    }
    return measures
}

/// The push frames of `changes` cut at the frame's room for changes (the same cuts signed or
/// not, so the difference is the provenance alone), with the replica's heads when `signed`.
private func pushBytes(_ changes: [Change], store: ReplicaStore, codec: MessageCodec, signed: Bool) throws -> (bytes: Int, frames: Int, heads: Int) {
    // Room for the largest provenance a frame of this workload needs: a head per 16 KiB and one more.
    let room = FrameBudget.changeBytes(maxBody: Frame.defaultMaxBody, provenance: .none) - 256 * 130
    var bytes = 0, frames = 0, heads = 0, start = 0
    while start < changes.count {
        var end = start, size = 0
        while end < changes.count, end == start || size + changes[end].canonicalBytes.count + 8 <= room {
            size += changes[end].canonicalBytes.count + 8
            end += 1
        }
        let chunk = Array(changes[start..<end])
        let provenance = signed ? try store.provenance(for: chunk) : .none
        bytes += codec.encode(.push(batch: UInt64(frames), changes: chunk, provenance: provenance)).count
        heads += provenance.heads.count
        frames += 1
        start = end
    }
    return (bytes, frames, heads)
}

/// `caresync-bench provenance`: the measures above alone.
func runProvenanceBenchmark(quick: Bool, emitJSON: Bool) throws {
    let context = RunContext()
    let work = NSTemporaryDirectory() + "caresync-provenance-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let measures = try provenanceMeasures(quick: quick, work: work)
    if emitJSON {
        try printJSON(benchmark: "provenance", context: context, measures: measures, extra: [:])
    } else {
        print("CareSync provenance on the wire (\(context.line))\n")
        printMeasures(measures)
        for measure in measures {
            let before = measure.details["bytes_per_change_before"] ?? measure.details["bundle_bytes_per_change_before"]
            let after = measure.details["bytes_per_change_after"] ?? measure.details["bundle_bytes_per_change_after"]
            if let before = before as? Double, let after = after as? Double {
                print("  \(measure.name): \(formatted(before)) → \(formatted(after)) B per change")
            }
        }
    }
}
