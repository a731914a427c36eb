import Foundation
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// A replica staying connected (`LiveSync`, Protocol/session.md client `idle`) to the real hub
/// over TCP: rounds on one open session, heartbeats keeping it open, reconnection after a loss.
extension Integration {
    @Suite("Loopback: a replica staying connected")
    struct LiveSyncLoopbackTests {
        typealias Harness = LoopbackTests.Harness

        static func live(_ harness: Harness, _ replica: ReplicaStore,
                         configuration: ClientConfiguration = ClientConfiguration()) -> (LiveSync, Task<Void, any Error>) {
            var retry = RetryPolicy(attempts: 1)
            retry.firstDelayMillis = 20
            let live = LiveSync(store: replica, host: "127.0.0.1", port: harness.port, configuration: configuration, retry: retry,
                                logger: Logger(label: "test.live"))
            return (live, Task { try await live.run() })
        }

        static func note(_ replica: ReplicaStore, _ id: String) throws {
            try replica.write(author: "w") { tx in try tx.create("note", id: id, values: ["text": .text("x")]) }
        }

        @Test("rounds on one session: a write is pushed and pulled by the other replica without a new connection; stop says goodbye")
        func roundsOnOneSession() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let writer = try harness.replica("w"), reader = try harness.replica("r")
            _ = try await harness.sync(writer, token: try harness.token())
            _ = try await harness.sync(reader, token: try harness.token())
            let (writing, writingTask) = Self.live(harness, writer)
            let (reading, readingTask) = Self.live(harness, reader)
            try Self.note(writer, "n1")
            let first = try await writing.sync()
            #expect(first.pushed == 1)
            _ = try await reading.sync()
            #expect(try reader.read { try $0.row("note", id: "n1") } != nil)
            for number in 2...4 {
                try Self.note(writer, "n\(number)")
                let pushed = try await writing.sync()
                let pulled = try await reading.sync()
                #expect(pushed == LiveSync.Round(pushed: 1, pulled: 0, connection: 1), "round \(number)")
                #expect(pulled == LiveSync.Round(pushed: 0, pulled: 1, connection: 1), "round \(number)")
            }
            writing.stop()
            reading.stop()
            try await writingTask.value
            try await readingTask.value
            await #expect(throws: CancellationError.self) { _ = try await writing.sync() }
        }

        @Test("a sync asked for while a round runs gets a round of its own, which carries its write, as soon as that round ends (not at the pull interval)",
              .timeLimit(.minutes(1)))
        func askedMidRound() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let writer = try harness.replica("w")
            _ = try await harness.sync(writer, token: try harness.token())
            var configuration = ClientConfiguration()
            configuration.pullIntervalMillis = 60_000
            let (live, task) = Self.live(harness, writer, configuration: configuration)
            _ = try await live.sync()
            let clock = ContinuousClock()
            let started = clock.now
            for number in 1...20 {
                try Self.note(writer, "a\(number)")
                async let first = live.sync()
                // Now and then the second call lands while the first one's round runs.
                try await Task.sleep(for: .milliseconds(number % 4))
                try Self.note(writer, "b\(number)")
                _ = try await live.sync()
                #expect(try harness.store.ownDurable(writer.replicaID) == UInt64(2 * number), "the round answering a sync carries its write")
                _ = try await first
            }
            #expect(clock.now - started < .seconds(30), "no sync waited for the 60 s pull interval")
            live.stop()
            try await task.value
        }

        @Test("heartbeats keep the session open past the hub's idle deadline; a session the hub closed is made again with backoff")
        func heartbeatsAndReconnection() async throws {
            // Heartbeats every 100 ms against an idle deadline of 600 ms: the session stays open.
            let kept = try await Harness { $0.idle = .milliseconds(600); $0.session.heartbeatIntervalMillis = 100 }
            defer { kept.stop() }
            let replica = try kept.replica("a")
            _ = try await kept.sync(replica, token: try kept.token())
            let (live, task) = Self.live(kept, replica)
            _ = try await live.sync()
            try await Task.sleep(for: .milliseconds(1_500))
            try Self.note(replica, "n1")
            #expect(try await live.sync() == LiveSync.Round(pushed: 1, pulled: 0, connection: 1), "the same session")
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }

            // Heartbeats every minute against an idle deadline of 300 ms: the hub ends the session
            // (TIMEOUT), and the next round is on a new connection.
            let closing = try await Harness { $0.idle = .milliseconds(300); $0.session.heartbeatIntervalMillis = 60_000 }
            defer { closing.stop() }
            let other = try closing.replica("b")
            _ = try await closing.sync(other, token: try closing.token())
            let (reconnecting, reconnectingTask) = Self.live(closing, other)
            #expect(try await reconnecting.sync().connection == 1)
            try await Task.sleep(for: .milliseconds(700))
            try Self.note(other, "n1")
            let round = try await reconnecting.sync()
            #expect(round.pushed == 1 && round.connection > 1, "\(round)")
            reconnecting.stop()
            try await reconnectingTask.value
        }
    }
}
