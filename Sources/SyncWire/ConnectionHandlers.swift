import NIOCore

/// Tells a session when a frame is in progress on its connection (its first byte arrived, its
/// last not yet) and when it is complete, so that the session's frame deadline (Protocol/session.md:
/// from a frame's first byte to its last) starts and stops. The deadline is the session's, run by
/// the shell; whether a frame is unfinished is the frame decoder's to say: this handler sits just
/// after the decoder's `ByteToMessageHandler` and reads the `FrameProgress` the decoder writes. A
/// completed frame ends the one in progress; the end of a read that leaves part of a frame
/// buffered starts one, unless one is already in progress.
package final class FrameProgressHandler: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = Frame
    package typealias InboundOut = Frame

    private let progress: FrameProgress
    private let report: @Sendable (_ inFrame: Bool) -> Void
    private var inFrame = false

    /// `progress` is the one given to the connection's `FrameDecoder`.
    package init(progress: FrameProgress, report: @escaping @Sendable (_ inFrame: Bool) -> Void) {
        self.progress = progress
        self.report = report
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if inFrame {
            inFrame = false
            report(false)
        }
        context.fireChannelRead(data)
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if progress.isInsideFrame != inFrame {
            inFrame.toggle()
            report(inFrame)
        }
        context.fireChannelReadComplete()
    }
}

@available(*, unavailable)
extension FrameProgressHandler: Sendable {}

/// One connection's events for its session, handed to the shell's loop one at a time: frames
/// from the peer, deadlines that passed, frame progress, and the end of the inbound stream.
///
/// The reader hands over one frame and waits until the loop has taken it, so a session busy with
/// storage stops the reading (NIOAsyncChannel's back-pressure then stops the socket). The state is
/// confined to the channel's event loop, where the deadlines run too; a deadline cancelled or
/// restarted after it fired but before the loop took it is not reported (each schedule has its
/// own generation).
package final class SessionEvents<Timer: Hashable & Sendable>: Sendable {
    package enum Event: Sendable {
        case frame(Frame)
        /// The inbound stream ended: nil when the peer closed, else what broke it.
        case ended((any Error)?)
        case timer(Timer)
        case frameProgress(inFrame: Bool)
    }

    private final class State {
        var frame: (Frame, CheckedContinuation<Void, Never>)?
        var ended: Event?
        var fired: [Timer] = []
        var progress: Bool?
        var consumer: CheckedContinuation<Event, Never>?
        var generations: [Timer: UInt64] = [:]
        var nextGeneration: UInt64 = 0
        var scheduled: [Timer: Scheduled<Void>] = [:]
        var shutDown = false

        /// The next event if one is waiting: frame progress, then a frame, then deadlines, then the end.
        func take() -> Event? {
            if let inFrame = progress {
                progress = nil
                return .frameProgress(inFrame: inFrame)
            }
            if let (frame, producer) = frame {
                self.frame = nil
                producer.resume()
                return .frame(frame)
            }
            if !fired.isEmpty { return .timer(fired.removeFirst()) }
            return ended
        }

        /// Wakes a waiting loop if there is an event for it now.
        func wake() {
            guard let consumer, let event = take() else { return }
            self.consumer = nil
            consumer.resume(returning: event)
        }
    }

    private let state: NIOLoopBound<State>
    private let eventLoop: any EventLoop

    /// Call on `eventLoop` (a channel initializer runs there).
    package init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        state = NIOLoopBound(State(), eventLoop: eventLoop)
    }

    /// Runs `body` (the shell's loop, which takes events with `next()`) while a reader hands it
    /// the frames of `inbound`; when `body` returns, the deadlines are cancelled and the reader stops.
    package func feeding(from inbound: NIOAsyncChannelInboundStream<Frame>, _ body: () async throws -> Void) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    for try await frame in inbound { await self.deliver(frame) }
                    self.finish(nil)
                } catch {
                    self.finish(error)
                }
            }
            defer {
                shutDown()
                group.cancelAll()
            }
            try await body()
        }
    }

    /// The next event; waits for one.
    package func next() async -> Event {
        await withCheckedContinuation { continuation in
            onLoop { state in
                if let event = state.take() { continuation.resume(returning: event) } else { state.consumer = continuation }
            }
        }
    }

    /// From the reader: waits until the loop has taken the frame (or the loop has stopped).
    package func deliver(_ frame: Frame) async {
        await withCheckedContinuation { (producer: CheckedContinuation<Void, Never>) in
            onLoop { state in
                guard !state.shutDown else { return producer.resume() }
                state.frame = (frame, producer)
                state.wake()
            }
        }
    }

    /// From the reader: the inbound stream ended.
    package func finish(_ error: (any Error)?) {
        onLoop { state in
            state.ended = .ended(error)
            state.wake()
        }
    }

    /// From the pipeline (`FrameProgressHandler`): only the latest state counts.
    package func frameProgress(inFrame: Bool) {
        onLoop { state in
            state.progress = inFrame
            state.wake()
        }
    }

    /// Starts `timer`, or restarts it if running.
    package func schedule(_ timer: Timer, afterMillis: UInt64) {
        let amount = TimeAmount.milliseconds(Int64(clamping: afterMillis))
        onLoop { [eventLoop] state in
            guard !state.shutDown else { return }
            state.scheduled[timer]?.cancel()
            state.nextGeneration += 1
            let generation = state.nextGeneration
            state.generations[timer] = generation
            state.scheduled[timer] = eventLoop.scheduleTask(in: amount) { self.fire(timer, generation: generation) }
        }
    }

    package func cancel(_ timer: Timer) {
        onLoop { state in
            state.scheduled.removeValue(forKey: timer)?.cancel()
            state.generations[timer] = nil
            state.fired.removeAll { $0 == timer }
        }
    }

    /// The loop stopped: every deadline is cancelled, and a reader waiting to hand over a frame is released.
    package func shutDown() {
        onLoop { state in
            state.shutDown = true
            for (_, task) in state.scheduled { task.cancel() }
            state.scheduled = [:]
            state.generations = [:]
            state.frame?.1.resume()
            state.frame = nil
        }
    }

    private func fire(_ timer: Timer, generation: UInt64) {
        let state = self.state.value
        guard state.generations[timer] == generation else { return }
        state.generations[timer] = nil
        state.scheduled[timer] = nil
        state.fired.append(timer)
        state.wake()
    }

    private func onLoop(_ body: @escaping @Sendable (State) -> Void) {
        let state = self.state
        if eventLoop.inEventLoop { body(state.value) } else { eventLoop.execute { body(state.value) } }
    }
}
