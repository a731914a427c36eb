import Foundation

/// Scratch directories for tests, simulations and benchmarks: one place that names and makes them.
public enum TestFiles {
    /// Makes a fresh directory, `caresync-<label>-<UUID>` under the system's temporary directory.
    /// The caller removes it (`remove(_:)`), or uses `withDirectory(_:_:)`.
    ///
    /// - Parameter label: A word saying whose files they are, for someone looking in the temporary directory.
    /// - Returns: The directory's path. If it cannot be made, every file opened in it fails, which
    ///   the test then reports.
    public static func directory(_ label: String = "tests") -> String {
        let path = NSTemporaryDirectory() + "caresync-\(label)-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Removes a directory made by `directory(_:)`, and everything in it.
    ///
    /// - Parameter path: The directory's path.
    public static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Runs `body` with a fresh directory, removed when it returns or throws.
    ///
    /// - Parameters:
    ///   - label: As for `directory(_:)`.
    ///   - body: The work, given the directory's path.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public static func withDirectory<T>(_ label: String = "tests", _ body: (String) throws -> T) rethrows -> T {
        let path = directory(label)
        defer { remove(path) }
        return try body(path)
    }
}
