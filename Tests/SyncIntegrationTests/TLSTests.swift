import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// TLS 1.3 with mutual authentication between the real hub and real replicas, on loopback
/// (issue 9 item 5): what is accepted, what is refused and how, and what a wire observer sees.
extension Integration {
    @Suite("TLS: mutual TLS 1.3 on loopback")
    struct TLSTests {
        static let day: UInt64 = 86_400_000

        final class Harness {
            let directory = NSTemporaryDirectory() + "caresync-tls-" + UUID().uuidString
            let store: SQLiteHubStore
            let server: HubServer
            let task: Task<Void, Error>
            let hubCertificatePEM: String
            var port = 0

            /// A TLS hub on 127.0.0.1 whose certificate was made at `certificateMadeAt` (now by default).
            init(certificateMadeAt: UInt64 = SystemWallClock().nowMillis(), days: Int = 30) async throws {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let written = try HubTLS.writeCertificate(directory: "\(directory)/tls", hosts: ["127.0.0.1", "localhost"], days: days,
                                                          nowMillis: certificateMadeAt)
                hubCertificatePEM = try String(contentsOfFile: written.configuration.certificatePath, encoding: .utf8)
                var random = SystemRandomNumberGenerator()
                store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
                var configuration = HubServerConfiguration()
                configuration.port = 0
                configuration.tls = written.configuration
                server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"), wallClock: SystemWallClock())
                let server = self.server
                task = Task { try await server.run() }
                port = try await server.listeningPort()
            }

            func replica(_ name: String) throws -> ReplicaStore {
                var random = SystemRandomNumberGenerator()
                return try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.schema,
                                               replicaID: .random(using: &random), name: name, wallClock: SystemWallClock())
            }

            func token() throws -> String {
                var random = SystemRandomNumberGenerator()
                return try store.issueEnrolmentToken(team: "T", expiresAtMillis: SystemWallClock().nowMillis() + 3_600_000, random: &random)
            }

            /// The device configuration of `replica`, trusting `roots` (the hub's certificate unless given).
            func tls(_ replica: ReplicaStore, roots: String? = nil, madeAt: UInt64 = SystemWallClock().nowMillis()) throws -> ClientTLSConfiguration {
                try ClientTLSConfiguration.device(trustRootsPEM: roots ?? hubCertificatePEM, deviceKey: Curve25519.Signing.PrivateKey(),
                                                  replica: replica.replicaID, nowMillis: madeAt)
            }

            func sync(_ replica: ReplicaStore, token: String? = nil, tls: ClientTLSConfiguration?, port: Int? = nil,
                      retry: RetryPolicy = RetryPolicy(attempts: 1)) async throws -> SyncReport {
                try await SyncClient.sync(store: replica, host: "127.0.0.1", port: port ?? self.port, enrolmentToken: token,
                                          tls: tls, retry: retry, logger: Logger(label: "test.client"))
            }

            func stop() {
                task.cancel()
                try? FileManager.default.removeItem(atPath: directory)
            }
        }

        /// A sync that must fail: its `SyncFailure`, after `attempts` allowed attempts, with the sleeps recorded.
        func refusal(_ harness: Harness, _ replica: ReplicaStore, token: String? = nil, tls: ClientTLSConfiguration?,
                     attempts: Int = 5) async throws -> (SyncFailure, sleeps: [UInt64]) {
            let clock = RecordingClock()
            do {
                _ = try await harness.sync(replica, token: token, tls: tls, retry: RetryPolicy(attempts: attempts, clock: clock))
            } catch let failure as SyncFailure {
                return (failure, clock.sleptMillis)
            }
            Issue.record("the sync was expected to fail")
            return (SyncFailure(.timeout, "did not fail"), clock.sleptMillis)
        }

        func write(_ replica: ReplicaStore, _ text: String) throws {
            try replica.write(author: "amara.okafor") { tx in
                try tx.create("note", id: "note-\(UUID().uuidString)", values: ["text": .text(text)])
            }
        }

