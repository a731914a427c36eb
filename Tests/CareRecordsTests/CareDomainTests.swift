import CareRecords
import SyncCore
import SyncEngine
import Testing

/// The typed domain: record views read rows strictly, column names exist in the schema, and
/// money is displayed with its pence.
@Suite("Care domain types")
struct CareDomainTests {
    static func item(capKind: String, pence: Int64?, count: Int64?) -> [String: FieldValue] {
        var row: [String: FieldValue] = ["item_code": .text("X"), "version": .integer(1), "name": .text("x"), "cap_kind": .text(capKind)]
        if let pence { row["cap_amount_pence"] = .integer(pence) }
        if let count { row["cap_count"] = .integer(count) }
        return row
    }

    @Test("a cap of 12,345 pence is shown as £123.45, a count cap as its count, no cap as –")
    func capDescription() throws {
        #expect(try EntitlementItem(row: Self.item(capKind: "amount", pence: 12_345, count: nil)).capDescription == "£123.45")
        #expect(try EntitlementItem(row: Self.item(capKind: "amount_per_period", pence: 5_000, count: nil)).capDescription == "£50.00")
        #expect(try EntitlementItem(row: Self.item(capKind: "count", pence: nil, count: 5)).capDescription == "5")
        #expect(try EntitlementItem(row: Self.item(capKind: "none", pence: nil, count: nil)).capDescription == "–")
    }

    @Test("a view reads a stored row and writes back the same fields")
    func roundTrip() throws {
        let row: [String: FieldValue] = ["id": .text("p1"), "yp_id": .text("y1"), "kind": .text("pathway"), "lineage_id": .text("p0"),
                                         "version_no": .integer(2), "supersedes_id": .text("p0"), "status": .text("submitted")]
        let plan = try Plan(row: row)
        #expect(plan.status == .submitted && !plan.status.isFrozen && plan.versionNumber == 2)
        #expect(plan.fields == row)
        #expect(try Plan(row: plan.fields) == plan)
        let draft = try Plan(row: row.filter { $0.key != "status" })
        #expect(draft.status == .draft, "a plan written before its status was set is a draft")
    }

    @Test("a missing or ill-typed field throws BAD_RECORD naming kind, id and column, never the value")
    func strictRows() throws {
        let base: [String: FieldValue] = ["id": .text("p1"), "yp_id": .text("y1"), "kind": .text("pathway")]
        let cases: [([String: FieldValue], String)] = [
            (base.merging(["status": .integer(7)]) { $1 }, "status"),
            (base.merging(["status": .text("MARKER-NOT-A-STATUS")]) { $1 }, "status"),
            (base.merging(["version_no": .text("MARKER-TWO")]) { $1 }, "version_no"),
            (base.filter { $0.key != "yp_id" }, "yp_id"),
        ]
        for (row, column) in cases {
            let error = try #require(careError { _ = try Plan(row: row) }, "\(column)")
            #expect(error.code == .badRecord && error.recordKind == "plan" && error.recordID == "p1" && error.field == column)
            #expect(!error.message.contains("MARKER"), "the stored value is not echoed")
        }
        #expect(careError { _ = try YoungPerson(row: ["id": .text("y1"), "date_of_birth": .text("14/03/2007")]) }?.code == .badRecord)
    }

    @Test("every typed column name is a field of some record kind, and every status enum is its field's lattice")
    func columnsExist() throws {
        let fields = Set(CareSchema.kinds.flatMap { $0.fields.map(\.name) } + ["id"])
        for column in CareColumn.allCases {
            #expect(fields.contains(column.rawValue), "\(column) (\(column.rawValue)) is no field of the schema")
        }
        let lattices: [(String, StatusLattice)] = [("plan", PlanStatus.lattice), ("goal", GoalStatus.lattice), ("action", ActionStatus.lattice),
                                                   ("review", ReviewStatus.lattice), ("visit", VisitStatus.lattice), ("award", AwardStatus.lattice)]
        for (kind, lattice) in lattices {
            let policy = try #require(CareSchema.kind(kind)?.field("status")?.policy)
            #expect(policy == .monotonic(lattice), "\(kind).status")
        }
    }

    @Test("error codes keep their stable names, and a code matches by value")
    func codes() {
        #expect(CareError.Code.planFrozen.name == "PLAN_FROZEN" && CareError.Code.noDateOfBirth.name == "NO_DOB")
        let error = CareError(.planFrozen, "plan p1 is approved", kind: "plan", id: "p1")
        #expect(error.code == .planFrozen && error.code != .planClosed && "\(error.code)" == "PLAN_FROZEN")
    }

    @Test("record and replica ids come from the injected clock and random source: the same inputs make the same ids")
    func injectedIDs() throws {
        func ids() throws -> (replica: String, records: [String]) {
            let team = Team()
            let replica = try CareReplica.create(at: "\(team.directory)/a.db", name: "a", wallClock: team.clock,
                                                 random: RandomSource { 0x0123_4567_89AB_CDEF })
            let records = try (0..<3).map { _ in
                team.clock.advance(minutes: 1)
                return try replica.add("reminder", fields: ["text": "t"], author: "alex")
            }
            return (replica.store.replicaID.hex, records)
        }
        let first = try ids()
        let second = try ids()
        #expect(first.replica == second.replica && first.records == second.records)
        #expect(Set(first.records).count == 3)
        // UUIDv7: the clock's milliseconds, version 7, then the source's bits.
        let millis = String(scenarioStart + 60_000, radix: 16)
        let padded = String(repeating: "0", count: 12 - millis.count) + millis
        #expect(first.records[0].hasPrefix(padded.prefix(8)), "\(first.records[0])")
        #expect(first.records[0].split(separator: "-")[2].hasPrefix("7"))
    }
}
