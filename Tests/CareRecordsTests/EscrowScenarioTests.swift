import Foundation
import CareRecords
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// Issue 11: escrow rights (a bounded counter) across partitioned replicas, with real care
/// replicas, real sessions and a real scoped hub store with the care rules (`ScopedCareWorld`).
@Suite("Escrow rights: capped entitlements across offline replicas")
struct EscrowScenarioTests {
    /// A care leaver recorded by b1 and allocated to team B, known to b1 and b2.
    static func careLeaver(_ world: ScopedCareWorld) throws -> String {
        let y = try world.b1.add("young_person", fields: ["legal_given_name": "Cara", "legal_family_name": "Test", "date_of_birth": "2007-03-14"],
                                 author: "w")
        _ = try world.allocate(y, team: "B", role: .personalAdviser, by: world.b1)
        try world.sync(world.b1)
        try world.sync(world.b2)
        return y
    }

    static func visit(_ y: String, by replica: CareReplica, adult: String? = "carer") throws -> AwardOutcome {
        var fields = ["yp_id": y, "item_code": "STUDY_VISIT", "requested_count": "1", "decision_date": "2025-06-15"]
        if let adult { fields["approved_adult_id"] = adult }
        return try replica.request(award: fields, author: "w")
    }

    /// The hub's account for the young person's study visits.
    static func account(_ world: ScopedCareWorld, _ y: String, item: String = "STUDY_VISIT") throws -> HubEscrow.Entry {
        try #require(try HubEscrow.accounts(world.hub, nowMillis: world.now).first { $0.scope == y && $0.account.item == item })
    }

    static func status(_ replica: CareReplica, award: String) throws -> String? {
        try replica.list("award", where: ["id": award]).first?["status"]?.textValue
    }

    @Test("S3: three used, one right each to two offline replicas; both commit, a sixth waits then is refused with CAP_REACHED; a cancellation releases one; committed never exceeds 5")
    func studyVisitsS3() throws {
        let world = try ScopedCareWorld(name: "escrow-s3")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        // Three visits used already: requested with no rights, granted at the sync, committed.
        let first = try world.b1.request(award: ["yp_id": y, "item_code": "STUDY_VISIT", "requested_count": "3", "decision_date": "2025-06-15",
                                                 "approved_adult_id": "carer"], author: "w")
        #expect(first.committed == 0 && first.waiting == 3, "no rights held yet: the request waits")
        #expect(first.note == "0 available locally; 3 needs the hub")
        try world.sync(world.b1)
        #expect(try world.b1.heldRights(person: y).first?.available == 3, "the hub granted the waiting request's rights at the sync")
        #expect(try world.b1.commitAward(first.award, author: "w").committed == 3)
        try world.sync(world.b1)
        #expect(try Self.account(world, y).account.committed == 3)
        #expect(try Self.account(world, y).account.outstanding == 0)
        // Rights: 1 to b1, 1 to b2 (asked for while online).
        try world.b1.requestRights(person: y, item: "STUDY_VISIT", amount: 1, author: "w")
        try world.b2.requestRights(person: y, item: "STUDY_VISIT", amount: 1, author: "w")
        try world.sync(world.b1)
        try world.sync(world.b2)
        #expect(try world.b1.heldRights(person: y).first?.available == 1)
        #expect(try world.b2.heldRights(person: y).first?.available == 1)
        #expect(try Self.account(world, y).account.outstanding == 2)
        // Both offline: each commits against its own right.
        let lee = try Self.visit(y, by: world.b1)
        let jo = try Self.visit(y, by: world.b2)
        #expect(lee.status == "committed" && jo.status == "committed")
        let sixth = try Self.visit(y, by: world.b2)
        #expect(sixth.status == "requested" && sixth.waiting == 1, "beyond the rights held: it waits, never commits")
        #expect(sixth.note == "0 available locally; 1 needs the hub")
        #expect(throws: CareError.self) { try Self.visit(y, by: world.b2, adult: nil) }
        try world.sync(world.b1)
        try world.sync(world.b2)
        let account = try Self.account(world, y)
        #expect(account.account.committed == 5)
        #expect(account.account.committed + account.account.outstanding <= 5)
        #expect(try Self.status(world.b2, award: sixth.award) == "rejected", "the sixth is refused: the cap is reached")
        let flags = try world.b2.flags()
        #expect(flags.contains { $0["code"]?.textValue == "CAP_REACHED" && $0["subject_id"]?.textValue == sixth.award })
        // Lee cancels offline: the release returns the right to Lee's live grant.
        try world.b1.releaseAward(lee.award, reason: "trip cancelled", author: "w")
        #expect(try world.b1.heldRights(person: y).first?.available == 1)
        try world.sync(world.b1)
        try world.sync(world.b2)
        #expect(try Self.account(world, y).account.committed == 4)
        #expect(try Self.status(world.b2, award: sixth.award) == "rejected", "the refused request is not revived")
        let ledger = try world.b2.list("ledger_entry", where: ["award_id": lee.award]).compactMap { $0["kind"]?.textValue }.sorted()
        #expect(ledger == ["commit", "release"])
        // The operator's `hub escrow` reads the same accounts from a read-only open of the hub file.
        let readOnly = try SQLiteHubStore(readingAt: "\(world.directory)/hub.db", scopeRules: CareScopeRules())
        let seen = try HubEscrow.accounts(readOnly, nowMillis: world.now).first { $0.scope == y && $0.account.item == "STUDY_VISIT" }
        #expect(seen?.account == (try Self.account(world, y)).account)
    }

