import NIOCore

/// Closes a connection whose peer started a frame and did not finish it in time: a slow-drip
/// peer cannot hold a connection (and its buffer) open indefinitely.
public final class FrameDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = NIOAny

    private let deadline: TimeAmount
    private let farewell: [UInt8]?
    private var pending = 0
    private var expected: Int?
    private var timer: Scheduled<Void>?

    /// `farewell` (an encoded error frame) is written before the connection is closed.
    public init(deadline: TimeAmount, farewell: [UInt8]? = nil) {
        self.deadline = deadline
        self.farewell = farewell
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        track(buffer, context: context)
        context.fireChannelRead(data)
    }

    /// Follows frame boundaries (only the 4-byte lengths) to know whether a frame is in progress.
    private func track(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        var view = buffer
        while view.readableBytes > 0 {
            if let needed = expected {
                let take = min(needed - pending, view.readableBytes)
                view.moveReaderIndex(forwardBy: take)
                pending += take
                if pending == needed { expected = nil; pending = 0 }
            } else {
                // Collect the 4-byte length (it may itself arrive in pieces).
                let take = min(4 - pending, view.readableBytes)
                lengthBytes.append(contentsOf: view.readBytes(length: take)!)
                pending += take
                if pending == 4 {
                    let length = lengthBytes.reduce(0) { $0 << 8 | Int($1) }
                    lengthBytes.removeAll()
                    pending = 0
                    expected = length == 0 ? nil : length
                }
            }
        }
        let inFrame = expected != nil || pending > 0
        if inFrame && timer == nil {
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
        } else if !inFrame {
            timer?.cancel()
            timer = nil
        }
    }

    private var lengthBytes: [UInt8] = []

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}

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
