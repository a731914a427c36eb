import CareRecords
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
/// replica and hub clocks that drift and jump, the re-sending of batches whose acknowledgement was
/// lost, and hub storage that is slow, fails, or loses a write before it is synced. Which faults
/// happen, and how often, is the run's `FaultOptions`, drawn from its seed unless given. The
/// sessions' deadlines fire on the virtual clock. After the faults, the network heals, the hub's
/// clock is set right, and every replica syncs to quiescence.
///
/// ```swift
/// let report = try Simulation(seed: 42, directory: scratch).run()
/// // report.violations is empty; report.faults says what mix seed 42 drew.
/// ```
public final class Simulation {
    /// What one run did, and what went wrong.
    public struct Report: Sendable {
        /// The run's seed: `CARESYNC_SEED` replays it.
        public let seed: UInt64
        /// The mix of faults the run used.
        public let faults: FaultOptions
        /// Local edits written.
        public var edits = 0
        /// Syncs started.
        public var syncsStarted = 0
        /// Syncs that ran to the end.
        public var syncsCompleted = 0
        /// Syncs that completed while faults were still being injected (not counting the heal).
        public var syncsCompletedUnderFaults = 0
        /// Connections cut: mid-stream, by partitions, by restarts.
        public var cuts = 0
        /// Restarts of a replica or of the hub.
        public var restarts = 0
        /// Replicas cut off from the hub for a while.
        public var partitions = 0
        /// Replica files restored from a backup.
        public var restores = 0
        /// Copies of a replica file started as a second device.
        public var clones = 0
        /// Own changes recovered from the hub.
        public var recovered = 0
        /// Forks of copies that diverged.
        public var forks = 0
        /// Deadlines that passed, either side.
        public var timeouts = 0
        /// Hub storage answers injected late.
        public var slowWrites = 0
        /// Hub storage requests injected as failed.
        public var failedWrites = 0
        /// Hub appends lost before they were synced (the hub died).
        public var lostWrites = 0
        /// Pushes committed with others in one group commit.
        public var groupedPushes = 0
        /// Pushes the hub refused as too far ahead of its clock (CLOCK_SKEW), each tried again later.
        public var clockSkewRefusals = 0
        /// Steps in which the hub's clock jumped.
        public var hubClockJumps = 0
        /// Copies of a replica's database made without its identity file.
        public var keylessCopies = 0
        /// Key-less copies re-enrolled as a new identity, their unsynced writes re-issued under it.
        public var reenrolments = 0
        /// Second versions of a held (origin, counter) signed by an equivocating replica, all refused.
        public var equivocations = 0
        /// Backups of the hub's database taken, and restores of it from one.
        public var hubBackups = 0
        /// Restores of the hub's database from its backup.
        public var hubRestores = 0
        /// Restores after which the hub's store made a new incarnation (it had lost changes).
        public var renewedIncarnations = 0
        /// Team-scoped runs (`Workload.careTeams`): what the scope changes did.
        public var scopes = ScopeCounts()

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
        /// Frames (or the framing error) the hub has received and not yet handled: its session
        /// takes none while it waits for storage, as the TCP shell stops reading then.
        var hubFrames: [Result<Frame, WireError>] = []
        /// Bytes arrived on each side and bytes of the whole frames among them: a difference is a
        /// frame in progress, for the frame deadline.
        var hubBytes = (arrived: 0, framed: 0)
        var clientBytes = (arrived: 0, framed: 0)
        var clientClosing = false
        var hubClosing = false
        /// Deadlines running on each side, due at these virtual times.
        var clientTimers: [SessionTimer: UInt64] = [:]
        var hubTimers: [SessionTimer: UInt64] = [:]
        var clientInFrame = false
        var hubInFrame = false

