import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The recovery parts of the sessions, driven message by message without a network.
@Suite("Recovery in the sessions")
struct RecoverySessionTests {
    let directory = TestFiles.directory("recovery")
    let now: UInt64 = 1_750_000_000_000

    /// Runs one client session against one hub session until both are done; returns the messages
    /// the hub sent.
    @discardableResult
    func sync(_ replica: ReplicaStore, _ hub: SQLiteHubStore, token: String? = nil) throws -> (ClientSession, [Message]) {
        let credential: Credential = if let token { .enrolmentToken(token) } else { .device(try #require(try replica.hubLink()?.credential)) }
        try replica.setHubAddress("test")
        var client = ClientSession(store: replica, credential: credential, random: RandomSource { 99 })
        var server = InlineHubSession(store: hub, random: RandomSource { 7 })
        var toHub = client.start()
        var fromHub: [Message] = []
        for _ in 0..<1_000 {
            var toClient: [Message] = []
            for case let .send(message) in toHub { toClient += server.receive(message, nowMillis: now).compactMap { action in
                if case let .send(reply) = action { return reply } else { return nil }
            } }
            fromHub += toClient
            toHub = toClient.flatMap { client.receive($0) }
            if client.isFinished || toHub.isEmpty { break }
        }
        return (client, fromHub)
    }

    func hubStore(_ name: String) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 11)
        return try SQLiteHubStore(path: "\(directory)/\(name)", wallClock: SystemWallClock(), random: &random)
    }

    func token(_ hub: SQLiteHubStore, seed: UInt64 = 12) throws -> String {
        var random = SeededGenerator(seed: seed)
        return try hub.issueEnrolmentToken(team: "T", expiresAtMillis: now + 60_000, random: &random)
    }

