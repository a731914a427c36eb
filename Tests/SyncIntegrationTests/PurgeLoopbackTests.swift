import Foundation
import SyncClient
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// A purge the hub owes, carried out over TCP (Protocol/scope.md, "Purge"): the real hub and
/// `SyncClient` on loopback.
extension Integration {
    @Suite("Loopback: a purge the hub owes is carried out and acknowledged")
    struct PurgeLoopbackTests {
        typealias Harness = LoopbackTests.Harness

        @Test("owed through the store, purged at the replica's next sync (its rows gone, other scopes kept), acknowledged at the hub")
        func owedPurgeIsCarriedOut() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("a")
            try replica.write(author: "w") { tx in
                try tx.create("note", id: "n-gone", values: ["text": .text("about them")], scope: "p-gone")
                try tx.create("note", id: "n-kept", values: ["text": .text("about another")], scope: "p-kept")
            }
            _ = try await harness.sync(replica, token: try harness.token())
            try harness.store.owePurge("p-gone", replicas: [replica.replicaID], nowMillis: SystemWallClock().nowMillis())
            func summary() throws -> ReplicaSummary? { try harness.store.replicaSummaries().first { $0.replica == replica.replicaID } }
            #expect(try summary()?.purgesOwed == 1)

            let report = try await harness.sync(replica)
            #expect(report.summary.purged == 1 && report.summary.purgesWaiting == 0)
            #expect(try replica.read { try $0.row("note", id: "n-gone") } == nil, "the bundle is gone")
            #expect(try replica.read { try $0.row("note", id: "n-kept") } != nil)
            #expect(try harness.store.purgesOwed(replica: replica.replicaID, limit: 10) == [])
            #expect(try summary()?.purgesOwed == 0 && summary()?.purgesAcknowledged == 1)

            // Acknowledged: the next welcome names it no more, and nothing more is purged.
            let again = try await harness.sync(replica)
            #expect(again.summary.purged == 0)
            #expect(try replica.read { try $0.row("note", id: "n-kept") } != nil)
        }
    }
}
