import Foundation
import Logging
import NIOCore
import NIOPosix
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// A peer that speaks frames by hand over loopback, to send what a real replica never would.
struct RawPeer {
    static func connect(port: Int, maxBody: Int = Frame.defaultMaxBody) async throws -> NIOAsyncChannel<Frame, Frame> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxBody: maxBody)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                    return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Sends `frames`, then reads until the hub closes (or `limit` frames), and returns what came.
    static func exchange(port: Int, _ frames: [Frame], readUpTo limit: Int = 16) async throws -> [Message] {
        let channel = try await connect(port: port)
        return try await channel.executeThenClose { inbound, outbound in
            for frame in frames { try await outbound.write(frame) }
            var received: [Message] = []
            var iterator = inbound.makeAsyncIterator()
            do {
                while received.count < limit, let frame = try await iterator.next() {
                    received.append(try MessageCodec().decode(frame))
                }
            } catch let error as IOError where error.errnoCode == ECONNRESET && !received.isEmpty {
                // The hub closed after its answer with frames of ours still unread, so its kernel
                // reset the connection: what it answered before closing was already read.
            }
            return received
        }
    }

    static func hello(token: String, schema: UInt64 = 1, app: String = "raw", maxFrameBody: UInt64 = UInt64(Frame.defaultMaxBody)) -> Frame {
        var random = SystemRandomNumberGenerator()
        let replica = ReplicaID.random(using: &random)
        return MessageCodec().frame(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: schema, replica: replica,
                                                 appVersion: app, credential: .enrolmentToken(token), maxFrameBody: maxFrameBody,
                                                 deviceKey: TestSigner.publicKey(replica))))
    }

    static func heartbeats(_ values: [UInt64]) -> [Frame] {
        values.flatMap { value in
            (0..<4).map { field -> Frame in
                var numbers: [UInt64] = [1, 2, 3, 4]
                numbers[field] = value
                return MessageCodec().frame(.heartbeat(ReplicaHealth(pendingChanges: numbers[0], oldestUnsyncedAgeMillis: numbers[1],
                                                                     openConflicts: numbers[2], schemaVersion: numbers[3])))
            }
        }
    }

    /// Text that does not compress much, so frame sizes are what the test means.
    static func incompressible(_ count: Int, _ random: inout SeededGenerator) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
        return String((0..<count).map { _ in alphabet[random.index(below: alphabet.count)] })
    }
}

extension Integration.LoopbackTests {
    @Test("a hello with schema_version UInt64.max and heartbeats with each field 2^63 and UInt64.max leave the hub serving")
    func extremeIntegersOverTCP() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let frames = [RawPeer.hello(token: try harness.token(), schema: .max)] + RawPeer.heartbeats([1 << 63, .max])
            + [MessageCodec().frame(.goodbye(reason: 0))]
        let answers = try await RawPeer.exchange(port: harness.port, frames)
        guard case let .welcome(welcome)? = answers.first else { throw SyncFailure(.unexpectedMessage, "no welcome: \(answers)") }
        #expect(welcome.maxFrameBody == UInt64(Frame.defaultMaxBody))
        let replica = try harness.replica("after")
        let report = try await harness.sync(replica, token: try harness.token())
        #expect(report.summary.enrolled, "the hub still serves another replica")
        let summaries = try harness.store.replicaSummaries()
        #expect(summaries.contains { $0.schemaVersion == UInt64(Int64.max) && $0.pendingChanges == 1 })
    }

    @Test("after negotiating 65,536, a 70,000-byte frame from the client is refused with FRAME_TOO_LARGE")
    func negotiatedLimitOnHub() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let big = Frame(type: Message.Kind.push.rawValue, payload: [UInt8](repeating: 0, count: 70_000 - 2))
        let answers = try await RawPeer.exchange(port: harness.port, [RawPeer.hello(token: try harness.token(), maxFrameBody: 65_536), big])
        guard case let .welcome(welcome)? = answers.first else { throw SyncFailure(.unexpectedMessage, "no welcome: \(answers)") }
        #expect(welcome.maxFrameBody == 65_536)
        guard answers.count == 2, case let .error(code, fatal, _) = answers[1] else {
            throw SyncFailure(.unexpectedMessage, "expected an error after the welcome: \(answers)")
        }
        #expect(code == .frameTooLarge && fatal)
    }

    @Test("replicas that negotiate 65,536 push and pull changes at the value limit; the hub never sends them a frame above it")
    func negotiatedLimitBothWays() async throws {
        let harness = try await Harness { $0.compressionThreshold = nil }
        defer { harness.stop() }
        var random = SeededGenerator(seed: 64)
        var small = ClientConfiguration()
        small.maxFrameBody = 65_536
        small.compressionThreshold = nil
        let writer = try harness.replica("writer")
        let reader = try harness.replica("reader")
        _ = try await harness.sync(writer, token: try harness.token(), configuration: small)
        _ = try await harness.sync(reader, token: try harness.token(), configuration: small)
        // 24 notes of 20,000 bytes and two at the value limit: ~580 KB, many frames at 65,536.
        var texts: [String: String] = [:]
        try writer.write(author: "w") { tx in
            for index in 0..<26 {
                let text = RawPeer.incompressible(index < 2 ? ChangeLimits.maxValueBytes : 20_000, &random)
                texts["n\(index)"] = text
                try tx.create("note", id: "n\(index)", values: ["text": .text(text)])
            }
        }
        let pushed = try await harness.sync(writer, configuration: small)
        #expect(pushed.summary.pushBatches >= 9, "pushes were cut to fit 65,536-byte frames")
        let pulled = try await harness.sync(reader, configuration: small)
        #expect(pulled.summary.pulled == 26, "one row edit per note")
        for (id, text) in texts {
            let stored = try reader.read { try $0.row("note", id: id)?["text"] }
            #expect(stored == .text(text), "note \(id) arrived whole")
        }
        // One byte over the value limit cannot be written, so it can never be stuck unsynced.
        #expect(throws: StoreError.self) {
            try writer.write(author: "w") { tx in
                try tx.create("note", id: "over", values: ["text": .text(String(repeating: "x", count: ChangeLimits.maxValueBytes + 1))])
            }
        }
        #expect(try writer.read { try $0.count("note") } == 26, "nothing of the refused edit was written")
    }
}

