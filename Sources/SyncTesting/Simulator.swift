import Foundation
import NIOCore
import SyncCore
import SyncEngine
import SyncStore
import SyncWire

/// A deterministic simulation of replicas syncing with a hub through a simulated network. It
/// drives the production session code (`ClientSession`, `HubSession`), the real codec and real
/// SQLite stores; only sockets, time and chance are simulated, all from one seed.
///
/// Faults: connections cut mid-frame, partitions, hub and replica restarts (the files survive),
/// clocks that drift, and the re-sending of batches whose acknowledgement was lost. After the
/// faults, the network heals and every replica syncs to quiescence.
public final class Simulation {
    public struct Report: Sendable {
        public let seed: UInt64
        public var edits = 0
        public var syncsStarted = 0
        public var syncsCompleted = 0
        /// Syncs that completed while faults were still being injected (not counting the heal).
        public var syncsCompletedUnderFaults = 0
        public var cuts = 0
        public var restarts = 0
        public var partitions = 0
        /// Replica files restored from a backup, and copies started as a second device.
        public var restores = 0
        public var clones = 0
        /// Own changes recovered from the hub, and forks of copies that diverged.
        public var recovered = 0
        public var forks = 0
        /// Failures found; empty means the run passed.
        public var violations: [String] = []
    }

    final class Connection {
        let replica: Int
        var client: ClientSession
        var hub: HubSession?
        var toHub: [UInt8] = []
        var toClient: [UInt8] = []
        /// Bytes arrived and not yet whole frames, each side parsed by the production frame decoder.
        let hubInbox: NIOSingleStepByteToMessageProcessor<FrameDecoder>
        let clientInbox: NIOSingleStepByteToMessageProcessor<FrameDecoder>
        var clientClosing = false
        var hubClosing = false

