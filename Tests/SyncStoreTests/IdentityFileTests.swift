import Foundation
import SyncCore
import SyncIdentity
@testable import SyncStore
import SyncTesting
import Testing

@Suite("Identity files: created 0600 and durably, read strictly, replaced atomically")
struct IdentityFileTests {
    static let replica = ReplicaID(high: 0xAB, low: 0xCD)

    static func identity(seed: UInt64 = 1, secret: [UInt8]? = nil) -> ReplicaIdentity {
        var random = SeededGenerator(seed: seed)
        return ReplicaIdentity(replica: replica, deviceKey: SigningKey(random: &random), deviceSecret: secret)
    }

    static func code(_ body: () throws -> Void) -> StoreError.Code? {
        do { try body() } catch let error as StoreError { return error.code } catch { return nil }
        return nil
    }

    @Test("a replica's file round-trips, is 0600, and is refused for another replica id")
    func roundTrip() throws {
        let path = IdentityFile.path(forStore: TestFiles.directory("identity") + "/r.db")
        #expect(path.hasSuffix("r.db.identity"))
        let written = Self.identity(secret: [1, 2, 0xFF])
        try IdentityFile.create(written, at: path)
        let read = try IdentityFile.readReplica(at: path, expecting: Self.replica)
        #expect(read.replica == Self.replica && read.deviceKey.publicKey == written.deviceKey.publicKey && read.deviceSecret == [1, 2, 0xFF])
        #expect(try IdentityFile.isPrivate(path))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix("caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: "))
        #expect(text.hasSuffix("device-secret: 0102ff\n"))
        #expect(Self.code { _ = try IdentityFile.readReplica(at: path, expecting: ReplicaID(high: 1, low: 2)) } == .identityMismatch)
        #expect(Self.code { try IdentityFile.create(written, at: path) } == .alreadyExists)
    }

    @Test("an unenrolled replica has no secret; a missing file is IDENTITY_MISSING")
    func emptySecretAndMissing() throws {
        let directory = TestFiles.directory("identity")
        try IdentityFile.create(Self.identity(), at: "\(directory)/a.identity")
        #expect(try IdentityFile.readReplica(at: "\(directory)/a.identity", expecting: nil).deviceSecret == nil)
        #expect(Self.code { _ = try IdentityFile.readReplica(at: "\(directory)/none.identity", expecting: nil) } == .identityMissing)
        #expect(Self.code { _ = try IdentityFile.isPrivate("\(directory)/none.identity") } == .identityMissing)
    }

    @Test("unknown versions, lines out of order, extra lines and bad hex are IDENTITY_UNREADABLE, naming no secret")
    func strict() throws {
        let directory = TestFiles.directory("identity")
        let key = String(repeating: "ab", count: 32)
        let bad = [
            "caresync-identity: 2\nreplica: \(Self.replica.hex)\ndevice-key: \(key)\ndevice-secret: \n",
            "replica: \(Self.replica.hex)\ncaresync-identity: 1\ndevice-key: \(key)\ndevice-secret: \n",
            "caresync-identity: 1\ndevice-key: \(key)\nreplica: \(Self.replica.hex)\ndevice-secret: \n",
            "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key)\ndevice-secret: \nextra: 1\n",
            "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key)\n",
            "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key.uppercased())\ndevice-secret: \n",
            "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key)00\ndevice-secret: \n",
            "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key)\ndevice-secret: 0g\n",
            "caresync-hub-identity: 1\nhub: \(Self.replica.hex)\nhub-key: \(key)\n",
        ]
        for (index, text) in bad.enumerated() {
            let path = "\(directory)/\(index).identity"
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            do {
                _ = try IdentityFile.readReplica(at: path, expecting: Self.replica)
                Issue.record("case \(index) was read")
            } catch let error as StoreError {
                #expect(error.code == .identityUnreadable, "case \(index)")
                #expect(!error.message.contains(key) && !error.message.lowercased().contains(key), "case \(index) names the key")
            }
        }
        // The good form of the same key is read.
        let good = "\(directory)/good.identity"
        try "caresync-identity: 1\nreplica: \(Self.replica.hex)\ndevice-key: \(key)\ndevice-secret:\n".write(toFile: good, atomically: false, encoding: .utf8)
        #expect(try IdentityFile.readReplica(at: good, expecting: Self.replica).deviceKey.rawRepresentation == [UInt8](repeating: 0xAB, count: 32))
    }

