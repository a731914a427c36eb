import CareRecords
import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// A wall clock fixed at a chosen instant, moved by the test.
final class StepClock: WallClock, @unchecked Sendable {
    // Safety: each test drives its clock from one task; the lock keeps reads well-defined.
    private let lock = NSLock()
    private var millis: UInt64
    init(_ millis: UInt64) { self.millis = millis }
    func nowMillis() -> UInt64 { lock.withLock { millis } }
    func advance(minutes: UInt64) { lock.withLock { millis += minutes * 60_000 } }
}

/// 2025-06-23T09:00:00Z, inside the acceptance scenarios' week.
let scenarioStart: UInt64 = 1_750_669_200_000

struct Team {
    let directory = NSTemporaryDirectory() + "caresync-care-" + UUID().uuidString
    let clock = StepClock(scenarioStart)

    init() { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }

    /// The team's hub key: replicas made here are enrolled under it, as a hub enrols them, so
    /// their bundles verify at each other (each pins it and holds its own certificate).
    static let hubKey = TestSigner.key(ReplicaID(high: 0x7EA, low: 0x4B))

    func replica(_ name: String) throws -> CareReplica {
        let replica = try CareReplica.create(at: "\(directory)/\(name).db", name: name, wallClock: clock, random: .system)
        let store = replica.store
        guard let key = store.signingKey else { throw StoreError(.identityMissing, "a new replica has its identity file") }
        try store.pinHubKey(Self.hubKey.publicKey)
        try store.saveCertificate(Self.hubKey.certificate(replica: store.replicaID, publicKey: key.publicKey, team: "T",
                                                          issuedAtMillis: scenarioStart, attestedThrough: 0))
        return replica
    }

    /// Sends everything `from` has that `to` lacks, as a bundle through bytes.
    func exchange(_ from: CareReplica, _ to: CareReplica) throws {
        let (bundle, _) = try BundleExchange.makeBundle(from: from.store, for: to.store.replicaID)
        _ = try BundleExchange.apply(try ChangeBundle.decode(bundle.encoded()), to: to.store)
    }
}

func careError(_ body: () throws -> Void) -> CareError? {
    do { try body() } catch let error as CareError { return error } catch { return nil }
    return nil
}

@Suite("Care record rules")
struct CareRulesTests {
    let team = Team()

