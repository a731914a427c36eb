import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The review step of Protocol/session.md (client "reviewing", hub "ready | review"): decisions
/// out, held writes in and stored apart, the listing paged, a held that does not answer refused.
@Suite("Review transcripts (Protocol/session.md, \"reviewing\")")
struct ReviewTranscriptTests {
    typealias F = ClientFixture
    static let other = ReplicaID(high: 6, low: 6)

    static func item(_ counter: UInt64) -> HeldItem {
        HeldItem(fromReplica: other, reason: .outOfScope, receivedAtMillis: F.now, change: F.change(other, counter, text: "held \(counter)"))
    }

    /// A session that has pushed nothing and sent its first review.
    func reviewing(_ fixture: F) -> ClientSession {
        var session = fixture.started()
        _ = session.receive(F.welcome())
        return session
    }

    @Test("reviewing | held with more = 1: items stored as held (not merged), the listing goes on after the last; more = 0: the pull")
    func pagedListing() throws {
        let fixture = try F()
        defer { fixture.remove() }
        var session = reviewing(fixture)
        #expect(session.state == .reviewing(after: nil))
        let first = Self.item(1)
        #expect(session.receive(.held(outcomes: [], more: true, items: [first])) == F.review(after: first.change.id))
        #expect(session.receive(.held(outcomes: [], more: false, items: [Self.item(2)])) == F.pull(0))
        #expect(try fixture.store.heldItems().map(\.item.change.id.counter) == [1, 2])
        #expect(try fixture.store.read { try $0.row("note", id: "h1") } == nil, "held, never merged")
        #expect(session.summary.heldReceived == 2)
    }

    @Test("reviewing | decisions go out with the review; their outcomes are recorded; a held naming other decisions, or items before the cursor, is MALFORMED_MESSAGE (fatal)")
    func decisionsAndRefusals() throws {
        let fixture = try F()
        defer { fixture.remove() }
        try fixture.store.receiveHeld([Self.item(1), Self.item(2)])
        let held = try fixture.store.heldItems()
        try fixture.store.dismissHeld(id: held[0].id, worker: "w", reason: "no")
        let decision = HeldDecision(change: held[0].item.change.id, verdict: .dismiss)
        var session = fixture.started()
        #expect(session.receive(F.welcome()).suffix(2) == F.review([decision])[...])
        #expect(session.receive(.held(outcomes: [HeldOutcome(change: decision.change, code: .recorded)], more: false, items: [Self.item(2)]))
                == F.pull(0))
        #expect(try fixture.store.heldItems().map(\.state) == [.dismissed, .held])
        #expect(session.summary.heldDecisionsRecorded == 1)

        try fixture.store.receiveHeld([Self.item(3)])
        let third = try #require(try fixture.store.heldItems().last)
        try fixture.store.dismissHeld(id: third.id, worker: "w", reason: "no")
        var unanswered = fixture.started()
        _ = unanswered.receive(F.welcome())
        #expect(F.fatal(.malformedMessage, unanswered.receive(.held(outcomes: [], more: false, items: []))))
        var behind = reviewing(try F())
        _ = behind.receive(.held(outcomes: [], more: true, items: [Self.item(5)]))
        #expect(F.fatal(.malformedMessage, behind.receive(.held(outcomes: [], more: false, items: [Self.item(4)]))))
    }
}
