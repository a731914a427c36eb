import Foundation
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Hostile values at the session level: extreme integers in every field, changes at and over the
/// change limits, cursors the hub never gave out, error frames before the hello, and batch and
/// push frames that must fit the negotiated limit.
@Suite("Wire limits: sessions")
struct WireLimitSessionTests {
    static let now: UInt64 = 1_750_000_000_000
    static let extremes: [UInt64] = [0, 1, 1 << 62, 1 << 63, (1 << 63) + 1, UInt64.max - 1, .max]

    final class Fixture {
        let directory = NSTemporaryDirectory() + "caresync-wirelimits-" + UUID().uuidString
        let store: SQLiteHubStore

        init() throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var random = SeededGenerator(seed: 11)
            store = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SystemWallClock(), random: &random)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func hello(_ replica: ReplicaID, schema: UInt64 = 1, app: String = "test", maxFrameBody: UInt64 = 65_536) throws -> Hello {
            var random = SeededGenerator(seed: replica.low)
            let token = try store.issueEnrolmentToken(team: "T", expiresAtMillis: WireLimitSessionTests.now + 60_000, random: &random)
            return Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: schema, replica: replica, appVersion: app,
                         credential: .enrolmentToken(token), maxFrameBody: maxFrameBody, deviceKey: TestSigner.publicKey(replica))
        }

        func ready(_ replica: ReplicaID, schema: UInt64 = 1, app: String = "test", maxFrameBody: UInt64 = 65_536,
                   configuration: HubConfiguration = HubConfiguration()) throws -> InlineHubSession {
            var session = InlineHubSession(store: store, configuration: configuration, random: RandomSource { 42 })
            let actions = session.receive(.hello(try hello(replica, schema: schema, app: app, maxFrameBody: maxFrameBody)),
                                          nowMillis: WireLimitSessionTests.now)
            guard case .send(.welcome) = actions.first else { throw SyncFailure(.unexpectedMessage, "no welcome: \(actions)") }
            return session
        }
    }

    static func note(_ replica: ReplicaID, _ counter: UInt64, textBytes: Int, author: String = "w") -> Change {
        Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
            id: ChangeID(replica: replica, counter: counter), timestamp: HybridTimestamp(physicalMillis: now, logical: 0),
            author: author, operation: .assign(.text(String(repeating: "a", count: textBytes)))))
    }

    /// Heads for a push of `changes`, one at every change (so a page may be cut anywhere), signed
    /// with the origins' test keys; `signer` chains on from its earlier pushes.
    static func signed(_ changes: [Change], _ signer: inout TestSigner) -> Provenance {
        Provenance(heads: signer.heads(changes, alsoAt: Set(changes.map(\.id.counter))))
    }

    static func edit(_ replica: ReplicaID, _ counter: UInt64, fields: [FieldEdit]) -> Change {
        Change(id: ChangeID(replica: replica, counter: counter), timestamp: HybridTimestamp(physicalMillis: now, logical: 0), author: "w",
               table: "note", row: "n\(counter)", causalLength: 1, fields: fields)
    }

    @Test("a hello with schema_version 2^63 or UInt64.max, and heartbeats with each field 2^63 or UInt64.max, are stored saturated")
    func extremeHealthIsSaturated() throws {
        let fixture = try Fixture()
        for (index, schema) in [UInt64(1) << 63, .max].enumerated() {
            let replica = ReplicaID(high: 1, low: UInt64(index + 1))
            var session = try fixture.ready(replica, schema: schema)
            for value in [UInt64(1) << 63, .max] {
                for field in 0..<4 {
                    var numbers: [UInt64] = [1, 2, 3, 4]
                    numbers[field] = value
                    let health = ReplicaHealth(pendingChanges: numbers[0], oldestUnsyncedAgeMillis: numbers[1],
                                               openConflicts: numbers[2], schemaVersion: numbers[3])
                    #expect(session.receive(.heartbeat(health), nowMillis: Self.now).isEmpty, "a heartbeat is not answered")
                }
            }
            #expect(session.state != .closed)
        }
        let summaries = try fixture.store.replicaSummaries()
        #expect(summaries.count == 2)
        #expect(summaries.allSatisfy { $0.schemaVersion == UInt64(Int64.max) && $0.pendingChanges == 1 })
    }

    @Test("a pull cursor above the hub's head (2^63 and up included) is refused with CURSOR_AHEAD; at the head it gets an empty batch")
    func cursorAheadRefused() throws {
        let fixture = try Fixture()
        let writer = ReplicaID(high: 2, low: 1)
        var pusher = try fixture.ready(writer)
        var signer = TestSigner()
        let three = (1...3).map { Self.note(writer, $0, textBytes: 5) }
        let pushed = pusher.receive(.push(batch: 1, changes: three, provenance: Self.signed(three, &signer)), nowMillis: Self.now)
        guard case .send(.pushAck(_, _, 3)) = pushed.first else { throw SyncFailure(.unexpectedMessage, "push: \(pushed)") }
        for cursor in [4, 1 << 62, 1 << 63, UInt64.max] as [UInt64] {
            var puller = try fixture.ready(ReplicaID(high: 2, low: cursor | 2))
            let answer = puller.receive(.pull(cursor: cursor, byteBudget: 1 << 20), nowMillis: Self.now)
            guard case .send(.error(.cursorAhead, true, _)) = answer.first else {
                Issue.record("cursor \(cursor): expected CURSOR_AHEAD, got \(answer)")
                continue
            }
            #expect(answer.last == .close)
        }
        var atHead = try fixture.ready(ReplicaID(high: 2, low: 99))
        #expect(atHead.receive(.pull(cursor: 3, byteBudget: 1 << 20), nowMillis: Self.now)
            == [.send(.batch(nextCursor: 3, more: false, changes: [], provenance: .none))])
        var fromZero = try fixture.ready(ReplicaID(high: 2, low: 98))
        guard case let .send(.batch(_, _, changes, _)) = fromZero.receive(.pull(cursor: 0, byteBudget: 1 << 20), nowMillis: Self.now).first else {
            throw SyncFailure(.unexpectedMessage, "no batch")
        }
        #expect(changes.count == 3)
    }

    @Test("an error frame is never answered with an error frame, before or after the hello")
    func errorNotAnswered() throws {
        let fixture = try Fixture()
        var early = InlineHubSession(store: fixture.store, random: RandomSource { 1 })
        #expect(early.receive(.error(code: .timeout, fatal: true, message: "x"), nowMillis: Self.now) == [.close])
        var ready = try fixture.ready(ReplicaID(high: 3, low: 1))
        // Not answered either way: a non-fatal one is recorded and the session goes on, a fatal one closes it.
        #expect(ready.receive(.error(code: .malformedMessage, fatal: false, message: "x"), nowMillis: Self.now) == [])
        #expect(ready.receive(.error(code: .malformedMessage, fatal: true, message: "x"), nowMillis: Self.now) == [.close])
    }

    @Test("a push of a change at the value limit is stored; one byte over, or over any other change limit, is refused and nothing is stored")
    func changeLimitsAtPush() throws {
        let fixture = try Fixture()
        let replica = ReplicaID(high: 4, low: 1)
        var session = try fixture.ready(replica)
        let atLimit = Self.note(replica, 1, textBytes: ChangeLimits.maxValueBytes)
        #expect(ChangeLimits.violation(of: atLimit) == nil)
        var signer = TestSigner()
        let accepted = session.receive(.push(batch: 1, changes: [atLimit], provenance: Self.signed([atLimit], &signer)), nowMillis: Self.now)
        #expect(accepted == [.send(.pushAck(batch: 1, durable: VersionVector([replica: 1]), hubHead: 1))])

        let over: [Change] = [
            Self.note(replica, 2, textBytes: ChangeLimits.maxValueBytes + 1),
            Self.note(replica, 2, textBytes: 1, author: String(repeating: "w", count: ChangeLimits.maxAuthorBytes + 1)),
            Change(table: String(repeating: "t", count: ChangeLimits.maxNameBytes + 1), row: "r", column: "c",
                   write: Self.note(replica, 2, textBytes: 1).write),
            Change(table: "note", row: String(repeating: "r", count: ChangeLimits.maxRowBytes + 1), column: "text",
                   write: Self.note(replica, 2, textBytes: 1).write),
            Change(table: "note", row: "r", column: String(repeating: "c", count: ChangeLimits.maxNameBytes + 1),
                   write: Self.note(replica, 2, textBytes: 1).write),
            Change(table: "note", row: "r", column: "text", write: FieldWrite(
                id: ChangeID(replica: replica, counter: 2), timestamp: HybridTimestamp(physicalMillis: Self.now, logical: 0), author: "w",
                operation: .assign(.null),
                supersedes: (1...UInt64(ChangeLimits.maxSupersedes + 1)).map { ChangeID(replica: replica, counter: $0) })),
            // Every field within its own limit, the edit over the size limit.
            Self.edit(replica, 2, fields: ["body", "text"].map { column in
                FieldEdit(column: column, operation: .assign(.text(String(repeating: "a", count: ChangeLimits.maxEncodedBytes / 2 + 1))))
            }),
            Self.edit(replica, 2, fields: (0...ChangeLimits.maxFields).map { FieldEdit(column: "c\($0)", operation: .assign(.integer(1))) }),
        ]
        for (index, change) in over.enumerated() {
            var fresh = try fixture.ready(ReplicaID(high: 4, low: UInt64(index) + 2))
            let refused = fresh.receive(.push(batch: 1, changes: [Self.note(replica, 3, textBytes: 1), change], provenance: .none), nowMillis: Self.now)
            guard case .send(.error(.limitExceeded, true, _)) = refused.first else {
                Issue.record("expected LIMIT_EXCEEDED, got \(refused)")
                continue
            }
            #expect(refused.last == .close)
        }
        #expect(try fixture.store.head() == 1, "nothing of a refused push was stored")
        // The largest one-field change the field limits allow still fits the smallest negotiable
        // frame. (An edit of several fields can be over the size limit with every field within
        // its own: the size is checked too, above.)
        let largest = Change(table: String(repeating: "t", count: ChangeLimits.maxNameBytes),
                             row: String(repeating: "r", count: ChangeLimits.maxRowBytes),
                             column: String(repeating: "c", count: ChangeLimits.maxNameBytes), write: FieldWrite(
                                id: ChangeID(replica: replica, counter: UInt64(Int64.max)), timestamp: HybridTimestamp(rawValue: .max),
                                causalLength: UInt64(Int64.max), author: String(repeating: "w", count: ChangeLimits.maxAuthorBytes),
                                operation: .assign(.blob([UInt8](repeating: 0xFF, count: ChangeLimits.maxValueBytes))),
                                supersedes: (1...UInt64(ChangeLimits.maxSupersedes)).map { ChangeID(replica: replica, counter: UInt64(Int64.max) - $0) }))
        #expect(ChangeLimits.violation(of: largest) == nil)
        // 55,993 bytes before row edits, plus the empty scope, the flags byte and the field count.
        #expect(ChangeLimits.encodedSize(largest) == 55_996)
        #expect(ChangeLimits.encodedSize(largest) <= ChangeLimits.maxEncodedBytes)
        #expect(ChangeLimits.maxEncodedBytes <= FrameBudget.changeBytes(maxBody: Int(ProtocolConstants.minimumFrameBody), provenance: .none))
    }

    @Test("property: every batch frame the hub builds fits the negotiated limit, for random change sizes, budgets and limits")
    func batchesFitNegotiatedLimit() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("WireLimitSessionTests.batchesFitNegotiatedLimit seed=\(seed)")
        var random = SeededGenerator(seed: seed)
        let fixture = try Fixture()
        let writer = ReplicaID(high: 5, low: 1)
        var pusher = try fixture.ready(writer, maxFrameBody: UInt64(Frame.defaultMaxBody))
        var counter: UInt64 = 0
        var signer = TestSigner()
        for batch in 1...4 {
            var changes: [Change] = []
            for _ in 0..<40 {
                counter += 1
                let size = random.coin() ? random.index(below: 200) : ChangeLimits.maxValueBytes - random.index(below: 2_000)
                changes.append(Self.note(writer, counter, textBytes: size))
            }
            let ack = pusher.receive(.push(batch: UInt64(batch), changes: changes, provenance: Self.signed(changes, &signer)), nowMillis: Self.now)
            guard case .send(.pushAck) = ack.first else { throw SyncFailure(.unexpectedMessage, "seed \(seed): push \(ack)") }
        }
        let codec = MessageCodec(maxBody: Frame.defaultMaxBody, compressionThreshold: nil)
        for trial in 0..<24 {
            let limit = trial == 0 ? 65_536 : random.element(of: [65_536, 65_537, 70_000, 100_000, 131_072, 1 << 20, Frame.defaultMaxBody])
            let budget = random.element(of: [0, 1, 1_000, 65_536, 65_537, 1 << 20, UInt64.max] as [UInt64])
            var puller = try fixture.ready(ReplicaID(high: 5, low: UInt64(trial) + 100), maxFrameBody: UInt64(limit))
            #expect(puller.maxFrameBody == limit)
            var cursor: UInt64 = 0
            var received = 0
            while true {
                let answer = puller.receive(.pull(cursor: cursor, byteBudget: budget), nowMillis: Self.now)
                guard case let .send(message) = answer.first, case let .batch(next, more, changes, _) = message else {
                    Issue.record("seed \(seed): limit \(limit) budget \(budget): expected a batch, got \(answer)")
                    break
                }
                let size = codec.frame(message).payload.count + 2
                #expect(size <= limit, "seed \(seed): a \(size)-byte batch frame under a \(limit)-byte limit (budget \(budget))")
                received += changes.count
                cursor = next
                if !more { break }
            }
            #expect(received == Int(counter), "seed \(seed): every change pulled")
        }
    }

    @Test("property: extreme integers in every field of every message leave both sessions standing")
    func extremeIntegersEverywhere() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("WireLimitSessionTests.extremeIntegersEverywhere seed=\(seed)")
        var random = SeededGenerator(seed: seed)
        let fixture = try Fixture()
        func pick() -> UInt64 { random.coin() ? random.element(of: Self.extremes) : random.next() }
        for round in 0..<60 {
            let replica = ReplicaID(high: 6, low: UInt64(round) + 1)
            var hello = try fixture.hello(replica, schema: pick(), maxFrameBody: pick())
            hello.protocolMin = random.coin() ? 1 : pick()
            hello.protocolMax = random.coin() ? 1 : pick()
            var session = InlineHubSession(store: fixture.store, random: RandomSource { 7 })
            _ = session.receive(.hello(hello), nowMillis: random.coin() ? Self.now : pick())
            let write = FieldWrite(id: ChangeID(replica: replica, counter: max(1, pick())), timestamp: HybridTimestamp(rawValue: pick()),
                                   causalLength: pick(), author: "w", operation: random.coin() ? .increment(Int64(bitPattern: pick())) : .assign(.integer(Int64(bitPattern: pick()))),
                                   supersedes: [ChangeID(replica: replica, counter: max(1, pick()))])
            let messages: [Message] = [
                .heartbeat(ReplicaHealth(pendingChanges: pick(), oldestUnsyncedAgeMillis: pick(), openConflicts: pick(), schemaVersion: pick())),
                .pull(cursor: pick(), byteBudget: pick()),
                .push(batch: random.coin() ? 1 : pick(), changes: [Change(table: "note", row: "r", column: "text", write: write)], provenance: .none),
                .error(code: .busy, fatal: random.coin(), message: "x"),
                .goodbye(reason: pick()),
            ]
            for message in random.shuffled(messages) { _ = session.receive(message, nowMillis: random.coin() ? Self.now : pick()) }
        }
        #expect(try fixture.store.replicaSummaries().allSatisfy { ($0.schemaVersion ?? 0) <= UInt64(Int64.max) })
    }

    // MARK: the client's side

    func clientSession(_ fixture: Fixture, maxFrameBody: Int = 65_536) throws -> ClientSession { try clientAndStore(fixture, maxFrameBody).0 }

    func clientAndStore(_ fixture: Fixture, _ maxFrameBody: Int = 65_536) throws -> (ClientSession, ReplicaStore) {
        var random = SystemRandomNumberGenerator()
        let store = try ReplicaStore.create(at: "\(fixture.directory)/r\(UUID().uuidString).db", schema: SimulationSchema.schema,
                                            replicaID: .random(using: &random), name: "r", wallClock: FixedWallClock(millis: Self.now))
        try store.setHubAddress("127.0.0.1:1")
        var configuration = ClientConfiguration()
        configuration.maxFrameBody = maxFrameBody
        var session = ClientSession(store: store, credential: .device([1]), configuration: configuration)
        _ = session.start()
        return (session, store)
    }

    func welcome(maxFrameBody: UInt64) -> Message {
        .welcome(Welcome(protocolVersion: ProtocolConstants.version, schemaVersion: 1, hub: ReplicaID(high: 9, low: 9), maxFrameBody: maxFrameBody,
                         issuedCredential: [], hubTimeMillis: Self.now, heartbeatIntervalMillis: 30_000,
                         hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16), certificate: nil))
    }

    @Test("client: a welcome's max_frame_body is adopted, and refused with LIMIT_EXCEEDED above the hello's or below 65,536")
    func clientAdoptsWelcomeLimit() throws {
        let fixture = try Fixture()
        var adopted = try clientSession(fixture, maxFrameBody: 100_000)
        _ = adopted.receive(welcome(maxFrameBody: 70_000))
        #expect(adopted.maxFrameBody == 70_000 && adopted.failure == nil)
        for bad in [0, 65_535, 100_001, UInt64.max] as [UInt64] {
            var session = try clientSession(fixture, maxFrameBody: 100_000)
            let actions = session.receive(welcome(maxFrameBody: bad))
            #expect(session.failure?.code == .limitExceeded, "welcome max_frame_body \(bad)")
            #expect(actions.last == .close)
        }
    }

    @Test("client: a welcome naming protocol version 3 is refused with UNSUPPORTED_VERSION, naming both versions")
    func clientRefusesVersionThree() throws {
        let fixture = try Fixture()
        var session = try clientSession(fixture)
        let actions = session.receive(.welcome(Welcome(protocolVersion: 3, schemaVersion: 1, hub: ReplicaID(high: 9, low: 9), maxFrameBody: 65_536,
                                                       issuedCredential: [], hubTimeMillis: Self.now, heartbeatIntervalMillis: 30_000,
                                                       hubKey: [UInt8](repeating: 0, count: 32), incarnation: [UInt8](repeating: 0, count: 16),
                                                       certificate: nil)))
        #expect(session.failure?.code == .unsupportedVersion)
        #expect(session.failure?.message.contains("hub chose protocol version 3; this client speaks 4 only") == true, "\(String(describing: session.failure))")
        #expect(actions.last == .close)
    }

    @Test("client: a fatal error frame is answered by closing, never by an error frame")
    func clientDoesNotAnswerErrors() throws {
        let fixture = try Fixture()
        var session = try clientSession(fixture)
        #expect(session.receive(.error(code: .busy, fatal: true, message: "x")) == [.close])
        var later = try clientSession(fixture)
        _ = later.receive(welcome(maxFrameBody: 65_536))
        let actions = later.receive(.error(code: .storageFailure, fatal: false, message: "x"))
        #expect(!actions.contains { if case .send(.error) = $0 { true } else { false } })
    }

    @Test("client: extreme integers from a hostile hub in welcome, push-ack and batch never trap; a cursor above 2^63 - 1 is refused")
    func clientSurvivesExtremeHub() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("WireLimitSessionTests.clientSurvivesExtremeHub seed=\(seed)")
        var random = SeededGenerator(seed: seed)
        let fixture = try Fixture()
        func pick() -> UInt64 { random.coin() ? random.element(of: Self.extremes) : random.next() }
        for _ in 0..<20 {
            var (session, store) = try clientAndStore(fixture)
            let messages: [Message] = [
                welcome(maxFrameBody: random.coin() ? 65_536 : pick()),
                .pushAck(batch: pick(), durable: VersionVector([ReplicaID(high: 1, low: 1): max(1, pick())]), hubHead: pick()),
                .batch(nextCursor: pick(), more: random.coin(), changes: [], provenance: .none),
                .reject(code: .busy, retryAfterMillis: pick(), message: "x"),
            ]
            for message in messages where !session.isFinished { _ = session.receive(message) }
            #expect(try store.hubLink().map { $0.pullCursor <= UInt64(Int64.max) } ?? true)
        }
        var (refused, refusedStore) = try clientAndStore(fixture)
        _ = refused.receive(welcome(maxFrameBody: 65_536))
        _ = refused.receive(.held(outcomes: [], more: false, items: []))
        _ = refused.receive(.batch(nextCursor: 1 << 63, more: false, changes: [], provenance: .none))
        #expect(refused.failure?.code == .malformedMessage)
        #expect(try refusedStore.hubLink()?.pullCursor == 0, "the forged cursor was not stored")
    }

    @Test("property: every push frame the client builds fits the negotiated limit, for random change sizes and limits")
    func pushesFitNegotiatedLimit() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        print("WireLimitSessionTests.pushesFitNegotiatedLimit seed=\(seed)")
        var random = SeededGenerator(seed: seed)
        let fixture = try Fixture()
        let codec = MessageCodec(maxBody: Frame.defaultMaxBody, compressionThreshold: nil)
        for trial in 0..<6 {
            let limit = trial == 0 ? 65_536 : random.element(of: [65_536, 65_537, 80_000, 200_000, 1 << 20])
            var (session, store) = try clientAndStore(fixture, limit)
            try store.write(author: "w") { tx in
                for index in 0..<30 {
                    let size = random.coin() ? random.index(below: 300) : ChangeLimits.maxValueBytes - random.index(below: 3_000)
                    try tx.create("note", id: "n\(index)", values: ["text": .text(String(repeating: "z", count: size))])
                }
            }
            var actions = session.receive(welcome(maxFrameBody: UInt64(limit)))
            var pushed = 0
            while case let .send(.push(batch, changes, provenance))? = actions.last {
                let size = codec.frame(.push(batch: batch, changes: changes, provenance: provenance)).payload.count + 2
                #expect(size <= limit, "seed \(seed): a \(size)-byte push frame under a \(limit)-byte limit")
                pushed += changes.count
                let top = changes.map(\.id.counter).max() ?? 0
                actions = session.receive(.pushAck(batch: batch, durable: VersionVector([store.replicaID: top]), hubHead: top))
            }
            #expect(pushed == 30, "seed \(seed): every change pushed, one row edit per note (\(pushed)); last actions \(actions)")
        }
    }

    @Test("the hub stores a hello's app_version without control or format characters, cut to 64 bytes")
    func appVersionSanitisedAtStore() throws {
        let fixture = try Fixture()
        _ = try fixture.ready(ReplicaID(high: 7, low: 1), app: "evil\u{1B}[2J\u{07}\u{202E}" + String(repeating: "x", count: 100))
        let stored = try #require(try fixture.store.replicaSummaries().first?.appVersion)
        #expect(stored.utf8.count <= 64)
        #expect(stored.hasPrefix("evil\u{FFFD}[2J\u{FFFD}\u{FFFD}x"))
    }

    @Test("a stored change too large for the negotiated frame (from before the limits) is answered with a non-fatal LIMIT_EXCEEDED, never an oversized frame")
    func legacyOversizedChange() throws {
        let fixture = try Fixture()
        let writer = ReplicaID(high: 8, low: 1)
        _ = try fixture.ready(writer)
        let oversized = [Self.note(writer, 1, textBytes: 70_000)]
        var signer = TestSigner()
        _ = try fixture.store.append(oversized, from: writer, provenance: Self.signed(oversized, &signer), receivedAtMillis: Self.now)
        var small = try fixture.ready(ReplicaID(high: 8, low: 2), maxFrameBody: 65_536)
        let refused = small.receive(.pull(cursor: 0, byteBudget: 1 << 20), nowMillis: Self.now)
        guard case .send(.error(.limitExceeded, false, _)) = refused.first, refused.count == 1 else {
            throw SyncFailure(.unexpectedMessage, "expected a non-fatal LIMIT_EXCEEDED, got \(refused)")
        }
        var large = try fixture.ready(ReplicaID(high: 8, low: 3), maxFrameBody: 1 << 20)
        guard case let .send(.batch(_, _, changes, _)) = large.receive(.pull(cursor: 0, byteBudget: 1), nowMillis: Self.now).first else {
            throw SyncFailure(.unexpectedMessage, "no batch under a 1 MiB limit")
        }
        #expect(changes.count == 1, "a larger limit still gets it")
    }

    @Test("a frame decoded before the limit was lowered is refused by the codec with FRAME_TOO_LARGE")
    func codecChecksFrameLength() {
        let frame = Frame(type: Message.Kind.goodbye.rawValue, payload: [UInt8](repeating: 0, count: 70_000))
        #expect(throws: WireError(.frameTooLarge, "frame of 70002 bytes exceeds the 65536-byte limit")) {
            try MessageCodec(maxBody: 65_536).decode(frame)
        }
    }
}
