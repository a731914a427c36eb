import Foundation
import SyncClient
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Replicas restored from a backup or copied to a second machine, over TCP to the real hub: the
/// hub tells a replica what it holds of its own origin, the replica recovers what it lost, and a
/// copy that diverged takes a new identity and re-issues its own writes. Nothing is lost, nothing
/// is acknowledged twice under one id.
extension Integration {
    @Suite("Restored and copied replicas")
    struct RestoreCloneTests {
        typealias Harness = LoopbackTests.Harness

        /// Replaces a replica's file with a backup, as a user restoring it would: the store is
        /// closed, the WAL and shared memory files go with it.
        static func restore(_ backup: String, over path: String, wall: any WallClock = SystemWallClock()) throws -> ReplicaStore {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            try FileManager.default.copyItem(atPath: backup, toPath: path)
            return try ReplicaStore.open(at: path, schema: SimulationSchema.schema, wallClock: wall)
        }

        /// Two replicas enrolled with the hub, r1 and r2.
        static func enrolledPair(_ harness: Harness) async throws -> (ReplicaStore, ReplicaStore) {
            let r1 = try harness.replica("r1")
            let r2 = try harness.replica("r2")
            _ = try await harness.sync(r1, token: try harness.token())
            _ = try await harness.sync(r2, token: try harness.token())
            return (r1, r2)
        }

        static func noteText(_ store: ReplicaStore, _ id: String) throws -> FieldValue? {
            try store.read { view in try view.rows("note").first { $0["id"] == .text(id) }?["text"] }
        }

        @Test("a restored replica gets back its own later writes, and its next write does not reuse their counters")
        func restoredRecovers() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            var (r1, r2): (ReplicaStore?, ReplicaStore) = try await Self.enrolledPair(harness)
            try r1!.write(author: "w1") { try $0.create("note", id: "n", values: ["text": .text("before backup")]) }
            _ = try await harness.sync(r1!)
            try r1!.backup(to: "\(harness.directory)/backup.db")
            try r1!.write(author: "w1") { try $0.update("note", id: "n", values: ["text": .text("after backup")]) }
            let lostCounter = try r1!.status().localChanges
            _ = try await harness.sync(r1!)
            let id = r1!.replicaID
            r1 = nil
            var restored = try Self.restore("\(harness.directory)/backup.db", over: "\(harness.directory)/r1.db")
            #expect(try Self.noteText(restored, "n") == .text("before backup"), "the backup predates the edit")
            let report = try await harness.sync(restored)
            #expect(report.summary.recovered == 1, "the edit made after the backup comes back from the hub")
            #expect(report.summary.forkedFrom == nil, "nothing was written on the restored copy: no new identity")
            #expect(restored.replicaID == id)
            #expect(try Self.noteText(restored, "n") == .text("after backup"))
            try restored.write(author: "w1") { try $0.update("note", id: "n", values: ["text": .text("after restore")]) }
            #expect(try restored.status().localChanges == lostCounter + 1, "the counter moved past the recovered change")
            _ = try await harness.sync(restored)
            _ = try await harness.sync(r2)
            #expect(try Self.noteText(r2, "n") == .text("after restore"))
            #expect(try harness.store.equivocations().isEmpty)
            restored = try ReplicaStore.open(at: "\(harness.directory)/r1.db", schema: SimulationSchema.schema, wallClock: SystemWallClock())
            #expect(try ReplicaSnapshot.capture(restored) == ReplicaSnapshot.capture(r2))
        }

