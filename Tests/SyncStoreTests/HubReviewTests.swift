import Foundation
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// The hub store's part of Protocol/scope.md, "Quarantine review": a quarantined write is held for
/// the replicas of its scope's audience now (a restricted scope's restriction only), decisions
/// resolve it once, audited, and a decision from outside is refused and audited.
@Suite("Hub store: quarantine review by the owning team")
struct HubReviewTests {
    let scope = HubScopeTests()
    static let east1 = ReplicaID(high: 0x31, low: 4)

    /// The scope tests' hub, with east1 of a third team enrolled too.
    func hub() throws -> SQLiteHubStore {
        let hub = try scope.hub()
        var tokens = SeededGenerator(seed: 9)
        let token = try hub.issueEnrolmentToken(team: "east", expiresAtMillis: .max, random: &tokens)
        _ = try hub.redeemEnrolmentToken(token, replica: Self.east1, deviceKey: TestSigner.publicKey(Self.east1), nowMillis: 1, random: &tokens)
        return hub
    }

    /// South creates P2 and hands it to north; south's stale note on P2 is then quarantined.
    func transferred(_ hub: SQLiteHubStore) throws -> Change {
        var south = TestSigner()
        return try transferred(hub, signer: &south)
    }

    func transferred(_ hub: SQLiteHubStore, signer south: inout TestSigner) throws -> Change {
        try scope.push(hub, [HubScopeTests.change(HubScopeTests.south1, 1, table: "person", row: "P2", scope: "P2"),
                             HubScopeTests.change(HubScopeTests.south1, 2, table: "grant", row: "g1", column: "team", value: .text("north"), scope: "P2")],
                       from: HubScopeTests.south1, signer: &south)
        let stale = HubScopeTests.change(HubScopeTests.south1, 3, table: "note", row: "n3", value: .text("late note"), scope: "P2")
        #expect(try scope.push(hub, [stale], from: HubScopeTests.south1, signer: &south).quarantined == 1)
        return stale
    }

    func held(_ hub: SQLiteHubStore, _ replica: ReplicaID) throws -> [ChangeID] {
        try hub.heldItems(for: replica, after: nil, byteBudget: 1 << 20, maxCount: 100).items.map(\.change.id)
    }

    @Test("a write quarantined on a scope is held for every replica of its audience's team, whole, and for no other team's replica")
    func heldForTheAudienceOnly() throws {
        let hub = try hub()
        let stale = try transferred(hub)
        let page = try hub.heldItems(for: HubScopeTests.north2, after: nil, byteBudget: 1 << 20, maxCount: 100)
        #expect(page.items == [HeldItem(fromReplica: HubScopeTests.south1, reason: .outOfScope, receivedAtMillis: 1_750_000_000_000, change: stale)])
        #expect(!page.more)
        #expect(try held(hub, HubScopeTests.north1) == [stale.id])
        #expect(try held(hub, HubScopeTests.south1).isEmpty)
        #expect(try held(hub, Self.east1).isEmpty)
        // The audience moves to east: the write is held for east's replica now, and north's no more.
        var north = TestSigner()
        try scope.push(hub, [HubScopeTests.change(HubScopeTests.north1, 1, table: "grant", row: "g2", column: "team", value: .text("east"), scope: "P2"),
                             HubScopeTests.change(HubScopeTests.north1, 2, table: "grant", row: "g1", column: "ended", value: .text("2025-07-01"), scope: "P2")],
                       from: HubScopeTests.north1, signer: &north)
        #expect(try held(hub, Self.east1) == [stale.id])
        #expect(try held(hub, HubScopeTests.north2).isEmpty)
    }