        init(replica: Int, client: ClientSession, hub: HubSession, hubMaxBody: Int, clientMaxBody: Int) {
            self.replica = replica
            self.client = client
            self.hub = hub
            hubInbox = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: hubMaxBody))
            clientInbox = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: clientMaxBody))
        }
    }

    public let seed: UInt64
    let directory: String
    var replicaCount: Int
    /// The latest backup of each replica's file, for restores.
    var backups: [Int: String] = [:]
    var backupCount = 0
    /// Copies of a replica file join as extra devices, up to this many.
    let maxClones = 2
    let steps: Int
    var random: SeededGenerator
    var world: UInt64 = 1_750_000_000_000
    var clocks: [SimulatedClock] = []
    var replicas: [ReplicaStore] = []
    var editors: [RandomEditor] = []
    var hubStore: SQLiteHubStore
    var connections: [Int: Connection] = [:]
    var partitionedUntil: [Int: Int] = [:]
    /// The last failure of each replica's session (ids and codes only), for violation reports.
    var lastFailure: [Int: String] = [:]
    var report: Report
    let codec = MessageCodec(maxBody: 64 * 1024, compressionThreshold: 512)
    var clientConfiguration = ClientConfiguration()
    let hubConfiguration: HubConfiguration

    public init(seed: UInt64, replicas: Int = 3, steps: Int = 250, directory: String) throws {
        self.seed = seed
        self.directory = directory
        self.replicaCount = replicas
        self.steps = steps
        self.random = SeededGenerator(seed: seed)
        self.report = Report(seed: seed)
        var hubRandom = SeededGenerator(seed: seed ^ 0x4855_4221)
        hubStore = try SQLiteHubStore(path: "\(directory)/hub.db", random: &hubRandom)
        var configuration = HubConfiguration()
        configuration.maxFrameBody = 64 * 1024
        configuration.maxPullBudget = 8 * 1024
        hubConfiguration = configuration
        // Small batches, so a sync takes many round trips and cuts land between them.
        clientConfiguration.pushBatchChanges = 7
        clientConfiguration.pullBudget = 2 * 1024
        clientConfiguration.maxFrameBody = 64 * 1024
        for index in 0..<replicas {
            let clock = SimulatedClock(world: world, offset: Int64(random.index(below: 60_001)) - 30_000)
            clocks.append(clock)
            self.replicas.append(try ReplicaStore.create(at: "\(directory)/r\(index).db", schema: SimulationSchema.schema,
                                                         replicaID: .random(using: &random), name: "r\(index)", wallClock: clock))
            editors.append(RandomEditor())
        }
    }

    /// Runs the faulty phase, heals, and checks convergence and durability.
    public func run() throws -> Report {
        var tokens: [String] = []
        for _ in 0..<(replicaCount + maxClones) {
            tokens.append(try hubStore.issueEnrolmentToken(team: "SIM", expiresAtMillis: world + 86_400_000 * 60, random: &random))
        }
        self.tokens = tokens
        for step in 0..<steps {
            try tick(step)
            try checkAcknowledgedWrites()
        }
        try heal()
        try checkAcknowledgedWrites()
        try checkConvergence()
        return report
    }

    var tokens: [String] = []

    /// A session's randomness, drawn from the run's seed.
    static func randomSource(seed: UInt64) -> RandomSource {
        let box = GeneratorBox(SeededGenerator(seed: seed))
        return RandomSource { box.next() }
    }

    // MARK: the faulty phase

    func tick(_ step: Int) throws {
        world += UInt64(random.index(below: 2_000))
        for clock in clocks {
            clock.set(world: world)
            clock.drift(by: Int64(random.index(below: 201)) - 100, bound: 90_000)
        }
        let replica = random.index(below: replicaCount)
        switch random.index(below: 100) {
        case 0..<28:
            if try editors[replica].edit(replicas[replica], author: "w\(replica)", random: &random) { report.edits += 1 }
        case 28..<40:
            try startSync(replica, step: step)
        case 40..<85:
            for _ in 0..<(1 + random.index(below: 4)) { try deliverSomewhere() }
        case 85..<87:
            try backUp(replica)
        case 87:
            try restoreReplica(replica)
        case 88 where random.index(below: 3) == 0:
            try cloneReplica(replica)
        case 88..<91:
            cut(replica, reason: "cut mid-stream")
        case 91..<93:
            partitionedUntil[replica] = step + random.index(below: 40)
            cut(replica, reason: "partition")
            report.partitions += 1
        case 93..<94:
            try restartReplica(replica)
        case 94..<95:
            try restartHub()
        default:
            try editors[replica].learn(from: replicas[replica])
        }
    }

    func startSync(_ replica: Int, step: Int) throws {
        guard connections[replica] == nil, (partitionedUntil[replica] ?? -1) < step else { return }
        let credential: Credential = if let secret = try replicas[replica].hubLink()?.credential { .device(secret) } else {
            .enrolmentToken(tokens[replica])
        }
        try replicas[replica].setHubAddress("sim-hub")
        var client = ClientSession(store: replicas[replica], credential: credential, configuration: clientConfiguration,
                                   random: Self.randomSource(seed: random.next()))
        let hub = HubSession(store: hubStore, configuration: hubConfiguration, random: Self.randomSource(seed: random.next()))
        let connection = Connection(replica: replica, client: client, hub: hub, hubMaxBody: hubConfiguration.maxFrameBody,
                                    clientMaxBody: clientConfiguration.maxFrameBody)
        perform(client.start(), from: .client, on: connection)
        connection.client = client
        connections[replica] = connection
        report.syncsStarted += 1
    }

    enum Side { case client, hub }

    func perform(_ actions: [SessionAction], from side: Side, on connection: Connection) {
        for action in actions {
            switch (action, side) {
            case let (.send(message), .client):
                if !connection.clientClosing { connection.toHub += codec.encode(message) }
            case let (.send(message), .hub):
                if !connection.hubClosing { connection.toClient += codec.encode(message) }
            case (.close, .client): connection.clientClosing = true
            case (.close, .hub): connection.hubClosing = true
            }
        }
    }

    /// Moves a random chunk of bytes one way on a random connection (TCP: in order, maybe split).
    func deliverSomewhere() throws {
        guard let key = connections.keys.sorted().randomElement(using: &random), let connection = connections[key] else { return }
        try deliver(on: connection, towardsHub: random.coin())
    }

    func deliver(on connection: Connection, towardsHub: Bool) throws {
        if towardsHub, !connection.toHub.isEmpty, var hub = connection.hub {
            let count = 1 + random.index(below: connection.toHub.count)
            let arrived = ByteBuffer(bytes: connection.toHub.prefix(count))
            connection.toHub.removeFirst(count)
            do throws(WireError) {
                // A hub that closed reads nothing more (HubServer.serve returns at `.close`).
                try connection.hubInbox.frames(in: arrived) { frame in
                    guard !connection.hubClosing else { return }
                    let actions: [SessionAction]
                    do throws(WireError) { actions = hub.receive(try codec.decode(frame), nowMillis: world) } catch {
                        actions = hub.protocolError(error, nowMillis: world)
                    }
                    perform(actions, from: .hub, on: connection)
                }
            } catch {
                if !connection.hubClosing { perform(hub.protocolError(error, nowMillis: world), from: .hub, on: connection) }
            }
            connection.hub = hub
        } else if !connection.toClient.isEmpty {
            let count = 1 + random.index(below: connection.toClient.count)
            let arrived = ByteBuffer(bytes: connection.toClient.prefix(count))
            connection.toClient.removeFirst(count)
            var client = connection.client
            do throws(WireError) {
                try connection.clientInbox.frames(in: arrived) { frame in
                    guard !client.isFinished else { return }
                    let actions: [SessionAction]
                    do throws(WireError) { actions = client.receive(try codec.decode(frame)) } catch {
                        actions = client.protocolError(error)
                    }
                    perform(actions, from: .client, on: connection)
                }
            } catch {
                perform(client.protocolError(error), from: .client, on: connection)
            }
            connection.client = client
        }
        // Both sides done and nothing in flight: the connection ends.
        if connection.toHub.isEmpty && connection.toClient.isEmpty && (connection.clientClosing || connection.hubClosing) {
            finish(connection)
        }
    }

    func finish(_ connection: Connection) {
        var client = connection.client
        client.connectionLost("connection closed")
        if client.state == .done { report.syncsCompleted += 1 }
        if let failure = client.failure { lastFailure[connection.replica] = failure.description }
        report.recovered += client.summary.recovered
        if client.summary.forkedFrom != nil { report.forks += 1 }
        connections[connection.replica] = nil
    }

    func cut(_ replica: Int, reason: String) {
        guard let connection = connections[replica] else { return }
        // Part of what was in flight may arrive before the cut: a frame can be cut anywhere.
        if !connection.toHub.isEmpty && random.coin() {
            try? deliver(on: connection, towardsHub: true)
        }
        report.cuts += 1
        connections[replica] = nil
    }

    func restartReplica(_ replica: Int) throws {
        cut(replica, reason: "replica restart")
        replicas[replica] = try ReplicaStore.open(at: "\(directory)/r\(replica).db", schema: SimulationSchema.schema,
                                                  wallClock: clocks[replica])
        report.restarts += 1
    }

    /// A user's backup of the replica file (SQLite's online backup), kept for a later restore.
    func backUp(_ replica: Int) throws {
        guard try replicas[replica].hubLink()?.credential != nil else { return }
        backupCount += 1
        let path = "\(directory)/backup-\(replica)-\(backupCount).db"
        try replicas[replica].backup(to: path)
        if let previous = backups[replica] { try? FileManager.default.removeItem(atPath: previous) }
        backups[replica] = path
    }

    /// The replica file is replaced by its latest backup: whatever was written since is gone from
    /// this file, and the hub may hold some of it.
    func restoreReplica(_ replica: Int) throws {
        guard let backup = backups[replica] else { return }
        cut(replica, reason: "restore")
        try replicas[replica].close()
        let path = "\(directory)/r\(replica).db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: backup, toPath: path)
        replicas[replica] = try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[replica])
        report.restores += 1
    }

    /// The replica file is copied to a second machine, which goes on using it: two live devices
    /// with one identity, one credential and one counter.
    func cloneReplica(_ replica: Int) throws {
        // Only an enrolled replica: a copy made before enrolment has no credential, and its token
        // binds one device (the second is refused and needs a new replica).
        guard replicaCount < tokens.count, report.clones < maxClones, try replicas[replica].hubLink()?.credential != nil else { return }
        let index = replicaCount
        let path = "\(directory)/r\(index).db"
        try replicas[replica].backup(to: path)
        clocks.append(SimulatedClock(world: world, offset: Int64(random.index(below: 60_001)) - 30_000))
        replicas.append(try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[index]))
        editors.append(editors[replica])
        replicaCount += 1
        report.clones += 1
    }

    func restartHub() throws {
        for replica in connections.keys.sorted() { cut(replica, reason: "hub restart") }
        var hubRandom = SeededGenerator(seed: random.next())
        hubStore = try SQLiteHubStore(path: "\(directory)/hub.db", random: &hubRandom)
        report.restarts += 1
    }

    // MARK: healing and checks

    /// No more faults: every replica syncs to completion, twice round, so every change reaches
    /// every replica.
    func heal() throws {
        report.syncsCompletedUnderFaults = report.syncsCompleted
        for replica in connections.keys.sorted() { cut(replica, reason: "heal") }
        partitionedUntil = [:]
        for _ in 0..<2 {
            for replica in 0..<replicaCount {
                try startSync(replica, step: Int.max)
                var guardSteps = 0
                while let connection = connections[replica] {
                    try deliver(on: connection, towardsHub: !connection.toHub.isEmpty)
                    guardSteps += 1
                    if guardSteps > 100_000 {
                        report.violations.append("replica \(replica) did not finish syncing after the network healed")
                        connections[replica] = nil
                    }
                }
                let link = try replicas[replica].hubLink()
                if let error = link?.lastError {
                    report.violations.append("replica \(replica) healed sync failed: \(error) (\(lastFailure[replica] ?? "-"))")
                }
            }
        }
    }

    /// Durability: every change the hub acknowledged to a replica is in the hub's store.
    func checkAcknowledgedWrites() throws {
        let stored = try hubChangeIDs()
        for (index, replica) in replicas.enumerated() {
            let acknowledged = try replica.peerKnowledge(hubStore.hubID)
            for (origin, counter) in acknowledged.counters where counter > 0 {
                for value in 1...counter where !stored.contains(ChangeID(replica: origin, counter: value)) {
                    report.violations.append("replica \(index): change \(origin.short):\(value) was acknowledged but is not on the hub")
                    return
                }
            }
        }
    }

    func hubChangeIDs() throws -> Set<ChangeID> {
        var ids: Set<ChangeID> = []
        var cursor: UInt64 = 0
        while true {
            let page = try hubStore.changes(after: cursor, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 24, maxCount: 100_000)
            for change in try page.decodeChanges() { ids.insert(change.id) }
            cursor = page.nextCursor
            if !page.more { return ids }
        }
    }

    func checkConvergence() throws {
        let snapshots = try replicas.map(ReplicaSnapshot.capture)
        for index in 1..<snapshots.count where snapshots[index] != snapshots[0] {
            report.violations.append("replicas 0 and \(index) differ: \(ReplicaSnapshot.difference(snapshots[0], snapshots[index]).prefix(600))")
        }
        let held = try hubChanges()
        for (index, replica) in replicas.enumerated() {
            for change in try replica.changes(notIn: VersionVector()) {
                guard let hubVersion = held[change.id] else {
                    report.violations.append("replica \(index): change \(change.id) never reached the hub")
                    break
                }
                // One id, one content everywhere: a restored or copied file must not keep its own
                // version of an id the hub holds differently.
                if !hubVersion.isSameVersion(as: change) {
                    report.violations.append("replica \(index): change \(change.id) differs from the hub's version")
                    break
                }
            }
        }
    }

    func hubChanges() throws -> [ChangeID: Change] {
        var changes: [ChangeID: Change] = [:]
        var cursor: UInt64 = 0
        while true {
            let page = try hubStore.changes(after: cursor, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 24, maxCount: 100_000)
            for change in try page.decodeChanges() { changes[change.id] = change }
            cursor = page.nextCursor
            if !page.more { return changes }
        }
    }
}

/// A seeded generator shared by a `RandomSource` closure.
final class GeneratorBox: @unchecked Sendable {
    // Safety: every access goes through the lock.
    private let lock = NSLock()
    private var generator: SeededGenerator

    init(_ generator: SeededGenerator) { self.generator = generator }

    func next() -> UInt64 { lock.withLock { generator.next() } }
}
