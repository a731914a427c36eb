import Foundation
import SyncCore
import SyncEngine
import SyncIdentity
@testable import SyncStore
import SyncTesting
import Testing

/// Protocol/scope.md, "Verifying part of an origin's log": boundary heads in the own log, and a
/// replica holding only segments of another origin's log.
extension ReplicaIdentityTests {
    /// Creates one item per scope, in one transaction per element of `transactions`.
    func write(_ store: ReplicaStore, scopes transactions: [[String]]) throws {
        var made = 0
        for scopes in transactions {
            try store.write(author: "amara.okafor") { edits in
                for scope in scopes {
                    made += 1
                    try edits.create("item", id: "item-\(made)", values: ["title": .text("t")], scope: scope)
                }
            }
        }
    }

    @Test("boundary heads: own changes in scopes A, A, B, A have heads at 2, 3 and 4, however the writes fall into transactions",
          arguments: [[["A"], ["A"], ["B"], ["A"]], [["A", "A"], ["B", "A"]], [["A", "A", "B", "A"]]])
    func boundaryHeads(transactions: [[String]]) throws {
        let store = try make("a", id: 1)
        try write(store, scopes: transactions)
        let heads = try store.ownHeads(in: 1...4)
        #expect(heads.map(\.counter) == [2, 3, 4])
        let chains = Self.expectedChains(try store.changes(notIn: VersionVector()))
        let key = try #require(store.signingKey)
        #expect(heads.allSatisfy { $0.verifies(with: key.publicKey) && $0.chain == chains[Int($0.counter) - 1] })
        // An edit of an existing row is in the row's scope: back to A after the B change is a boundary too.
        try store.write(author: "ann") { try $0.update("item", id: "item-3", values: ["title": .text("u")]) }
        try store.write(author: "ann") { try $0.update("item", id: "item-1", values: ["title": .text("v")]) }
        #expect(try store.ownHeads(in: 1...6).map(\.counter) == [2, 3, 4, 5, 6])
    }

    @Test("a fork's re-issued changes get their boundary heads")
    func forkBoundaryHeads() throws {
        let store = try make("a", id: 1)
        try write(store, scopes: [["A", "A", "B", "B", "A"]])
        let newID = ReplicaID(high: 0xF0, low: 0xF0)
        var random = SeededGenerator(seed: 77)
        try store.fork(into: newID, credential: [9], divergentFrom: 2, deviceKey: SigningKey(random: &random))
        // Re-issued as 1…4 in scopes A, B, B, A.
        #expect(try store.ownHeads(in: 1...4).map(\.counter) == [1, 3, 4])
    }

    @Test("a batch holding only scope A (changes 1–2 and 4, the boundary head at 3 as the anchor of 4) verifies and merges; contiguous stays 2")
    func segmentsVerifyAndMerge() throws {
        let alice = try make("alice", id: 1)
        try write(alice, scopes: [["A", "A", "B", "A"]])
        let all = try alice.changes(notIn: VersionVector())
        let scoped = all.filter { $0.scope == "A" }
        #expect(scoped.map(\.id.counter) == [1, 2, 4])
        let provenance = Provenance(heads: try alice.ownHeads(in: 1...2) + alice.ownHeads(in: 3...3) + alice.ownHeads(in: 4...4))
        let bob = try receiver("bob", id: 2, certified: [alice])
        // Without the anchor the second run has no chain(3): CHAIN_GAP, nothing applied.
        let unanchored = Provenance(heads: provenance.heads.filter { $0.counter != 3 })
        #expect(Self.identityCode { _ = try bob.apply(scoped, provenance: unanchored) } == .chainGap)
        #expect(try bob.changes(notIn: VersionVector()).isEmpty)
        #expect(try bob.apply(scoped, provenance: provenance).applied == 3)
        #expect(try bob.changes(notIn: VersionVector()) == scoped)
        #expect(try bob.versionVector()[alice.replicaID] == 2, "contiguous is the held prefix")
        let expected = Self.expectedChains(all)
        #expect(try chains(of: bob, alice.replicaID) == [expected[0], expected[1], expected[3]])
        #expect(try bob.heldHeads(origin: alice.replicaID, in: 1...4).map(\.counter) == [2, 4])
        // A replay is all duplicates; the gap filled later verifies from the held chain(2) and must lead to the held chain(4).
        #expect(try bob.apply(scoped, provenance: provenance).duplicates == 3)
        #expect(try bob.apply([all[2]], provenance: Provenance(heads: try alice.ownHeads(in: 3...3))).applied == 1)
        #expect(try bob.versionVector()[alice.replicaID] == 4)
        #expect(try chains(of: bob, alice.replicaID) == expected)
    }