        @Test("a TLS sync enrols, pushes and pulls: a second replica receives the first one's record")
        func syncOverTLS() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let first = try harness.replica("first"), second = try harness.replica("second")
            try write(first, "over tls")
            let report = try await harness.sync(first, token: try harness.token(), tls: try harness.tls(first))
            #expect(report.summary.enrolled && report.summary.pushed == 1)
            _ = try await harness.sync(second, token: try harness.token(), tls: try harness.tls(second))
            #expect(try second.read { try $0.count("note") } == 1)
            // Later syncs use the device secret, still inside TLS.
            #expect(try await harness.sync(first, tls: try harness.tls(first)).summary.enrolled == false)
        }

        @Test("a hub certificate not signed by the pinned CA is refused, once: AUTHENTICATION_FAILED, not retried")
        func wrongCA() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let other = try HubTLS.makeCertificate(hosts: ["127.0.0.1"], days: 30, nowMillis: SystemWallClock().nowMillis())
            let replica = try harness.replica("r")
            let (failure, sleeps) = try await refusal(harness, replica, token: try harness.token(), tls: try harness.tls(replica, roots: other.certificatePEM))
            #expect(failure.code == .authenticationFailed && failure.message.contains("not trusted"), "\(failure)")
            #expect(sleeps.isEmpty, "an untrusted certificate is not retried: \(sleeps)")
            #expect(try harness.store.replicaSummaries().isEmpty, "nothing reached the session")
        }

        @Test("an expired hub certificate is refused and not retried")
        func expiredHubCertificate() async throws {
            let harness = try await Harness(certificateMadeAt: SystemWallClock().nowMillis() - 10 * Self.day, days: 2)
            defer { harness.stop() }
            let replica = try harness.replica("r")
            let (failure, sleeps) = try await refusal(harness, replica, token: try harness.token(), tls: try harness.tls(replica))
            #expect(failure.code == .authenticationFailed && failure.message.contains("not trusted"), "\(failure)")
            #expect(sleeps.isEmpty)
        }

        @Test("an expired client certificate is refused by the hub and not retried in a loop")
        func expiredClientCertificate() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("r")
            let stale = try harness.tls(replica, madeAt: SystemWallClock().nowMillis() - 60 * Self.day)
            let (failure, sleeps) = try await refusal(harness, replica, token: try harness.token(), tls: stale)
            #expect(failure.code == .authenticationFailed && failure.message.contains("refused this device's certificate"), "\(failure)")
            #expect(sleeps.isEmpty)
            #expect(try harness.store.replicaSummaries().isEmpty)
        }

        @Test("a client with no certificate is refused")
        func noClientCertificate() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(harness.hubCertificatePEM.utf8)))
            let error = try await Self.rawHandshake(port: harness.port, tls)
            #expect(error != nil, "the hub completed a session without a client certificate")
        }

        @Test("a TLS 1.2 client is refused (no downgrade)")
        func tls12Refused() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("r")
            let device = try harness.tls(replica)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.maximumTLSVersion = .tlsv12
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(harness.hubCertificatePEM.utf8)))
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(device.certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(device.privateKeyPEM.utf8), format: .pem))
            let error = try await Self.rawHandshake(port: harness.port, tls)
            #expect(error != nil, "a TLS 1.2 handshake was accepted")
            // The same client at TLS 1.3 gets through: the refusal above was the version.
            tls.maximumTLSVersion = nil
            #expect(try await Self.rawHandshake(port: harness.port, tls) == nil)
        }

        @Test("a plaintext client to a TLS hub fails cleanly and quickly; the hub goes on serving")
        func plaintextClientRefused() async throws {
            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("r")
            let started = ContinuousClock.now
            let (failure, _) = try await refusal(harness, replica, token: try harness.token(), tls: nil, attempts: 1)
            #expect(ContinuousClock.now - started < .seconds(15), "bounded by the handshake deadline at most")
            #expect(!failure.code.name.isEmpty)
            _ = try await harness.sync(replica, token: try harness.token(), tls: try harness.tls(replica))
        }

        @Test("a hub on a host beyond loopback refuses to start without TLS; with TLS it would listen")
        func nonLoopbackNeedsTLS() async throws {
            let directory = NSTemporaryDirectory() + "caresync-tls-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var random = SystemRandomNumberGenerator()
            let store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
            var configuration = HubServerConfiguration()
            configuration.host = "0.0.0.0"
            configuration.port = 0
            let server = HubServer(store: store, configuration: configuration, logger: Logger(label: "test.hub"), wallClock: SystemWallClock())
            let running = Task { try await server.run() }
            // Bounded: a hub that wrongly listens is stopped, not left serving.
            for _ in 0..<100 where server.boundPort == nil { try await Task.sleep(nanoseconds: 10_000_000) }
            if server.boundPort != nil {
                Issue.record("the hub listened on 0.0.0.0 without TLS")
                await server.shutdownGracefully()
            }
            await #expect(throws: HubServerError(code: .tlsRequired, host: "0.0.0.0")) { try await running.value }
        }

        @Test("loopback is 127.0.0.0/8, ::1 and localhost only")
        func loopbackRule() {
            for host in ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"] { #expect(HubTLS.isLoopback(host), "\(host)") }
            for host in ["0.0.0.0", "10.0.0.5", "128.0.0.1", "::", "example.org", "127.0.0", "127.0.0.1.example.org", "localhost.example.org"] {
                #expect(!HubTLS.isLoopback(host), "\(host)")
            }
        }

        @Test("the hub's TLS check of a device certificate: its Ed25519 key comes out raw; expired, not-yet-valid and forged ones are refused")
        func clientCertificateCheck() throws {
            let key = Curve25519.Signing.PrivateKey()
            let now = SystemWallClock().nowMillis()
            func der(_ madeAt: UInt64) throws -> [UInt8] {
                let pem = try DeviceTLSCertificate.make(deviceKey: key, replica: ReplicaID(high: 1, low: 2), nowMillis: madeAt).certificatePEM
                return try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem).toDERBytes()
            }
            #expect(HubTLS.checkClientCertificate(try der(now), nowMillis: now) == .success(Array(key.publicKey.rawRepresentation)))
            #expect(HubTLS.checkClientCertificate(try der(now - 60 * Self.day), nowMillis: now) == .failure(.expired))
            #expect(HubTLS.checkClientCertificate(try der(now + 2 * Self.day), nowMillis: now) == .failure(.notYetValid))
            #expect(HubTLS.checkClientCertificate(nil, nowMillis: now) == .failure(.missing))
            var forged = try der(now)
            forged[forged.count - 3] ^= 0x01  // inside the signature
            #expect(HubTLS.checkClientCertificate(forged, nowMillis: now) == .failure(.badSignature))
        }

        @Test("a wire capture of a TLS sync holds no enrolment token, device secret or record text (and a plaintext one does)")
        func captureShowsNothing() async throws {
            let marker = "Distinctive-Marker-\(UUID().uuidString)"
            // Plaintext first, on a loopback hub, so the test shows it can see the secrets at all.
            let plain = try await LoopbackTests.Harness()
            defer { plain.stop() }
            let plainReplica = try plain.replica("p")
            try write(plainReplica, marker)
            let plainToken = try plain.token()
            let plainCapture = try await Capture.around(port: plain.port) { port in
                _ = try await SyncClient.sync(store: plainReplica, host: "127.0.0.1", port: port, enrolmentToken: plainToken,
                                              retry: RetryPolicy(attempts: 1), logger: Logger(label: "test.client"))
            }
            let plainSecret = try #require(try plainReplica.hubLink()?.credential)
            #expect(plainCapture.includes(Array(marker.utf8)) && plainCapture.includes(Array(plainToken.utf8)) && plainCapture.includes(plainSecret))

            let harness = try await Harness()
            defer { harness.stop() }
            let replica = try harness.replica("r")
            try write(replica, marker)
            let token = try harness.token()
            let tls = try harness.tls(replica)
            let capture = try await Capture.around(port: harness.port) { port in
                _ = try await harness.sync(replica, token: token, tls: tls, port: port)
                // A second sync sends the device secret.
                try write(replica, marker + "-again")
                _ = try await harness.sync(replica, tls: tls, port: port)
            }
            let secret = try #require(try replica.hubLink()?.credential)
            #expect(capture.count > 1000, "the proxy saw the sync: \(capture.count) bytes")
            #expect(!capture.includes(Array(marker.utf8)), "record text in the capture")
            #expect(!capture.includes(Array(token.utf8)), "enrolment token in the capture")
            #expect(!capture.includes(secret), "device secret in the capture")
        }

        /// `caresync` with `arguments`: its exit status and output. A `serve` that keeps running is
        /// stopped once its first line is out (status nil, output that line).
        static func caresync(_ arguments: [String], serves: Bool = false) throws -> (status: Int32?, output: String, stderr: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CrashTests.binary)
            process.arguments = arguments
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            var text = ""
            if serves {
                while !text.contains("\n") {
                    let data = output.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    text += String(decoding: data, as: UTF8.self)
                }
                if process.isRunning { process.terminate() }
            }
            text += String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (process.terminationReason == .exit ? process.terminationStatus : nil, text, stderr)
        }

        @Test("hub serve: refuses a non-loopback host without TLS (exit 64, naming the options); the start-up line names the transport")
        func serveStartUpLines() throws {
            let directory = NSTemporaryDirectory() + "caresync-tls-cli-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let refused = try Self.caresync(["hub", "serve", "--db", "\(directory)/hub.db", "--host", "0.0.0.0", "--port", "0"], serves: true)
            #expect(refused.status == 64, "\(refused)")
            #expect(refused.stderr.contains("--tls-cert") && refused.stderr.contains("--tls-key") && refused.stderr.contains("TLS_REQUIRED"), "\(refused.stderr)")
            let plain = try Self.caresync(["hub", "serve", "--db", "\(directory)/hub.db", "--port", "0"], serves: true)
            #expect(plain.output.contains("(plaintext: loopback only) listening on 127.0.0.1:"), "\(plain.output)")
            let made = try Self.caresync(["hub", "init-tls", "--out", "\(directory)/tls", "--host", "127.0.0.1", "--days", "10"])
            #expect(made.status == 0, "\(made)")
            let mode = try FileManager.default.attributesOfItem(atPath: "\(directory)/tls/hub-key.pem")[.posixPermissions] as? Int
            #expect(mode == 0o600)
            let again = try Self.caresync(["hub", "init-tls", "--out", "\(directory)/tls", "--host", "127.0.0.1"])
            #expect(again.status != 0, "an existing key is never replaced")
            let tls = try Self.caresync(["hub", "serve", "--db", "\(directory)/hub.db", "--port", "0",
                                         "--tls-cert", "\(directory)/tls/hub-cert.pem", "--tls-key", "\(directory)/tls/hub-key.pem"], serves: true)
            #expect(tls.output.contains("(TLS 1.3, client certificates required) listening on 127.0.0.1:"), "\(tls.output)")
            let status = try Self.caresync(["hub", "status", "--db", "\(directory)/hub.db", "--tls-cert", "\(directory)/tls/hub-cert.pem", "--json"])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any], "\(status)")
            #expect(json["tls_expires_at"] is String)
            #expect((json["tls_warning"] as? String)?.contains("expires in") == true, "10 days is within the 14-day warning: \(json)")
        }

        /// A TLS handshake (and a close) with the hub: nil if it completed and the hub kept the
        /// connection, else the error seen. TLS 1.3 clients learn of a refused client certificate
        /// after their side of the handshake, on the first read.
        static func rawHandshake(port: Int, _ configuration: TLSConfiguration) async throws -> (any Error)? {
            let context = try NIOSSLContext(configuration: configuration)
            let seen = ErrorBox()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                        try channel.pipeline.syncOperations.addHandler(ErrorRecorder(box: seen))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            // Long enough for the hub's alert; far below its handshake deadline.
            try await Task.sleep(nanoseconds: 700_000_000)
            let open = channel.isActive
            try? await channel.close()
            return seen.error ?? (open ? nil : ChannelError.ioOnClosedChannel)
        }

        final class ErrorBox: @unchecked Sendable {
            // Safety: only read and written under `lock`.
            private let lock = NSLock()
            private var stored: (any Error)?
            var error: (any Error)? {
                get { lock.withLock { stored } }
                set { lock.withLock { stored = newValue } }
            }
        }

        final class ErrorRecorder: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let box: ErrorBox
            init(box: ErrorBox) { self.box = box }
            func errorCaught(context: ChannelHandlerContext, error: any Error) {
                if box.error == nil { box.error = error }
                context.close(promise: nil)
            }
        }
    }
}

