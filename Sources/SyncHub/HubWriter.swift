import Dispatch
import NIOConcurrencyHelpers
import SyncCore
import SyncEngine
import SyncStore

/// The hub store's one writer: every session's storage request runs on one serial queue (SQLite
/// calls with fsync must not block the cooperative thread pool, and the store has one writer).
///
/// Group commit: pushes that arrive while the writer is busy wait together, and the next turn of
/// the writer commits all of them with one `HubStore.append(_ pushes:)` (one transaction and one
/// fsync in `SQLiteHubStore`). An idle writer takes a push at once, so grouping adds no latency.
/// Each session hears its push's outcome only after that commit returned: an ack follows its commit.
package final class HubWriter: Sendable {
    package typealias Ended = @Sendable () -> Bool

    private struct Waiting {
        var pushes: [(HubPush, Ended, CheckedContinuation<Result<HubAppendResult, any Error>?, Never>)] = []
        var turnScheduled = false
    }

    package let store: any HubStore
    let queue = DispatchQueue(label: "caresync.hub.store")
    private let waiting = NIOLockedValueBox(Waiting())
    /// Draws the ids and secrets that storage requests make (device secrets, replica ids).
    private let random: NIOLockedValueBox<RandomSource>

    package init(store: any HubStore, random: RandomSource = .system) {
        self.store = store
        self.random = NIOLockedValueBox(random)
    }

    /// Performs a session's request on the writer. Nil when the request expects no answer, or when
    /// `ended` says (checked on the writer, where revocations are checked too) that the hub ended
    /// the session meanwhile: then nothing of it is stored.
    package func perform(_ request: HubStoreRequest, unless ended: @escaping Ended) async -> HubStoreOutcome? {
        if let push = request.push {
            return await append(push, unless: ended).map(HubStoreOutcome.appended)
        }
        return await onQueue {
            guard !ended() else { return nil }
            var random = self.random.withLockedValue { $0 }
            return request.perform(on: self.store, random: &random)
        }
    }

    /// Queues a request that expects no answer (bookkeeping), in order with every other request.
    package func enqueue(_ request: HubStoreRequest) {
        queue.async {
            var random = self.random.withLockedValue { $0 }
            _ = request.perform(on: self.store, random: &random)
        }
    }

    /// Runs `body` on the writer's queue.
    package func onQueue<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }

    private func append(_ push: HubPush, unless ended: @escaping Ended) async -> Result<HubAppendResult, any Error>? {
        await withCheckedContinuation { continuation in
            let schedule = waiting.withLockedValue { waiting in
                waiting.pushes.append((push, ended, continuation))
                defer { waiting.turnScheduled = true }
                return !waiting.turnScheduled
            }
            if schedule { queue.async { self.commitWaiting() } }
        }
    }

    /// On the queue: commits every push waiting now, together. Pushes arriving during the commit
    /// schedule the next turn, which runs as soon as this one has returned.
    private func commitWaiting() {
        let turn = waiting.withLockedValue { waiting in
            defer { waiting = Waiting() }
            return waiting.pushes
        }
        var committed: [(HubPush, CheckedContinuation<Result<HubAppendResult, any Error>?, Never>)] = []
        for (push, ended, continuation) in turn {
            if ended() { continuation.resume(returning: nil) } else { committed.append((push, continuation)) }
        }
        guard !committed.isEmpty else { return }
        let results = store.append(committed.map(\.0))
        for (index, (_, continuation)) in committed.enumerated() {
            continuation.resume(returning: index < results.count ? results[index]
                : .failure(StoreError(.database, "the store answered \(results.count) results for \(committed.count) pushes")))
        }
    }
}
