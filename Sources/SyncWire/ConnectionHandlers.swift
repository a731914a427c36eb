import NIOCore

/// Closes a connection whose peer started a frame and did not finish it in time: a slow-drip
/// peer cannot hold a connection (and its buffer) open indefinitely.
public final class FrameDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let deadline: TimeAmount
    private var pending = 0
    private var expected: Int?
    private var timer: Scheduled<Void>?

    public init(deadline: TimeAmount) { self.deadline = deadline }

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
            let channel = context.channel
            timer = context.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
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

/// Closes a connection when the idle-state handler reports no reads for too long.
public final class IdleCloseHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny

    public init() {}

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
