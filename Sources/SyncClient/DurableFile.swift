import NIOCore
import NIOFileSystem

/// Whole-file reads with a size limit and durable, all-or-nothing writes, through NIO's file
/// system (`NIOFileSystem`). In the replica's shell, not the engine: the engine only encodes and
/// decodes bundles, and file I/O is async and blocking work that belongs with the sockets.
///
/// A write is a transactional creation: the bytes go to an unnamed file (`O_TMPFILE` on Linux; a
/// hidden `.tmp-…` file elsewhere), which is fsynced, then linked (or renamed) to its name, and then
/// the directory is fsynced, so after `write` returns the file survives a power cut under its name.
/// A failed write leaves no file behind, and whatever was at the path before is left as it was.
///
/// ```swift
/// try await DurableFile.write(bundle.encoded(), to: "to-sam.bundle", replacing: ChangeBundle.magic)
/// let bytes = try await DurableFile.read("to-sam.bundle", limit: ChangeBundle.maxBytes)
/// ```
public enum DurableFile {
    /// Why a file could not be read or written. Context as data (the path, what is at it, sizes),
    /// NIO's `FileSystemError` underneath as `cause`; never the file's contents.
    public struct FileError: Error, Sendable, CustomStringConvertible {
        /// A stable code, e.g. `FILE_TOO_LARGE`; match on the static members, show `name`.
        public struct Code: Hashable, Sendable, CustomStringConvertible {
            private enum Kind: String, Sendable {
                case notFound = "FILE_NOT_FOUND"
                case notARegularFile = "NOT_A_REGULAR_FILE"
                case tooLarge = "FILE_TOO_LARGE"
                case wouldReplaceOther = "FILE_NOT_REPLACEABLE"
                case readFailed = "FILE_READ_FAILED"
                case writeFailed = "FILE_WRITE_FAILED"
            }

            private let kind: Kind
            private init(_ kind: Kind) { self.kind = kind }

            /// Nothing is at the path (read).
            public static let notFound = Code(.notFound)
            /// A directory, device, pipe or socket is at the path (read), or at the path to write.
            public static let notARegularFile = Code(.notARegularFile)
            /// The file is larger than the reader's limit.
            public static let tooLarge = Code(.tooLarge)
            /// A regular file that is not of the kind being written (its first bytes are not the
            /// expected magic) is at the path: it is left as it is.
            public static let wouldReplaceOther = Code(.wouldReplaceOther)
            /// The system refused or failed a read; see `cause`.
            public static let readFailed = Code(.readFailed)
            /// The system refused or failed a write, a sync or the link; see `cause`.
            public static let writeFailed = Code(.writeFailed)

            /// The code as shown to people and scripts, e.g. `FILE_TOO_LARGE`.
            public var name: String { kind.rawValue }
            /// The code's name.
            public var description: String { name }
        }

        /// Whether the file was being read or written.
        public enum Operation: Sendable { case read, write }

        /// What went wrong.
        public let code: Code
        /// Whether the file was being read or written.
        public let operation: Operation
        /// The path given.
        public let path: String
        /// What is at the path when it is not a regular file, e.g. "a directory".
        public let found: String?
        /// The file's size, for `tooLarge`.
        public let size: Int64?
        /// The reader's limit, for `tooLarge`.
        public let limit: Int?
        /// The file system's error, when there was one.
        public let cause: (any Error)?

        init(_ code: Code, _ operation: Operation, path: String, found: String? = nil, size: Int64? = nil, limit: Int? = nil,
             cause: (any Error)? = nil) {
            self.code = code
            self.operation = operation
            self.path = path
            self.found = found
            self.size = size
            self.limit = limit
            self.cause = cause
        }

        /// One line for a person, without record contents.
        public var description: String {
            switch code {
            case .notFound: "\(path) does not exist; nothing read"
            case .notARegularFile where operation == .read: "\(path) is not a regular file (\(found ?? "a special file")); nothing read"
            case .notARegularFile: "\(path) exists and is not a regular file (\(found ?? "a special file")); left as it is; choose another path"
            case .tooLarge: "\(path) is \(size ?? 0) bytes, over the \(limit ?? 0) byte limit; nothing read"
            case .wouldReplaceOther: "\(path) exists and is not a file of this kind; left as it is; choose another path"
            case .readFailed: "cannot read \(path)\(Self.reason(cause))"
            default: "writing \(path) failed\(Self.reason(cause)); nothing written"
            }
        }

        /// NIO's error code (e.g. `permissionDenied`), which names no contents.
        private static func reason(_ cause: (any Error)?) -> String {
            (cause as? FileSystemError).map { ": \($0.code)" } ?? ""
        }
    }

