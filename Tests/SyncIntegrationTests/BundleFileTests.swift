import Foundation
import SyncClient
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// Bundle files through `DurableFile` (NIO's transactional creation): complete or absent, never
/// half-written; what is at the path is replaced only if it is an earlier bundle; the directory is
/// fsynced after the file is linked, so the name survives a power cut.
extension Integration {
    @Suite("Bundle files: transactional creation, refusals, directory fsync")
    struct BundleFileTests {
        let directory: String

        init() throws {
            directory = NSTemporaryDirectory() + "caresync-bundle-file-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }

        func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: directory).sorted() }

        func replica(_ name: String, id: UInt8) throws -> ReplicaStore {
            try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.schema,
                                    replicaID: ReplicaID(high: UInt64(id), low: UInt64(id)), name: name,
                                    wallClock: FixedWallClock(millis: 1_800_000_000_000))
        }

        @Test("export then import through files: the bundle is whole, nothing else is left in the directory")
        func roundTrip() async throws {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let a = try replica("a", id: 1)
            let b = try replica("b", id: 2)
            // Both enrolled with one hub: b verifies a's certificate (which the bundle carries) under its key.
            let hubKey = TestSigner.key(ReplicaID(high: 9, low: 9))
            for store in [a, b] { try store.pinHubKey(hubKey.publicKey) }
            try a.saveCertificate(hubKey.certificate(replica: a.replicaID, publicKey: try #require(a.signingKey).publicKey, team: "T",
                                                     issuedAtMillis: 0, attestedThrough: 0))
            try a.write(author: "ann") { try $0.create("item", id: "x", values: ["code": .text("c"), "title": .text("t")]) }
            let path = "\(directory)/a.bundle"
            let exported = try await BundleExchange.export(from: a, for: nil, to: path)
            let bytes = try await DurableFile.read(path, limit: ChangeBundle.maxBytes)
            let decoded = try ChangeBundle.decode(bytes)
            #expect(bytes.count == exported.bytes && decoded.changes.count == exported.changes)
            // Exported again over the earlier bundle: replaced whole.
            try a.write(author: "ann") { try $0.update("item", id: "x", values: ["title": .text("u")]) }
            let again = try await BundleExchange.export(from: a, for: nil, to: path)
            #expect(try await DurableFile.read(path, limit: ChangeBundle.maxBytes).count == again.bytes)
            let imported = try await BundleExchange.importBundle(into: b, from: path)
            #expect(imported.sender == a.replicaID && imported.received == again.changes)
            // No temporary file (`.partial`, `.tmp-…`) beside the bundle and the replicas.
            #expect(try entries().filter { !$0.hasPrefix("a.db") && !$0.hasPrefix("b.db") } == ["a.bundle"])
        }

        @Test("a refused or failed write leaves the path as it was and no file behind")
        func refusedWrites() async throws {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let bundle = ChangeBundle(sender: ReplicaID(high: 3, low: 3), schemaVersion: 1,
                                      senderKnowledge: VersionVector(), changes: []).encoded()
            // Not an earlier bundle: left as it is.
            let other = "\(directory)/replica.db"
            try Data("SQLite format 3\u{0}".utf8).write(to: URL(fileURLWithPath: other))
            await #expect(throws: DurableFile.FileError.self) { try await DurableFile.write(bundle, to: other, replacing: ChangeBundle.magic) }
            do {
                try await DurableFile.write(bundle, to: other, replacing: ChangeBundle.magic)
            } catch {
                #expect(error.code == .wouldReplaceOther && error.operation == .write && error.path == other)
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: other)) == Data("SQLite format 3\u{0}".utf8))
            // A directory, and a symbolic link, are not regular files.
            try FileManager.default.createDirectory(atPath: "\(directory)/folder", withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: "\(directory)/link", withDestinationPath: other)
            for path in ["folder", "link"] {
                do {
                    try await DurableFile.write(bundle, to: "\(directory)/\(path)", replacing: ChangeBundle.magic)
                    Issue.record("\(path) was written")
                } catch {
                    #expect(error.code == .notARegularFile, "\(path): \(error)")
                }
            }
            // The write itself fails (no such directory): nothing is created anywhere.
            do {
                try await DurableFile.write(bundle, to: "\(directory)/missing/x.bundle", replacing: ChangeBundle.magic)
                Issue.record("written into a missing directory")
            } catch {
                #expect(error.code == .writeFailed && error.cause != nil)
            }
            #expect(try entries() == ["folder", "link", "replica.db"])
            // An empty file (e.g. made by `touch`) may be replaced.
            FileManager.default.createFile(atPath: "\(directory)/empty.bundle", contents: nil)
            try await DurableFile.write(bundle, to: "\(directory)/empty.bundle", replacing: ChangeBundle.magic)
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: "\(directory)/empty.bundle"))) == bundle)
        }

        @Test("reads refuse a missing file, a directory and a file over the limit, before reading it")
        func refusedReads() async throws {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let big = "\(directory)/big.bundle"
            try Data(repeating: 7, count: 2_000).write(to: URL(fileURLWithPath: big))
            let cases: [(String, Int, DurableFile.FileError.Code)] = [
                ("\(directory)/none.bundle", 10_000, .notFound), (directory, 10_000, .notARegularFile), (big, 1_000, .tooLarge),
            ]
            for (path, limit, code) in cases {
                do {
                    _ = try await DurableFile.read(path, limit: limit)
                    Issue.record("\(path) was read")
                } catch {
                    #expect(error.code == code && error.operation == .read, "\(path): \(error)")
                    if code == .tooLarge { #expect(error.size == 2_000 && error.limit == 1_000) }
                    if code == .notARegularFile { #expect("\(error)".contains("is not a regular file (a directory)")) }
                }
            }
            #expect(try await DurableFile.read(big, limit: 2_000).count == 2_000)
        }

        /// strace's `-y` prints the path of each descriptor, so the directory's fsync is seen by name.
        static let strace = ["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) }

        @Test("process: `caresync export` fsyncs the bundle, links it, then fsyncs its directory (strace)",
              .enabled(if: strace != nil, "strace is not installed"))
        func directoryFsync() throws {
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let strace = try #require(Self.strace)
            #expect(try RestoreProcessTests.caresync(["init", "r.db", "--name", "r"], in: directory).status == 0)
            let log = "\(directory)/strace.log"
            let run = try RestoreProcessTests.run(strace, ["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,linkat,link,rename,renameat,renameat2",
                                                           "-o", log, CrashTests.binary, "export", "out.bundle", "--replica", "r.db"],
                                                  in: directory)
            #expect(run.status == 0, "\(run.output)")
            let calls = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
            // The directory's real path, as strace resolves descriptors (the temporary directory may be a symlink).
            let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
            let linked = calls.firstIndex { ($0.contains("linkat(") || $0.contains("rename")) && $0.contains("out.bundle") && !$0.contains("= -1") }
            let directorySynced = calls.lastIndex { $0.contains("fsync(") && ($0.contains("<\(resolved)>") || $0.contains("<\(directory)>")) && $0.hasSuffix("= 0") }
            let linkedAt = try #require(linked, "the bundle was never linked or renamed into place:\n\(calls.joined(separator: "\n"))")
            let syncedAt = try #require(directorySynced, "the directory was never fsynced:\n\(calls.joined(separator: "\n"))")
            #expect(syncedAt > linkedAt, "the directory fsync must follow the link:\n\(calls.joined(separator: "\n"))")
            // And the file's own data was synced before it was linked.
            #expect(calls[..<linkedAt].contains { $0.contains("fsync(") || $0.contains("fdatasync(") })
            #expect(try entries().contains("out.bundle"))
        }
    }
}
