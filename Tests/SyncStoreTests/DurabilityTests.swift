import CSQLiteFaultVFS
import Foundation
import SyncStore
import SyncCore
import SyncTesting
import Testing

/// A directory whose files go through the fault VFS (Tests/CSQLiteFaultVFS): it counts xSync per
/// file and, on a power cut, throws away every write no xSync made durable.
struct FaultDisk {
    let directory = TestFiles.directory()
    let vfs: String

    init() throws {
        vfs = String(cString: try #require(fault_vfs_name(), "fault VFS registered"))
    }

    func options(_ synchronous: StoreConnectionOptions.Synchronous = .full) -> StoreConnectionOptions {
        StoreConnectionOptions(vfs: vfs, synchronous: synchronous)
    }

    func walSyncs(_ name: String) -> Int { fault_vfs_sync_count("\(directory)/\(name)-wal") }

    /// Power off (unsynced writes undone, later ones dropped); `body` releases the open stores,
    /// whose closing checkpoint then reaches nothing; power on again.
    func powerCut(_ release: () -> Void) throws {
        #expect(fault_vfs_power_cut(directory) >= 0)
        release()
        fault_vfs_power_on(directory)
    }
}

@Suite("Durability: synchronous=FULL holds, acknowledged commits survive power loss")
struct DurabilityTests {
    let clock = SimulatedClock()
    static let author = ReplicaID(high: 7, low: 7)

    /// `count` independent batches of changes from another replica, one record each.
    func batches(_ count: Int, in directory: String) throws -> [[Change]] {
        let source = try ReplicaStore.create(at: "\(directory)/source.db", schema: SimulationSchema.v1, replicaID: Self.author,
                                             name: "source", wallClock: clock)
        var batches: [[Change]] = []
        var seen = VersionVector()
        for index in 0..<count {
            try source.write(author: "ann") { tx in try tx.create("item", id: "s\(index)", values: ["title": .text("t\(index)")]) }
            let batch = try source.changes(notIn: seen)
            batches.append(batch)
            seen = try source.versionVector()
        }
        return batches
    }

