import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The real hub (SwiftNIO, SQLite) on loopback with real replicas syncing over TCP.
extension Integration {
    @Suite("Loopback: hub and replicas over TCP")
    struct LoopbackTests {

        final class Harness {
            let directory = NSTemporaryDirectory() + "caresync-loopback-" + UUID().uuidString
            let store: SQLiteHubStore
            let server: HubServer
            let task: Task<Void, Error>
            var port = 0

            init(configure: (inout HubServerConfiguration) -> Void = { _ in }) async throws {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                var random = SystemRandomNumberGenerator()
                store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
                var configuration = HubServerConfiguration()
                configuration.port = 0
                configure(&configuration)
                server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"), wallClock: SystemWallClock())
                let server = self.server
                task = Task { try await server.run() }
                for _ in 0..<500 where server.boundPort == nil { try await Task.sleep(nanoseconds: 5_000_000) }
                port = try #require(server.boundPort)
            }

            func replica(_ name: String) throws -> ReplicaStore {
                var random = SystemRandomNumberGenerator()
                return try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.schema,
                                               replicaID: .random(using: &random), name: name, wallClock: SystemWallClock())
            }

            func token() throws -> String {
                var random = SystemRandomNumberGenerator()
                return try store.issueEnrolmentToken(team: "T", expiresAtMillis: SystemWallClock().nowMillis() + 3_600_000, random: &random)
            }

            func sync(_ replica: ReplicaStore, token: String? = nil, configuration: ClientConfiguration = ClientConfiguration(),
                      retry: RetryPolicy = RetryPolicy(attempts: 1)) async throws -> SyncReport {
                try await SyncClient.sync(store: replica, host: "127.0.0.1", port: port, enrolmentToken: token,
                                          configuration: configuration, retry: retry, logger: Logger(label: "test.client"))
            }

            func stop() {
                task.cancel()
                try? FileManager.default.removeItem(atPath: directory)
            }
        }