    @Test("a write quarantined on a restricted scope is held only for the replicas on its restriction; the reason says RESTRICTED")
    func restrictedHeldForTheRestrictionOnly() throws {
        let hub = try hub()
        var north = TestSigner()
        var north2 = TestSigner()
        try scope.push(hub, [HubScopeTests.change(HubScopeTests.north1, 1, table: "person", row: "P1", scope: "P1"),
                             HubScopeTests.person(HubScopeTests.north1, 2, "P1", "allowed", .add(.text(HubScopeTests.north1.hex))),
                             HubScopeTests.person(HubScopeTests.north1, 3, "P1", "restricted", .assign(.text("yes")))],
                       from: HubScopeTests.north1, signer: &north)
        let stale = HubScopeTests.change(HubScopeTests.north2, 1, table: "note", row: "n2", scope: "P1")
        #expect(try scope.push(hub, [stale], from: HubScopeTests.north2, signer: &north2).quarantined == 1)
        let page = try hub.heldItems(for: HubScopeTests.north1, after: nil, byteBudget: 1 << 20, maxCount: 100)
        #expect(page.items.map(\.change.id) == [stale.id])
        #expect(page.items.map(\.reason) == [.restricted])
        #expect(try held(hub, HubScopeTests.north2).isEmpty)
        #expect(try held(hub, HubScopeTests.south1).isEmpty)
        // Off the restriction, north2 cannot decide on it either.
        #expect(try hub.resolveHeld([HeldDecision(change: stale.id, verdict: .accept)], replica: HubScopeTests.north2, nowMillis: 5)
                == [HeldOutcome(change: stale.id, code: .refused)])
    }

    @Test("a decision resolves the write once (which replica, which verdict), audited as QUARANTINE_RESOLVED; it is held for no one after; sent again it changes nothing")
    func decisionResolvesOnce() throws {
        let hub = try hub()
        let stale = try transferred(hub)
        let accept = HeldDecision(change: stale.id, verdict: .accept)
        #expect(try hub.resolveHeld([accept], replica: HubScopeTests.north1, nowMillis: 1_750_000_000_009) == [HeldOutcome(change: stale.id, code: .recorded)])
        #expect(try held(hub, HubScopeTests.north1).isEmpty)
        #expect(try held(hub, HubScopeTests.north2).isEmpty)
        // Idempotent: the same decision again, or north2's dismissal afterwards, is resolved already.
        #expect(try hub.resolveHeld([accept], replica: HubScopeTests.north1, nowMillis: 1_750_000_000_010) == [HeldOutcome(change: stale.id, code: .resolvedAlready)])
        #expect(try hub.resolveHeld([HeldDecision(change: stale.id, verdict: .dismiss)], replica: HubScopeTests.north2, nowMillis: 1_750_000_000_011)
                == [HeldOutcome(change: stale.id, code: .resolvedAlready)])
        let resolved = try hub.auditEvents(after: 0, limit: 100).map(\.event).filter { $0.kind == .quarantineResolved }
        #expect(resolved.map { "\($0.device?.hex ?? "") \($0.scope) \($0.table) \($0.row) \($0.change.map(\.description) ?? "") \($0.detail)" }
                == ["\(HubScopeTests.north1.hex) P2 note n3 \(stale.id) ACCEPTED"])
        #expect(try hub.verifyAudit().isIntact)
        let summary = try hub.quarantineSummary()
        #expect(summary.counts == [QuarantineSummary.Count(reason: "OUT_OF_SCOPE", state: "accepted", count: 1)])
        #expect(summary.senders == [QuarantineSummary.Sender(replica: HubScopeTests.south1.hex, team: "south", held: 0, accepted: 1, dismissed: 0)])
    }

    @Test("a decision from a replica the write is not held for (its writer's team, another team, an unknown id) is refused and audited; the write stays held")
    func outsideDecisionRefused() throws {
        let hub = try hub()
        let stale = try transferred(hub)
        let unknown = ChangeID(replica: HubScopeTests.south1, counter: 99)
        for replica in [HubScopeTests.south1, Self.east1] {
            #expect(try hub.resolveHeld([HeldDecision(change: stale.id, verdict: .dismiss), HeldDecision(change: unknown, verdict: .accept)],
                                        replica: replica, nowMillis: 1_750_000_000_020)
                    == [HeldOutcome(change: stale.id, code: .refused), HeldOutcome(change: unknown, code: .refused)])
        }
        #expect(try held(hub, HubScopeTests.north1) == [stale.id])
        let refused = try hub.auditEvents(after: 0, limit: 100).map(\.event).filter { $0.detail.hasPrefix("REVIEW_REFUSED") }
        #expect(refused.map { "\($0.kind) \($0.device?.hex ?? "") \($0.detail)" } == [
            "\(AuditEvent.Kind.rejectedWrite) \(HubScopeTests.south1.hex) REVIEW_REFUSED DISMISSED",
            "\(AuditEvent.Kind.rejectedWrite) \(HubScopeTests.south1.hex) REVIEW_REFUSED ACCEPTED",
            "\(AuditEvent.Kind.rejectedWrite) \(Self.east1.hex) REVIEW_REFUSED DISMISSED",
            "\(AuditEvent.Kind.rejectedWrite) \(Self.east1.hex) REVIEW_REFUSED ACCEPTED",
        ])
        #expect(try hub.verifyAudit().isIntact)
        #expect(try hub.quarantineSummary().counts == [QuarantineSummary.Count(reason: "OUT_OF_SCOPE", state: "held", count: 1)])
    }

    @Test("the listing is cut by count and budget (more = true) and goes on after the last change id")
    func listingPages() throws {
        let hub = try hub()
        var south = TestSigner()
        _ = try transferred(hub, signer: &south)
        for counter in UInt64(4)...6 {
            try scope.push(hub, [HubScopeTests.change(HubScopeTests.south1, counter, table: "note", row: "n\(counter)", scope: "P2")],
                           from: HubScopeTests.south1, signer: &south)
        }
        var seen: [UInt64] = []
        var after: ChangeID?
        var pages = 0
        while true {
            let page = try hub.heldItems(for: HubScopeTests.north2, after: after, byteBudget: 1, maxCount: 3)
            seen += page.items.map(\.change.id.counter)
            pages += 1
            guard page.more, let last = page.items.last else { break }
            after = last.change.id
        }
        #expect(seen == [3, 4, 5, 6])
        #expect(pages == 4)
        #expect(try hub.heldItems(for: HubScopeTests.north2, after: nil, byteBudget: 1 << 20, maxCount: 3).items.count == 3)
    }
}
