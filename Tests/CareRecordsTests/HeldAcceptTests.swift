import Foundation
import CareRecords
import SyncCore
@testable import SyncStore
import Testing

/// `caresync quarantine accept` makes a held write again through the care rules a command-line
/// edit meets (CareReplica.acceptHeld): a write those rules refuse stays held, and nothing of it
/// is applied.
@Suite("Quarantine review: an accepted held write meets the care rules")
struct HeldAcceptTests {
    static let other = ReplicaID(high: 0xB0B, low: 2)

    /// Another team's replica's write, as the hub holds it for review.
    static func held(_ counter: UInt64, _ table: String, row: String, scope: String, setsLife: Bool = false,
                     _ fields: [String: FieldValue]) -> HeldItem {
        HeldItem(fromReplica: other, reason: .outOfScope, receivedAtMillis: scenarioStart, change: Change(
            id: ChangeID(replica: other, counter: counter), timestamp: HybridTimestamp(physicalMillis: scenarioStart, logical: UInt16(counter)),
            author: "stale-worker", table: table, row: row, scope: scope, causalLength: 1, setsLife: setsLife,
            fields: fields.keys.sorted().map { FieldEdit(column: $0, operation: .assign(fields[$0]!)) }))
    }

    @Test("refused by the rules (a written-once field, a ledger entry, a value out of range): the write stays held; an allowed one is made again")
    func rulesApply() throws {
        let team = Team()
        let replica = try team.replica("a1")
        let y = try replica.add("young_person", fields: ["legal_given_name": "Yan", "legal_family_name": "Test", "date_of_birth": "2010-02-03"], author: "w")
        let note = try replica.add("case_note", fields: ["yp_id": y, "category": "visit", "occurred_at": "2025-06-01", "body": "as recorded"], author: "w")
        try replica.store.receiveHeld([
            Self.held(1, "case_note", row: note, scope: y, ["body": .text("rewritten")]),
            Self.held(2, "ledger_entry", row: "l-1", scope: y, setsLife: true, ["yp_id": .text(y), "amount_pence": .integer(100_000)]),
            Self.held(3, "young_person", row: y, scope: y, ["date_of_birth": .text("1066-10-14")]),
            Self.held(4, "young_person", row: y, scope: y, ["preferred_name": .text("Yanni")]),
        ])
        let items = try replica.store.heldItems().sorted { $0.item.change.id.counter < $1.item.change.id.counter }
        #expect(items.count == 4)
        let refusals: [CareError.Code] = [.immutableField, .hubOwned, .badValue]
        for (item, code) in zip(items, refusals) {
            #expect(careError { try replica.acceptHeld(id: item.id, worker: "morgan") }?.code == code, "held \(item.item.change.table)")
            #expect(try replica.store.heldItem(id: item.id).state == .held, "a refused acceptance leaves the write held")
        }
        #expect(try replica.record("case_note", id: note)["body"] == .text("as recorded"))
        #expect(try replica.record("young_person", id: y)["date_of_birth"] == .text("2010-02-03"))
        #expect(try replica.list("ledger_entry").isEmpty)

        try replica.acceptHeld(id: items[3].id, worker: "morgan")
        #expect(try replica.record("young_person", id: y)["preferred_name"] == .text("Yanni"))
        #expect(try replica.store.heldItem(id: items[3].id).state == .accepting)
    }
}
