/// The one place worker ids are checked and put in canonical form.
///
/// A worker id is recorded as the author of every change and compared by the four-eyes rule, so
/// `ALEX`, `" alex"` and `alex` must be one worker, and an empty or invisible id must be no worker
/// at all. The canonical form is trimmed and lowercased; comparisons of ids already stored (which
/// older versions wrote unnormalised) go through `sameWorker`.
public enum WorkerID {
    /// Longest id accepted, in characters: ids are logins or staff numbers, not names.
    public static let maxLength = 64

    /// The canonical form of `raw`, or a `BAD_WORKER` error saying what is wrong with it.
    public static func canonical(_ raw: String) throws -> String {
        let trimmed = raw.trimmingWhitespace()
        guard !trimmed.isEmpty else {
            throw CareError(.badWorker, "the worker id is empty")
        }
        guard trimmed.count <= maxLength else {
            throw CareError(.badWorker, "the worker id is longer than \(maxLength) characters")
        }
        if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.properties.isWhitespace }) {
            throw CareError(.badWorker, "a worker id cannot contain spaces or control characters (e.g. alex or morgan.lee)")
        }
        if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .format }) {
            throw CareError(.badWorker, "a worker id cannot contain invisible characters")
        }
        return trimmed.lowercased()
    }

    /// Whether two ids name the same worker, for ids stored before ids were canonical.
    public static func sameWorker(_ lhs: String, _ rhs: String) -> Bool {
        lhs.trimmingWhitespace().lowercased() == rhs.trimmingWhitespace().lowercased()
    }
}

extension String {
    /// Without leading and trailing whitespace (Unicode), without Foundation.
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
