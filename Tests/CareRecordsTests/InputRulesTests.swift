import CareRecords
import Foundation
import SyncCore
import SyncStore
import Testing

/// Bad input changes nothing and gets a clear error (issue 6, item 9): worker ids, four-eyes over
/// every content author, one validation path for add and edit, typed conflict picks.
@Suite("Care input rules")
struct InputRulesTests {
    let team = Team()

    func person(_ replica: CareReplica, dob: String = "2007-03-14", extra: [String: String] = [:]) throws -> String {
        try replica.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun", "date_of_birth": dob]
                            .merging(extra) { $1 }, author: "alex")
    }

    @Test("worker ids: empty, blank, control characters and over-long ids are refused; case and spaces are one worker")
    func workerIDs() throws {
        let alex = try team.replica("alex")
        let before = try alex.store.status().localChanges
        let bad = ["", "   ", "\n", "al\nex", "al ex", "al\u{7}ex", "al\u{200B}ex", String(repeating: "a", count: WorkerID.maxLength + 1)]
        for worker in bad {
            #expect(careError { _ = try alex.add("reminder", fields: ["text": "t"], author: worker) }?.code == .badWorker,
                    "\(worker.debugDescription) is refused")
        }
        #expect(try alex.store.status().localChanges == before, "nothing written by a refused worker id")
        for worker in ["ALEX", " alex", "alex ", "\talex\n"] {
            let id = try alex.add("reminder", fields: ["text": "t"], author: worker)
            #expect(try alex.record("reminder", id: id)["owner"] == .text("alex"), "\(worker.debugDescription) is stored as alex")
            #expect(try alex.history("reminder", id: id).allSatisfy { $0.author == "alex" })
        }
        #expect(try WorkerID.canonical(String(repeating: "a", count: WorkerID.maxLength)).count == WorkerID.maxLength)
    }

    @Test("four-eyes: the plan's author in any spelling, and anyone who wrote its content, cannot approve it")
    func fourEyes() throws {
        let alex = try team.replica("alex")
        let ava = try person(alex)
        let plan = try alex.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "PP"], author: "alex")
        let goal = try alex.add("goal", fields: ["plan_id": plan, "statement": "g"], author: "alex")
        let action = try alex.add("action", fields: ["goal_id": goal, "description": "d"], author: "alex")
        try alex.edit("plan", id: plan, fields: ["summary": "by morgan"], author: "morgan")
        try alex.edit("goal", id: goal, fields: ["success_measure": "by sam"], author: "sam")
        try alex.edit("action", id: action, fields: ["due_date": "2025-07-01"], author: "quinn")
        _ = try alex.add("goal", fields: ["plan_id": plan, "statement": "added by riley"], author: "riley")
        try alex.edit("plan", id: plan, fields: ["status": "submitted"], author: "jordan")
        for worker in ["alex", "ALEX", " alex", "alex ", "morgan", "Sam", "quinn", "riley"] {
            #expect(careError { try alex.approve(plan: plan, author: worker) }?.code == .fourEyes, "\(worker.debugDescription) wrote content")
        }
        #expect(try alex.record("plan", id: plan)["status"] == .text("submitted"), "no refused approval changed the plan")
        #expect(try alex.list("approval").isEmpty)
        // Submitting is not content: a manager who only moved the status may approve.
        try alex.approve(plan: plan, author: "Jordan")
        #expect(try alex.list("approval").first?["approver_id"] == .text("jordan"))
    }

    @Test("edit refuses what add refuses: future birth dates, implausible years, negative counts, cleared required fields")
    func oneValidationPath() throws {
        let alex = try team.replica("alex")
        let ava = try person(alex)
        let visit = try alex.add("visit", fields: ["yp_id": ava, "kind": "pa", "occurred_at": "2025-06-20", "seen_alone": "1"],
                                 author: "alex")
        let plan = try alex.add("plan", fields: ["yp_id": ava, "kind": "pathway", "title": "PP"], author: "alex")
        let goal = try alex.add("goal", fields: ["plan_id": plan, "statement": "g"], author: "alex")
        let snapshot = try alex.store.snapshotRows()
        let edits: [(String, String, [String: String], CareError.Code)] = [
            ("young_person", ava, ["date_of_birth": "2026-01-01"], .badValue),
            ("young_person", ava, ["date_of_birth": "0000-01-01"], .badValue),
            ("young_person", ava, ["date_of_birth": "9999-12-31"], .badValue),
            ("young_person", ava, ["date_of_death": "2030-01-01"], .badValue),
            ("young_person", ava, ["legal_given_name": ""], .requiredField),
            ("young_person", ava, ["legal_family_name": "   "], .requiredField),
            ("young_person", ava, ["date_of_birth": ""], .requiredField),
            ("visit", visit, ["seen_alone": "-5"], .badValue),
            ("visit", visit, ["seen_alone": "2"], .badValue),
            ("visit", visit, ["occurred_at": "1899-12-31"], .badValue),
            ("goal", goal, ["statement": ""], .requiredField),
            ("goal", goal, ["target_date": "2101-01-01"], .badValue),
            ("plan", plan, ["title": " "], .requiredField),
        ]
        for (kind, id, fields, code) in edits {
            let error = careError { try alex.edit(kind, id: id, fields: fields, author: "alex") }
            #expect(error?.code == code, "edit \(kind) \(fields)")
        }
        let adds: [(String, [String: String])] = [
            ("young_person", ["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "0000-01-01"]),
            ("young_person", ["legal_given_name": "A", "legal_family_name": "B", "date_of_birth": "9999-01-01"]),
            ("young_person", ["legal_given_name": " ", "legal_family_name": "B", "date_of_birth": "2007-01-01"]),
            ("visit", ["yp_id": ava, "kind": "pa", "occurred_at": "2025-06-20", "seen_alone": "-5"]),
            ("reminder", ["text": "t", "due_on": "9999-01-01"]),
        ]
        for (kind, fields) in adds {
            #expect(careError { _ = try alex.add(kind, fields: fields, author: "alex") } != nil, "add \(kind) \(fields)")
        }
        #expect(careError {
            _ = try alex.requestAward(fields: ["yp_id": ava, "item_code": "DRIVING", "requested_count": "-1",
                                               "decision_date": "2025-06-23"], author: "alex")
        }?.code == .badValue)
        #expect(try alex.store.snapshotRows() == snapshot, "nothing stored changed")
        // The edges of the window are accepted; clearing an optional field still works.
        try alex.edit("goal", id: goal, fields: ["target_date": "2100-12-31"], author: "alex")
        try alex.edit("visit", id: visit, fields: ["seen_alone": "0", "location_kind": ""], author: "alex")
        try alex.edit("young_person", id: ava, fields: ["date_of_birth": "2025-06-23"], author: "alex")
    }

    /// Two replicas edit one field of a record concurrently, one setting `value`, the other
    /// clearing it; returns the replica that holds the conflict and the record's id.
    func clearedConflict(_ prefix: String, kind: String, field: String, value: String,
                         record: (CareReplica) throws -> String) throws -> (CareReplica, String) {
        let alex = try team.replica(prefix + "alex")
        let morgan = try team.replica(prefix + "morgan")
        let id = try record(alex)
        try team.exchange(alex, morgan)
        try alex.edit(kind, id: id, fields: [field: value], author: "alex")
        team.clock.advance(minutes: 5)
        try morgan.edit(kind, id: id, fields: [field: ""], author: "morgan")
        try team.exchange(morgan, alex)
        return (alex, id)
    }

    func deathDateConflict(_ prefix: String) throws -> (CareReplica, String) {
        try clearedConflict(prefix, kind: "young_person", field: "date_of_death", value: "2025-02-01") {
            try person($0, extra: ["date_of_death": "2025-01-01"])
        }
    }

    /// Resolves by picking the candidate that cleared the field.
    func pickCleared(_ replica: CareReplica, _ kind: String, _ id: String, _ field: String) throws {
        let conflict = try #require(try replica.conflicts().first { $0.recordID == id && $0.field == field })
        let cleared = try #require(conflict.candidates.firstIndex { $0.value.isNull })
        try replica.resolve(kind, id: id, field: field, value: nil, pick: cleared + 1, author: "alex")
    }

    @Test("resolve --pick of a candidate that cleared a date field clears it (not the text \"null\")")
    func pickClearedCandidate() throws {
        let (alex, ava) = try deathDateConflict("")
        try pickCleared(alex, "young_person", ava, "date_of_death")
        #expect(try alex.record("young_person", id: ava)["date_of_death"] == .null)
        #expect(try alex.conflicts().isEmpty)
    }

    @Test("resolve --pick of a cleared narrative clears it; resolve --value goes through the edit checks")
    func pickClearedNarrative() throws {
        let (alex, plan) = try clearedConflict("", kind: "plan", field: "summary", value: "alex's") { replica in
            try replica.add("plan", fields: ["yp_id": try person(replica), "kind": "pathway", "title": "PP", "summary": "s"],
                            author: "alex")
        }
        try pickCleared(alex, "plan", plan, "summary")
        #expect(try alex.record("plan", id: plan)["summary"] == .null, "cleared, not \"null\"")

        let (other, yp) = try deathDateConflict("dates-")
        #expect(careError {
            try other.resolve("young_person", id: yp, field: "date_of_death", value: "2999-01-01", pick: nil, author: "alex")
        }?.code == .badValue)
        #expect(try other.conflicts().count == 1, "a refused resolution leaves the conflict open")
    }
}
