import Foundation
import Logging
import SyncClient
import SyncEngine
import SyncTesting
import Testing

/// A clock whose sleeps return at once and are recorded: the retry loop runs in no real time.
final class RecordingClock: Clock, @unchecked Sendable {
    // Safety: `current` and `slept` are only read and written under `lock`.
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var slept: [Duration] = []

    var now: Instant { lock.withLock { current } }
    var minimumResolution: Duration { .zero }
    /// Each sleep's length, in milliseconds, in order.
    var sleptMillis: [UInt64] { lock.withLock { slept.map { UInt64($0.components.seconds) * 1000 + UInt64($0.components.attoseconds / 1_000_000_000_000_000) } } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        lock.withLock {
            slept.append(current.duration(to: deadline))
            current = max(current, deadline)
        }
    }
}

/// A seeded source for the retry policy: the same seed, the same delays.
final class SeededSource: @unchecked Sendable {
    // Safety: the generator is only used under `lock`.
    private let lock = NSLock()
    private var generator: SeededGenerator

    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    var source: RandomSource { RandomSource { self.lock.withLock { self.generator.next() } } }
}

extension Integration {
    @Suite("Retry policy: injected randomness and clock, exact delays, no real sleeping")
    struct RetryPolicyTests {
        static let logger = Logger(label: "test.retry")

        /// Runs the policy over attempts that fail with `failures` in turn, then succeed.
        static func delays(_ policy: RetryPolicy, clock: RecordingClock, failures: [SyncFailure]) async throws -> (result: Int, slept: [UInt64]) {
            var remaining = failures[...]
            let result = try await policy.run(logger: logger) { attempt -> Result<Int, SyncFailure> in
                if let failure = remaining.popFirst() { return .failure(failure) }
                return .success(attempt)
            }
            return (result, clock.sleptMillis)
        }

        @Test("the bound doubles from the first delay: a source that always draws the top gives exactly 1 s, 2 s, 4 s")
        func exactBounds() async throws {
            let clock = RecordingClock()
            let policy = RetryPolicy(attempts: 4, random: RandomSource { .max }, clock: clock)
            let started = ContinuousClock.now
            let busy = SyncFailure(.busy, "at capacity")
            let (attempt, slept) = try await Self.delays(policy, clock: clock, failures: [busy, busy, busy])
            #expect(attempt == 4 && slept == [1_000, 2_000, 4_000])
            #expect(ContinuousClock.now - started < .seconds(3), "the policy slept for real")
        }

        @Test("a seeded source gives the same delays each run, each within its bound", arguments: [1, 0x5EED, 977])
        func seeded(seed: UInt64) async throws {
            print("retry policy seed \(seed)")
            var runs: [[UInt64]] = []
            for _ in 0..<2 {
                let clock = RecordingClock()
                let policy = RetryPolicy(attempts: 6, random: SeededSource(seed: seed).source, clock: clock)
                let timeout = SyncFailure(.timeout, "no answer")
                runs.append(try await Self.delays(policy, clock: clock, failures: Array(repeating: timeout, count: 5)).slept)
            }
            #expect(runs[0] == runs[1], "seed \(seed)")
            #expect(runs[0].count == 5 && zip(runs[0], [1_000, 2_000, 4_000, 8_000, 16_000] as [UInt64]).allSatisfy { $0 <= $1 }, "seed \(seed): \(runs[0])")
            // The very draws of the source, in order: the policy takes its jitter from it and from nothing else.
            var expected = SeededSource(seed: seed).source
            let bounds: [UInt64] = [1_000, 2_000, 4_000, 8_000, 16_000]
            #expect(runs[0] == bounds.map { UInt64.random(in: 0...$0, using: &expected) }, "seed \(seed)")
        }

        @Test("the hub's retry_after wins when longer; beyond the longest delay, or not retryable, it stops without sleeping")
        func retryAfterAndStops() async throws {
            let clock = RecordingClock()
            let policy = RetryPolicy(attempts: 3, random: RandomSource { .max }, clock: clock)
            let (_, slept) = try await Self.delays(policy, clock: clock, failures: [SyncFailure(.busy, "later", retryAfterMillis: 60_000)])
            #expect(slept == [60_000])

            for failure in [SyncFailure(.busy, "much later", retryAfterMillis: 400_000), SyncFailure(.authenticationFailed, "revoked")] {
                let quiet = RecordingClock()
                let stopping = RetryPolicy(attempts: 3, random: RandomSource { .max }, clock: quiet)
                await #expect(throws: failure) { _ = try await Self.delays(stopping, clock: quiet, failures: [failure]) }
                #expect(quiet.sleptMillis.isEmpty)
            }
            // The attempts run out: the last failure is thrown after attempts - 1 sleeps.
            let last = RecordingClock()
            let few = RetryPolicy(attempts: 2, random: RandomSource { .max }, clock: last)
            let timeout = SyncFailure(.timeout, "no answer")
            await #expect(throws: timeout) { _ = try await Self.delays(few, clock: last, failures: [timeout, timeout]) }
            #expect(last.sleptMillis == [1_000])
        }
    }
}
