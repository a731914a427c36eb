import NIOCore
import NIOPosix
@testable import SyncHub
import Testing

/// The registry between a channel's initializer and the hub's accept loop, over real loopback
/// sockets.
@Suite("Connection registry")
struct ConnectionRegistryTests {
    @Test("a connection that closes before the accept loop takes its decision is still admitted, not refused as busy")
    func closedBeforeTaken() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let registry = ConnectionRegistry(limits: .init(maxConnections: 8, maxUnauthenticated: 4, handshakeMillis: 10_000,
                                                        pressuredHandshakeMillis: 2_000),
                                          failures: AuthenticationFailureBudget())
        let accepted = group.next().makePromise(of: (any Channel).self)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                _ = registry.admit(channel)
                accepted.succeed(channel)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let client = try await ClientBootstrap(group: group).connect(to: try #require(server.localAddress)).get()
        let child = try await accepted.futureResult.get()
        // The peer goes at once; the hub's side closes on end of input, before anyone asks.
        try await client.close()
        try await child.closeFuture.get()
        let decision = registry.decision(for: child)
        guard case .admitted = decision else {
            Issue.record("a connection closed before its decision was taken was refused: \(decision)")
            try await server.close()
            try await group.shutdownGracefully()
            return
        }
        #expect(registry.count == 0, "its slot was released when it closed")
        try await server.close()
        try await group.shutdownGracefully()
    }
}
