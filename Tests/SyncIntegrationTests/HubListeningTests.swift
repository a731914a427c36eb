import Foundation
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore
import SyncTesting
import Testing

/// The hub says when it listens (`onServerRunning`, `listeningPort()`), so nobody polls
/// `boundPort`; and its time of day is the injected `WallClock`, never the machine's.
extension Integration {
    @Suite("Hub listening and injected time")
    struct HubListeningTests {
        /// November 2023: a token that expires a minute after it is past by the machine's clock.
        static let fixedMillis: UInt64 = 1_700_000_000_000

        actor Announced {
            var ports: [Int] = []
            func append(_ port: Int) { ports.append(port) }
        }

        static func hub(in directory: String, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> (SQLiteHubStore, HubServer) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var random = SystemRandomNumberGenerator()
            let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
            var configuration = HubServerConfiguration()
            configuration.port = 0
            let server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"),
                                   wallClock: FixedWallClock(millis: fixedMillis), onServerRunning: onServerRunning)
            return (store, server)
        }

        @Test("listeningPort() waits for the bind and returns the port onServerRunning was given; after shutdown it throws SHUT_DOWN")
        func listening() async throws {
            let directory = NSTemporaryDirectory() + "caresync-listening-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let announced = Announced()
            let (_, server) = try Self.hub(in: directory) { port in await announced.append(port) }
            // Asked before run(): it waits.
            let waiting = Task { try await server.listeningPort() }
            let running = Task { try await server.run() }
            let port = try await waiting.value
            #expect(port > 0 && port == server.boundPort)
            #expect(await announced.ports == [port], "onServerRunning runs once, before listeningPort() returns")
            #expect(try await server.listeningPort() == port)
            await server.shutdownGracefully()
            try await running.value
            await #expect(throws: HubServerError.self) { _ = try await server.listeningPort() }
        }

        @Test("a hub shut down before it listened: a waiting listeningPort() is told SHUT_DOWN")
        func shutDownFirst() async throws {
            let directory = NSTemporaryDirectory() + "caresync-listening-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (_, server) = try Self.hub(in: directory)
            await server.shutdownGracefully()
            do {
                _ = try await server.listeningPort()
                Issue.record("a port after shutdown")
            } catch let error as HubServerError {
                #expect(error.code == .shutDown && error.code.name == "SHUT_DOWN")
            }
        }

        @Test("a session's stored times come from the hub's injected wall clock")
        func injectedWallClock() async throws {
            let directory = NSTemporaryDirectory() + "caresync-wallclock-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (store, server) = try Self.hub(in: directory)
            let running = Task { try await server.run() }
            let port = try await server.listeningPort()
            var random = SystemRandomNumberGenerator()
            // Expired by the machine's clock, valid by the hub's: only the injected clock admits it.
            let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: Self.fixedMillis + 60_000, random: &random)
            let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema, replicaID: .random(using: &random),
                                                  name: "r", wallClock: FixedWallClock(millis: Self.fixedMillis))
            let report = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: port, enrolmentToken: token,
                                                   retry: RetryPolicy(attempts: 1), logger: Logger(label: "test.sync"))
            #expect(report.summary.enrolled)
            await server.shutdownGracefully()
            try await running.value
            let reader = try SQLiteHubStore(readingAt: "\(directory)/hub.db")
            #expect(try reader.replicaSummaries().map(\.lastSeenMillis) == [Self.fixedMillis])
        }
    }
}