    func person(_ replica: CareReplica, dob: String = "2007-03-14") throws -> String {
        try replica.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun", "date_of_birth": dob],
                        author: "alex")
    }

    @Test("S1: concurrent narrative edits keep both candidates; the date merges by last writer; resolution converges")
    func concurrentGoalEdit() throws {
        let alex = try team.replica("alex")
        let morgan = try team.replica("morgan")
        let ava = try person(alex)
        let plan = try alex.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "PP"], author: "alex")
        let goal = try alex.add("goal", fields: ["plan_id": plan, "statement": "Move to own studio by Sept"], author: "alex")
        try team.exchange(alex, morgan)
        team.clock.advance(minutes: 75)
        try alex.edit("goal", id: goal, fields: ["statement": "By Oct; St Brelade"], author: "alex")
        team.clock.advance(minutes: 25)
        try morgan.edit("goal", id: goal, fields: ["statement": "Sept via Andium Gateway", "target_date": "2025-09-30"], author: "morgan")
        team.clock.advance(minutes: 320)
        try alex.edit("goal", id: goal, fields: ["target_date": "2025-10-31"], author: "alex")
        try team.exchange(alex, morgan)
        try team.exchange(morgan, alex)

        for replica in [alex, morgan] {
            let conflicts = try replica.conflicts()
            #expect(conflicts.count == 1)
            let conflict = try #require(conflicts.first)
            #expect(conflict.field == "statement" && conflict.recordID == goal)
            #expect(Set(conflict.candidates.map(\.author)) == ["alex", "morgan"])
            #expect(Set(conflict.candidates.map(\.replica)) == [alex.store.replicaID, morgan.store.replicaID])
            #expect(try replica.record("goal", id: goal)["target_date"] == .text("2025-10-31"))
        }
        // The plan cannot be submitted while the conflict is open.
        #expect(careError { try morgan.edit("plan", id: plan, fields: ["status": "submitted"], author: "morgan") }?.code == .openConflicts)
        try morgan.resolve("goal", id: goal, field: "statement", value: nil, pick: 2, author: "morgan")
        try team.exchange(morgan, alex)
        #expect(try alex.conflicts().isEmpty && morgan.conflicts().isEmpty)
        #expect(try alex.record("goal", id: goal)["statement"] == .text("Sept via Andium Gateway"))
        #expect(try alex.store.snapshotRows() == morgan.store.snapshotRows())
        let history = try alex.history("goal", id: goal, field: "statement")
        #expect(history.count == 4, "creation, two concurrent edits, the resolution")
        #expect(Set(history.map(\.author)) == ["alex", "morgan"])
    }

    @Test("S4 / I4: an action added offline to a plan closed elsewhere is kept and flagged, and the closure sticks")
    func actionAfterClose() throws {
        let kim = try team.replica("kim")
        let jo = try team.replica("jo")
        let cara = try person(kim, dob: "2009-06-20")
        let plan = try kim.add("plan", fields: ["yp_id": cara, "kind": "care", "title": "CP"], author: "kim")
        let goal = try kim.add("goal", fields: ["plan_id": plan, "statement": "Health"], author: "kim")
        try team.exchange(kim, jo)
        try kim.edit("plan", id: plan, fields: ["status": "closed"], author: "kim")
        team.clock.advance(minutes: 240)
        let action = try jo.add("action", fields: ["goal_id": goal, "description": "arrange dentist registration"], author: "jo")
        try team.exchange(kim, jo)
        try team.exchange(jo, kim)
        for replica in [kim, jo] {
            #expect(try replica.record("plan", id: plan)["status"] == .text("closed"))
            #expect(try replica.record("action", id: action)["description"] == .text("arrange dentist registration"))
            let derived = try replica.describe("action", id: action).derived
            #expect(derived.first { $0.name == "added_after_close" }?.value == "1")
        }
        // Locally, a replica that knows of the closure refuses new work on it.
        #expect(careError { try jo.add("action", fields: ["goal_id": goal, "description": "x"], author: "jo") }?.code == .planClosed)
        // And a closed plan never reopens.
        #expect(throws: StoreError.self) { try jo.edit("plan", id: plan, fields: ["status": "draft"], author: "jo") }
    }

    @Test("I6: approval binds to the content hash; approved plans are frozen; a new version supersedes")
    func approvals() throws {
        let alex = try team.replica("alex")
        let ava = try person(alex)
        let plan = try alex.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "PP", "summary": "v1"], author: "alex")
        #expect(careError { try alex.approve(plan: plan, author: "morgan") }?.code == .notSubmitted)
        try alex.edit("plan", id: plan, fields: ["status": "submitted"], author: "alex")
        #expect(careError { try alex.approve(plan: plan, author: "alex") }?.code == .fourEyes)
        try alex.approve(plan: plan, author: "morgan")
        #expect(try alex.describe("plan", id: plan).derived.first { $0.name == "approval" }?.value == "valid")
        #expect(careError { try alex.edit("plan", id: plan, fields: ["summary": "changed"], author: "alex") }?.code == .planFrozen)
        #expect(careError { try alex.add("goal", fields: ["plan_id": plan, "statement": "g"], author: "alex") }?.code == .planApproved)
        let next = try alex.newVersion(plan: plan, author: "alex")
        try alex.edit("plan", id: next, fields: ["summary": "v2", "status": "submitted"], author: "alex")
        try alex.approve(plan: next, author: "morgan")
        #expect(try alex.record("plan", id: plan)["status"] == .text("superseded"))
        #expect(try alex.record("plan", id: next)["version_no"] == .integer(2))
    }

    @Test("I6 across replicas: a concurrent edit to an approved plan's content invalidates the approval")
    func approvalInvalidatedByConcurrentEdit() throws {
        let alex = try team.replica("alex")
        let morgan = try team.replica("morgan")
        let ava = try person(alex)
        let plan = try alex.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "PP", "summary": "v1"], author: "alex")
        try alex.edit("plan", id: plan, fields: ["status": "submitted"], author: "alex")
        try team.exchange(alex, morgan)
        try morgan.approve(plan: plan, author: "morgan")
        try alex.edit("plan", id: plan, fields: ["title": "PP (edited while approval was offline)"], author: "alex")
        try team.exchange(morgan, alex)
        let approval = try alex.describe("plan", id: plan).derived.first { $0.name == "approval" }?.value
        #expect(approval?.hasPrefix("invalid") == true)
    }

    @Test("I3: age limits on awards and PA allocations, blocked while the DOB is in conflict")
    func ageLimits() throws {
        let alex = try team.replica("alex")
        let ben = try person(alex, dob: "2000-06-10")
        let request = ["yp_id": ben, "item_code": "DRIVING", "requested_count": "2"]
        // Ben turns 25 on 2025-06-10.
        try alex.requestAward(fields: request.merging(["decision_date": "2025-06-09"]) { $1 }, author: "alex")
        #expect(careError { try alex.requestAward(fields: request.merging(["decision_date": "2025-06-10"]) { $1 }, author: "alex") }?.code == .ageLimit)
        let young = try person(alex, dob: "2015-01-01")
        #expect(careError { try alex.add("allocation", fields: ["yp_id": young, "role": "pa", "worker_id": "sam", "from_date": "2025-06-01"], author: "alex") }?.code == .ageLimit)
        // A DOB conflict blocks age-dependent awards.
        let morgan = try team.replica("morgan")
        try team.exchange(alex, morgan)
        try alex.edit("young_person", id: ben, fields: ["date_of_birth": "2000-06-11"], author: "alex")
        try morgan.edit("young_person", id: ben, fields: ["date_of_birth": "2001-06-10"], author: "morgan")
        try team.exchange(morgan, alex)
        #expect(careError { try alex.requestAward(fields: request.merging(["decision_date": "2025-01-01"]) { $1 }, author: "alex") }?.code == .dobConflict)
    }

    @Test("awards: catalogue version in force, required fields, study visits need an approved adult")
    func awards() throws {
        let alex = try team.replica("alex")
        let ava = try person(alex)
        #expect(careError { try alex.requestAward(fields: ["yp_id": ava, "item_code": "STUDY_VISIT", "requested_count": "1", "decision_date": "2025-06-23"], author: "alex") }?.code == .requiredField)
        let visit = try alex.requestAward(fields: ["yp_id": ava, "item_code": "STUDY_VISIT", "requested_count": "1",
                                                   "approved_adult_id": "carer-7", "decision_date": "2025-06-23"], author: "alex")
        #expect(try alex.record("award", id: visit)["status"] == .text("requested"))
        let before = try alex.requestAward(fields: ["yp_id": ava, "item_code": "HOME_SETUP", "requested_amount_pence": "£500.00",
                                                    "decision_date": "2025-06-30"], author: "alex")
        let after = try alex.requestAward(fields: ["yp_id": ava, "item_code": "HOME_SETUP", "requested_amount_pence": "50000",
                                                   "decision_date": "2025-07-01"], author: "alex")
        #expect(try alex.record("award", id: before)["catalogue_version"] == .integer(1))
        #expect(try alex.record("award", id: after)["catalogue_version"] == .integer(2))
        #expect(try alex.record("award", id: before)["requested_amount_pence"] == .integer(50_000))
        #expect(careError { try alex.add("entitlement_item", fields: [:], author: "alex") }?.code == .hubOwned)
    }

    @Test("I8 / S6: two concurrent allocations stay open and show as a conflict until one is ended")
    func allocationConflict() throws {
        let deputy = try team.replica("deputy")
        let kim = try team.replica("kim")
        let dan = try person(deputy, dob: "2013-02-01")
        try team.exchange(deputy, kim)
        let quinn = try deputy.add("allocation", fields: ["yp_id": dan, "role": "social_worker", "worker_id": "quinn", "from_date": "2025-06-16"], author: "deputy")
        _ = try kim.add("allocation", fields: ["yp_id": dan, "role": "social_worker", "worker_id": "riley", "from_date": "2025-06-16"], author: "kim")
        try team.exchange(deputy, kim)
        try team.exchange(kim, deputy)
        let conflict = try #require(try kim.conflicts().first { $0.kind == .allocation })
        #expect(Set(conflict.candidates.map(\.value)) == [.text("quinn"), .text("riley")])
        #expect(try kim.list("allocation", where: ["yp_id": dan]).count == 2, "both stay responsible")
        try kim.edit("allocation", id: quinn, fields: ["ended_on": "2025-06-17", "end_reason": "duplicate"], author: "kim")
        #expect(try kim.conflicts().isEmpty)
    }

    @Test("I10: statutory records are never deleted and finalised content never changes")
    func noDeletion() throws {
        let alex = try team.replica("alex")
        let ava = try person(alex)
        let note = try alex.add("case_note", fields: ["yp_id": ava, "category": "contact", "occurred_at": "2025-06-23", "body": "Phoned"], author: "alex")
        #expect(careError { try alex.delete("case_note", id: note, author: "alex") }?.code == .notDeletable)
        #expect(careError { try alex.edit("case_note", id: note, fields: ["body": "changed"], author: "alex") }?.code == .immutableField)
        let visit = try alex.add("visit", fields: ["yp_id": ava, "kind": "pa", "occurred_at": "2025-06-23", "observations": "ok"], author: "alex")
        try alex.edit("visit", id: visit, fields: ["status": "finalised"], author: "alex")
        #expect(careError { try alex.edit("visit", id: visit, fields: ["observations": "rewritten"], author: "alex") }?.code == .finalised)
        let reminder = try alex.add("reminder", fields: ["text": "call school"], author: "alex")
        try alex.delete("reminder", id: reminder, author: "alex")
        #expect(try alex.list("reminder").isEmpty)
    }

    @Test("bad values get one clear message naming the field")
    func badValues() throws {
        let alex = try team.replica("alex")
        let cases: [([String: String], CareError.Code)] = [
            (["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "2007-02-30"], .badValue),
            (["legal_given_name": "A", "legal_family_name": "B"], .requiredField),
            (["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "2007-01-01", "shoe_size": "9"], .unknownField),
            (["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "2007-01-01", "legal_status": "alien"], .badValue),
            (["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "2099-01-01"], .badValue),
        ]
        for (fields, code) in cases {
            let error = careError { _ = try alex.add("young_person", fields: fields, author: "alex") }
            #expect(error?.code == code, "\(fields.keys.sorted())")
            #expect(error.map { !$0.message.contains("Le Brun") } ?? false)
        }
        #expect(try alex.list("young_person").isEmpty, "nothing half-written")
        #expect(careError { _ = try alex.add("spaceship", fields: [:], author: "alex") }?.code == .unknownKind)
    }
}

extension ReplicaStore {
    func snapshotRows() throws -> String {
        try read { view in
            try view.schema.tables.map { table in
                try view.rows(table.name).map { row in row.keys.sorted().map { "\($0)=\(row[$0]!)" }.joined(separator: ",") }
                    .joined(separator: "\n")
            }.joined(separator: "\n--\n")
        }
    }
}