    @Test("rights returned by one replica move to a request waiting on another")
    func returnedRightsMoveToWaitingRequests() throws {
        let world = try ScopedCareWorld(name: "escrow-move")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        try world.b1.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b1)
        #expect(try world.b1.heldRights(person: y).first?.available == 20)
        let waiting = try world.b2.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "5", "decision_date": "2025-06-15"],
                                           author: "w")
        try world.sync(world.b2)
        #expect(try Self.status(world.b2, award: waiting.award) == "requested", "all twenty rights are out: it waits")
        #expect(try world.b2.heldRights(person: y).isEmpty)
        #expect(try world.b1.returnRights(all: true, author: "w") == 1)
        try world.sync(world.b1)
        try world.sync(world.b2)
        #expect(try world.b2.heldRights(person: y).first?.available == 5, "the returned rights went where the request waits")
        #expect(try world.b2.commitAward(waiting.award, author: "w").status == "committed")
        try world.sync(world.b2)
        let account = try Self.account(world, y, item: "DRIVING")
        #expect(account.account.committed == 5 && account.account.outstanding == 0)
    }

    @Test("a request for 25 driving lessons against a cap of 20 is refused with CAP_REACHED, not accepted without a word")
    func overCapRequestRefused() throws {
        let world = try ScopedCareWorld(name: "escrow-25")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        let award = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "25", "decision_date": "2025-06-15"],
                                         author: "w")
        try world.sync(world.b1)
        #expect(try Self.status(world.b1, award: award.award) == "rejected")
        #expect(try world.b1.flags().contains { $0["code"]?.textValue == "CAP_REACHED" })
    }

    @Test("an emergency override beyond the rights held is kept and flagged OVER_CAP for the head of service; the hub's account shows the excess")
    func overrideFlagged() throws {
        let world = try ScopedCareWorld(name: "escrow-override")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        try world.b1.requestRights(person: y, item: "APPRENTICE_BURSARY", amount: 100_000, author: "w")
        try world.sync(world.b1)
        let spent = try world.b1.request(award: ["yp_id": y, "item_code": "APPRENTICE_BURSARY", "requested_amount_pence": "100000",
                                                 "decision_date": "2025-06-15"], author: "w")
        #expect(spent.status == "committed")
        let extra = try world.b2.request(award: ["yp_id": y, "item_code": "APPRENTICE_BURSARY", "requested_amount_pence": "20000",
                                                 "decision_date": "2025-06-15"], author: "w")
        #expect(extra.note == "£0.00 available locally; £200.00 needs the hub")
        #expect(throws: CareError.self) { try world.b2.commitAward(extra.award, author: "w") }
        #expect(try world.b2.commitAward(extra.award, override: "eviction tomorrow", author: "w").committed == 20_000)
        try world.sync(world.b1)
        try world.sync(world.b2)
        let account = try Self.account(world, y, item: "APPRENTICE_BURSARY")
        #expect(account.account.committed == 120_000, "every entry is kept")
        let flags = try world.b2.flags()
        #expect(flags.contains { $0["code"]?.textValue == "OVER_CAP" && $0["routed_to"]?.textValue == "head_of_service" })
        let open = try #require(flags.first { $0["code"]?.textValue == "OVER_CAP" })
        let id = try #require(open["id"]?.textValue)
        try world.sync(world.b1)
        try world.b1.resolveFlag(id, resolution: "exception granted by head of service", author: "morgan")
        try world.sync(world.b1)
        try world.sync(world.b2)
        let resolved = try #require(try world.b2.flags().first { $0["id"]?.textValue == id })
        #expect(resolved["status"]?.textValue == "resolved" && resolved["resolved_by"]?.textValue == "morgan")
    }

    @Test("an award for a young person 25 on the decision date by the hub's date of birth is flagged ELIGIBILITY_LOST, also when the date was corrected at the hub while the replica was offline")
    func eligibilityLost() throws {
        let world = try ScopedCareWorld(name: "escrow-age")
        defer { world.remove() }
        let y = try world.b1.add("young_person", fields: ["legal_given_name": "Ben", "legal_family_name": "Test", "date_of_birth": "2001-06-20"],
                                 author: "w")
        _ = try world.allocate(y, team: "B", role: .personalAdviser, by: world.b1)
        try world.sync(world.b1)
        try world.sync(world.b2)
        // b2 corrects the date of birth (he turned 25 on 2025-06-10) while b1 is offline.
        try world.b2.edit("young_person", id: y, fields: ["date_of_birth": "2000-06-10"], author: "w")
        try world.sync(world.b2)
        let award = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "2", "decision_date": "2025-06-14"],
                                         author: "w")
        try world.sync(world.b1)
        let flags = try world.b1.flags()
        #expect(flags.contains { $0["code"]?.textValue == "ELIGIBILITY_LOST" && $0["subject_id"]?.textValue == award.award })
    }

    @Test("a decision dated before the replica's last contact with the hub is flagged CLOCK_SUSPECT")
    func clockSuspect() throws {
        let world = try ScopedCareWorld(name: "escrow-clock")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        let award = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "1", "decision_date": "2025-06-01"],
                                         author: "w")
        try world.sync(world.b1)
        #expect(try world.b1.flags().contains { $0["code"]?.textValue == "CLOCK_SUSPECT" && $0["subject_id"]?.textValue == award.award })
        let fine = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "1", "decision_date": "2025-06-15"],
                                        author: "w")
        try world.sync(world.b1)
        #expect(!(try world.b1.flags().contains { $0["code"]?.textValue == "CLOCK_SUSPECT" && $0["subject_id"]?.textValue == fine.award }))
    }

    @Test("S4 at the hub: an action added offline to a plan closed elsewhere is kept and flagged ADDED_AFTER_CLOSE for the plan's owner; one the closer added before closing is not")
    func addedAfterCloseAtHub() throws {
        let world = try ScopedCareWorld(name: "flags-s4")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        let plan = try world.b1.add("plan", fields: ["yp_id": y, "kind": "care", "title": "CP"], author: "kim")
        let goal = try world.b1.add("goal", fields: ["plan_id": plan, "statement": "Health"], author: "kim")
        try world.sync(world.b1)
        try world.sync(world.b2)
        // Kim (b1, online) adds an action and then closes the plan; Jo (b2, offline) adds one.
        let before = try world.b1.add("action", fields: ["goal_id": goal, "description": "book optician"], author: "kim")
        try world.b1.edit("plan", id: plan, fields: ["status": "closed", "closed_reason": "superseded by pathway plan"], author: "kim")
        try world.sync(world.b1)
        let late = try world.b2.add("action", fields: ["goal_id": goal, "description": "arrange dentist registration"], author: "jo")
        try world.sync(world.b2)
        try world.sync(world.b1)
        for replica in [world.b1, world.b2] {
            #expect(try replica.record("plan", id: plan)["status"] == .text("closed"))
            #expect(try replica.record("action", id: late)["description"] == .text("arrange dentist registration"), "kept")
            let flags = try replica.flags().filter { $0["code"]?.textValue == "ADDED_AFTER_CLOSE" }
            #expect(flags.map { $0["subject_id"]?.textValue } == [late], "flagged once, for the late action only")
            #expect(flags.first?["routed_to"]?.textValue == "plan_owner")
            #expect(try replica.describe("action", id: late).derived.first { $0.name == "added_after_close" }?.value == "1")
            #expect(try replica.describe("action", id: before).derived.first { $0.name == "added_after_close" }?.value == "0")
        }
    }

    @Test("S6 at the hub: two managers allocate different social workers offline; ALLOCATION_CONFLICT is stored, both stay allocated, and the hub resolves the flag when one allocation is ended")
    func allocationConflictAtHub() throws {
        let world = try ScopedCareWorld(name: "flags-s6")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        let quinn = try world.b1.add("allocation", fields: ["yp_id": y, "role": "social_worker", "worker_id": "quinn", "team_id": "B",
                                                            "from_date": "2025-06-16"], author: "deputy")
        let riley = try world.b2.add("allocation", fields: ["yp_id": y, "role": "social_worker", "worker_id": "riley", "team_id": "B",
                                                            "from_date": "2025-06-16"], author: "kim")
        try world.sync(world.b1)
        try world.sync(world.b2)
        try world.sync(world.b1)
        for replica in [world.b1, world.b2] {
            let flags = try replica.flags().filter { $0["code"]?.textValue == "ALLOCATION_CONFLICT" }
            #expect(flags.count == 1 && flags.first?["status"]?.textValue == "open")
            #expect(try replica.list("allocation", where: ["yp_id": y]).filter { $0["ended_on"]?.isNull ?? true }.count == 3,
                    "both social workers (and the PA) stay allocated")
        }
        try world.b2.edit("allocation", id: quinn, fields: ["ended_on": "2025-06-17", "end_reason": "Riley keeps the case"], author: "kim")
        try world.sync(world.b2)
        try world.sync(world.b1)
        let resolved = try #require(try world.b1.flags().first { $0["code"]?.textValue == "ALLOCATION_CONFLICT" })
        #expect(resolved["status"]?.textValue == "resolved" && resolved["resolved_by"]?.textValue == "hub")
        #expect(try world.b1.list("allocation", where: ["id": riley]).first?["ended_on"]?.isNull ?? true)
    }

    @Test("an offline edit of a goal of a plan approved meanwhile is kept and flagged EDITED_AFTER_APPROVAL (re-approval required); an edit before the approval is not")
    func editedAfterApproval() throws {
        let world = try ScopedCareWorld(name: "flags-approval")
        defer { world.remove() }
        let y = try Self.careLeaver(world)
        let plan = try world.b1.add("plan", fields: ["yp_id": y, "kind": "pathway", "title": "PP"], author: "alex")
        let goal = try world.b1.add("goal", fields: ["plan_id": plan, "statement": "Move to own studio by Sept"], author: "alex")
        try world.b1.edit("plan", id: plan, fields: ["status": "submitted"], author: "alex")
        try world.sync(world.b1)
        try world.sync(world.b2)
        try world.b2.approve(plan: plan, author: "morgan")
        try world.sync(world.b2)
        // Alex, offline, has not seen the approval: the edit is allowed on the submitted plan.
        try world.b1.edit("goal", id: goal, fields: ["statement": "Move to own studio by Oct"], author: "alex")
        try world.sync(world.b1)
        try world.sync(world.b2)
        for replica in [world.b1, world.b2] {
            let flags = try replica.flags().filter { $0["code"]?.textValue == "EDITED_AFTER_APPROVAL" }
            #expect(flags.count == 1 && flags.first?["subject_id"]?.textValue == goal && flags.first?["routed_to"]?.textValue == "team_manager")
            #expect(flags.first?["detail"]?.textValue?.contains("re-approval required") == true)
        }
    }
}
