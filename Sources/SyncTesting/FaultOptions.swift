/// The mix of events and faults of one simulated run. By default each seed draws its own
/// (`drawn(seed:)`), as TigerBeetle's VOPR does in swarm testing: one seed cuts connections often
/// and never restarts the hub, another has perfect clocks and slow storage, another a hub clock
/// minutes behind. A fault that a mix switches off is off for the whole run, so bugs that only one
/// fault hides from another are found; the simulation tests check that each fault still happens
/// over the whole set of seeds.
///
/// The network is a byte stream, as TCP is: it never drops, duplicates or reorders bytes within a
/// connection. Loss is a cut connection (`cutWeight`, `partitionWeight`: what was in flight may
/// arrive in part); duplicates are the batches a client sends again after a cut lost their
/// acknowledgement; delay is how often bytes move at all (`deliverWeight`) and in how small pieces
/// (`maxChunkBytes`), against how much virtual time passes per step (`maxStepMillis`).
///
/// The description prints every option as `name=value`, and `init(parsing:)` reads that form back
/// (`CARESYNC_FAULTS`), so a failing seed can be replayed with one fault changed.
public struct FaultOptions: Sendable, Equatable, CustomStringConvertible {
    /// What happens in one step: weights of each event, out of their sum (about 1,000).
    public var editWeight = 280
    /// A replica starting a sync.
    public var syncWeight = 120
    /// Bytes moving on a random connection: lower means a slower network.
    public var deliverWeight = 450
    /// A replica's editor learning the rows it has received, so later edits touch shared rows.
    public var learnWeight = 50
    /// A user's backup of a replica file, a restore of one, and a copy started as a second device.
    public var backupWeight = 20
    /// A replica file replaced by its latest backup.
    public var restoreWeight = 10
    /// A replica file copied to a second device, with its identity file (key and secret), which
    /// goes on using it: two devices signing one origin's log (Protocol/identity.md, "Identity file").
    public var cloneWeight = 3
    /// A replica's database copied to a second device without its identity file: the copy cannot
    /// sign, so it cannot push under the old identity; its user re-enrols it as a new device, and
    /// its unsynced writes are re-issued under the new identity.
    public var keylessCopyWeight = 0
    /// A malicious replica signing a second, different change under one of its (origin, counter)
    /// pairs the hub holds, sent straight to the hub (and to replicas holding the first): refused
    /// everywhere, both signed heads kept by the hub as evidence.
    public var equivocateWeight = 0
    /// The hub's database backed up (while the hub is stopped), and, the next time, restored from
    /// that backup: its incarnation changes and replicas push again what it lost.
    public var hubRestoreWeight = 0
    /// A connection cut mid-stream, and a replica partitioned from the hub for up to 40 steps.
    public var cutWeight = 27
    /// A replica cut off from the hub for up to 40 steps.
    public var partitionWeight = 20
    /// A replica process restarted, and the hub process restarted (every file survives).
    public var replicaRestartWeight = 10
    /// The hub process restarted: connections cut, requests it held in memory gone.
    public var hubRestartWeight = 10

    /// Virtual time passing per step: up to this many milliseconds.
    public var maxStepMillis: UInt64 = 2_000
    /// The most bytes one delivery moves; 0: up to everything queued.
    public var maxChunkBytes = 0

    /// Replica clocks: start within ±`replicaClockBoundMillis` of true time and drift by up to
    /// ±`replicaDriftPerStepMillis` a step, staying within that bound. (Kept under half the
    /// 5-minute skew bound, so replicas never refuse each other's changes: that is the replica
    /// skew check, proven by the store tests.)
    public var replicaClockBoundMillis: Int64 = 90_000
    /// How far a replica clock may drift in one step, either way.
    public var replicaDriftPerStepMillis: Int64 = 100
    /// The hub's clock: starts anywhere within ±`hubClockBoundMillis` of true time, drifts by up
    /// to ±`hubDriftPerStepMillis` a step within that bound, and jumps to anywhere in that range in `hubClockJumpPerMille` of
    /// steps (an NTP step, a VM resumed). Beyond the hub's 5-minute skew bound it refuses pushes
    /// (CLOCK_SKEW); the replica tries again later. The heal sets it right.
    public var hubClockBoundMillis: Int64 = 0
    /// How far the hub's clock may drift in one step, either way.
    public var hubDriftPerStepMillis: Int64 = 0
    /// Steps, in thousandths, in which the hub's clock jumps.
    public var hubClockJumpPerMille = 0

    /// Hub storage faults, injected until the heal.
    public var storage = StorageFaults.none

    /// The fixed mix every seed had before mixes were drawn.
    public static let standard = FaultOptions()

    /// A plain mix: the standard weights, no storage faults, exact hub clock.
    public init() {}

