import Foundation
import GRDB

/// Which of our two file kinds a store expects.
package enum StoreFileKind: Sendable {
    case replica, hub

    /// `PRAGMA application_id` of our files ("CSRP" and "CSHB"), so `file(1)` and we can tell a
    /// replica from a hub and both from anyone else's SQLite file.
    var applicationID: Int32 {
        switch self {
        case .replica: 0x4353_5250
        case .hub: 0x4353_4842
        }
    }

    /// The table only this kind has; identifies files made before `application_id` was set.
    var markerTable: String {
        switch self {
        case .replica: "sync_state"
        case .hub: "hub_state"
        }
    }

    var noun: String {
        switch self {
        case .replica: "a CareSync replica"
        case .hub: "a CareSync hub database"
        }
    }

    var other: StoreFileKind { self == .replica ? .hub : .replica }
}

/// Whether a command may change the file.
public enum StoreAccess: Sendable {
    case readWrite
    /// SQLite opens the file read-only: nothing the command does can change it.
    case readOnly
}

/// How the stores open their connections. Production code always uses the defaults; tests
/// open through a fault-injecting VFS and, for a negative control, at `synchronous=NORMAL`.
package struct StoreConnectionOptions: Sendable {
    package enum Synchronous: Int, Sendable {
        case normal = 1
        case full = 2
    }

    /// An SQLite VFS registered by the caller (`sqlite3_vfs_register`), or nil for the default.
    package var vfs: String?
    package var synchronous: Synchronous

    package init(vfs: String? = nil, synchronous: Synchronous = .full) {
        self.vfs = vfs
        self.synchronous = synchronous
    }
}

/// Identifies a store file before anything writes to it, and opens it.
///
/// Every open reads the file's identity through a read-only connection first, so a file that is
/// not ours is refused byte-identical: never switched to WAL, never migrated, never turned from an
/// empty file into a database.
package enum StoreFile {
    /// `PRAGMA user_version`: the file format version this program writes and reads.
    static let formatVersion: Int32 = 1

    /// What a path holds, found without writing to it.
    enum Identity: Equatable {
        case missing
        case empty
        case notSQLite
        /// Our application id, with its format version.
        case ours(StoreFileKind, formatVersion: Int32)
        /// Application id 0 with our tables: made before files were stamped.
        case unstamped(StoreFileKind)
        case foreign(applicationID: Int32)
    }

    static func identify(_ path: String, options: StoreConnectionOptions) throws -> Identity {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .missing }
        guard !isDirectory.boolValue else { return .notSQLite }
        if fileSize(path) == 0 && fileSize(path + "-wal") == 0 { return .empty }
        let connection: ReadOnlyConnection
        do {
            connection = try ReadOnlyConnection(path: path, options: options)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            return .notSQLite
        }
        return try connection.queue.read { db in
            let applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
            let version = try Int32.fetchOne(db, sql: "PRAGMA user_version") ?? 0
            if let kind = [StoreFileKind.replica, .hub].first(where: { $0.applicationID == applicationID }) {
                return .ours(kind, formatVersion: version)
            }
            guard applicationID == 0 else { return .foreign(applicationID: applicationID) }
            for kind in [StoreFileKind.replica, .hub] where try db.tableExists(kind.markerTable) {
                return .unstamped(kind)
            }
            return .foreign(applicationID: 0)
        }
    }

    /// Refuses anything but an existing file of `kind` (or, when `allowMissing`, no file at all).
    static func expect(_ kind: StoreFileKind, at path: String, options: StoreConnectionOptions,
                       allowMissing: Bool = false) throws -> Identity {
        let identity = try ReplicaStore.guarded { try identify(path, options: options) }
        // The messages say what the file is; how to make or use the right one is the caller's
        // to add (the CLI names its own commands).
        let code: StoreError.Code = kind == .replica ? .notAReplica : .notAHub
        switch identity {
        case .missing where allowMissing:
            return identity
        case .missing:
            throw StoreError(code, "no file at \(path)", path: path)
        case .empty:
            throw StoreError(code, "\(path) is an empty file, not \(kind.noun); left as it is", path: path)
        case .notSQLite:
            throw StoreError(code, "\(path) is not an SQLite database, so not \(kind.noun); left as it is", path: path)
        case let .ours(found, _) where found != kind, let .unstamped(found) where found != kind:
            throw StoreError(code, "\(path) is \(found.noun), not \(kind.noun); left as it is", path: path)
        case let .ours(_, version) where version > formatVersion:
            throw StoreError(.schemaTooNew, "\(path) has file format v\(version), newer than this program's v\(formatVersion)", path: path)
        case let .foreign(applicationID):
            let owner = applicationID == 0 ? "" : String(format: " (application_id 0x%08X)", UInt32(bitPattern: applicationID))
            throw StoreError(code, "\(path) is an SQLite database of another application\(owner), not \(kind.noun); left as it is",
                             path: path)
        case .ours, .unstamped:
            return identity
        }
    }

    /// The migration that stamps a file as ours. Registered after a store's table migrations, so
    /// it runs in the same transaction as them on a new file and adopts an unstamped file (made
    /// before stamping existed, recognised by its tables) the first time it is opened for writing.
    static let stampMigration = "file-identity-v1"

    static func stamp(_ db: Database, _ kind: StoreFileKind) throws {
        try db.execute(sql: "PRAGMA application_id = \(kind.applicationID)")
        try db.execute(sql: "PRAGMA user_version = \(formatVersion)")
    }

    /// The single writer connection: WAL, `synchronous=FULL`, read back after GRDB has finished
    /// setting the connection up.
    ///
    /// GRDB's own WAL set-up (`Configuration.journalMode = .wal`) runs `PRAGMA synchronous = NORMAL`
    /// after `prepareDatabase`, which left every acknowledged commit undurable against power loss.
    /// So GRDB is told nothing about the journal mode, and the connection switches itself to WAL.
    package static func openDurableQueue(path: String, label: String,
                                         options: StoreConnectionOptions = StoreConnectionOptions()) throws -> DatabaseQueue {
        let synchronous = options.synchronous.rawValue
        let configuration = Self.configuration(label: label) { db in
            let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            guard mode == "wal" else {
                throw StoreError(.notDurable, "\(path) could not be switched to WAL (journal mode \(mode ?? "?"))", path: path)
            }
            // An acknowledgement means the commit reached the disk: FULL syncs the WAL at every commit.
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        let queue = try DatabaseQueue(path: uri(path, options: options), configuration: configuration)
        try verify(queue, path: path, expected: options.synchronous)
        return queue
    }

    /// How every store connection is configured (the writer, the hub's reader, read-only opens):
    /// a 10 s busy timeout (a second process waits for the writer's commit rather than failing),
    /// a label for GRDB's diagnostics, and `prepare` run on the new connection.
    static func configuration(label: String, readonly: Bool = false,
                              prepare: @escaping @Sendable (Database) throws -> Void) -> Configuration {
        var configuration = Configuration()
        configuration.readonly = readonly
        configuration.busyMode = .timeout(10)
        configuration.label = label
        configuration.prepareDatabase(prepare)
        return configuration
    }

    /// Refuses a connection whose durability is not what was asked for.
    package static func verify(_ queue: DatabaseQueue, path: String, expected: StoreConnectionOptions.Synchronous,
                       readOnly: Bool = false) throws {
        let (synchronous, mode) = try pragmas(queue)
        guard synchronous == expected.rawValue else {
            throw StoreError(.notDurable, "\(path): PRAGMA synchronous reads back \(synchronous), expected \(expected.rawValue) (FULL = 2); refusing to run",
                             path: path)
        }
        // A read-only connection reports the journal mode it reads with ("delete" when immutable).
        guard readOnly || mode == "wal" else {
            throw StoreError(.notDurable, "\(path): journal mode is \(mode), expected wal; refusing to run", path: path)
        }
    }

    /// The name SQLite is given: the plain path, or a `file:` URI naming a VFS (the system SQLite
    /// is built with SQLITE_USE_URI, so URIs work without SQLITE_OPEN_URI).
    static func uri(_ path: String, options: StoreConnectionOptions, parameters: [String] = []) -> String {
        let all = parameters + (options.vfs.map { ["vfs=\($0)"] } ?? [])
        guard !all.isEmpty else { return path }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        let escaped = absolute.addingPercentEncoding(withAllowedCharacters: allowed) ?? absolute
        return "file:\(escaped)?" + all.joined(separator: "&")
    }

    /// `PRAGMA synchronous` and `PRAGMA journal_mode` as a connection reports them (for tests).
    package static func pragmas(_ queue: DatabaseQueue) throws -> (synchronous: Int, journalMode: String) {
        try ReplicaStore.guarded {
            try queue.inDatabase { db in
                (try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1, try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "?")
            }
        }
    }

    static func fileSize(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }
}

