import NIOCore
import SyncCore

/// The limit a connection's frame decoder enforces, adjustable after the handshake: until the
/// welcome the limit is the default, after it the negotiated `max_frame_body`
/// (Protocol/framing.md, "The limit"). Read by the decoder on the channel's event loop and set
/// there too, so no lock is needed.
package final class FrameLimit: Sendable {
    private let box: NIOLoopBoundBox<Int>
    private let eventLoop: any EventLoop

    /// Call on `eventLoop` (a channel initializer runs there).
    package init(_ maxBody: Int, eventLoop: any EventLoop) {
        box = NIOLoopBoundBox(maxBody, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    /// The limit now; only on the event loop.
    var current: Int { box.value }

    /// Sets the limit from anywhere; it applies to every frame not yet complete when the returned
    /// future succeeds.
    package func set(_ maxBody: Int) -> EventLoopFuture<Void> {
        let box = self.box
        return eventLoop.submit { box.value = maxBody }
    }
}

/// How many bytes of an unfinished frame a connection's `FrameDecoder` holds: written by the
/// decoder after every step and read for the frame deadline (`FrameProgressHandler`), both on the
/// channel's event loop, so no lock is needed. The parser says where frames end; whoever keeps
/// the time only asks.
package final class FrameProgress: Sendable {
    private let pending: NIOLoopBoundBox<Int>

    /// Call on `eventLoop` (a channel initializer runs there).
    package init(eventLoop: any EventLoop) {
        pending = NIOLoopBoundBox(0, eventLoop: eventLoop)
    }

    func record(pendingBytes: Int) { pending.value = pendingBytes }

    /// Bytes of a frame that has started and not finished; only on the event loop.
    package var pendingBytes: Int { pending.value }

    /// A frame has started and not finished; only on the event loop.
    package var isInsideFrame: Bool { pending.value > 0 }
}

/// How much room a push or batch frame leaves for its changes.
package enum FrameBudget {
    /// The most a push or batch frame body holds besides its changes' encodings and its
    /// provenance: type and flags (2), the batch number or `next_cursor` (a varint, ≤ 10), `more`
    /// (1, batch only) and the change count (a varint, ≤ 10).
    package static let envelopeBytes = 23

    /// Bytes of change encodings that fit in one push or batch frame under `maxBody` beside
    /// `provenance` (its heads and certificates travel after the changes, in the same frame).
    package static func changeBytes(maxBody: Int, provenance: Provenance) -> Int {
        max(0, maxBody - envelopeBytes - provenance.encodedSize)
    }

    /// A recovered frame carries the origin (16 bytes) besides a batch's envelope.
    package static let recoveredEnvelopeBytes = envelopeBytes + 16

    /// Bytes of change encodings that fit in one recovered frame under `maxBody` beside `provenance`.
    package static func recoveredChangeBytes(maxBody: Int, provenance: Provenance) -> Int {
        max(0, maxBody - recoveredEnvelopeBytes - provenance.encodedSize)
    }
}