    /// The mix of one seed, drawn from its own stream (the run's other choices do not shift it).
    /// About one fault kind in four is switched off in each mix.
    ///
    /// - Parameters:
    ///   - seed: The simulation's seed.
    ///   - storageFaults: Whether hub storage faults are drawn too (otherwise none).
    /// - Returns: The options of that seed.
    public static func drawn(seed: UInt64, storageFaults: Bool = false) -> FaultOptions {
        var random = SeededGenerator(seed: seed).stream("fault-options")
        // Off one time in four, otherwise somewhere in the range.
        func maybe(_ range: ClosedRange<Int>) -> Int { random.index(below: 4) == 0 ? 0 : draw(range) }
        func draw(_ range: ClosedRange<Int>) -> Int { range.lowerBound + random.index(below: range.count) }
        var options = FaultOptions()
        options.editWeight = draw(150...400)
        options.syncWeight = draw(60...180)
        options.deliverWeight = draw(300...700)
        options.backupWeight = maybe(5...40)
        options.restoreWeight = options.backupWeight == 0 ? 0 : maybe(3...20)
        options.cloneWeight = options.backupWeight == 0 ? 0 : maybe(1...8)
        options.cutWeight = maybe(5...50)
        options.partitionWeight = maybe(5...40)
        options.replicaRestartWeight = maybe(2...15)
        options.hubRestartWeight = maybe(2...15)
        options.maxStepMillis = UInt64(draw(1...4) == 1 ? draw(200...1_000) : draw(1_000...8_000))
        options.maxChunkBytes = random.index(below: 4) == 0 ? draw(8...1_024) : 0
        options.replicaClockBoundMillis = Int64(maybe(1_000...120_000))
        options.replicaDriftPerStepMillis = options.replicaClockBoundMillis == 0 ? 0 : Int64(draw(1...400))
        options.hubClockBoundMillis = Int64(maybe(1_000...1_200_000))
        options.hubDriftPerStepMillis = options.hubClockBoundMillis == 0 ? 0 : Int64(draw(0...2_000))
        options.hubClockJumpPerMille = options.hubClockBoundMillis == 0 ? 0 : maybe(2...30)
        if storageFaults { options.storage = .drawn(seed: seed) }
        // Drawn after the others, so the rest of each seed's mix is what it was before these faults.
        options.keylessCopyWeight = maybe(1...6)
        options.equivocateWeight = maybe(1...10)
        // Not with replica restores: a write acknowledged, then lost by a replica restored from its
        // backup and by the hub restored from its own, is lost everywhere (two backups older than it).
        options.hubRestoreWeight = options.restoreWeight == 0 ? maybe(10...40) : 0
        return options
    }

    /// The sum of the event weights.
    var totalWeight: Int {
        editWeight + syncWeight + deliverWeight + learnWeight + backupWeight + restoreWeight + cloneWeight + cutWeight
            + partitionWeight + replicaRestartWeight + hubRestartWeight + keylessCopyWeight + equivocateWeight + hubRestoreWeight
    }

    /// Every option as `name=value`, in the form `init(parsing:)` reads.
    public var description: String {
        Self.fields.map { "\($0.name)=\($0.get(self))" }.joined(separator: " ")
    }

    /// Reads options as `description` prints them, over `base`: names left out keep their value
    /// there, so `cut=0` alone switches cuts off in a seed's own mix.
    ///
    /// - Parameters:
    ///   - text: `name=value` pairs separated by spaces.
    ///   - base: The options the text changes.
    /// - Returns: `nil` when a name is unknown or a value is not a non-negative integer.
    public init?(parsing text: String, over base: FaultOptions = FaultOptions()) {
        self = base
        for pair in text.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let field = Self.fields.first(where: { $0.name == parts[0] }),
                  let value = Int64(parts[1]), value >= 0 else { return nil }
            field.set(&self, value)
        }
    }

    /// The environment variable that overrides options of a replayed seed, in `description`'s form.
    public static let environmentVariable = "CARESYNC_FAULTS"

    struct Field: Sendable {
        let name: String
        let get: @Sendable (FaultOptions) -> Int64
        let set: @Sendable (inout FaultOptions, Int64) -> Void

        init(_ name: String, _ path: WritableKeyPath<FaultOptions, Int> & Sendable) {
            self.name = name
            get = { Int64($0[keyPath: path]) }
            set = { $0[keyPath: path] = Int(clamping: $1) }
        }

        init(_ name: String, _ path: WritableKeyPath<FaultOptions, Int64> & Sendable) {
            self.name = name
            get = { $0[keyPath: path] }
            set = { $0[keyPath: path] = $1 }
        }

        init(_ name: String, _ path: WritableKeyPath<FaultOptions, UInt64> & Sendable) {
            self.name = name
            get = { Int64(clamping: $0[keyPath: path]) }
            set = { $0[keyPath: path] = UInt64($1) }
        }
    }

    static let fields: [Field] = [
        Field("edit", \.editWeight), Field("sync", \.syncWeight), Field("deliver", \.deliverWeight), Field("learn", \.learnWeight),
        Field("backup", \.backupWeight), Field("restore", \.restoreWeight), Field("clone", \.cloneWeight),
        Field("keylessCopy", \.keylessCopyWeight), Field("equivocate", \.equivocateWeight), Field("hubRestore", \.hubRestoreWeight),
        Field("cut", \.cutWeight), Field("partition", \.partitionWeight),
        Field("replicaRestart", \.replicaRestartWeight), Field("hubRestart", \.hubRestartWeight),
        Field("maxStepMillis", \.maxStepMillis), Field("maxChunkBytes", \.maxChunkBytes),
        Field("replicaClockBoundMillis", \.replicaClockBoundMillis), Field("replicaDriftPerStepMillis", \.replicaDriftPerStepMillis),
        Field("hubClockBoundMillis", \.hubClockBoundMillis), Field("hubDriftPerStepMillis", \.hubDriftPerStepMillis),
        Field("hubClockJumpPerMille", \.hubClockJumpPerMille),
        Field("storageSlowPerMille", \.storage.slowPerMille), Field("storageMaxDelayMillis", \.storage.maxDelayMillis),
        Field("storageFailingPerMille", \.storage.failingPerMille), Field("storageLostPerMille", \.storage.lostPerMille),
    ]
}