    @Test("PRAGMA synchronous reads back FULL on every store connection: replica and hub, read-write and read-only")
    func fullOnEveryConnection() throws {
        let directory = TestFiles.directory()
        let replicaPath = "\(directory)/r.db"
        do {
            let created = try ReplicaStore.create(at: replicaPath, schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1),
                                                  name: "r", wallClock: clock)
            #expect(try created.connectionPragmas() == (2, "wal"))
        }
        #expect(try ReplicaStore.open(at: replicaPath, schema: SimulationSchema.v1, wallClock: clock).connectionPragmas() == (2, "wal"))
        #expect(try ReplicaStore.open(at: replicaPath, schema: SimulationSchema.v1, wallClock: clock, access: .readOnly)
            .connectionPragmas().synchronous == 2)
        var random = SeededGenerator(seed: 1)
        let hubPath = "\(directory)/hub.db"
        #expect(try SQLiteHubStore(path: hubPath, wallClock: SystemWallClock(), random: &random).connectionPragmas() == (2, "wal"))
        #expect(try SQLiteHubStore(readingAt: hubPath).connectionPragmas().synchronous == 2)
    }

    @Test("a connection that does not read back synchronous=FULL is refused with NOT_DURABLE")
    func notFullRefused() throws {
        let path = TestFiles.directory() + "/weak.db"
        let weak = try StoreFile.openDurableQueue(path: path, label: "test", options: StoreConnectionOptions(synchronous: .normal))
        let error = #expect(throws: StoreError.self) { try StoreFile.verify(weak, path: path, expected: .full) }
        #expect(error?.code == .notDurable)
        #expect(error?.message.contains("PRAGMA synchronous reads back 1") == true)
    }

    @Test("every acknowledged commit (local write, apply, hub append) reached xSync on the WAL; at NORMAL they do not",
          arguments: [StoreConnectionOptions.Synchronous.full, .normal])
    func everyAcknowledgementSyncsTheWAL(_ synchronous: StoreConnectionOptions.Synchronous) throws {
        let disk = try FaultDisk()
        let batches = try batches(10, in: disk.directory)
        let replica = try ReplicaStore.create(at: "\(disk.directory)/r.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1),
                                              name: "r", wallClock: clock, options: disk.options(synchronous))
        var random = SeededGenerator(seed: 2)
        let hub = try SQLiteHubStore(path: "\(disk.directory)/hub.db", wallClock: SystemWallClock(), random: &random, options: disk.options(synchronous))
        try hub.enrolForTests(Array(Set(batches.joined().map(\.id.replica))), random: &random)
        var signer = TestSigner()
        var unsynced: [String] = []
        func acknowledged(_ what: String, _ file: String, _ commit: () throws -> Void) rethrows {
            let before = disk.walSyncs(file)
            try commit()
            if disk.walSyncs(file) <= before { unsynced.append(what) }
        }
        for (index, batch) in batches.enumerated() {
            try acknowledged("write \(index)", "r.db") {
                try replica.write(author: "ann") { tx in try tx.create("item", id: "w\(index)", values: ["title": .text("x")]) }
            }
            try acknowledged("apply \(index)", "r.db") { _ = try replica.apply(batch) }
            try acknowledged("append \(index)", "hub.db") { _ = try hub.signedAppend(batch, from: Self.author, signer: &signer) }
        }
        if synchronous == .full {
            #expect(unsynced.isEmpty, "acknowledged without a WAL sync: \(unsynced)")
        } else {
            #expect(unsynced.count == 30, "negative control: at NORMAL a commit does not sync the WAL")
        }
    }

    @Test("after a power cut every committed replica write and applied batch is still there; at NORMAL they are lost",
          arguments: [StoreConnectionOptions.Synchronous.full, .normal])
    func replicaSurvivesPowerCut(_ synchronous: StoreConnectionOptions.Synchronous) throws {
        let disk = try FaultDisk()
        let batches = try batches(5, in: disk.directory)
        let path = "\(disk.directory)/r.db"
        // Created and closed cleanly first, so only the commits under test are at stake.
        _ = try ReplicaStore.create(at: path, schema: SimulationSchema.v1, replicaID: ReplicaID(high: 1, low: 1), name: "r",
                                    wallClock: clock, options: disk.options())
        var replica: ReplicaStore? = try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock,
                                                           options: disk.options(synchronous))
        for (index, batch) in batches.enumerated() {
            try replica?.write(author: "ann") { tx in try tx.create("item", id: "w\(index)", values: ["title": .text("x")]) }
            _ = try replica?.apply(batch)
        }
        #expect(fault_vfs_unsynced_bytes("\(path)-wal") == 0 || synchronous == .normal)
        try disk.powerCut { replica = nil }
        let reopened = try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: clock)
        let items = try reopened.read { try $0.rows("item") }.count
        if synchronous == .full {
            #expect(items == 10, "5 local writes and 5 applied records acknowledged before the cut")
        } else {
            #expect(items < 10, "negative control: at NORMAL acknowledged commits are lost at a power cut (kept \(items))")
        }
    }

    @Test("after a power cut every acknowledged hub append is still there; at NORMAL they are lost",
          arguments: [StoreConnectionOptions.Synchronous.full, .normal])
    func hubSurvivesPowerCut(_ synchronous: StoreConnectionOptions.Synchronous) throws {
        let disk = try FaultDisk()
        let batches = try batches(8, in: disk.directory)
        let path = "\(disk.directory)/hub.db"
        var random = SeededGenerator(seed: 3)
        _ = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random, options: disk.options())
        var hub: SQLiteHubStore? = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random, options: disk.options(synchronous))
        try hub?.enrolForTests(Array(Set(batches.joined().map(\.id.replica))), random: &random)
        var signer = TestSigner()
        var acknowledged: UInt64 = 0
        for batch in batches {
            let result = try #require(try hub?.signedAppend(batch, from: Self.author, signer: &signer))
            acknowledged = try #require(result.durable[Self.author])
        }
        #expect(acknowledged == UInt64(batches.joined().count))
        try disk.powerCut { hub = nil }
        let reopened = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
        let page = try reopened.changes(after: 0, excludingOrigin: ReplicaID(high: 9, low: 9), byteBudget: 1 << 24, maxCount: 10_000)
        if synchronous == .full {
            #expect(page.encoded.count == Int(acknowledged), "every change acknowledged as durable before the cut")
        } else {
            #expect(page.encoded.count < Int(acknowledged), "negative control: at NORMAL acknowledged appends are lost (kept \(page.encoded.count))")
        }
    }
}