        init(replica: Int, client: ClientSession, hub: HubSession, hubMaxBody: Int, clientMaxBody: Int) {
            self.replica = replica
            self.client = client
            self.hub = hub
            hubInbox = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: hubMaxBody))
            clientInbox = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxBody: clientMaxBody))
        }
    }

    /// What the replicas hold and edit, and how the hub routes it.
    public enum Workload: Sendable, Equatable {
        /// Every replica in one team, editing the domain-free `SimulationSchema`; an unscoped hub.
        case generic
        /// Care replicas in teams A, A, B, B, C… (by index) against a hub with `CareScopeRules`:
        /// young people recorded, transferred between A and B, allocated, restricted, edited
        /// offline; checked for team scope (`Simulator+Scope.swift`). Copies of a replica file
        /// and equivocations are off (a copy's team, and a forged write, are the matrix's tests).
        case careTeams
    }

    /// The run's seed.
    public let seed: UInt64
    let directory: String
    /// The care replicas, teams and scope bookkeeping of a `careTeams` run; nil for `generic`.
    var scoped: ScopedRun?
    var replicaCount: Int
    /// The latest backup of each replica's file, for restores.
    var backups: [Int: String] = [:]
    var backupCount = 0
    /// Copies of a replica file join as extra devices, up to this many.
    let maxClones = 2
    /// Copies of a replica's database without its identity file, up to this many.
    let maxKeylessCopies = 1
    /// Key-less copies, by index, with the counter of the original's log they were copied at:
    /// their own changes above it are theirs, re-issued when they re-enrol.
    var keylessCopiedAt: [Int: UInt64] = [:]
    /// Set while a backup of the hub's database is held (`hub-backup.db`): its log head and the
    /// devices' credentials then (`deviceCredentials()`).
    var hubBackup: (head: UInt64, devices: [[UInt8]])?
    let steps: Int
    var random: SeededGenerator
    var world: UInt64 = 1_750_000_000_000
    var clocks: [SimulatedClock] = []
    /// The hub machine's wall clock, which drifts and jumps as the fault options say.
    let hubClock: SimulatedClock
    /// A replica refused for clock skew tries again no earlier than this step, as a user would
    /// (the shell does not retry CLOCK_SKEW on its own).
    var retryAfterStep: [Int: Int] = [:]
    var replicas: [ReplicaStore] = []
    var editors: [RandomEditor] = []
    var hubStore: SQLiteHubStore
    var connections: [Int: Connection] = [:]
    var partitionedUntil: [Int: Int] = [:]
    /// The last failure of each replica's session (ids and codes only), for violation reports.
    var lastFailure: [Int: String] = [:]
    var report: Report
    let faults: FaultOptions
    var storageFaults: StorageFaults { faults.storage }
    /// Hub storage requests answered late (slow storage), with when.
    var slowStorage: [(connection: Connection, request: HubStoreRequest, due: UInt64)] = []
    /// The hub's one writer is busy with a slow request until then: later requests wait behind
    /// it, and the appends among them are committed together when it is free (group commit).
    var writerBusyUntil: UInt64 = 0
    /// Set when a write was lost before it was synced: the hub process dies (and restarts).
    var hubCrashed = false
    var healing = false
    /// The hub's randomness for secrets, as the shell's.
    var hubRandom = RandomSource { 0 }
    let codec = MessageCodec(maxBody: 64 * 1024, compressionThreshold: 512)
    var clientConfiguration = ClientConfiguration()
    let hubConfiguration: HubConfiguration

    /// A run's replicas and hub, in files under `directory` (which the caller removes).
    ///
    /// - Parameters:
    ///   - seed: Every choice of the run comes from it.
    ///   - replicas: Replicas at the start (copies may join as further devices).
    ///   - steps: Steps of the faulty phase, before the heal.
    ///   - faults: The fault mix; `nil` draws the seed's own (`FaultOptions.drawn(seed:)`).
    ///   - directory: An existing directory for the SQLite files.
    /// - Throws: `StoreError` when a store cannot be created.
    ///   - workload: What the replicas edit and how the hub routes it (default: `generic`).
    public init(seed: UInt64, replicas: Int = 3, steps: Int = 250, faults: FaultOptions? = nil, directory: String,
                workload: Workload = .generic) throws {
        self.seed = seed
        var faults = faults ?? .drawn(seed: seed)
        if workload == .careTeams {
            (faults.cloneWeight, faults.keylessCopyWeight, faults.equivocateWeight) = (0, 0, 0)
            // More syncs, so that a team's replicas share young people between the faults.
            faults.syncWeight += 150
        }
        self.faults = faults
        self.directory = directory
        self.replicaCount = replicas
        self.steps = steps
        self.random = SeededGenerator(seed: seed)
        self.report = Report(seed: seed, faults: faults)
        var hubClockStart = SeededGenerator(seed: seed).stream("hub-clock")
        hubClock = SimulatedClock(world: world, offset: Self.symmetric(faults.hubClockBoundMillis, using: &hubClockStart))
        var hubSeed = SeededGenerator(seed: seed ^ 0x4855_4221)
        scoped = workload == .careTeams ? ScopedRun(replicas: replicas) : nil
        hubStore = try Self.openHub(path: "\(directory)/hub.db", wallClock: hubClock, random: &hubSeed, scoped: workload == .careTeams)
        hubRandom = Self.randomSource(seed: hubSeed.next())
        var configuration = HubConfiguration()
        configuration.maxFrameBody = 64 * 1024
        configuration.maxPullBudget = 8 * 1024
        hubConfiguration = configuration
        // Small batches, so a sync takes many round trips and cuts land between them.
        clientConfiguration.pushBatchChanges = 7
        clientConfiguration.pullBudget = 2 * 1024
        clientConfiguration.maxFrameBody = 64 * 1024
        if workload == .careTeams {
            // Care records are larger and a run has more replicas: larger batches, so that syncs
            // also complete between the faults and a team's replicas share young people then.
            clientConfiguration.pushBatchChanges = 20
            clientConfiguration.pullBudget = 6 * 1024
        }
        for index in 0..<replicas {
            let clock = SimulatedClock(world: world, offset: Self.startingOffset(faults, using: &random))
            clocks.append(clock)
            if let scoped {
                let care = try CareReplica.create(at: "\(directory)/r\(index).db", name: "r\(index)", wallClock: clock,
                                                  random: Self.randomSource(seed: random.next()), replicaID: .random(using: &random))
                scoped.care.append(care)
                self.replicas.append(care.store)
            } else {
                self.replicas.append(try ReplicaStore.create(at: "\(directory)/r\(index).db", schema: SimulationSchema.schema,
                                                             replicaID: .random(using: &random), name: "r\(index)", wallClock: clock))
            }
            editors.append(RandomEditor())
        }
    }

    /// Runs the faulty phase, heals, and checks convergence and durability.
    ///
    /// - Returns: What happened; its `violations` are empty when every check held.
    /// - Throws: `StoreError` when a store cannot be opened or read (not a check's failure: those
    ///   are violations).
    public func run() throws -> Report {
        var tokens: [String] = []
        for _ in 0..<(replicaCount + maxClones + maxKeylessCopies) {
            let team = scoped == nil ? "SIM" : ScopedRun.team(of: tokens.count)
            tokens.append(try hubStore.issueEnrolmentToken(team: team, expiresAtMillis: world + 86_400_000 * 60, random: &random))
        }
        self.tokens = tokens
        for step in 0..<steps {
            currentStep = step
            try tick(step)
            try afterStep()
            try checkAcknowledgedWrites()
            try checkHoldingsDuringFaults()
        }
        try heal()
        try checkAcknowledgedWrites()
        try checkHoldingsDuringFaults()
        if scoped != nil { try checkScopes() } else { try checkConvergence() }
        try checkProvenance()
        return report
    }

    var tokens: [String] = []
    var currentStep = 0

    /// A replica clock's offset from true time at its start: within a third of the drift bound.
    static func startingOffset(_ faults: FaultOptions, using random: inout SeededGenerator) -> Int64 {
        symmetric(faults.replicaClockBoundMillis / 3, using: &random)
    }

    /// The hub's wall clock now, for its sessions (their deadlines run on the virtual monotonic
    /// time, as the shell's event-loop timers do).
    var hubNow: UInt64 { hubClock.nowMillis() }

    /// A session's randomness, drawn from the run's seed.
    static func randomSource(seed: UInt64) -> RandomSource {
        let box = GeneratorBox(SeededGenerator(seed: seed))
        return RandomSource { box.next() }
    }

    // MARK: the faulty phase

    func tick(_ step: Int) throws {
        world += UInt64(random.index(below: Int(max(1, faults.maxStepMillis))))
        moveClocks()
        fireTimers()
        completeSlowStorage(all: false)
        try afterStep()
        let replica = random.index(below: replicaCount)
        switch event(random.index(below: max(1, faults.totalWeight))) {
        case .edit where scoped != nil:
            if try careEdit(replica, step: step) { report.edits += 1 }
        case .edit:
            if try editors[replica].edit(replicas[replica], author: "w\(replica)", random: &random) { report.edits += 1 }
        case .sync:
            try startSync(replica, step: step)
            if scoped != nil, random.index(below: 4) > 0 { try quickSync(replica) }
        case .deliver:
            for _ in 0..<(1 + random.index(below: 4)) { try deliverSomewhere() }
        case .backup:
            try backUp(replica)
        case .restore:
            try restoreReplica(replica)
        case .clone:
            try cloneReplica(replica)
        case .cut:
            cut(replica, reason: "cut mid-stream")
        case .partition:
            partitionedUntil[replica] = step + random.index(below: 40)
            cut(replica, reason: "partition")
            report.partitions += 1
        case .replicaRestart:
            try restartReplica(replica)
        case .hubRestart:
            try restartHub()
        case .learn:
            // A care editor reads the young people its replica holds at each edit.
            if scoped == nil { try editors[replica].learn(from: replicas[replica]) }
        case .keylessCopy:
            try copyWithoutIdentity(replica)
        case .equivocate:
            try equivocate(replica)
        case .hubRestore:
            try backUpOrRestoreHub()
        }
    }

    enum Event {
        case edit, sync, deliver, learn, backup, restore, clone, cut, partition, replicaRestart, hubRestart, keylessCopy, equivocate, hubRestore
    }

    /// The event a roll in `0..<faults.totalWeight` picks.
    func event(_ roll: Int) -> Event {
        let weighted: [(Event, Int)] = [
            (.edit, faults.editWeight), (.sync, faults.syncWeight), (.deliver, faults.deliverWeight), (.backup, faults.backupWeight),
            (.restore, faults.restoreWeight), (.clone, faults.cloneWeight), (.cut, faults.cutWeight), (.partition, faults.partitionWeight),
            (.replicaRestart, faults.replicaRestartWeight), (.hubRestart, faults.hubRestartWeight), (.keylessCopy, faults.keylessCopyWeight),
            (.equivocate, faults.equivocateWeight), (.hubRestore, faults.hubRestoreWeight), (.learn, faults.learnWeight),
        ]
        var rest = roll
        for (event, weight) in weighted {
            if rest < weight { return event }
            rest -= weight
        }
        return .learn
    }

    /// Every clock follows true time, off by its drift; the hub's sometimes jumps.
    func moveClocks() {
        for clock in clocks {
            clock.set(world: world)
            clock.drift(by: Self.symmetric(faults.replicaDriftPerStepMillis, using: &random), bound: faults.replicaClockBoundMillis)
        }
        hubClock.set(world: world)
        guard faults.hubClockBoundMillis > 0 else { return }
        if random.index(below: 1_000) < faults.hubClockJumpPerMille {
            hubClock.jump(to: Self.symmetric(faults.hubClockBoundMillis, using: &random))
            report.hubClockJumps += 1
        } else {
            hubClock.drift(by: Self.symmetric(faults.hubDriftPerStepMillis, using: &random), bound: faults.hubClockBoundMillis)
        }
    }

    /// A number in `-bound...bound`.
    static func symmetric(_ bound: Int64, using random: inout SeededGenerator) -> Int64 {
        Int64(random.index(below: Int(2 * max(0, bound) + 1))) - max(0, bound)
    }

    func startSync(_ replica: Int, step: Int) throws {
        guard connections[replica] == nil, (partitionedUntil[replica] ?? -1) < step, (retryAfterStep[replica] ?? -1) < step else { return }
        if keylessCopiedAt[replica] != nil { try reenrol(replica) }
        let credential: Credential = if let secret = try replicas[replica].hubLink()?.credential { .device(secret) } else {
            .enrolmentToken(tokens[replica])
        }
        try replicas[replica].setHubAddress("sim-hub")
        var client = ClientSession(store: replicas[replica], credential: credential, configuration: clientConfiguration,
                                   random: Self.randomSource(seed: random.next()))
        let hub = HubSession(hub: hubStore.hubID, configuration: hubConfiguration)
        let connection = Connection(replica: replica, client: client, hub: hub, hubMaxBody: hubConfiguration.maxFrameBody,
                                    clientMaxBody: clientConfiguration.maxFrameBody)
        connections[replica] = connection
        hubAct(connection) { $0.start(handshakeMillis: ProtocolConstants.handshakeMillis) }
        perform(client.start(), from: .client, on: connection)
        connection.client = client
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
            case (.close, .client):
                connection.clientClosing = true
                connection.clientTimers = [:]
            case (.close, .hub):
                connection.hubClosing = true
                connection.hubTimers = [:]
            case let (.schedule(timer, afterMillis), .client): connection.clientTimers[timer] = world &+ afterMillis
            case let (.schedule(timer, afterMillis), .hub): connection.hubTimers[timer] = world &+ afterMillis
            case let (.cancel(timer), .client): connection.clientTimers[timer] = nil
            case let (.cancel(timer), .hub): connection.hubTimers[timer] = nil
            case let (.store(request), .hub): store(request, for: connection)
            case (.store, .client): preconditionFailure("a client session asks for no hub storage")
            }
        }
    }

    /// One event into a connection's hub session, and its actions performed.
    func hubAct(_ connection: Connection, _ event: (inout HubSession) -> [SessionAction]) {
        guard var hub = connection.hub else { return }
        let actions = event(&hub)
        connection.hub = hub
        perform(actions, from: .hub, on: connection)
    }

    /// The hub shell's storage: performed at once, or (with storage faults, before the heal) late,
    /// failed, or lost with the hub process.
    func store(_ request: HubStoreRequest, for connection: Connection) {
        guard request.expectsAnswer else {
            _ = request.perform(on: hubStore, random: &hubRandom)
            return
        }
        if !healing, storageFaults.any {
            let roll = random.index(below: 1_000)
            if request.push != nil, roll < storageFaults.lostPerMille {
                // The commit never reached the disk and the hub died: nothing stored, nothing acked.
                report.lostWrites += 1
                hubCrashed = true
                connection.hubClosing = true
                return
            }
            if roll < storageFaults.lostPerMille + storageFaults.failingPerMille {
                report.failedWrites += 1
                if let outcome = HubStoreOutcome.failure(of: request, SimulatedStorageFault()) { completeStorage(outcome, for: connection) }
                return
            }
            if roll < storageFaults.lostPerMille + storageFaults.failingPerMille + storageFaults.slowPerMille {
                report.slowWrites += 1
                let due = max(writerBusyUntil, world &+ 1 &+ UInt64(random.index(below: Int(max(1, storageFaults.maxDelayMillis)))))
                writerBusyUntil = due
                slowStorage.append((connection, request, due))
                return
            }
            if writerBusyUntil > world {
                slowStorage.append((connection, request, writerBusyUntil))
                return
            }
        }
        let outcome = request.perform(on: hubStore, random: &hubRandom)
        if request.push != nil { sampleAdmissions() }
        if let outcome { completeStorage(outcome, for: connection) }
    }

    func completeStorage(_ outcome: HubStoreOutcome, for connection: Connection) {
        hubAct(connection) { $0.storageCompleted(outcome, nowMillis: hubNow) }
        processHubInbox(connection)
    }

    /// Slow requests now due (or all): the appends among them are committed together, as the hub
    /// shell's writer groups pushes that waited for it. A request of a connection that was cut is
    /// still performed (a push still commits), its answer lost.
    func completeSlowStorage(all: Bool) {
        let due = slowStorage.filter { all || $0.due <= world }
        guard !due.isEmpty else { return }
        slowStorage.removeAll { all || $0.due <= world }
        let appends = due.filter { $0.request.push != nil }
        let results = hubStore.append(appends.compactMap(\.request.push))
        if !appends.isEmpty { sampleAdmissions() }
        if appends.count > 1 { report.groupedPushes += appends.count }
        for (index, entry) in appends.enumerated() {
            deliverStorage(.appended(results[index]), to: entry.connection)
        }
        for entry in due where entry.request.push == nil {
            if let outcome = entry.request.perform(on: hubStore, random: &hubRandom) { deliverStorage(outcome, to: entry.connection) }
        }
    }

    private func deliverStorage(_ outcome: HubStoreOutcome, to connection: Connection) {
        guard connections[connection.replica] === connection else { return }
        completeStorage(outcome, for: connection)
    }

    /// Deadlines due on the virtual clock fire, in order of connection and due time.
    func fireTimers() {
        for key in connections.keys.sorted() {
            guard let connection = connections[key] else { continue }
            for (timer, due) in connection.hubTimers.sorted(by: { ($0.value, "\($0.key)") < ($1.value, "\($1.key)") }) where due <= world {
                guard connection.hubTimers[timer] == due else { continue }
                connection.hubTimers[timer] = nil
                report.timeouts += 1
                hubAct(connection) { $0.timerFired(timer, nowMillis: hubNow) }
            }
            for (timer, due) in connection.clientTimers.sorted(by: { ($0.value, "\($0.key)") < ($1.value, "\($1.key)") }) where due <= world {
                guard connection.clientTimers[timer] == due else { continue }
                connection.clientTimers[timer] = nil
                report.timeouts += 1
                var client = connection.client
                let actions = client.timerFired(timer)
                connection.client = client
                perform(actions, from: .client, on: connection)
            }
            // A client that closed its socket on a deadline: the connection is gone, in flight or not.
            if connection.clientClosing && connection.client.isFinished { finish(connection) }
        }
    }

    /// After each step: a hub that lost a write before syncing it restarts.
    func afterStep() throws {
        if hubCrashed {
            hubCrashed = false
            try restartHub()
        }
    }

    /// Moves a random chunk of bytes one way on a random connection (TCP: in order, maybe split).
    func deliverSomewhere() throws {
        guard let key = connections.keys.sorted().randomElement(using: &random), let connection = connections[key] else { return }
        try deliver(on: connection, towardsHub: random.coin())
    }

    /// How many bytes a delivery may move of `queued`: the fault options' chunk limit, except in the heal.
    func chunkLimit(_ queued: Int) -> Int {
        healing || faults.maxChunkBytes == 0 ? queued : min(queued, faults.maxChunkBytes)
    }

    func deliver(on connection: Connection, towardsHub: Bool) throws {
        if towardsHub, !connection.toHub.isEmpty, connection.hub != nil {
            let count = 1 + random.index(below: chunkLimit(connection.toHub.count))
            let arrived = ByteBuffer(bytes: connection.toHub.prefix(count))
            connection.toHub.removeFirst(count)
            if !connection.hubClosing {
                connection.hubBytes.arrived += count
                do throws(WireError) {
                    try connection.hubInbox.frames(in: arrived) { frame in
                        connection.hubBytes.framed += frame.payload.count + Frame.headerSize
                        connection.hubFrames.append(.success(frame))
                    }
                } catch {
                    connection.hubFrames.append(.failure(error))
                }
            }
            processHubInbox(connection)
        } else if !connection.toClient.isEmpty {
            let count = 1 + random.index(below: chunkLimit(connection.toClient.count))
            let arrived = ByteBuffer(bytes: connection.toClient.prefix(count))
            connection.toClient.removeFirst(count)
            connection.clientBytes.arrived += count
            var client = connection.client
            do throws(WireError) {
                try connection.clientInbox.frames(in: arrived) { frame in
                    connection.clientBytes.framed += frame.payload.count + Frame.headerSize
                    guard !client.isFinished else { return }
                    let actions: [SessionAction]
                    do throws(WireError) { actions = client.receive(try codec.decode(frame)) } catch {
                        actions = client.protocolError(error)
                    }
                    perform(actions, from: .client, on: connection)
                }
                let inFrame = connection.clientBytes.arrived > connection.clientBytes.framed
                if inFrame != connection.clientInFrame {
                    connection.clientInFrame = inFrame
                    perform(client.frameProgress(inFrame: inFrame), from: .client, on: connection)
                }
            } catch {
                if !client.isFinished { perform(client.protocolError(error), from: .client, on: connection) }
            }
            connection.client = client
        }
        // Both sides done and nothing in flight: the connection ends.
        if connection.toHub.isEmpty && connection.toClient.isEmpty && (connection.clientClosing || connection.hubClosing) {
            finish(connection)
        }
    }

    /// Hands the hub session the frames it has received, one at a time, while it is not waiting
    /// for storage (as the TCP shell stops reading then). A hub that closed reads nothing more.
    func processHubInbox(_ connection: Connection) {
        while !connection.hubClosing, let hub = connection.hub, !hub.isAwaitingStorage, !connection.hubFrames.isEmpty {
            switch connection.hubFrames.removeFirst() {
            case let .failure(error):
                hubAct(connection) { $0.protocolError(error, nowMillis: hubNow) }
            case let .success(frame):
                let message: Message
                do throws(WireError) { message = try codec.decode(frame) } catch {
                    hubAct(connection) { $0.protocolError(error, nowMillis: hubNow) }
                    continue
                }
                hubAct(connection) { $0.receive(message, nowMillis: hubNow) }
            }
        }
        guard !connection.hubClosing, connection.hub?.isAwaitingStorage == false, connection.hubFrames.isEmpty else { return }
        let inFrame = connection.hubBytes.arrived > connection.hubBytes.framed
        if inFrame != connection.hubInFrame {
            connection.hubInFrame = inFrame
            hubAct(connection) { $0.frameProgress(inFrame: inFrame) }
        }
    }

    func finish(_ connection: Connection) {
        guard connections[connection.replica] === connection else { return }
        var client = connection.client
        client.connectionLost("connection closed")
        if client.state == .done { report.syncsCompleted += 1 }
        if let failure = client.failure { lastFailure[connection.replica] = failure.description }
        if client.failure?.code == .clockSkew {
            // Not retried by the shell's backoff: the next sync of this replica, some steps on, is
            // the retry (by then the hub's clock may have been set right, or the replica's caught up).
            report.clockSkewRefusals += 1
            retryAfterStep[connection.replica] = currentStep + 5 + random.index(below: 20)
        }
        report.recovered += client.summary.recovered
        if client.summary.forkedFrom != nil { report.forks += 1 }
        connections[connection.replica] = nil
        scoped?.sessionsEnded.insert(connection.replica)
    }

    func cut(_ replica: Int, reason: String) {
        guard let connection = connections[replica] else { return }
        // Part of what was in flight may arrive before the cut: a frame can be cut anywhere.
        if !connection.toHub.isEmpty && random.coin() {
            try? deliver(on: connection, towardsHub: true)
        }
        report.cuts += 1
        connections[replica] = nil
        scoped?.sessionsEnded.insert(replica)
    }

    func restartReplica(_ replica: Int) throws {
        cut(replica, reason: "replica restart")
        replicas[replica] = try openReplica(replica, at: "\(directory)/r\(replica).db")
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
        replicas[replica] = try openReplica(replica, at: path)
        try restored(replica)
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
        // The whole machine copied: the identity file (key and secret) with the database.
        try FileManager.default.copyItem(atPath: replicas[replica].identityPath, toPath: path + ".identity")
        clocks.append(SimulatedClock(world: world, offset: Self.startingOffset(faults, using: &random)))
        replicas.append(try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[index]))
        editors.append(editors[replica])
        replicaCount += 1
        report.clones += 1
    }

    func restartHub() throws {
        for replica in connections.keys.sorted() { cut(replica, reason: "hub restart") }
        // What the hub process held in memory, requests it had not yet performed, is gone.
        slowStorage = []
        writerBusyUntil = 0
        var hubSeed = SeededGenerator(seed: random.next())
        hubStore = try Self.openHub(path: "\(directory)/hub.db", wallClock: hubClock, random: &hubSeed, scoped: scoped != nil)
        report.restarts += 1
    }

    // MARK: healing and checks

    /// No more faults: every replica syncs to completion, twice round, so every change reaches
    /// every replica.
    func heal() throws {
        report.syncsCompletedUnderFaults = report.syncsCompleted
        completeSlowStorage(all: true)
        try afterStep()
        healing = true
        for replica in connections.keys.sorted() { cut(replica, reason: "heal") }
        partitionedUntil = [:]
        retryAfterStep = [:]
        // The operator sets the hub's clock right: pushes it refused as too far ahead now go through.
        hubClock.jump(to: 0)
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
        let incarnation = hubStore.incarnation
        for (index, replica) in replicas.enumerated() {
            // After a restore of the hub, a replica that has not yet seen its new incarnation still
            // counts what the old one acknowledged: it pushes that again when it next connects.
            if report.hubRestores > 0, try replica.incarnation() != incarnation { continue }
            let acknowledged = try replica.peerKnowledge(hubStore.hubID)
            for (origin, counter) in acknowledged.counters where counter > 0 {
                for value in 1...counter where !stored.contains(ChangeID(replica: origin, counter: value)) {
                    report.violations.append("replica \(index): change \(origin.short):\(value) was acknowledged but is not on the hub")
                    return
                }
            }
        }
    }

    func hubChangeIDs() throws -> Set<ChangeID> { Set(try hubChanges().keys) }

    func checkConvergence() throws {
        let snapshots = try replicas.map(ReplicaSnapshot.capture)
        for index in 1..<snapshots.count where snapshots[index] != snapshots[0] {
            report.violations.append("replicas 0 and \(index) differ: \(ReplicaSnapshot.difference(snapshots[0], snapshots[index]).prefix(600))")
        }
        try checkReachedHub()
    }

    /// Every change a replica holds is in the hub's log, in the same version.
    func checkReachedHub() throws {
        let held = try hubChanges()
        for (index, replica) in replicas.enumerated() {
            // A care replica holds the published catalogue from its creation (the hub-keyed publisher's).
            for change in try replica.changes(notIn: VersionVector()) where change.id.replica != EntitlementCatalogue.publisher {
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
            let page = try hubStore.logPage(after: cursor, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 24, maxCount: 100_000)
            for change in try page.decodeChanges() { changes[change.id] = change }
            cursor = page.nextCursor
            if !page.more { return changes }
        }
    }
}

