/// Where an origin marks checkpoints in its own log (Protocol/identity.md, "Checkpoints"): change
/// `c` is a checkpoint when the canonical bytes of its changes since the previous checkpoint, with
/// change `c + 1`'s, would pass 16,384 bytes. So the bytes between two checkpoints are at most
/// 16,384, or one change, and a run can be cut at a head at most that far from any place.
///
/// ```swift
/// var since = 0
/// for size in sizes {   // canonical sizes of the origin's changes, in counter order
///     if Checkpoints.previousIsCheckpoint(bytesSinceCheckpoint: since, nextChangeSize: size) { /* mark the previous change */ }
///     since = Checkpoints.bytesSinceCheckpoint(after: since, nextChangeSize: size)
/// }
/// ```
public enum Checkpoints {
    /// The most canonical bytes between two checkpoints (unless one change is larger).
    public static let span = 16_384

    /// Whether the change before the next one becomes a checkpoint.
    /// - Parameters:
    ///   - bytesSinceCheckpoint: canonical bytes of the changes after the last checkpoint, up to and
    ///     including the previous change (0 when the previous change is a checkpoint, or there is none).
    ///   - nextChangeSize: the next change's canonical size.
    public static func previousIsCheckpoint(bytesSinceCheckpoint: Int, nextChangeSize: Int) -> Bool {
        bytesSinceCheckpoint > 0 && bytesSinceCheckpoint + nextChangeSize > span
    }

    /// Whether the change before the next one must be flagged for a head: it becomes a checkpoint,
    /// or it is a **boundary** (Protocol/scope.md, "Boundary heads": the next change has another
    /// scope, so a receiver holding only one of the scopes can verify its run up to there). A
    /// boundary does not restart the checkpoint span: the span is counted as if it were not there.
    /// - Parameters:
    ///   - bytesSinceCheckpoint: as for ``previousIsCheckpoint(bytesSinceCheckpoint:nextChangeSize:)``.
    ///   - nextChangeSize: the next change's canonical size.
    ///   - previousScope: the previous change's scope; nil when there is none (or it is not known).
    ///   - nextScope: the next change's scope.
    public static func previousNeedsHead(bytesSinceCheckpoint: Int, nextChangeSize: Int, previousScope: String?, nextScope: String) -> Bool {
        previousIsCheckpoint(bytesSinceCheckpoint: bytesSinceCheckpoint, nextChangeSize: nextChangeSize)
            || isBoundary(previousScope: previousScope, nextScope: nextScope)
    }

    /// Whether a change of scope `previousScope` followed by one of `nextScope` is a scope boundary
    /// (Protocol/scope.md, "Boundary heads"): the origin signs a head at the first. False without a
    /// previous change.
    public static func isBoundary(previousScope: String?, nextScope: String) -> Bool {
        previousScope.map { $0 != nextScope } ?? false
    }

    /// The bytes since the last checkpoint once the next change is written.
    public static func bytesSinceCheckpoint(after bytesSinceCheckpoint: Int, nextChangeSize: Int) -> Int {
        previousIsCheckpoint(bytesSinceCheckpoint: bytesSinceCheckpoint, nextChangeSize: nextChangeSize)
            ? nextChangeSize : bytesSinceCheckpoint + nextChangeSize
    }

    /// The checkpoints among changes `1…n` of sizes `sizes` (0-based indices into `sizes`); the last
    /// change is never one yet (it becomes one only when the next change would pass the span).
    public static func indices(sizes: [Int]) -> [Int] {
        var since = 0
        var result: [Int] = []
        for (index, size) in sizes.enumerated() {
            if previousIsCheckpoint(bytesSinceCheckpoint: since, nextChangeSize: size) { result.append(index - 1) }
            since = bytesSinceCheckpoint(after: since, nextChangeSize: size)
        }
        return result
    }
}