/// A read-only connection that leaves no trace.
///
/// SQLite 3.40 opening a WAL database read-only creates `-shm` and an empty `-wal` beside it and
/// leaves them there. When neither exists, no connection has the file open and every commit is in
/// the main file, so the file is opened `immutable=1` (no side files, no locks of SQLite's), and a
/// POSIX read lock on SQLite's shared-lock bytes is held meanwhile so no other process can take the
/// exclusive lock its closing checkpoint needs: the main file cannot change under the reader. When
/// side files exist (a writer is live, or one crashed), the ordinary read-only mode uses them.
/// What the lock cannot stop: a writer that starts during the read and fills 1,000 WAL pages runs
/// an automatic checkpoint without the exclusive lock; an immutable read overlapping that could
/// fail or mix versions (never change the file). The CLI's reads last milliseconds.
///
/// POSIX locks belong to the process: closing the lock's descriptor drops every lock this process
/// holds on the file. That is harmless here because the immutable path is only taken when no
/// connection (ours included) has the file open in WAL mode.
final class ReadOnlyConnection: Sendable {
    let queue: DatabaseQueue
    let lock: SharedLock?

    init(path: String, options: StoreConnectionOptions) throws {
        let configuration = StoreFile.configuration(label: "caresync.read", readonly: true) { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let fileManager = FileManager.default
        let quiet = !fileManager.fileExists(atPath: path + "-wal") && !fileManager.fileExists(atPath: path + "-shm")
        let lock = quiet ? SharedLock(path: path) : nil
        let name = StoreFile.uri(path, options: options, parameters: lock == nil ? ["mode=ro"] : ["mode=ro", "immutable=1"])
        queue = try DatabaseQueue(path: name, configuration: configuration)
        self.lock = lock
    }
}

/// A POSIX read lock on the byte range SQLite uses for SHARED locks (from PENDING_BYTE + 2,
/// 510 bytes): while held, no other process can get the EXCLUSIVE lock needed to checkpoint into,
/// or otherwise rewrite, the main file. Released when the descriptor closes.
final class SharedLock: Sendable {
    private let descriptor: Int32

    init?(path: String) {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return nil }
        var range = flock()
        range.l_type = Int16(F_RDLCK)
        range.l_whence = Int16(SEEK_SET)
        range.l_start = 0x4000_0002
        range.l_len = 510
        guard fcntl(descriptor, F_SETLK, &range) == 0 else {
            close(descriptor)
            return nil
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}
