import CareRecords
import Foundation
import SyncCore
import SyncTesting
import SyncStore
import Testing

/// Ledger entries arrive from other replicas, so a hostile or broken one can send any integer.
/// Balances are derived from them and must never trap.
@Suite("Hostile ledger entries")
struct HostileLedgerTests {
    let team = Team()

    @Test("extreme amounts and counts from another replica saturate the derived balance instead of crashing")
    func extremeAmounts() throws {
        let replica = try team.replica("a")
        let person = try replica.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun",
                                                               "date_of_birth": "2007-03-14"], author: "alex")
        let hostile = ReplicaID(high: 0xBAD, low: 0xBAD)
        var counter: UInt64 = 0
        var changes: [Change] = []
        func entry(_ kind: String, _ amount: Int64) {
            counter += 1
            let row = "ledger-\(counter)"
            let timestamp = HybridTimestamp(physicalMillis: scenarioStart, logical: UInt16(counter))
            counter += 1
            changes.append(.rowLife(table: "ledger_entry", row: row, id: ChangeID(replica: hostile, counter: counter - 1),
                                    timestamp: timestamp, author: "mallory", causalLength: 1))
            let fields: [(String, FieldValue)] = [("yp_id", .text(person)), ("item_code", .text("driving_lessons")),
                                                  ("kind", .text(kind)), ("amount_pence", .integer(amount)), ("count", .integer(amount))]
            for (column, value) in fields {
                counter += 1
                changes.append(Change(table: "ledger_entry", row: row, column: column, write: FieldWrite(
                    id: ChangeID(replica: hostile, counter: counter), timestamp: timestamp, author: "mallory", operation: .assign(value))))
            }
        }
        entry("commit", .max)
        entry("commit", .max)
        entry("refund", .min)
        entry("adjust", .min)
        entry("adjust", .min)
        _ = try replica.store.apply(changes)
        // Before: `sign * amount` and the running sums trapped (the process died).
        let balances = try replica.balances(person: person)
        #expect(balances.count == 1, "one item and period, folded without overflow")
    }
}
