import Foundation
import CareRecords
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// The authorisation matrix of issue 10: a replica's relation to a young person Y × an operation
/// → the outcome, with the real care rules (`CareScopeRules`), real care replicas (their writes
/// carry their real scope) and real sessions against a real scoped hub store (in process).
/// One row per cell; every cell runs in a world of its own; a test checks the table covers the
/// whole product of the axes.
///
/// The subject is replica a2 of team A. Y is recorded by b1 (team B, allocated), except in the
/// creator row, where a1 (team A) records it and no team is ever allocated. The hub knows no
/// roles (a replica is one team's device): the axes are the team's relation and, for a
/// restricted Y, whether the replica itself is named.
@Suite("Authorisation matrix: relation to a young person × operation, care rules, real sessions")
struct AuthorisationMatrixTests {
    enum Relation: String, CaseIterable, Sendable {
        /// An open allocation of Y names team A.
        case allocated
        /// Y's involved_teams holds A.
        case involved
        /// A live plan of Y is owned by A.
        case planOwner
        /// A's replica a1 recorded Y, and nothing names a team.
        case creator
        /// A's allocation of Y ended (a2 synced while it was open, then went offline).
        case allocationEnded
        /// Nothing names A.
        case uninvolved
        /// A is allocated and Y is restricted to a2 (and b1); a2 synced before the restriction.
        case onRestriction
        /// A is allocated and Y is restricted to a1 and b1, not a2; a2 synced before the restriction.
        case offRestriction
    }

    enum Operation: String, CaseIterable, Sendable {
        /// a2 syncs: does it hold Y's bundle (b1's note) afterwards?
        case receivesBundle
        /// a2 writes to Y (a note, and its own team into involved_teams): applied and relayed, or quarantined?
        case writes
        /// a2 syncs, Y changes without changing its audience, a2 syncs again: is it told to purge Y, and does it?
        case receivesPurge
        /// Y is restricted; a2 writes restricted = no (stale, or forged): is the restriction lifted?
        case liftsRestriction
    }

    enum Outcome: String, Sendable {
        case receives, receivesNothing, appliedAndRelayed, quarantined, purged, notPurged, restrictionHolds
    }

    struct Cell: Sendable, CustomTestStringConvertible {
        let relation: Relation
        let operation: Operation
        let expected: Outcome
        var testDescription: String { "\(relation.rawValue) × \(operation.rawValue) → \(expected.rawValue)" }
    }

    static let matrix: [Cell] = [
        Cell(relation: .allocated, operation: .receivesBundle, expected: .receives),
        Cell(relation: .allocated, operation: .writes, expected: .appliedAndRelayed),
        Cell(relation: .allocated, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .allocated, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .involved, operation: .receivesBundle, expected: .receives),
        Cell(relation: .involved, operation: .writes, expected: .appliedAndRelayed),
        Cell(relation: .involved, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .involved, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .planOwner, operation: .receivesBundle, expected: .receives),
        Cell(relation: .planOwner, operation: .writes, expected: .appliedAndRelayed),
        Cell(relation: .planOwner, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .planOwner, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .creator, operation: .receivesBundle, expected: .receives),
        Cell(relation: .creator, operation: .writes, expected: .appliedAndRelayed),
        Cell(relation: .creator, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .creator, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .allocationEnded, operation: .receivesBundle, expected: .receivesNothing),
        Cell(relation: .allocationEnded, operation: .writes, expected: .quarantined),
        Cell(relation: .allocationEnded, operation: .receivesPurge, expected: .purged),
        Cell(relation: .allocationEnded, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .uninvolved, operation: .receivesBundle, expected: .receivesNothing),
        Cell(relation: .uninvolved, operation: .writes, expected: .quarantined),
        Cell(relation: .uninvolved, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .uninvolved, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .onRestriction, operation: .receivesBundle, expected: .receives),
        Cell(relation: .onRestriction, operation: .writes, expected: .appliedAndRelayed),
        Cell(relation: .onRestriction, operation: .receivesPurge, expected: .notPurged),
        Cell(relation: .onRestriction, operation: .liftsRestriction, expected: .restrictionHolds),
        Cell(relation: .offRestriction, operation: .receivesBundle, expected: .receivesNothing),
        Cell(relation: .offRestriction, operation: .writes, expected: .quarantined),
        Cell(relation: .offRestriction, operation: .receivesPurge, expected: .purged),
        Cell(relation: .offRestriction, operation: .liftsRestriction, expected: .restrictionHolds),
    ]

    @Test("the matrix covers every relation × operation once")
    func coversTheProduct() {
        let cells = Self.matrix.map { "\($0.relation.rawValue)×\($0.operation.rawValue)" }
        let product = Relation.allCases.flatMap { relation in Operation.allCases.map { "\(relation.rawValue)×\($0.rawValue)" } }
        #expect(Set(cells) == Set(product))
        #expect(cells.count == product.count, "no cell twice")
    }