    @Test("wider permissions are reported")
    func permissions() throws {
        let path = TestFiles.directory("identity") + "/r.identity"
        try IdentityFile.create(Self.identity(), at: path)
        #expect(try IdentityFile.isPrivate(path))
        for mode in [0o640, 0o604, 0o660, 0o700 | 0o004] {
            chmod(path, mode_t(mode))
            #expect(try !IdentityFile.isPrivate(path), "mode \(String(mode, radix: 8))")
        }
        chmod(path, 0o400)
        #expect(try IdentityFile.isPrivate(path))
    }

    @Test("a hub's file round-trips and is refused for another hub")
    func hub() throws {
        let path = TestFiles.directory("identity") + "/hub.db.identity"
        var random = SeededGenerator(seed: 9)
        let hub = HubIdentity(hub: Self.replica, hubKey: SigningKey(random: &random))
        try IdentityFile.create(hub, at: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix("caresync-hub-identity: 1\nhub: \(Self.replica.hex)\nhub-key: ") && text.split(separator: "\n").count == 3)
        #expect(try IdentityFile.readHub(at: path, expecting: Self.replica).hubKey.publicKey == hub.hubKey.publicKey)
        #expect(try IdentityFile.isPrivate(path))
        #expect(Self.code { _ = try IdentityFile.readHub(at: path, expecting: ReplicaID(high: 5, low: 5)) } == .identityMismatch)
        #expect(Self.code { _ = try IdentityFile.readReplica(at: path, expecting: nil) } == .identityUnreadable)
    }

    /// Records the durable calls in order, then makes them.
    final class CallLog: @unchecked Sendable {
        // Safety: `events` is touched only under `lock`.
        private let lock = NSLock()
        private var recorded: [String] = []
        var events: [String] { lock.withLock { recorded } }
        func add(_ event: String) { lock.withLock { recorded.append(event) } }
        var calls: IdentityFile.Calls {
            IdentityFile.Calls(fsync: { descriptor, path in self.add("fsync \((path as NSString).lastPathComponent)"); return fsync(descriptor) },
                               rename: { from, to in
                                   self.add("rename \((from as NSString).lastPathComponent) \((to as NSString).lastPathComponent)")
                                   return rename(from, to)
                               })
        }
    }

    @Test("create fsyncs the file, then its directory; replace fsyncs a 0600 temporary, renames it over, then fsyncs the directory")
    func durableOrder() throws {
        let directory = TestFiles.directory("identity")
        let name = (directory as NSString).lastPathComponent
        let path = "\(directory)/r.identity"
        let log = CallLog()
        try IdentityFile.create(text: IdentityFile.text(Self.identity()), at: path, calls: log.calls)
        #expect(log.events == ["fsync r.identity", "fsync \(name)"])
        let replaced = Self.identity(seed: 2, secret: [7])
        try IdentityFile.replace(text: IdentityFile.text(replaced), at: path, calls: log.calls)
        #expect(log.events.dropFirst(2) == ["fsync r.identity.tmp", "rename r.identity.tmp r.identity", "fsync \(name)"])
        #expect(try IdentityFile.readReplica(at: path, expecting: Self.replica).deviceSecret == [7])
        #expect(try IdentityFile.isPrivate(path))
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        // A temporary a crash left behind does not stop the next replace.
        try "junk".write(toFile: path + ".tmp", atomically: false, encoding: .utf8)
        try IdentityFile.replace(Self.identity(seed: 3), at: path)
        #expect(try IdentityFile.readReplica(at: path, expecting: Self.replica).deviceSecret == nil)
    }
}