        @Test("a restored replica written to before it syncs forks: the lost write and the new one both survive")
        func restoredAndWrittenForks() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            var (r1, r2): (ReplicaStore?, ReplicaStore) = try await Self.enrolledPair(harness)
            try r1!.write(author: "w1") {
                try $0.create("item", id: "i", values: ["code": .text("i"), "title": .text("t"), "status": .text("draft")])
            }
            _ = try await harness.sync(r1!)
            try r1!.backup(to: "\(harness.directory)/backup.db")
            try r1!.write(author: "w1") { try $0.update("item", id: "i", values: ["body": .text("written before the restore")]) }
            _ = try await harness.sync(r1!)
            let old = r1!.replicaID
            r1 = nil
            let restored = try Self.restore("\(harness.directory)/backup.db", over: "\(harness.directory)/r1.db")
            // Same counter as the lost write, other content: without recovery the hub would drop it
            // as a duplicate while acknowledging it.
            try restored.write(author: "w1") { try $0.update("item", id: "i", values: ["body": .text("written after the restore")]) }
            try restored.write(author: "w1") { try $0.create("note", id: "n", values: ["text": .text("new on the restored copy")]) }
            let report = try await harness.sync(restored)
            #expect(report.summary.forkedFrom == old)
            #expect(report.summary.reissued == 2, "the body edit and the note's create, one row edit each")
            #expect(restored.replicaID != old)
            _ = try await harness.sync(r2)
            _ = try await harness.sync(restored)
            let bodies = try r2.read { view in try view.resolution("item", id: "i", column: "body")?.candidates.map(\.value) } ?? []
            #expect(Set(bodies) == [.text("written before the restore"), .text("written after the restore")],
                    "concurrent edits of a multi-value field: both kept as a conflict for a person")
            #expect(try Self.noteText(r2, "n") == .text("new on the restored copy"))
            #expect(try ReplicaSnapshot.capture(restored) == ReplicaSnapshot.capture(r2))
            #expect(try harness.store.equivocations().isEmpty, "the copy recovered before pushing: nothing was refused")
            let summaries = try harness.store.replicaSummaries()
            #expect(summaries.contains { $0.replica == restored.replicaID && $0.forkedFrom == old })
            // The fork is final: later syncs of the new identity are ordinary.
            try restored.write(author: "w1") { try $0.update("note", id: "n", values: ["text": .text("later")]) }
            let later = try await harness.sync(restored)
            #expect(later.summary.forkedFrom == nil && later.summary.recovered == 0)
        }

        @Test("two live copies of one replica: whoever syncs second forks, every write reaches everyone")
        func copiesConverge() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let original = try harness.replica("r1")
            let r2 = try harness.replica("r2")
            _ = try await harness.sync(original, token: try harness.token())
            _ = try await harness.sync(r2, token: try harness.token())
            try original.write(author: "w1") { try $0.create("note", id: "shared", values: ["text": .text("v0")]) }
            _ = try await harness.sync(original)
            try original.backup(to: "\(harness.directory)/copy.db")
            // The whole device copied: the identity file (key and secret) with the database.
            try FileManager.default.copyItem(atPath: original.identityPath, toPath: "\(harness.directory)/copy.db.identity")
            let copy = try ReplicaStore.open(at: "\(harness.directory)/copy.db", schema: SimulationSchema.schema, wallClock: SystemWallClock())
            #expect(copy.replicaID == original.replicaID)
            for round in 0..<3 {
                try original.write(author: "w1") { try $0.create("note", id: "o\(round)", values: ["text": .text("original \(round)")]) }
                try copy.write(author: "w9") { try $0.create("note", id: "c\(round)", values: ["text": .text("copy \(round)")]) }
                _ = try await harness.sync(original)
                _ = try await harness.sync(copy)
            }
            for replica in [original, copy, r2, original, copy] { _ = try await harness.sync(replica) }
            #expect(copy.replicaID != original.replicaID, "the copy that synced second took a new identity")
            let notes = try r2.read { try $0.rows("note").compactMap { $0["id"]?.textValue } }
            #expect(Set(notes) == Set(["shared", "o0", "o1", "o2", "c0", "c1", "c2"]))
            let reference = try ReplicaSnapshot.capture(r2)
            #expect(try ReplicaSnapshot.capture(original) == reference)
            #expect(try ReplicaSnapshot.capture(copy) == reference)
            #expect(try harness.store.replicaSummaries().filter { $0.forkedFrom == original.replicaID }.count == 1,
                    "one fork: after it the two copies are two replicas")
        }

        @Test("the hub refuses a second version of a change id, never acknowledges it, and keeps both")
        func hubRefusesEquivocation() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("r1")
            _ = try await harness.sync(replica, token: try harness.token())
            try replica.write(author: "w1") { try $0.create("note", id: "n", values: ["text": .text("first")]) }
            _ = try await harness.sync(replica)
            let held = try replica.changes(notIn: VersionVector()).filter { $0.id.replica == replica.replicaID }
            let forged = held.map { change in
                Change(table: change.table, row: change.row, column: change.column, write: FieldWrite(
                    id: change.id, timestamp: change.write.timestamp, causalLength: change.write.causalLength, author: "someone else",
                    operation: change.write.operation, supersedes: change.write.supersedes))
            }
            // Signed by the replica's own key: two signed histories of one origin.
            var signer = TestSigner()
            let heads = Provenance(heads: signer.heads(forged, key: try #require(replica.signingKey)))
            let result = try harness.store.append(forged, from: replica.replicaID, provenance: heads, receivedAtMillis: 1)
            #expect(result.equivocations.map(\.self) == forged.map(\.id))
            #expect(result.stored == 0 && result.durable.counters.isEmpty, "never acknowledged")
            let evidence = try harness.store.equivocations()
            #expect(evidence.count == forged.count)
            #expect(evidence.allSatisfy { !$0.heldDigest.isEmpty && $0.heldDigest != $0.refusedDigest })
            let relayed = try harness.store.changes(after: 0, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 20, maxCount: 100)
            #expect(try relayed.decodeChanges().filter { $0.id.replica == replica.replicaID } == held, "the hub relays the version it held")
        }
    }
}