    @Test("cell", arguments: matrix)
    func cell(_ cell: Cell) throws {
        let world = try ScopedCareWorld(name: "matrix-\(cell.relation.rawValue)-\(cell.operation.rawValue)")
        defer { world.remove() }
        let y = try world.setUp(cell.relation, subjectStale: cell.operation != .receivesBundle && cell.operation != .receivesPurge)
        let outcome: Outcome = switch cell.operation {
        case .receivesBundle: try world.receive(y)
        case .writes: try world.write(y, relation: cell.relation)
        case .receivesPurge: try world.purge(y, relation: cell.relation)
        case .liftsRestriction: try world.lift(y, relation: cell.relation)
        }
        #expect(outcome == cell.expected)
        // Whatever the cell, C's replica never holds anything of Y.
        try world.sync(world.c1)
        #expect(try world.holdsNothing(of: y, at: world.c1))
    }

    @Test("an uninvolved team's forged 'creation' of a young person the hub holds, naming its own team, is quarantined and gets it nothing")
    func forgedCreationQuarantined() throws {
        let world = try ScopedCareWorld(name: "matrix-forged-creation")
        defer { world.remove() }
        let y = try world.setUp(.uninvolved, subjectStale: false)
        try world.forge(y, by: world.c1, team: "C")
        let session = try world.sync(world.c1)
        #expect(session.failure == nil)
        #expect(try world.quarantined(world.c1) > 0)
        #expect(try world.changes(of: y, at: world.c1).allSatisfy { $0.id.replica == world.c1.store.replicaID }, "only its own forgery")
        #expect(try !world.holdsBundle(y, world.c1))
        try world.sync(world.b1)
        #expect(try world.changes(of: y, at: world.b1).allSatisfy { $0.id.replica != world.c1.store.replicaID }, "relayed to no one")
    }

    /// Protocol/scope.md gives plan owners "a live plan that is neither closed nor superseded":
    /// plans are never deleted, so without the status among the hub's deciding columns a closed
    /// plan would keep its owning team in the audience for good.
    @Test("a team whose only relation is a closed plan it owned is owed a purge when the plan closes")
    func closedPlanOwnerLeaves() throws {
        let world = try ScopedCareWorld(name: "matrix-closed-plan")
        defer { world.remove() }
        let y = try world.youngPerson(by: world.b1)
        _ = try world.allocate(y, team: "B", role: .socialWorker, by: world.b1)
        let plan = try world.b1.add("plan", fields: ["yp_id": y, "kind": "care", "title": "Care plan", "owning_team_id": "A"], author: "w")
        try world.sync(world.b1)
        try world.sync(world.a2)
        #expect(try world.holdsBundle(y, world.a2) || !world.holdsNothing(of: y, at: world.a2))
        try world.b1.edit("plan", id: plan, fields: ["status": "closed", "closed_reason": "superseded by pathway plan"], author: "w")
        try world.sync(world.b1)
        let purged = try world.sync(world.a2).summary.purged
        #expect(purged == 1)
    }
}

/// A scoped hub with the care rules and five care replicas: a1, a2, a3 (team A), b1, b2 (team B),
/// c1 (team C), each enrolled by a first sync.
final class ScopedCareWorld {
    let directory: String
    let clock = SimulatedClock(world: 1_750_000_000_000, step: 1)
    let hub: SQLiteHubStore
    let a1, a2, a3, b1, b2, c1: CareReplica
    var now: UInt64 { clock.nowMillis() }

    init(name: String) throws {
        directory = TestFiles.directory(name)
        var random = SeededGenerator(seed: 10)
        hub = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: clock, random: &random,
                                 hubKeyedOrigins: EntitlementCatalogue.hubOrigins, scopeRules: CareScopeRules())
        var replicas: [CareReplica] = []
        for (index, (name, team)) in [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("b2", "B"), ("c1", "C")].enumerated() {
            let box = GeneratorBox(SeededGenerator(seed: 100 + UInt64(index)))
            let replica = try CareReplica.create(at: "\(directory)/\(name).db", name: name, wallClock: clock, random: RandomSource { box.next() },
                                                 replicaID: ReplicaID(high: 0xA000 + UInt64(index), low: UInt64(index + 1)))
            let token = try hub.issueEnrolmentToken(team: team, expiresAtMillis: .max, random: &random)
            let session = try InlineSync.run(replica.store, hub: hub, token: token, nowMillis: clock.nowMillis()).session
            if let failure = session.failure { Issue.record("enrolment of \(name) failed: \(failure)") }
            replicas.append(replica)
        }
        (a1, a2, a3, b1, b2, c1) = (replicas[0], replicas[1], replicas[2], replicas[3], replicas[4], replicas[5])
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    @discardableResult
    func sync(_ replica: CareReplica) throws -> ClientSession {
        let session = try InlineSync.run(replica.store, hub: hub, nowMillis: now).session
        if let failure = session.failure { Issue.record("sync of \(replica.store.replicaID.short) failed: \(failure)") }
        return session
    }