        @Test("hub + 3 replicas: random offline edits, syncs in random orders, all converge")
        func threeReplicasConverge() async throws {
            let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max / 2))
            print("LoopbackTests.threeReplicasConverge seed=\(seed)")
            var random = SeededGenerator(seed: seed)
            let harness = try await Harness()
            defer { harness.stop() }
            let replicas = try (0..<3).map { try harness.replica("r\($0)") }
            var editors = Array(repeating: RandomEditor(), count: 3)
            for replica in replicas { _ = try await harness.sync(replica, token: try harness.token()) }
            for _ in 0..<8 {
                for index in 0..<3 {
                    for _ in 0..<random.index(below: 15) { try editors[index].edit(replicas[index], author: "w\(index)", random: &random) }
                }
                for index in (0..<3).shuffled(using: &random) where random.coin() {
                    _ = try await harness.sync(replicas[index])
                    try editors[index].learn(from: replicas[index])
                }
            }
            for _ in 0..<2 { for replica in replicas { _ = try await harness.sync(replica) } }
            let snapshots = try replicas.map(ReplicaSnapshot.capture)
            #expect(snapshots[0] == snapshots[1], "seed \(seed): \(ReplicaSnapshot.difference(snapshots[0], snapshots[1]).prefix(500))")
            #expect(snapshots[1] == snapshots[2], "seed \(seed): \(ReplicaSnapshot.difference(snapshots[1], snapshots[2]).prefix(500))")
            #expect(try replicas[0].read { try $0.count("item") } > 0)
            let summaries = try harness.store.replicaSummaries()
            #expect(summaries.count == 3)
            #expect(summaries.allSatisfy { $0.pendingChanges == 0 && $0.lagChanges == 0 && $0.appVersion != nil })
        }

        @Test("an interrupted sync resumes from the last acknowledged batch, never from zero")
        func resumesAfterInterruption() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("a")
            _ = try await harness.sync(replica, token: try harness.token())
            try replica.write(author: "w") { tx in
                for index in 0..<300 { try tx.create("note", id: "n\(index)", values: ["text": .text("x")]) }
            }
            // Drive the session by hand over TCP and break the connection after two acknowledged batches.
            var configuration = ClientConfiguration()
            configuration.pushBatchChanges = 50
            let secret = try #require(try replica.hubLink()?.credential)
            var session = ClientSession(store: replica, credential: .device(secret), configuration: configuration)
            let codec = MessageCodec()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: harness.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                        return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                    }
                }
            try await channel.executeThenClose { inbound, outbound in
                var acks = 0
                var pending = session.start()
                var iterator = inbound.makeAsyncIterator()
                while acks < 2 {
                    for case let .send(message) in pending { try await outbound.write(codec.frame(message)) }
                    guard let frame = try await iterator.next() else { break }
                    let message = try codec.decode(frame)
                    if case .pushAck = message { acks += 1 }
                    pending = session.receive(message)
                }
            }
            let acknowledged = try replica.peerKnowledge(harness.store.hubStoreID)[replica.replicaID]
            #expect(acknowledged == 100, "two batches of 50 acknowledged")
            let report = try await harness.sync(replica)
            // 300 notes are 300 changes (one row edit each); 100 were acknowledged before the break.
            #expect(report.summary.pushed == 200, "the resumed sync pushes only what was not acknowledged")
            #expect(try replica.health(hub: harness.store.hubID).pendingChanges == 0)
        }

        @Test("hello refusals: unknown, revoked and bad tokens are refused at the hello")
        func refusals() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("a")
            await #expect(throws: SyncFailure.self) { _ = try await harness.sync(replica, token: "cse1-not-a-token") }
            _ = try await harness.sync(replica, token: try harness.token())
            #expect(try harness.store.revoke(replica: replica.replicaID, nowMillis: SystemWallClock().nowMillis()))
            do {
                _ = try await harness.sync(replica)
                Issue.record("a revoked replica synced")
            } catch let failure as SyncFailure {
                #expect(failure.code == .authenticationFailed)
            }
            // A used token cannot enrol another replica.
            let token = try harness.token()
            _ = try await harness.sync(try harness.replica("b"), token: token)
            do {
                _ = try await harness.sync(try harness.replica("c"), token: token)
                Issue.record("a used token enrolled a second replica")
            } catch let failure as SyncFailure {
                #expect(failure.code == .enrolmentInvalid)
            }
        }

        @Test("hostile peers: an oversized frame is refused after its header; the connection cap answers BUSY")
        func hostilePeers() async throws {
            let harness = try await Harness { $0.maxConnections = 2 }
            defer { harness.stop() }
            let codec = MessageCodec()
            func connect() async throws -> NIOAsyncChannel<Frame, Frame> {
                try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: "127.0.0.1", port: harness.port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                            return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                        }
                    }
            }
            // A header announcing 2 GiB: the hub answers FRAME_TOO_LARGE and closes, without waiting
            // for (or buffering) the body.
            let raw = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: harness.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                        return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            let answer = try await raw.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF, 0x01, 0x00]))
                var iterator = inbound.makeAsyncIterator()
                return try await iterator.next()
            }
            let message = try codec.decode(try #require(answer))
            #expect(message == .error(code: .frameTooLarge, fatal: true, message: {
                if case let .error(_, _, text) = message { return text }
                return ""
            }()))

            // Two sessions fill the cap; the third connection is refused with BUSY. (Idle,
            // unauthenticated connections would instead be ended to make room: AdmissionTests.)
            let replicas = try [harness.replica("a"), harness.replica("b")]
            for replica in replicas { _ = try await harness.sync(replica, token: try harness.token()) }
            for _ in 0..<500 where harness.server.activeConnections > 0 { try await Task.sleep(nanoseconds: 5_000_000) }
            func session(_ index: Int, _ body: () async throws -> Void) async throws {
                let secret = try #require(try replicas[index].hubLink()?.credential)
                try await connect().executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    try await outbound.write(AdmissionPeer.hello(replicas[index].replicaID, .device(secret),
                                                                 key: try #require(replicas[index].signingKey).publicKey))
                    guard case .welcome = try codec.decode(try #require(try await iterator.next())) else {
                        Issue.record("session \(index) was refused")
                        return
                    }
                    try await body()
                }
            }
            try await session(0) {
                try await session(1) {
                    let refusal = try await connect().executeThenClose { inbound, _ in
                        var iterator = inbound.makeAsyncIterator()
                        return try await iterator.next()
                    }
                    guard case let .reject(code, retryAfter, _) = try codec.decode(try #require(refusal)) else {
                        Issue.record("expected a reject")
                        return
                    }
                    #expect(code == .busy && retryAfter > 0)
                }
            }
        }
    }
}

extension Integration.LoopbackTests {
    @Test("graceful shutdown: open connections are told goodbye (reason 1) and the hub returns")
    func gracefulShutdown() async throws {
        let directory = NSTemporaryDirectory() + "caresync-shutdown-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SystemRandomNumberGenerator()
        let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        var configuration = HubServerConfiguration()
        configuration.port = 0
        let server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"), wallClock: SystemWallClock())
        let group = ServiceGroup(services: [server], logger: Logger(label: "test.group"))
        let running = Task { try await group.run() }
        for _ in 0..<500 where server.boundPort == nil { try await Task.sleep(nanoseconds: 5_000_000) }
        let port = try #require(server.boundPort)
        let raw = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    return try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        for _ in 0..<500 where server.activeConnections == 0 { try await Task.sleep(nanoseconds: 5_000_000) }
        await group.triggerGracefulShutdown()
        let frames = try await raw.executeThenClose { inbound, _ in
            var received: [Frame] = []
            for try await frame in inbound { received.append(frame) }
            return received
        }
        #expect(try frames.map { try MessageCodec().decode($0) } == [.goodbye(reason: 1)])
        try await running.value
    }
}

extension SQLiteHubStore {
    var hubStoreID: ReplicaID { hubID }
}