    @Test("provenance(for:) relays each segment of another origin with its heads and the held head below it as its anchor")
    func relayedSegments() throws {
        let alice = try make("alice", id: 1)
        try write(alice, scopes: [["A", "A", "B", "A"]])
        let all = try alice.changes(notIn: VersionVector())
        let carol = try receiver("carol", id: 3, certified: [alice])
        _ = try carol.apply(all, provenance: try alice.provenance(for: all))
        let scoped = all.filter { $0.scope == "A" }
        let relayed = try carol.provenance(for: scoped)
        #expect(relayed.heads.map(\.counter) == [2, 3, 4])
        let dave = try receiver("dave", id: 4, certified: [alice])
        #expect(try dave.apply(scoped, provenance: relayed).applied == 3)
        // The own origin's runs carry no anchor (a receiver holds the sender's own log below them).
        #expect(try alice.provenance(for: scoped).heads.map(\.counter) == [2, 4])
    }

    @Test("signedRuns sends a segmented origin's runs while each ends at a held head, and cuts at the first that does not")
    func signedSegments() throws {
        let alice = try make("alice", id: 1)
        try write(alice, scopes: [["A", "A", "B", "A", "A"]])
        let all = try alice.changes(notIn: VersionVector())
        let erin = try receiver("erin", id: 5, certified: [alice])
        // Erin holds 1–2 (a head at 2) and 4–5 (a head at 5, no head at 4).
        _ = try erin.apply(Array(all[0...1]), provenance: try alice.provenance(for: Array(all[0...1])))
        _ = try erin.apply(Array(all[3...4]), provenance: Provenance(heads: try alice.ownHeads(in: 3...3) + alice.ownHeads(in: 4...5)))
        #expect(try erin.heldHeads(origin: alice.replicaID, in: 1...5).map(\.counter) == [2, 5])
        let held = try erin.changes(notIn: VersionVector())
        #expect(try BundleExchange.signedRuns(held, of: erin).map(\.id.counter) == [1, 2, 4, 5])
        // Only 4 of the second segment: it has no head, so it goes next time.
        #expect(try BundleExchange.signedRuns(Array(held.prefix(3)), of: erin).map(\.id.counter) == [1, 2])
        // A first segment without a head at its end cuts the origin there, later segments too.
        let frank = try receiver("frank", id: 6, certified: [alice])
        _ = try frank.apply(Array(all[0...1]), provenance: Provenance(heads: try alice.ownHeads(in: 2...2)))
        _ = try frank.apply([all[3]], provenance: Provenance(heads: try alice.ownHeads(in: 3...3) + alice.ownHeads(in: 4...4)))
        _ = try frank.apply([all[4]], provenance: Provenance(heads: try alice.ownHeads(in: 5...5)))
        let framed = try frank.changes(notIn: VersionVector())
        #expect(try BundleExchange.signedRuns(Array(framed.prefix(1)) + framed.suffix(2), of: frank).map(\.id.counter) == [])
    }

    @Test("an equivocation's held head is one in the same held segment as the change, never one past a gap")
    func equivocationEvidenceWithinSegment() throws {
        let alice = try make("alice", id: 1)
        try write(alice, scopes: [["A", "A", "B", "A", "A"]])
        let all = try alice.changes(notIn: VersionVector())
        let bob = try receiver("bob", id: 2, certified: [alice])
        _ = try bob.apply(Array(all[0...1]))
        _ = try bob.apply(Array(all[3...4]), provenance: Provenance(heads: try alice.ownHeads(in: 3...3) + alice.ownHeads(in: 4...5)))
        let clone = try ReplicaStore.create(at: "\(directory)/clone.db", schema: SimulationSchema.v1, replicaID: alice.replicaID, name: "clone",
                                            wallClock: clock, deviceKey: alice.signingKey)
        try write(clone, 2, text: "other")
        let cloned = try clone.changes(notIn: VersionVector())
        do {
            _ = try bob.apply(cloned, provenance: try clone.provenance(for: cloned))
            Issue.record("the equivocation was applied")
        } catch let error as IdentityError {
            #expect(error.code == .equivocation && error.counter == 1)
            #expect(error.evidence?.heldHead == nil, "the head at 5 does not cover change 1: 3 is not held")
        }
    }
}