extension Integration.CrashTests {
    @Test("process: forged extreme integers and a hostile app_version do not crash `caresync hub serve`; the operator view shows neither raw")
    func extremeIntegersAgainstTheBinary() async throws {
        let directory = NSTemporaryDirectory() + "caresync-extremes-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hubPath = "\(directory)/hub.db"
        let hub = try HubProcess(database: hubPath)
        defer { hub.kill9() }
        #expect(hub.port > 0, "the hub process started")
        let hostileApp = "evil\u{1B}[2J\u{1B}]0;owned\u{07}\u{202E}\u{9B}31m"
        for schema in [UInt64(1) << 63, .max] {
            let token = try Self.run(["hub", "enroll", "--db", hubPath, "--team", "T"])
            let frames = [RawPeer.hello(token: token, schema: schema, app: hostileApp)] + RawPeer.heartbeats([1 << 63, .max])
                + [MessageCodec().frame(.pull(cursor: .max, byteBudget: .max))]
            let answers = try await RawPeer.exchange(port: hub.port, frames)
            guard case .welcome? = answers.first else { throw SyncFailure(.unexpectedMessage, "no welcome: \(answers)") }
            guard case .error(.cursorAhead, true, _)? = answers.last else { throw SyncFailure(.unexpectedMessage, "pull: \(answers)") }
        }
        #expect(hub.process.isRunning, "the hub survived every frame")
        var random = SystemRandomNumberGenerator()
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema,
                                              replicaID: .random(using: &random), name: "r", wallClock: SystemWallClock())
        try replica.write(author: "w") { tx in try tx.create("note", id: "n", values: ["text": .text("t")]) }
        let token = try Self.run(["hub", "enroll", "--db", hubPath, "--team", "T"])
        let report = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: hub.port, enrolmentToken: token,
                                               retry: RetryPolicy(attempts: 1), logger: Logger(label: "extremes"))
        #expect(report.summary.pushed == 1, "another replica syncs afterwards (one note, one row edit)")

        // A row written raw (as a hub from before the sanitising would have) is escaped when shown.
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // The hub is live: wait for its write lock rather than fail at once with SQLITE_BUSY.
        sqlite.arguments = ["sqlite3", "-cmd", ".timeout 10000", hubPath, "UPDATE hub_replica SET last_error = 'E' || char(27) || '[31m' || char(7) WHERE pending = 1"]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0)
        let text = try Self.run(["hub", "replicas", "--db", hubPath])
        let json = try Self.run(["hub", "replicas", "--db", hubPath, "--json"])
        for output in [text, json] {
            let unsafe = output.unicodeScalars.filter { ($0.value < 0x20 && $0 != "\n") || (0x7F...0x9F).contains($0.value) || $0 == "\u{202E}" }
            #expect(unsafe.isEmpty, "control characters reach the operator: \(unsafe.map(\.value))")
        }
        #expect(text.contains("evil"), "the app version is shown, escaped")
        #expect(text.contains("\\u{1b}[31m"), "a raw stored control character is shown escaped")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        #expect(rows.count == 3)
        #expect(rows.filter { ($0["schema_version"] as? Int64) == Int64.max || ($0["schema_version"] as? Int) == Int.max }.count == 2)
    }
}

extension Integration.LoopbackTests {
    @Test("a hostile hub's reject with retry_after_ms = UInt64.max ends the sync with its code instead of trapping or sleeping")
    func hostileRetryAfter() async throws {
        let codec = MessageCodec()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                    return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                }
            }
        let port = try #require(server.channel.localAddress?.port)
        let serving = Task {
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    try? await connection.executeThenClose { _, outbound in
                        try await outbound.write(codec.frame(.reject(code: .busy, retryAfterMillis: .max, message: "wait forever")))
                    }
                }
            }
        }
        defer { serving.cancel() }
        let directory = NSTemporaryDirectory() + "caresync-retry-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SystemRandomNumberGenerator()
        let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema,
                                              replicaID: .random(using: &random), name: "r", wallClock: SystemWallClock())
        let started = Date()
        do {
            _ = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: port, enrolmentToken: "cse1-x",
                                          retry: RetryPolicy(attempts: 3), logger: Logger(label: "test.client"))
            Issue.record("a sync against a hub that only refuses succeeded")
        } catch let failure as SyncFailure {
            #expect(failure.code == .busy)
        }
        #expect(Date().timeIntervalSince(started) < 5, "the client did not sleep for the hub's retry_after_ms")
    }
}
