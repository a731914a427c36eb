import CareRecords
import Foundation
import SyncCore
import SyncStore

/// What the scope changes of a team-scoped run (`Simulation.Workload.careTeams`) did.
public struct ScopeCounts: Sendable, Equatable {
    /// Young people recorded.
    public var youngPeople = 0
    /// Transfers between teams A and B: the transferring team's open allocations ended, the other
    /// team allocated.
    public var transfers = 0
    /// Transfers made while another replica of the losing team held edits of that young person it
    /// had not pushed (offline, or not synced since).
    public var transfersWhileOfflineEditing = 0
    /// Allocations (or `involved_teams` entries) bringing the other team in.
    public var teamsBroughtIn = 0
    /// Allocations ended without a new one.
    public var allocationsEnded = 0
    /// Young people restricted to some of their team's replicas.
    public var restrictions = 0
    /// Changes the hub quarantined as written outside their writer's scope.
    public var quarantined: UInt64 = 0
    /// Purges replicas acknowledged.
    public var purgesAcknowledged: UInt64 = 0
    /// Holdings checks made at the end of a session, during the faults.
    public var holdingChecks = 0

    /// No scope changes yet.
    public init() {}
}

/// The care replicas, their teams and the bookkeeping of a team-scoped run.
final class ScopedRun {
    /// Teams by replica index: A and B share young people (allocations, transfers); C never does,
    /// so nothing of A's or B's young people may ever reach it, and nothing of C's leave it.
    static let teams = ["A", "A", "B", "B", "C"]
    static func team(of index: Int) -> String { teams[index % teams.count] }
    static func other(_ team: String) -> String { team == "A" ? "B" : "A" }

    struct Holding: Hashable {
        let scope: String
        let replica: Int
    }

    /// The care replica over each `Simulation.replicas` store.
    var care: [CareReplica] = []
    /// Each young person's group: "C" for C's, "AB" for A's and B's.
    var group: [String: String] = [:]
    /// The marker strings written into each young person's records (names, note bodies).
    var markers: [String: [String]] = [:]
    var markerCount = 0
    /// Scopes each replica was ever admitted to by the hub (its team in the audience, and it on any
    /// restriction), sampled after every append.
    var admittedEver: Set<Holding> = []
    /// Scopes each replica was ever seen holding.
    var heldEver: Set<Holding> = []
    /// Replicas whose session ended since their holdings were last checked.
    var sessionsEnded: Set<Int> = []
    /// Every change a replica wrote locally, as written: each must end in the hub's log.
    var written: [ChangeID: Change] = [:]
    /// The highest own counter recorded in `written`, by origin.
    var recordedUpTo: [ReplicaID: UInt64] = [:]
    /// Each replica's identity when its writes were last recorded (a fork gives it a new one).
    var identities: [Int: ReplicaID] = [:]

    init(replicas: Int) {}

    func marker(for scope: String) -> String {
        markerCount += 1
        let marker = String(format: "mk%06dz", markerCount)
        markers[scope, default: []].append(marker)
        return marker
    }
}

extension Simulation {
    /// The hub's store: with the care scope rules in a team-scoped run.
    static func openHub(path: String, wallClock: any WallClock, random: inout SeededGenerator, scoped: Bool) throws -> SQLiteHubStore {
        guard scoped else { return try SQLiteHubStore(path: path, wallClock: wallClock, random: &random) }
        // At synchronous=NORMAL, to keep a hundred seeds within CI time: the simulated hub crashes
        // are process crashes (its files survive), which WAL at NORMAL survives as at FULL, and a
        // write lost before it was synced is the simulator's own fault (`StorageFaults.lostPerMille`).
        return try SQLiteHubStore(path: path, wallClock: wallClock, random: &random, options: StoreConnectionOptions(synchronous: .normal),
                                  hubKeyedOrigins: EntitlementCatalogue.hubOrigins, scopeRules: CareScopeRules())
    }