    static let bundleNote = "bundle-note"

    func youngPerson(by replica: CareReplica) throws -> String {
        try replica.add("young_person", fields: ["legal_given_name": "Yan", "legal_family_name": "Test", "date_of_birth": "2010-02-03"],
                        author: "w")
    }

    func note(_ y: String, by replica: CareReplica, body: String) throws {
        try replica.add("case_note", fields: ["yp_id": y, "category": "visit", "occurred_at": "2025-06-01", "body": body], author: "w")
    }

    func allocate(_ y: String, team: String, role: AllocationRole, by replica: CareReplica) throws -> String {
        try replica.add("allocation", fields: ["yp_id": y, "role": role.rawValue, "worker_id": "w-\(team)", "team_id": team, "from_date": "2025-01-02"],
                        author: "w")
    }

    func restrict(_ y: String, to replicas: [CareReplica], by replica: CareReplica) throws {
        for named in replicas {
            try replica.setAdd("young_person", id: y, field: "restricted_to", element: named.store.replicaID.hex, author: "w")
        }
        try replica.edit("young_person", id: y, fields: ["restricted": "yes"], author: "w")
    }

    /// The replica that holds Y in `relation` besides a2's team (b1; a1 in the creator row).
    func holder(_ relation: AuthorisationMatrixTests.Relation) -> CareReplica { relation == .creator ? a1 : b1 }

    /// Records Y and puts team A (and a2) into `relation` with it. With `subjectStale`, a2 syncs
    /// once while A holds Y (where it ever does) and not after the relation is set.
    func setUp(_ relation: AuthorisationMatrixTests.Relation, subjectStale: Bool) throws -> String {
        let holder = holder(relation)
        let y = try youngPerson(by: holder)
        try note(y, by: holder, body: Self.bundleNote)
        if relation != .creator { _ = try allocate(y, team: "B", role: .socialWorker, by: b1) }
        switch relation {
        case .allocated: _ = try allocate(y, team: "A", role: .supervisingSocialWorker, by: b1)
        case .involved: try b1.setAdd("young_person", id: y, field: "involved_teams", element: "A", author: "w")
        case .planOwner: try b1.add("plan", fields: ["yp_id": y, "kind": "care", "title": "Care plan", "owning_team_id": "A"], author: "w")
        case .creator, .uninvolved: break
        case .allocationEnded, .onRestriction, .offRestriction:
            let allocation = try allocate(y, team: "A", role: .supervisingSocialWorker, by: b1)
            try sync(b1)
            try sync(a2)
            switch relation {
            case .allocationEnded: try b1.edit("allocation", id: allocation, fields: ["ended_on": "2025-06-01", "end_reason": "transfer"], author: "w")
            case .onRestriction: try restrict(y, to: [a2, b1], by: b1)
            default: try restrict(y, to: [a1, b1], by: b1)
            }
        }
        try sync(holder)
        if subjectStale, [.allocated, .involved, .planOwner, .creator, .uninvolved].contains(relation) { try sync(a2) }
        return y
    }

    /// The changes of scope Y a replica's log holds.
    func changes(of y: String, at replica: CareReplica) throws -> [Change] {
        try replica.store.changes(notIn: VersionVector()).filter { $0.scope == y }
    }

    /// Whether a replica holds nothing of Y: no change of its scope, no row of it.
    func holdsNothing(of y: String, at replica: CareReplica) throws -> Bool {
        let rows = try replica.store.read { view in
            try CareSchema.kinds.reduce(0) { count, kind in
                try count + view.rows(kind.name).filter { $0["yp_id"]?.textValue == y || kind.name == "young_person" && $0["id"]?.textValue == y }.count
            }
        }
        return try rows == 0 && changes(of: y, at: replica).isEmpty
    }

    func holdsBundle(_ y: String, _ replica: CareReplica) throws -> Bool {
        try replica.list("case_note", where: ["yp_id": y]).contains { $0["body"] == .text(Self.bundleNote) }
    }

    func quarantined(_ replica: CareReplica) throws -> UInt64 {
        try hub.replicaSummaries().first { $0.replica == replica.store.replicaID }?.quarantined ?? 0
    }

    /// Whether the hub stored `replica`'s changes of Y (in its origin's log, quarantined or not).
    func hubHolds(_ y: String, from replica: CareReplica) throws -> Bool {
        let page = try hub.changes(ofOrigin: replica.store.replicaID, after: 0, byteBudget: 1 << 22, maxCount: 10_000)
        return try page.decodeChanges().contains { $0.scope == y }
    }