    /// Reads the whole regular file at `path` (a symbolic link is followed).
    ///
    /// - Parameters:
    ///   - path: The file to read.
    ///   - limit: The largest size accepted, checked before anything is read.
    /// - Returns: The file's bytes.
    /// - Throws: `FileError`: `notFound`, `notARegularFile` (a directory reports a huge size, and a
    ///   pipe or device blocks or never ends), `tooLarge`, `readFailed`.
    public static func read(_ path: String, limit: Int) async throws(FileError) -> [UInt8] {
        let filePath = FilePath(path)
        let info: FileInfo?
        do { info = try await FileSystem.shared.info(forFileAt: filePath, infoAboutSymbolicLink: false) } catch {
            throw FileError(.readFailed, .read, path: path, cause: error)
        }
        guard let info else { throw FileError(.notFound, .read, path: path) }
        guard info.type == .regular else { throw FileError(.notARegularFile, .read, path: path, found: describe(info.type)) }
        guard info.size <= Int64(limit) else { throw FileError(.tooLarge, .read, path: path, size: info.size, limit: limit) }
        do {
            let buffer = try await FileSystem.shared.withFileHandle(forReadingAt: filePath) { handle in
                try await handle.readToEnd(maximumSizeAllowed: .bytes(Int64(limit)))
            }
            return Array(buffer.readableBytesView)
        } catch {
            throw FileError(.readFailed, .read, path: path, cause: error)
        }
    }

    /// Writes `bytes` to `path` durably and all at once (a transactional creation, fsynced, then
    /// the directory fsynced). What is already at `path` is replaced only if it is an empty
    /// regular file or one starting with `magic` (an earlier file of the same kind): a mistyped path
    /// must not turn a replica, a hub database or a device into a bundle.
    ///
    /// Replacing an earlier file removes it just before the new one is linked in its place (NIO's
    /// transactional creation on Linux): a crash in that instant leaves no file at `path`, never a
    /// half-written one, and the export can be run again.
    ///
    /// - Parameters:
    ///   - bytes: The whole contents.
    ///   - path: Where to write.
    ///   - magic: The first bytes of a file this write may replace.
    /// - Throws: `FileError`: `notARegularFile`, `wouldReplaceOther` (the path is left as it is),
    ///   `writeFailed` (nothing is left at the path, or the earlier file is).
    public static func write(_ bytes: [UInt8], to path: String, replacing magic: [UInt8]) async throws(FileError) {
        let filePath = FilePath(path)
        try await checkReplaceable(filePath, path: path, magic: magic)
        do {
            let options = OpenOptions.Write(existingFile: .truncate, newFile: OpenOptions.NewFile(transactionalCreation: true))
            // The file appears under its name only when this closure returns; if it throws, the
            // unnamed file is discarded.
            try await FileSystem.shared.withFileHandle(forWritingAt: filePath, options: options) { handle in
                try await handle.write(contentsOf: bytes, toAbsoluteOffset: 0)
                try await handle.synchronize()
            }
            // The new name is an entry in the directory: without this fsync, a power cut can lose
            // the file although its contents were synced.
            let directory = filePath.removingLastComponent()
            try await FileSystem.shared.withDirectoryHandle(atPath: directory.isEmpty ? "." : directory) { directory in
                try await directory.synchronize()
            }
        } catch {
            throw FileError(.writeFailed, .write, path: path, cause: error)
        }
    }

    /// Throws unless nothing is at `path`, or an empty regular file, or one starting with `magic`.
    private static func checkReplaceable(_ filePath: FilePath, path: String, magic: [UInt8]) async throws(FileError) {
        do {
            // A symbolic link is not followed: it is refused like any other non-regular file.
            guard let info = try await FileSystem.shared.info(forFileAt: filePath, infoAboutSymbolicLink: true) else { return }
            guard info.type == .regular else {
                throw FileError(.notARegularFile, .write, path: path, found: describe(info.type))
            }
            let head = try await FileSystem.shared.withFileHandle(forReadingAt: filePath) { handle in
                try await handle.readChunk(fromAbsoluteOffset: 0, length: .bytes(Int64(magic.count)))
            }
            guard head.readableBytes == 0 || Array(head.readableBytesView) == magic else {
                throw FileError(.wouldReplaceOther, .write, path: path)
            }
        } catch let error as FileError {
            throw error
        } catch {
            throw FileError(.writeFailed, .write, path: path, cause: error)
        }
    }

    static func describe(_ type: FileType) -> String {
        switch type {
        case .directory: "a directory"
        case .symlink: "a symbolic link"
        case .character, .block: "a device"
        case .socket: "a socket"
        default: "a pipe or special file"
        }
    }
}