    /// Opens replica `index`'s file again (a restart, a restore): a care replica in a team-scoped run.
    func openReplica(_ index: Int, at path: String) throws -> ReplicaStore {
        guard let scoped else { return try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: clocks[index]) }
        let care = try CareReplica.open(at: path, wallClock: clocks[index], random: Self.randomSource(seed: random.next()))
        scoped.care[index] = care
        return care.store
    }

    /// A sync on a good connection: its bytes move at once until the session ends or waits for
    /// the hub's storage (a slow write: the session then goes on with the other connections). So
    /// that, between the faults, syncs complete and a team's replicas come to share young people
    /// (on the slow simulated network alone, few syncs complete before the heal).
    func quickSync(_ replica: Int) throws {
        var moves = 0
        while let connection = connections[replica], moves < 10_000, !(connection.toHub.isEmpty && connection.toClient.isEmpty) {
            try deliver(on: connection, towardsHub: !connection.toHub.isEmpty)
            moves += 1
        }
    }

    // MARK: edits

    /// One random care edit on replica `index`, as its worker would make it; an edit the domain
    /// refuses is skipped. Returns whether something was written.
    func careEdit(_ index: Int, step: Int) throws -> Bool {
        guard let scoped else { return false }
        let care = scoped.care[index]
        let team = ScopedRun.team(of: index)
        let author = "w\(index)"
        let people = try care.list(YoungPerson.kindName).compactMap { $0["id"]?.textValue }
        let roll = random.index(below: 100)
        do {
            if roll < 5 || people.isEmpty {
                let y = try care.add(YoungPerson.kindName, fields: ["legal_given_name": "Sim", "legal_family_name": "Person",
                                                                    "date_of_birth": "2010-02-03"], author: author)
                scoped.group[y] = team == "C" ? "C" : "AB"
                scoped.heldEver.insert(.init(scope: y, replica: index))
                try care.edit(YoungPerson.kindName, id: y, fields: ["preferred_name": scoped.marker(for: y)], author: author)
                report.scopes.youngPeople += 1
            } else {
                let y = random.element(of: people)
                switch roll {
                case ..<50: try note(y, by: care, author: author)
                case ..<58: try care.edit(YoungPerson.kindName, id: y, fields: ["preferred_name": scoped.marker(for: y)], author: author)
                case ..<66 where team != "C":
                    try allocate(y, team: ScopedRun.other(team), by: care, author: author)
                    report.scopes.teamsBroughtIn += 1
                case ..<80 where team != "C": try transfer(y, from: index, by: care, author: author)
                case ..<85:
                    guard let open = try openAllocations(y, at: care).first else { return false }
                    try care.edit("allocation", id: open, fields: ["ended_on": "2025-06-10", "end_reason": "closed"], author: author)
                    report.scopes.allocationsEnded += 1
                case ..<90: try restrict(y, index: index, by: care, author: author)
                case ..<94 where team != "C":
                    try care.setAdd(YoungPerson.kindName, id: y, field: "involved_teams", element: ScopedRun.other(team), author: author)
                    report.scopes.teamsBroughtIn += 1
                default: try note(y, by: care, author: author)
                }
            }
        } catch is CareError {
            return false
        }
        try recordWrites(index)
        return true
    }

    func note(_ y: String, by care: CareReplica, author: String) throws {
        guard let scoped else { return }
        try care.add("case_note", fields: ["yp_id": y, "category": "visit", "occurred_at": "2025-06-01", "body": scoped.marker(for: y)],
                     author: author)
    }

    func allocate(_ y: String, team: String, by care: CareReplica, author: String) throws {
        try care.add("allocation", fields: ["yp_id": y, "role": AllocationRole.socialWorker.rawValue, "worker_id": "w-\(team)",
                                            "team_id": team, "from_date": "2025-01-02"], author: author)
    }

    /// The ids of the young person's allocations with no end, of `team` if given.
    func openAllocations(_ y: String, at care: CareReplica, team: String? = nil) throws -> [String] {
        try care.list("allocation", where: ["yp_id": y]).filter { row in
            (row["ended_on"]?.textValue ?? "").isEmpty && (team == nil || row["team_id"]?.textValue == team)
        }.compactMap { $0["id"]?.textValue }
    }

    /// The replica's team hands the young person on: its open allocations end, the other team's
    /// begins, in one local edit each (pushed together at the next sync).
    func transfer(_ y: String, from index: Int, by care: CareReplica, author: String) throws {
        let team = ScopedRun.team(of: index)
        for allocation in try openAllocations(y, at: care, team: team) {
            try care.edit("allocation", id: allocation, fields: ["ended_on": "2025-06-10", "end_reason": "transfer"], author: author)
        }
        try allocate(y, team: ScopedRun.other(team), by: care, author: author)
        report.scopes.transfers += 1
        for other in replicas.indices where other != index && ScopedRun.team(of: other) == team {
            if try replicas[other].pendingChanges(scope: y) > 0 {
                report.scopes.transfersWhileOfflineEditing += 1
                break
            }
        }
    }

    /// Restricts the young person to some replicas of the writer's team (Mosaic's restriction):
    /// the others are taken out of it.
    func restrict(_ y: String, index: Int, by care: CareReplica, author: String) throws {
        guard try care.record(YoungPerson.kindName, id: y)["restricted"] != .text("yes") else { return }
        let team = ScopedRun.team(of: index)
        let mates = replicas.indices.filter { ScopedRun.team(of: $0) == team }
        var named = mates.filter { _ in random.coin() }
        if named.isEmpty { named = [random.element(of: mates)] }
        for member in named {
            try care.setAdd(YoungPerson.kindName, id: y, field: "restricted_to", element: replicas[member].replicaID.hex, author: author)
        }
        try care.edit(YoungPerson.kindName, id: y, fields: ["restricted": "yes"], author: author)
        report.scopes.restrictions += 1
    }

    /// Records the replica's own changes written since the last record: each is a write that must
    /// not be lost. A counter already recorded (a file restored from a backup writing it again)
    /// keeps the first version, the one the hub may hold.
    func recordWrites(_ index: Int) throws {
        guard let scoped else { return }
        let store = replicas[index]
        let origin = store.replicaID
        if let previous = scoped.identities[index], previous != origin { try forked(index, from: previous) }
        scoped.identities[index] = origin
        var seen = try store.versionVector().counters.mapValues { _ in UInt64(Int64.max) }
        seen[origin] = scoped.recordedUpTo[origin] ?? 0
        for change in try store.changes(notIn: VersionVector(seen)) where change.id.replica == origin {
            if scoped.written[change.id] == nil { scoped.written[change.id] = change }
            scoped.recordedUpTo[origin] = max(scoped.recordedUpTo[origin] ?? 0, change.id.counter)
        }
    }

    /// After replica `index` forked from `old` (Protocol/session.md, "Recovering a restored or
    /// copied replica": a restored file wrote counters the hub holds other versions of): its
    /// writes from the divergent counter on were re-issued under its new identity, the same edits,
    /// authors and timestamps; under the old ids the hub's versions stand. So a recorded write of
    /// the old origin the hub does not hold as written is to be found re-issued (it is recorded
    /// under its new id), not under its old id. One found nowhere stays, and is reported lost.
    func forked(_ index: Int, from old: ReplicaID) throws {
        guard let scoped else { return }
        let hub = try hubChanges()
        let reissued = try replicas[index].changes(notIn: VersionVector()).filter { $0.id.replica == replicas[index].replicaID }
        func sameEdit(_ first: Change, _ second: Change) -> Bool {
            first.table == second.table && first.row == second.row && first.timestamp == second.timestamp
                && first.author == second.author && first.fields.map(\.column) == second.fields.map(\.column)
        }
        scoped.written = scoped.written.filter { id, change in
            id.replica != old || hub[id]?.isSameVersion(as: change) == true || !reissued.contains { sameEdit($0, change) }
        }
    }

    /// After a restore from a backup: the writes the hub does not hold and the restored file lacks
    /// were lost with the file (the user's backup predates them), not by the sync.
    func restored(_ index: Int) throws {
        guard let scoped else { return }
        let store = replicas[index]
        let origin = store.replicaID
        let inFile = try store.changes(notIn: VersionVector()).filter { $0.id.replica == origin }
        let hub = try hubChanges()
        let kept = Set(inFile.map(\.id))
        scoped.written = scoped.written.filter { id, change in
            id.replica != origin || kept.contains(id) || hub[id]?.isSameVersion(as: change) == true
        }
        scoped.recordedUpTo[origin] = inFile.map(\.id.counter).max() ?? 0
    }

    // MARK: checks

    /// After an append: which replicas the hub now admits to each scope (its team in the audience
    /// and, for a restricted scope, itself named).
    func sampleAdmissions() {
        guard let scoped else { return }
        do {
            for (scope, admission) in try hubStore.scopeAdmissions() {
                for (index, replica) in replicas.enumerated() where admission.admits(team: ScopedRun.team(of: index), replica: replica.replicaID) {
                    scoped.admittedEver.insert(.init(scope: scope, replica: index))
                }
            }
        } catch {
            report.violations.append("the hub's scope admissions could not be read: \(error)")
        }
    }

    /// At the end of each session, during the faults (a replica gains others' changes only in a
    /// session): no replica holds a change of a young person of the other group (A and B against
    /// C), nor another origin's change of a young person the hub never admitted it to.
    func checkHoldingsDuringFaults() throws {
        guard let scoped, !scoped.sessionsEnded.isEmpty else { return }
        let ended = scoped.sessionsEnded.sorted()
        scoped.sessionsEnded = []
        for index in ended {
            report.scopes.holdingChecks += 1
            let team = ScopedRun.team(of: index)
            let origin = replicas[index].replicaID
            for change in try replicas[index].changes(notIn: VersionVector()) where !change.scope.isEmpty {
                let holding = ScopedRun.Holding(scope: change.scope, replica: index)
                scoped.heldEver.insert(holding)
                if (scoped.group[change.scope] == "C") != (team == "C") {
                    report.violations.append("step \(currentStep): replica \(index) (team \(team)) holds \(change.id) of young person \(change.scope) of group \(scoped.group[change.scope] ?? "unknown")")
                    return
                }
                if change.id.replica != origin, !scoped.admittedEver.contains(holding) {
                    report.violations.append("step \(currentStep): replica \(index) (team \(team)) holds \(change.id) of young person \(change.scope), never admitted to it")
                    return
                }
            }
        }
    }

    /// At quiescence (Protocol/scope.md): every replica holds exactly the bundles the hub admits
    /// it to, each whole; no write is lost (each is in the hub's log, relayed to every admitted
    /// replica or quarantined and relayed to none); no purge is owed, and a bundle a replica once
    /// held and no longer may leaves no row, change or marker byte in its file or WAL; replicas of
    /// one team hold the same contents of every young person they are both admitted to.
    func checkScopes() throws {
        guard let scoped else { return }
        // A fork since a replica's last edit is noticed here.
        for index in replicas.indices { try recordWrites(index) }
        try checkReachedHub()
        let admissions = try hubStore.scopeAdmissions()
        let quarantined = try hubStore.quarantinedChangeIDs()
        let hub = try hubChanges()
        for (id, change) in scoped.written where hub[id]?.isSameVersion(as: change) != true {
            report.violations.append("write \(id) of young person \(change.scope) is not in the hub's log as written")
            break
        }
        var relayable: [String: Set<ChangeID>] = [:]
        for (id, change) in hub where !change.scope.isEmpty && !quarantined.contains(id) { relayable[change.scope, default: []].insert(id) }
        var contents: [[String: [String]]] = []
        for (index, store) in replicas.enumerated() {
            let team = ScopedRun.team(of: index)
            let origin = store.replicaID
            let byScope = Dictionary(grouping: try store.changes(notIn: VersionVector()).filter { !$0.scope.isEmpty }, by: \.scope)
                .mapValues { Set($0.map(\.id)) }
            let rows = try Self.scopedContents(store)
            contents.append(rows)
            if let owed = try hubStore.purgesOwed(replica: origin, limit: 5).first {
                report.violations.append("replica \(index) (team \(team)) is still owed a purge of \(owed) at quiescence")
            }
            for scope in Set(admissions.keys).union(byScope.keys).union(rows.keys).sorted() {
                let admitted = admissions[scope]?.admits(team: team, replica: origin) ?? false
                let held = byScope[scope] ?? []
                if admitted {
                    if let missing = relayable[scope]?.subtracting(held).min() {
                        report.violations.append("replica \(index) (team \(team)) is admitted to \(scope) but lacks \(missing)")
                    }
                    if let relayed = held.intersection(quarantined).first(where: { $0.replica != origin }) {
                        report.violations.append("replica \(index) (team \(team)) holds quarantined change \(relayed) of \(scope)")
                    }
                } else if !held.isEmpty || rows[scope] != nil {
                    report.violations.append("replica \(index) (team \(team)) holds \(held.count) changes and \(rows[scope]?.count ?? 0) rows of \(scope), outside its scope \(admissions[scope].map { "\($0.teams.sorted())" + ($0.restriction.map { " restricted to \($0.count) replicas" } ?? "") } ?? "(unknown to the hub)") (its last session failure: \(lastFailure[index] ?? "none"))")
                } else if scoped.heldEver.contains(.init(scope: scope, replica: index)), let marker = try leftBehind(scope, index: index) {
                    report.violations.append("replica \(index) (team \(team)) purged \(scope) but marker \(marker) is left in its files")
                }
                if report.violations.count > 8 { return }
            }
        }
        for first in replicas.indices {
            for second in replicas.indices where second > first && ScopedRun.team(of: second) == ScopedRun.team(of: first) {
                for (scope, admission) in admissions.sorted(by: { $0.key < $1.key })
                where admission.admits(team: ScopedRun.team(of: first), replica: replicas[first].replicaID)
                    && admission.admits(team: ScopedRun.team(of: second), replica: replicas[second].replicaID)
                    && contents[first][scope] != contents[second][scope] {
                    report.violations.append("replicas \(first) and \(second) of team \(ScopedRun.team(of: first)) differ on \(scope): "
                        + ReplicaSnapshot.difference((contents[first][scope] ?? []).joined(separator: "\n"),
                                                     (contents[second][scope] ?? []).joined(separator: "\n")).prefix(400))
                    break
                }
            }
        }
        for summary in try hubStore.replicaSummaries() {
            report.scopes.quarantined += summary.quarantined
            report.scopes.purgesAcknowledged += summary.purgesAcknowledged
        }
    }

    /// A marker of `scope` still in replica `index`'s database file or its WAL, if any.
    func leftBehind(_ scope: String, index: Int) throws -> String? {
        guard let markers = scoped?.markers[scope] else { return nil }
        let path = "\(directory)/r\(index).db"
        for file in [path, path + "-wal"] {
            guard let bytes = FileManager.default.contents(atPath: file) else { continue }
            if let marker = markers.first(where: { bytes.range(of: Data($0.utf8)) != nil }) { return marker }
        }
        return nil
    }

    /// A replica's rows and kept merge states, one line each, by the young person they belong to.
    static func scopedContents(_ store: ReplicaStore) throws -> [String: [String]] {
        try store.read { view in
            var lines: [String: [String]] = [:]
            for table in view.schema.tables {
                for row in try view.rows(table.name) {
                    let id = row["id"]?.textValue ?? "?"
                    let scope = table.name == YoungPerson.kindName ? id : row["yp_id"]?.textValue ?? ""
                    guard !scope.isEmpty else { continue }
                    lines[scope, default: []].append("\(table.name) \(id) " + row.keys.sorted().map { "\($0)=\(row[$0]!)" }.joined(separator: " "))
                    for column in table.columns where column.policy.keepsState {
                        if let resolution = try view.resolution(table.name, id: id, column: column.name) {
                            lines[scope, default: []].append("  \(table.name) \(id) \(column.name) candidates=\(resolution.candidates.map(\.id))")
                        }
                    }
                }
            }
            return lines.mapValues { $0.sorted() }
        }
    }
}