/// A TCP proxy on loopback that forwards a client to the hub and keeps every byte either way.
enum Capture {
    /// Runs `body` with the proxy's port; returns what passed through it, both directions.
    static func around(port target: Int, _ body: (Int) async throws -> Void) async throws -> [UInt8] {
        let recorded = Recorded()
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try await ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.pipeline.addHandler(Forward(peer: inbound, recorded: recorded))
                    }
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { outbound in
                        inbound.pipeline.addHandler(Forward(peer: outbound, recorded: recorded)).flatMap { inbound.setOption(ChannelOptions.autoRead, value: true) }
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { listener.close(promise: nil) }
        try await body(try #require(listener.localAddress?.port))
        return recorded.bytes
    }

    final class Recorded: @unchecked Sendable {
        // Safety: only read and written under `lock`.
        private let lock = NSLock()
        private var stored: [UInt8] = []
        var bytes: [UInt8] { lock.withLock { stored } }
        func append(_ buffer: ByteBuffer) { lock.withLock { stored += buffer.readableBytesView } }
    }

    final class Forward: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let recorded: Recorded
        init(peer: any Channel, recorded: Recorded) {
            self.peer = peer
            self.recorded = recorded
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            recorded.append(buffer)
            peer.writeAndFlush(buffer, promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) { peer.close(promise: nil) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}

extension [UInt8] {
    /// Whether `needle` occurs in these bytes.
    func includes(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        return (0...(count - needle.count)).contains { start in self[start..<(start + needle.count)].elementsEqual(needle) }
    }
}
