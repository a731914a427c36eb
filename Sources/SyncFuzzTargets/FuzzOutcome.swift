import Foundation

/// What one fuzz input did. The libFuzzer executables (Tools/fuzz) trap on `.invariantBroken`;
/// the corpus replay test (Tests/FuzzCorpusTests) expects every committed input to end
/// `.accepted` or `.refused`. A trap inside the code under test ends both the same way: a crash.
public enum FuzzOutcome: Equatable, Sendable {
    /// The input was processed without an error.
    case accepted
    /// The input was refused with this error text (one line, as every error must be).
    case refused(String)
    /// The code under test broke one of its own promises (a round trip, an unchanged store after a
    /// refusal, a frame over the limit). This is a bug, as a crash is.
    case invariantBroken(String)

    /// A refusal, or a broken invariant if the error text spans lines.
    static func refusal(_ error: any Error) -> FuzzOutcome {
        let text = "\(error)"
        if text.contains("\n") || text.contains("\r") { return .invariantBroken("multi-line error text: \(text.debugDescription)") }
        return .refused(text)
    }
}

/// The four fuzz targets, named as `Tools/fuzz/run.sh` and the corpus directories name them.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case frame
    case message
    case bundle
    case hub

    /// Runs one input through this target's entry point.
    public func run(_ input: [UInt8]) -> FuzzOutcome {
        switch self {
        case .frame: FrameFuzzTarget.run(input)
        case .message: MessageFuzzTarget.run(input)
        case .bundle: BundleFuzzTarget.run(input)
        case .hub: HubFuzzTarget.run(input)
        }
    }
}

/// A per-process scratch directory for the store-backed targets: `CARESYNC_FUZZ_TMP` if set
/// (run.sh points it at a directory it removes afterwards), else one under the system's temporary
/// directory. Files are copied from templates made once per process, so each input starts from
/// the same store and a crash replays from its input alone.
enum FuzzScratch {
    static let directory: String = {
        let base = ProcessInfo.processInfo.environment["CARESYNC_FUZZ_TMP"] ?? NSTemporaryDirectory()
        let path = (base as NSString).appendingPathComponent("caresync-fuzz-\(getpid())-\(UUID().uuidString.prefix(8))")
        // Safety net only: if the directory cannot be made, every store open below fails and the
        // harness reports it as a broken invariant on the first input.
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// A scratch file of the calling thread: the corpus replay runs targets on several threads at
    /// once (two tests replaying bundle inputs shared one file, and one's copy pulled the other's
    /// replica from under it), while a fuzzer's single thread reuses its one file.
    static func path(_ name: String) -> String {
        (directory as NSString).appendingPathComponent("\(threadID())-\(name)")
    }

    private static func threadID() -> UInt {
        #if canImport(Darwin)
        UInt(bitPattern: pthread_self())
        #else
        UInt(pthread_self())
        #endif
    }

    /// Replaces `destination` (and its WAL and shared-memory files, and the identity and lineage
    /// files beside a store: a keyed store without its identity file does not open) with a copy
    /// of `template`.
    /// A copy interrupted by a signal (libFuzzer's timers: EINTR) is tried again, a few times: an
    /// interrupted set-up is not a finding (one stopped a 9-minute hub run).
    static func copy(_ template: String, to destination: String) throws {
        let manager = FileManager.default
        for suffix in ["", "-wal", "-shm", "-journal", ".identity", ".lineage"] {
            let target = destination + suffix
            for attempt in 1...5 {
                do {
                    if manager.fileExists(atPath: target) { try manager.removeItem(atPath: target) }
                    if manager.fileExists(atPath: template + suffix) { try manager.copyItem(atPath: template + suffix, toPath: target) }
                    break
                } catch where attempt < 5 {
                    continue
                }
            }
        }
    }
}