    @Test("a hub restored from its own backup gets back from the replica what it had acknowledged")
    func restoredHub() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 3, low: 3),
                                              name: "r", wallClock: FixedWallClock(millis: now))
        var hub: SQLiteHubStore? = try hubStore("hub.db")
        try sync(replica, hub!, token: try token(hub!))
        try replica.write(author: "w") { try $0.create("note", id: "a", values: ["text": .text("1")]) }
        try sync(replica, hub!)
        let backup = Process()
        backup.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        backup.arguments = ["sqlite3", "\(directory)/hub.db", ".backup \(directory)/hub-backup.db"]
        try backup.run()
        backup.waitUntilExit()
        #expect(backup.terminationStatus == 0)
        // The operator restores the hub's identity file with its database.
        try FileManager.default.copyItem(atPath: IdentityFile.path(forStore: "\(directory)/hub.db"),
                                         toPath: IdentityFile.path(forStore: "\(directory)/hub-backup.db"))
        try replica.write(author: "w") { try $0.create("note", id: "b", values: ["text": .text("2")]) }
        try sync(replica, hub!)
        let acknowledged = try replica.peerKnowledge(hub!.hubID)[replica.replicaID]
        #expect(acknowledged == 2, "two notes, one row edit each")
        hub = nil
        let restored = try hubStore("hub-backup.db")
        #expect(try restored.ownDurable(replica.replicaID) == 1, "the backup predates the second note")
        let (client, _) = try sync(replica, restored)
        #expect(client.state == .done)
        #expect(try restored.ownDurable(replica.replicaID) == 2, "the replica pushed again what the restored hub had lost")
    }

    @Test("a copy whose acknowledged change a hub restore lost, refilled by the original, re-identifies from that counter (simulation seed 91385488963680625)")
    func copyAfterHubRestoreComparesFromTheStart() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let original = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 3, low: 3),
                                               name: "r", wallClock: FixedWallClock(millis: now))
        let hubPath = "\(directory)/hub.db"
        var hub = try hubStore("hub.db")
        try sync(original, hub, token: try token(hub))
        try original.write(author: "w") { try $0.create("note", id: "a", values: ["text": .text("both")]) }
        try sync(original, hub)
        // The whole device copied, identity file with it: two live copies of one origin.
        try original.backup(to: "\(directory)/copy.db")
        try FileManager.default.copyItem(atPath: original.identityPath, toPath: "\(directory)/copy.db.identity")
        let copy = try ReplicaStore.open(at: "\(directory)/copy.db", schema: SimulationSchema.schema, wallClock: FixedWallClock(millis: now))
        try hub.close()
        try FileManager.default.copyItem(atPath: hubPath, toPath: "\(directory)/hub-backup.db")
        hub = try hubStore("hub.db")
        // The copy's change 2 is acknowledged, then lost with the hub's restore; the original's own
        // change 2 takes its place on the restored hub.
        try copy.write(author: "w") { try $0.create("note", id: "c", values: ["text": .text("copy")]) }
        try sync(copy, hub)
        #expect(try copy.peerKnowledge(hub.hubID)[copy.replicaID] == 2)
        try hub.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: hubPath + suffix) }
        try FileManager.default.copyItem(atPath: "\(directory)/hub-backup.db", toPath: hubPath)
        hub = try hubStore("hub.db")
        #expect(hub.renewedIncarnation, "the hub sees it was restored")
        try original.write(author: "w") { try $0.create("note", id: "o", values: ["text": .text("original")]) }
        try sync(original, hub)
        let (client, answers) = try sync(copy, hub)
        #expect(client.state == .done, "\(client.failure.map { "\($0)" } ?? "-"); \(answers.count) messages")
        #expect(client.summary.forkedFrom == original.replicaID && copy.replicaID != original.replicaID,
                "the copy's change 2 is not the hub's: it takes a new identity")
        #expect(try copy.read { view in try view.rows("note").compactMap { $0["id"]?.textValue }.sorted() } == ["a", "c", "o"],
                "the copy holds the original's change 2 and its own, re-issued")
        try sync(original, hub)
        #expect(try original.read { view in try view.rows("note").compactMap { $0["id"]?.textValue }.sorted() } == ["a", "c", "o"])
        #expect(try hub.equivocations().isEmpty, "the copy compared before it pushed")
    }

    @Test("CURSOR_AHEAD (a hub restored from an older backup) sets the cursor to 0, and the retry pulls everything again")
    func cursorAheadRestarts() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hub = try hubStore("hub.db")
        let writer = try ReplicaStore.create(at: "\(directory)/w.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 4, low: 4),
                                             name: "w", wallClock: FixedWallClock(millis: now))
        let reader = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 3, low: 3),
                                             name: "r", wallClock: FixedWallClock(millis: now))
        try sync(writer, hub, token: try token(hub))
        try sync(reader, hub, token: try token(hub, seed: 13))
        try writer.write(author: "w") { try $0.create("note", id: "a", values: ["text": .text("1")]) }
        try sync(writer, hub)
        // The reader's cursor as a hub restored from an older backup would find it: ahead of its log.
        try reader.applyFromHub([], hub: hub.hubID, nextCursor: 1_000)
        let (failed, answers) = try sync(reader, hub)
        #expect(failed.failure?.code == .cursorAhead && failed.failure?.retryable == true, "\(answers)")
        #expect(try reader.hubLink()?.pullCursor == 0)
        let (client, _) = try sync(reader, hub)
        #expect(client.state == .done)
        #expect(try reader.read { try $0.count("note") } == 1, "the retry pulled the hub's log from the start")
    }

    @Test("a push holding another version of a held change id is answered EQUIVOCATION, never acknowledged")
    func equivocationAnswered() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hub = try hubStore("hub.db")
        var session = InlineHubSession(store: hub, random: RandomSource { 5 })
        let replica = ReplicaID(high: 8, low: 8)
        let welcome = session.receive(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "t",
                                                   credential: .enrolmentToken(try token(hub)), maxFrameBody: 65_536,
                                                   deviceKey: TestSigner.publicKey(replica))), nowMillis: now)
        guard case let .send(.welcome(details)) = welcome.first else {
            Issue.record("expected a welcome, got \(welcome)")
            return
        }
        #expect(details.ownDurable == 0)
        func change(_ text: String) -> Change {
            Change(table: "note", row: "n", column: "text", write: FieldWrite(
                id: ChangeID(replica: replica, counter: 1), timestamp: HybridTimestamp(physicalMillis: now, logical: 0), author: "w",
                operation: .assign(.text(text))))
        }
        // Both versions signed by the replica's key: an equivocation, proven by two signed heads.
        var first = TestSigner(), other = TestSigner()
        #expect(session.receive(.push(batch: 1, changes: [change("first")], provenance: Provenance(heads: first.heads([change("first")]))), nowMillis: now)
            == [.send(.pushAck(batch: 1, durable: VersionVector([replica: 1]), hubHead: 1))])
        let second = session.receive(.push(batch: 2, changes: [change("second")], provenance: Provenance(heads: other.heads([change("second")]))),
                                     nowMillis: now)
        guard case .send(.error(.equivocation, false, _)) = second.first, second.count == 1 else {
            Issue.record("expected a non-fatal EQUIVOCATION and no ack, got \(second)")
            return
        }
        #expect(try hub.equivocations().count == 1)
        #expect(try hub.replicaSummaries().first?.lastError == "EQUIVOCATION", "shown to the operator")
    }

    @Test("the client refuses recovered changes that are not the contiguous run of the origin it asked for")
    func recoveredRunChecked() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 3, low: 3),
                                              name: "r", wallClock: FixedWallClock(millis: now))
        let hubID = ReplicaID(high: 1, low: 1)
        func change(_ counter: UInt64, of origin: ReplicaID = ReplicaID(high: 3, low: 3)) -> Change {
            Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
                id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: now, logical: 0), author: "w",
                operation: .assign(.text("x"))))
        }
        let bad: [[Change]] = [[change(2)], [change(1), change(3)], [change(1, of: ReplicaID(high: 4, low: 4))]]
        for changes in bad {
            var client = ClientSession(store: replica, credential: .device([1]), random: RandomSource { 1 })
            _ = client.start()
            let afterWelcome = client.receive(.welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: hubID, maxFrameBody: 65_536,
                                                               issuedCredential: [], hubTimeMillis: now, heartbeatIntervalMillis: 30_000,
                                                               ownDurable: 5,
                                                               hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16), certificate: nil)))
            #expect(afterWelcome.contains(.send(.recover(origin: replica.replicaID, after: 0, byteBudget: ClientConfiguration().pullBudget))))
            let answer = client.receive(.recovered(origin: replica.replicaID, nextCounter: UInt64(changes.count), more: false, changes: changes, provenance: .none))
            guard case .send(.error(.malformedMessage, true, _)) = answer.first else {
                Issue.record("expected MALFORMED_MESSAGE for \(changes.map(\.id)), got \(answer)")
                continue
            }
            #expect(try replica.changes(notIn: VersionVector()).isEmpty, "nothing applied")
        }
    }
}

@Suite("Client session: goodbye from the hub")
struct ClientGoodbyeTests {
    @Test("a goodbye from the hub is never answered; reason 1 is retried, reason 2 (replaced) is not")
    func goodbyeClosesQuietly() throws {
        let directory = NSTemporaryDirectory() + "caresync-goodbye-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: ReplicaID(high: 3, low: 3),
                                              name: "r", wallClock: FixedWallClock(millis: 1_750_000_000_000))
        for (reason, retryable) in [(UInt64(1), true), (2, false)] {
            var client = ClientSession(store: replica, credential: .device([1]), random: RandomSource { 1 })
            _ = client.start()
            #expect(client.receive(.goodbye(reason: reason)) == [.close], "no error frame in answer to goodbye \(reason)")
            #expect(client.failure != nil && client.isFinished)
            #expect(client.failure?.retryable == retryable, "goodbye \(reason)")
        }
    }
}
