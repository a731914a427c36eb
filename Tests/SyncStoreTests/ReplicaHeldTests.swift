import Foundation
import SyncCore
@testable import SyncStore
import SyncTesting
import Testing

/// The replica's side of Protocol/scope.md, "Quarantine review": held writes are stored apart and
/// never merged; an accept re-authors the edit as the reviewer's own change in the same
/// transaction as the decision, which survives a reopen until the hub records it.
@Suite("Replica store: writes held for review")
struct ReplicaHeldTests {
    let purge = PurgeTests()
    static let other = ReplicaID(high: 7, low: 7)

    /// Another team's replica's edit of the note, as the hub holds it.
    static func heldEdit(_ counter: UInt64, note: String, text: String, scope: String = "yp-1") -> HeldItem {
        HeldItem(fromReplica: other, reason: .outOfScope, receivedAtMillis: 1_750_000_000_000, change: Change(
            id: ChangeID(replica: other, counter: counter), timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000, logical: UInt16(counter)),
            author: "stale-worker", table: "note", row: note, scope: scope, causalLength: 1, setsLife: false,
            fields: [FieldEdit(column: "text", operation: .assign(.text(text)))]))
    }

    func store() throws -> ReplicaStore {
        let store = try purge.make("reviewer", id: 1)
        try store.write(author: "ann") { try $0.create("note", id: "n1", values: ["text": .text("as recorded")], scope: "yp-1") }
        return store
    }

    func text(_ store: ReplicaStore) throws -> FieldValue? { try store.read { try $0.row("note", id: "n1")?["text"] } }

    @Test("a held write is stored apart, never merged; accepting it makes the edit again as the reviewer's change, and the decision survives a reopen until the hub records it")
    func acceptReauthors() throws {
        let store = try store()
        let before = try store.versionVector()
        try store.receiveHeld([Self.heldEdit(1, note: "n1", text: "late edit")])
        try store.receiveHeld([Self.heldEdit(1, note: "n1", text: "late edit")])
        #expect(try text(store) == .text("as recorded"))
        #expect(try store.versionVector() == before, "nothing of the held change is in the log")
        let held = try #require(try store.heldItems().first)
        #expect(try store.heldItems().count == 1)
        #expect(held.state == .held && held.item.change.author == "stale-worker")

        let made = try store.acceptHeld(id: held.id, worker: "morgan")
        #expect(made.replica == store.replicaID)
        #expect(try text(store) == .text("late edit"))
        #expect(try store.history(table: "note", row: "n1").last.map { "\($0.author) \($0.change.replica == store.replicaID)" } == "morgan true")
        #expect(PurgeTests.storeCode { _ = try store.acceptHeld(id: held.id, worker: "morgan") } == .heldDecided)
        #expect(PurgeTests.storeCode { _ = try store.acceptHeld(id: 999, worker: "morgan") } == .heldNotFound)
        let path = store.path
        try store.close()

        // A crash between the decision and the sync: the decision is still owed to the hub.
        let reopened = try ReplicaStore.open(at: path, schema: SimulationSchema.v1, wallClock: purge.clock)
        #expect(try reopened.heldDecisionsToSend(limit: 10) == [HeldDecision(change: held.item.change.id, verdict: .accept)])
        #expect(try reopened.heldItem(id: held.id).acceptedAs == made)
        try reopened.recordHeldOutcomes([HeldOutcome(change: held.item.change.id, code: .recorded)])
        #expect(try reopened.heldDecisionsToSend(limit: 10).isEmpty)
        #expect(try reopened.heldItem(id: held.id).state == .accepted)
        try reopened.close()
    }

    @Test("a dismissal keeps its reason here and applies nothing; a refused decision drops the item; a whole listing drops undecided items it no longer names")
    func dismissAndListing() throws {
        let store = try store()
        try store.receiveHeld([Self.heldEdit(1, note: "n1", text: "first"), Self.heldEdit(2, note: "n1", text: "second"),
                               Self.heldEdit(3, note: "n1", text: "third")])
        let items = try store.heldItems()
        try store.dismissHeld(id: items[0].id, worker: "morgan", reason: "duplicate")
        try store.dismissHeld(id: items[1].id, worker: "morgan", reason: "wrong child")
        #expect(try text(store) == .text("as recorded"))
        #expect(try store.heldItem(id: items[0].id).reason == "duplicate")
        #expect(try store.heldDecisionsToSend(limit: 10).map(\.verdict) == [.dismiss, .dismiss])
        try store.recordHeldOutcomes([HeldOutcome(change: items[0].item.change.id, code: .resolvedAlready),
                                      HeldOutcome(change: items[1].item.change.id, code: .refused)])
        #expect(try store.heldItems().map(\.state) == [.dismissed, .held])
        // The hub lists nothing now: the undecided one goes, the decided one stays with its reason.
        try store.keepOnlyHeld([])
        #expect(try store.heldItems().map(\.id) == [items[0].id])
        try store.close()
    }
}
