import NIOCore

/// Closes a connection whose peer started a frame and did not finish it in time: a slow-drip
/// peer cannot hold a connection (and its buffer) open indefinitely (Protocol/session.md, the
/// frame deadline: from a frame's first byte to its last).
///
/// It keeps time only. Whether a frame is unfinished is the frame decoder's to say: the handler
/// sits just after the decoder's `ByteToMessageHandler` and reads the `FrameProgress` the decoder
/// writes. A completed frame stops the clock; the end of a read that leaves part of a frame
/// buffered starts it, unless it is already running for that frame.
public final class FrameDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame

    private let deadline: TimeAmount
    private let farewell: [UInt8]?
    private let progress: FrameProgress
    private var timer: Scheduled<Void>?

    /// `progress` is the one given to the connection's `FrameDecoder`; `farewell` (an encoded
    /// error frame) is written before the connection is closed.
    public init(deadline: TimeAmount, progress: FrameProgress, farewell: [UInt8]? = nil) {
        self.deadline = deadline
        self.progress = progress
        self.farewell = farewell
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        stop()
        context.fireChannelRead(data)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if progress.isInsideFrame {
            if timer == nil { start(context) }
        } else {
            stop()
        }
        context.fireChannelReadComplete()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { stop() }

    private func start(_ context: ChannelHandlerContext) {
        // Written from this handler's place in the pipeline (below the frame encoder): the
        // farewell is already an encoded frame.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let farewell = self.farewell
        timer = context.eventLoop.scheduleTask(in: deadline) {
            let context = bound.value
            let channel = context.channel
            if let farewell {
                context.writeAndFlush(NIOAny(ByteBuffer(bytes: farewell))).whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
        }
    }

    private func stop() {
        timer?.cancel()
        timer = nil
    }
}

@available(*, unavailable)
extension FrameDeadlineHandler: Sendable {}

/// Closes a connection when the idle-state handler reports no reads for too long, after writing
/// `farewell` (an encoded error frame) if given.
public final class IdleCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny
    public typealias OutboundIn = NIOAny
    public typealias OutboundOut = ByteBuffer

    private let farewell: [UInt8]?

    public init(farewell: [UInt8]? = nil) { self.farewell = farewell }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if let farewell {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: farewell))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