    // MARK: operations

    func receive(_ y: String) throws -> AuthorisationMatrixTests.Outcome {
        try sync(a2)
        if try holdsBundle(y, a2) { return .receives }
        return try holdsNothing(of: y, at: a2) ? .receivesNothing : .receives
    }

    /// A forged write to Y by a replica that never held it: Y's own row "created" again, its team
    /// added to involved_teams, a note.
    func forge(_ y: String, by replica: CareReplica, team: String) throws {
        try replica.store.write(author: "w") { tx in
            try tx.create("young_person", id: y, values: ["legal_given_name": .text("F"), "legal_family_name": .text("F"),
                                                          "date_of_birth": .text("2010-02-03"), "restricted": .text("no")], scope: y)
            try tx.add("young_person", id: y, column: "involved_teams", element: .text(team))
            try tx.create("case_note", id: "forged-\(team)", values: ["yp_id": .text(y), "category": .text("visit"),
                                                                     "occurred_at": .text("2025-06-01"), "body": .text("forged")], scope: y)
        }
    }

    func write(_ y: String, relation: AuthorisationMatrixTests.Relation) throws -> AuthorisationMatrixTests.Outcome {
        let body = "a2-note"
        if relation == .uninvolved {
            try forge(y, by: a2, team: "A")
        } else {
            try note(y, by: a2, body: body)
            try a2.setAdd("young_person", id: y, field: "involved_teams", element: "A", author: "w")
        }
        try sync(a2)
        let holder = holder(relation)
        try sync(holder)
        try sync(a2)
        let relayed = try holder.list("case_note", where: ["yp_id": y]).contains { [.text(body), .text("forged")].contains($0["body"]) }
        let quarantined = try quarantined(a2)
        #expect(try hubHolds(y, from: a2), "the hub stores the write either way")
        if relayed && quarantined == 0 {
            #expect(try holdsBundle(y, a2))
            return .appliedAndRelayed
        }
        if !relayed && quarantined > 0 {
            // The write got a2's team nothing of Y.
            #expect(try !holdsBundle(y, a2))
            #expect(try changes(of: y, at: a2).allSatisfy { $0.id.replica == a2.store.replicaID })
            return .quarantined
        }
        Issue.record("relayed \(relayed), quarantined \(quarantined)")
        return .receivesNothing
    }

    /// a2 syncs; then the holder changes Y's own row (the hub recomputes Y's audience, unchanged)
    /// and adds a note, and a2 syncs again: purges counted over both.
    func purge(_ y: String, relation: AuthorisationMatrixTests.Relation) throws -> AuthorisationMatrixTests.Outcome {
        var purged = try sync(a2).summary.purged
        let holder = holder(relation)
        try holder.edit("young_person", id: y, fields: ["preferred_name": "Y"], author: "w")
        try note(y, by: holder, body: "later")
        try sync(holder)
        purged += try sync(a2).summary.purged
        #expect(try hub.purgesOwed(replica: a2.store.replicaID, limit: 10).isEmpty, "nothing still owed")
        if purged == 1 {
            #expect(try holdsNothing(of: y, at: a2), "no row or change of Y is left")
            #expect(try hub.replicaSummaries().first { $0.replica == a2.store.replicaID }?.purgesAcknowledged == 1)
            return .purged
        }
        #expect(purged == 0)
        return .notPurged
    }

    func lift(_ y: String, relation: AuthorisationMatrixTests.Relation) throws -> AuthorisationMatrixTests.Outcome {
        let holder = holder(relation)
        if ![.onRestriction, .offRestriction].contains(relation) {
            try restrict(y, to: [holder, a2], by: holder)
            try sync(holder)
        }
        if try a2.list("young_person").contains(where: { $0["id"] == .text(y) }) {
            try a2.edit("young_person", id: y, fields: ["restricted": "no"], author: "w")
        } else {
            try a2.store.write(author: "w") { tx in
                try tx.create("young_person", id: y, values: ["legal_given_name": .text("F"), "legal_family_name": .text("F"),
                                                              "date_of_birth": .text("2010-02-03"), "restricted": .text("no")], scope: y)
                try tx.add("young_person", id: y, column: "restricted_to", element: .text(a2.store.replicaID.hex))
            }
        }
        try sync(a2)
        try sync(holder)
        let probe = relation == .creator ? a3 : b2
        try sync(probe)
        let stillRestricted = try holder.record("young_person", id: y)["restricted"] == .text("yes")
        let probeHoldsNothing = try holdsNothing(of: y, at: probe)
        return stillRestricted && probeHoldsNothing ? .restrictionHolds : .receives
    }
}