/// Hub storage faults for a simulation, in thousandths of the storage requests that expect an answer.
public struct StorageFaults: Sendable, Equatable {
    /// Answered late, by up to `maxDelayMillis` of virtual time (other sessions go on meanwhile).
    public var slowPerMille = 0
    /// The longest a slow answer takes.
    public var maxDelayMillis: UInt64 = 5_000
    /// Failed: the store raised an error and nothing was stored.
    public var failingPerMille = 0
    /// Appends lost before they were synced: the hub process dies before its commit is durable.
    public var lostPerMille = 0

    /// A mix of storage faults, each in thousandths of the requests that expect an answer.
    public init(slowPerMille: Int = 0, maxDelayMillis: UInt64 = 5_000, failingPerMille: Int = 0, lostPerMille: Int = 0) {
        self.slowPerMille = slowPerMille
        self.maxDelayMillis = max(1, maxDelayMillis)
        self.failingPerMille = failingPerMille
        self.lostPerMille = lostPerMille
    }

    /// No storage faults.
    public static let none = StorageFaults()

    var any: Bool { slowPerMille + failingPerMille + lostPerMille > 0 }

    /// A mix drawn from a seed (VOPR's swarm testing: each run its own proportions).
    public static func drawn(seed: UInt64) -> StorageFaults {
        var random = SeededGenerator(seed: seed ^ 0x5354_4F52)
        return StorageFaults(slowPerMille: 50 + random.index(below: 500), maxDelayMillis: UInt64(1_000 + random.index(below: 10_000)),
                             failingPerMille: random.index(below: 120), lostPerMille: 50 + random.index(below: 250))
    }
}

/// The error an injected storage fault reports.
struct SimulatedStorageFault: Error, CustomStringConvertible {
    var description: String { "simulated storage fault" }
}

/// A seeded generator shared by closures that must be `Sendable` (a session's `RandomSource`, a
/// property test's case generator), each draw taking the next number of the one stream.
public final class GeneratorBox: @unchecked Sendable {
    // Safety: every access goes through the lock.
    private let lock = NSLock()
    private var generator: SeededGenerator

    /// A box around `generator`, which it goes on drawing from.
    public init(_ generator: SeededGenerator) { self.generator = generator }

    /// The stream's next number.
    public func next() -> UInt64 { lock.withLock { generator.next() } }
}
