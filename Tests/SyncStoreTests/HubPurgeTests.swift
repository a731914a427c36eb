import Foundation
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// `hub_purge`: the purges a hub owes each replica (Protocol/scope.md, "Purge").
@Suite("Hub store: purges owed and acknowledged")
struct HubPurgeTests {
    static let now: UInt64 = 1_750_000_000_000
    let first = ReplicaID(high: 4, low: 1)
    let second = ReplicaID(high: 4, low: 2)

    /// A hub with `first` and `second` enrolled in team T.
    func hub(_ directory: String) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 10)
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: FixedWallClock(millis: Self.now), random: &random)
        for replica in [first, second] {
            let token = try store.issueEnrolmentToken(team: "T", replica: nil, expiresAtMillis: Self.now + 60_000, random: &random)
            _ = try store.redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica), nowMillis: Self.now,
                                               random: &random)
        }
        return store
    }

    /// Runs `body` with a hub of its own, in a directory removed afterwards.
    func withHub(_ body: (SQLiteHubStore, String) throws -> Void) throws {
        let directory = TestFiles.directory("hub-purge")
        defer { TestFiles.remove(directory) }
        let store = try hub(directory)
        defer { try? store.close() }
        try body(store, directory)
    }

    func counts(_ store: SQLiteHubStore, _ replica: ReplicaID) throws -> (owed: UInt64, acknowledged: UInt64)? {
        try store.replicaSummaries().first { $0.replica == replica }.map { ($0.purgesOwed, $0.purgesAcknowledged) }
    }

    @Test("owed purges are listed per replica, ascending by UTF-8 bytes, up to the limit; owing twice keeps one")
    func owe() throws {
        try withHub { store, _ in
            for scope in ["p-2", "p-10", "p-é", "P-1"] { try store.owePurge(scope, replicas: [first], nowMillis: Self.now) }
            try store.owePurge("p-2", replicas: [first, second], nowMillis: Self.now + 5)
            // UTF-8 byte order: "P" (0x50) before "p" (0x70); "p-1…" before "p-2"; "é" (0xC3…) last.
            #expect(try store.purgesOwed(replica: first, limit: 10) == ["P-1", "p-10", "p-2", "p-é"])
            #expect(try store.purgesOwed(replica: first, limit: 2) == ["P-1", "p-10"])
            #expect(try store.purgesOwed(replica: first, limit: 0) == [])
            #expect(try store.purgesOwed(replica: second, limit: 10) == ["p-2"])
            #expect(try counts(store, first)! == (4, 0))
            #expect(try counts(store, second)! == (1, 0))
        }
    }

    @Test("a purge-ack marks the scopes acknowledged (kept, with the time) and owed no more; a scope not owed is ignored")
    func acknowledge() throws {
        try withHub { store, directory in
            try store.owePurge("p-1", replicas: [first, second], nowMillis: Self.now)
            try store.owePurge("p-2", replicas: [first], nowMillis: Self.now)
            try store.acknowledgePurges(["p-1", "p-9"], replica: first, nowMillis: Self.now + 1)
            #expect(try store.purgesOwed(replica: first, limit: 10) == ["p-2"])
            #expect(try store.purgesOwed(replica: second, limit: 10) == ["p-1"], "another replica's purge is its own")
            #expect(try counts(store, first)! == (1, 1), "p-9 was never owed: no row for it")
            // Acknowledged twice: nothing changes.
            try store.acknowledgePurges(["p-1"], replica: first, nowMillis: Self.now + 2)
            #expect(try counts(store, first)! == (1, 1))
            #expect(try HubFixture.sqlite("\(directory)/hub.db", "SELECT acked_at FROM hub_purge WHERE scope = 'p-1' AND replica_id = '\(first.hex)'")
                        .trimmingCharacters(in: .whitespacesAndNewlines) == "\(Self.now + 1)")
            // Owed again after a later scope out: owed from then, not acknowledged.
            try store.owePurge("p-1", replicas: [first], nowMillis: Self.now + 3)
            #expect(try store.purgesOwed(replica: first, limit: 10) == ["p-1", "p-2"])
            #expect(try counts(store, first)! == (2, 0))
        }
    }

    @Test("a scope in cancels a purge not acknowledged; an acknowledged one stays as the record")
    func cancel() throws {
        try withHub { store, _ in
            try store.owePurge("p-1", replicas: [first, second], nowMillis: Self.now)
            try store.acknowledgePurges(["p-1"], replica: second, nowMillis: Self.now + 1)
            try store.cancelPurge("p-1", replicas: [first, second])
            #expect(try store.purgesOwed(replica: first, limit: 10) == [])
            #expect(try counts(store, first)! == (0, 0))
            #expect(try counts(store, second)! == (0, 1))
        }
    }

    @Test("purges owed survive a reopen, and a read-only open shows the counts")
    func durable() throws {
        let directory = TestFiles.directory("hub-purge")
        defer { TestFiles.remove(directory) }
        do {
            let store = try hub(directory)
            try store.owePurge("p-1", replicas: [first], nowMillis: Self.now)
            try store.close()
        }
        let reader = try SQLiteHubStore(readingAt: "\(directory)/hub.db")
        defer { try? reader.close() }
        #expect(try reader.purgesOwed(replica: first, limit: 10) == ["p-1"])
        #expect(try counts(reader, first)! == (1, 0))
    }
}
