import Foundation
import Logging
import NIOCore
import SyncCore
import SyncHub
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// The hub's lifecycle state machine (HubServer+Lifecycle.swift): a second run, a shutdown before
/// the start and a shutdown with sessions open are refusals or orderly endings, never crashes.
extension Integration {
    @Suite("Hub lifecycle: run once, shut down gracefully from any state")
    struct HubLifecycleTests {
        final class Hub {
            let directory = NSTemporaryDirectory() + "caresync-lifecycle-" + UUID().uuidString
            let store: SQLiteHubStore
            let server: HubServer

            init() throws {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                var random = SystemRandomNumberGenerator()
                store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
                var configuration = HubServerConfiguration()
                configuration.port = 0
                server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"), wallClock: SystemWallClock())
            }

            /// Starts `run()` and waits until it listens.
            func start() async throws -> (task: Task<Void, any Error>, port: Int) {
                let server = self.server
                let task = Task { try await server.run() }
                for _ in 0..<500 where server.boundPort == nil { try await Task.sleep(nanoseconds: 5_000_000) }
                return (task, try #require(server.boundPort))
            }

            /// True once the store refuses to be read: the hub closed it.
            var storeIsClosed: Bool {
                do {
                    _ = try store.head()
                    return false
                } catch {
                    return (error as? StoreError)?.code == .database
                }
            }

            deinit { try? FileManager.default.removeItem(atPath: directory) }
        }

        static func runError(_ server: HubServer) async -> HubServerError? {
            do {
                try await server.run()
                return nil
            } catch let error as HubServerError {
                return error
            } catch {
                Issue.record("run() threw \(error), not a HubServerError")
                return nil
            }
        }

        @Test("a second run() while running is refused with ALREADY_RUNNING; the first keeps serving; after shutdown, SHUT_DOWN")
        func runTwice() async throws {
            let hub = try Hub()
            let (running, port) = try await hub.start()
            #expect(await Self.runError(hub.server)?.code == .alreadyRunning)
            // Still serving: a hello is answered.
            let connection = try await AdmissionPeer.connect(port)
            var random = SystemRandomNumberGenerator()
            let token = try hub.store.issueEnrolmentToken(team: "T", expiresAtMillis: UInt64(Date().timeIntervalSince1970 * 1000) + 60_000,
                                                          random: &random)
            let stranger = ReplicaID.random(using: &random)
            let hello = AdmissionPeer.hello(stranger, .enrolmentToken(token), key: TestSigner.publicKey(stranger))
            let reply = try await connection.executeThenClose { inbound, outbound in
                try await outbound.write(hello)
                var iterator = inbound.makeAsyncIterator()
                return try await iterator.next()
            }
            guard case .welcome = try AdmissionPeer.codec.decode(try #require(reply)) else {
                Issue.record("the running hub did not welcome a hello after the refused second run")
                return
            }
            await hub.server.shutdownGracefully()
            try await running.value
            #expect(await Self.runError(hub.server)?.code == .shutDown)
            #expect(hub.storeIsClosed)
        }

        @Test("shutdown before start: the store is closed, run() then throws SHUT_DOWN and never listens")
        func shutdownBeforeStart() async throws {
            let hub = try Hub()
            #expect(!hub.storeIsClosed)
            await hub.server.shutdownGracefully()
            #expect(hub.storeIsClosed)
            #expect(await Self.runError(hub.server)?.code == .shutDown)
            #expect(hub.server.boundPort == nil)
            await hub.server.shutdownGracefully()  // again: nothing to do, returns
        }

        @Test("shutdown with sessions open: each is told goodbye (reason 1), both callers return after the drain, then the store is closed")
        func shutdownDuringConnections() async throws {
            let hub = try Hub()
            let (running, port) = try await hub.start()
            let now = UInt64(Date().timeIntervalSince1970 * 1000)
            var random = SystemRandomNumberGenerator()
            let token = try hub.store.issueEnrolmentToken(team: "T", expiresAtMillis: now + 60_000, random: &random)
            let stranger = ReplicaID.random(using: &random)
            let hello = AdmissionPeer.hello(stranger, .enrolmentToken(token), key: TestSigner.publicKey(stranger))
            // One authenticated session, one connection that has not said hello.
            let session = try await AdmissionPeer.connect(port)
            let silent = try await AdmissionPeer.connect(port)
            let frames: [[Frame]] = try await session.executeThenClose { inbound, outbound in
                try await outbound.write(hello)
                var iterator = inbound.makeAsyncIterator()
                guard case .welcome = try AdmissionPeer.codec.decode(try #require(try await iterator.next())) else {
                    Issue.record("no welcome")
                    return []
                }
                for _ in 0..<500 where hub.server.activeConnections < 2 { try await Task.sleep(nanoseconds: 5_000_000) }
                #expect(hub.server.activeConnections == 2)
                let server = hub.server
                async let first: Void = server.shutdownGracefully()
                async let second: Void = server.shutdownGracefully()
                _ = await (first, second)
                // Both returned only once every session had ended and the store was closed (the
                // hub closes its side; what it said waits in the peers' buffers).
                #expect(hub.server.activeConnections == 0)
                #expect(hub.storeIsClosed)
                var afterWelcome: [Frame] = []
                while let frame = try await iterator.next() { afterWelcome.append(frame) }
                let unauthenticated = try await silent.executeThenClose { inbound, _ in
                    var received: [Frame] = []
                    for try await frame in inbound { received.append(frame) }
                    return received
                }
                return [afterWelcome, unauthenticated]
            }
            for received in frames {
                #expect(try received.map { try AdmissionPeer.codec.decode($0) } == [.goodbye(reason: 1)])
            }
            try await running.value
            #expect(await Self.runError(hub.server)?.code == .shutDown)
        }
    }
}
