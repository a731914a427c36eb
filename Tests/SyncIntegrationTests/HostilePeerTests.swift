import Foundation
import NIOCore
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// A hostile client against the real hub on loopback: the recovery messages (recover, fork, the
/// hub-only recovered and forked) and equivocations, sent as no real replica would.
extension Integration.LoopbackTests {
    /// A hello for `replica` with an enrolment token or a device secret, and its test device key.
    static func hello(_ replica: ReplicaID, _ credential: Credential, maxFrameBody: UInt64 = UInt64(Frame.defaultMaxBody)) -> Frame {
        MessageCodec().frame(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: replica, appVersion: "hostile",
                                          credential: credential, maxFrameBody: maxFrameBody, deviceKey: TestSigner.publicKey(replica))))
    }

    /// Heads for `changes` at every change, signed with their origins' test keys, chained on by `signer`.
    static func signed(_ changes: [Change], _ signer: inout TestSigner) -> Provenance {
        Provenance(heads: signer.heads(changes, alsoAt: Set(changes.map(\.id.counter))))
    }

    /// Enrols `replica` with its test device key straight in the store.
    static func enrol(_ replica: ReplicaID, in store: SQLiteHubStore, team: String = "T") throws {
        var random = SystemRandomNumberGenerator()
        let token = try store.issueEnrolmentToken(team: team, expiresAtMillis: SystemWallClock().nowMillis() + 60_000, random: &random)
        guard case .enrolled = try store.redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica),
                                                              nowMillis: SystemWallClock().nowMillis(), random: &random) else {
            throw SyncFailure(.unexpectedMessage, "no enrolment")
        }
    }

    static func note(_ origin: ReplicaID, _ counter: UInt64, _ text: String) -> Change {
        Change(table: "note", row: "n\(counter)", column: "text", write: FieldWrite(
            id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: SystemWallClock().nowMillis(), logical: 0),
            author: "w", operation: .assign(.text(text))))
    }

    static func frame(_ message: Message) -> Frame { MessageCodec().frame(message) }

    static func randomID() -> ReplicaID {
        var random = SystemRandomNumberGenerator()
        return .random(using: &random)
    }

    static func fatal(_ answers: [Message], _ expected: WireError.Code, _ context: String) {
        guard case let .error(code, fatal, text)? = answers.last else {
            Issue.record("\(context): expected a fatal \(expected.name), got \(answers)")
            return
        }
        #expect(code == expected && fatal, "\(context): \(code.name) \(text)")
    }

    @Test("recover before the welcome, and recovered or forked sent by a client, are UNEXPECTED_MESSAGE and store nothing")
    func hubOnlyMessagesRefused() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let origin = ReplicaID(high: 1, low: 1)
        let early = try await RawPeer.exchange(port: harness.port, [Self.frame(.recover(origin: origin, after: 0, byteBudget: .max))])
        #expect(early.count == 1)
        Self.fatal(early, .unexpectedMessage, "recover before hello")
        for message in [Message.recovered(origin: origin, nextCounter: 1, more: false, changes: [Self.note(origin, 1, "forged")], provenance: .none),
                        .forked(newReplica: origin, issuedCredential: [1, 2, 3], certificate: nil)] {
            let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(Self.randomID(), .enrolmentToken(try harness.token())),
                                                                          Self.frame(message)])
            #expect(answers.count == 2)
            Self.fatal(answers, .unexpectedMessage, "\(message.kind) from a client")
        }
        #expect(try harness.store.head() == 0)
        #expect(try harness.store.ownDurable(origin) == 0)
        #expect(try harness.store.replicaSummaries().allSatisfy { $0.forkedFrom == nil })
    }

    @Test("recover with after = 2^63, UInt64.max and 2^63 - 1 gets an empty answer; a huge budget over a large origin fits the negotiated 65,536")
    func recoverExtremes() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        // 600 changes of ~1 KB held for one origin: far more than one 65,536-byte frame.
        let origin = ReplicaID(high: 2, low: 2)
        var random = SeededGenerator(seed: 2_063)
        let held = (1...600).map { Self.note(origin, UInt64($0), RawPeer.incompressible(1_000, &random)) }
        try Self.enrol(origin, in: harness.store)
        var signer = TestSigner()
        _ = try harness.store.append(held, from: origin, provenance: Self.signed(held, &signer), receivedAtMillis: SystemWallClock().nowMillis())
        let extremes: [UInt64] = [1 << 63, .max, UInt64(Int64.max), 600]
        var frames = [Self.hello(Self.randomID(), .enrolmentToken(try harness.token()), maxFrameBody: 65_536)]
        frames += extremes.map { Self.frame(.recover(origin: origin, after: $0, byteBudget: .max)) }
        frames.append(Self.frame(.recover(origin: origin, after: 0, byteBudget: .max)))
        frames.append(Self.frame(.goodbye(reason: 0)))
        // The peer's decoder refuses any frame above 65,536: a recovered over the limit fails the exchange.
        let channel = try await RawPeer.connect(port: harness.port, maxBody: 65_536)
        let answers = try await channel.executeThenClose { inbound, outbound in
            for frame in frames { try await outbound.write(frame) }
            var received: [Message] = []
            for try await frame in inbound {
                received.append(try MessageCodec().decode(frame))
                if received.count == frames.count - 1 { break }
            }
            return received
        }
        guard answers.count == 6, case .welcome = answers[0] else { throw SyncFailure(.unexpectedMessage, "got \(answers)") }
        for (index, after) in extremes.enumerated() {
            #expect(answers[index + 1] == .recovered(origin: origin, nextCounter: after, more: false, changes: [], provenance: .none), "after = \(after)")
        }
        guard case let .recovered(answerOrigin, next, more, changes, _) = answers[5] else {
            throw SyncFailure(.unexpectedMessage, "expected recovered, got \(answers[5])")
        }
        #expect(answerOrigin == origin && more && !changes.isEmpty && changes.count < 600)
        #expect(next == UInt64(changes.count) && changes == Array(held.prefix(changes.count)))
    }

    @Test("fork into the hub's own id, an existing replica's id or another team's replica is ENROLMENT_INVALID; nothing is registered")
    func forkIntoTakenIDs() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        var random = SeededGenerator(seed: 5)
        let other = ReplicaID.random(using: &random)
        try Self.enrol(other, in: harness.store, team: "U")
        // An origin the hub holds changes of (its device enrolled elsewhere in the team), relayed by `other`.
        let relayed = ReplicaID.random(using: &random)
        try Self.enrol(relayed, in: harness.store, team: "U")
        var signer = TestSigner()
        let note = [Self.note(relayed, 1, "x")]
        _ = try harness.store.append(note, from: other, provenance: Self.signed(note, &signer), receivedAtMillis: SystemWallClock().nowMillis())
        for taken in [harness.store.hubID, other, relayed] {
            let replica = ReplicaID.random(using: &random)
            let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(replica, .enrolmentToken(try harness.token())),
                                                                          Self.frame(.fork(newReplica: taken, deviceKey: TestSigner.publicKey(Self.randomID()))),
                                                                          Self.frame(.goodbye(reason: 0))])
            #expect(answers.count == 2)
            Self.fatal(answers, .enrolmentInvalid, "fork into \(taken.short)")
        }
        let summaries = try harness.store.replicaSummaries()
        #expect(!summaries.contains { $0.replica == harness.store.hubID }, "the hub's own id is never a replica")
        #expect(summaries.first { $0.replica == other }?.team == "U")
        #expect(summaries.allSatisfy { $0.forkedFrom == nil })
    }

    @Test("the fork cap holds across a chain of forks in one session (each fork forking again), not only per replica")
    func forkChainCapped() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let channel = try await RawPeer.connect(port: harness.port)
        // One request at a time, each answer read before the next fork: the hub closes after the
        // refused one, and frames still in flight then would reset the connection.
        let answers = try await channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var received: [Message] = []
            try await outbound.write(Self.hello(Self.randomID(), .enrolmentToken(try harness.token())))
            for _ in 0..<24 {
                guard let frame = try await iterator.next() else { break }
                received.append(try MessageCodec().decode(frame))
                if case .error = received.last { break }
                let next = Self.randomID()
                try await outbound.write(Self.frame(.fork(newReplica: next, deviceKey: TestSigner.publicKey(next))))
            }
            return received
        }
        let forked = answers.filter { if case .forked = $0 { true } else { false } }.count
        #expect(forked == SQLiteHubStore.maxForks, "one enrolment mints at most \(SQLiteHubStore.maxForks) identities")
        Self.fatal(answers, .limitExceeded, "fork \(SQLiteHubStore.maxForks + 1) of a chain")
        #expect(try harness.store.replicaSummaries().count == 1 + SQLiteHubStore.maxForks)
    }

    @Test("after a fork the old identity keeps its secret (the other copy still uses it); the fork's secret works as the new one")
    func forkKeepsOldSecret() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let old = Self.randomID()
        let new = Self.randomID()
        let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(old, .enrolmentToken(try harness.token())),
                                                                      Self.frame(.fork(newReplica: new, deviceKey: TestSigner.publicKey(new))), Self.frame(.goodbye(reason: 0))])
        guard answers.count == 2, case let .welcome(welcome) = answers[0], case let .forked(forkedID, secret, certificate) = answers[1] else {
            throw SyncFailure(.unexpectedMessage, "got \(answers)")
        }
        #expect(forkedID == new)
        let now = SystemWallClock().nowMillis()
        #expect(try harness.store.authenticate(replica: old, secret: welcome.issuedCredential, deviceKey: TestSigner.publicKey(old), nowMillis: now)
            == .accepted(team: "T"))
        #expect(try harness.store.authenticate(replica: new, secret: secret, deviceKey: TestSigner.publicKey(new), nowMillis: now) == .accepted(team: "T"))
        #expect(try harness.store.authenticate(replica: new, secret: welcome.issuedCredential, deviceKey: TestSigner.publicKey(new), nowMillis: now)
            == .unknown)
        #expect(certificate?.publicKey == TestSigner.publicKey(new), "the forked answer carries the new identity's certificate")
        #expect(try harness.store.replicaSummaries().first { $0.replica == new }?.forkedFrom == old)
    }

    @Test("an equivocation flood (distinct versions of held ids, push after push) keeps bounded evidence and is never acknowledged")
    func equivocationFloodBounded() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let replica = Self.randomID()
        let batchSize = 400
        let held = (1...batchSize).map { Self.note(replica, UInt64($0), "v0") }
        // Every version signed by the replica's own key: each one a proven equivocation.
        var signer = TestSigner()
        var frames = [Self.hello(replica, .enrolmentToken(try harness.token())), Self.frame(.push(batch: 1, changes: held, provenance: Self.signed(held, &signer)))]
        for batch in 2...4 {
            var again = TestSigner()
            let versions = (1...batchSize).map { Self.note(replica, UInt64($0), "v\(batch)") }
            frames.append(Self.frame(.push(batch: UInt64(batch), changes: versions, provenance: Self.signed(versions, &again))))
        }
        frames.append(Self.frame(.goodbye(reason: 0)))
        let answers = try await RawPeer.exchange(port: harness.port, frames)
        guard answers.count == 5, case .pushAck = answers[1] else { throw SyncFailure(.unexpectedMessage, "got \(answers)") }
        for answer in answers[2...] {
            guard case .error(.equivocation, false, _) = answer else {
                Issue.record("expected a non-fatal EQUIVOCATION, got \(answer)")
                continue
            }
        }
        let evidence = try harness.store.equivocations()
        #expect(evidence.count <= SQLiteHubStore.maxEvidencePerReplica, "\(evidence.count) refused versions kept")
        // A signed run is refused at its first change held with other bytes: one record per refused push.
        #expect(evidence.count >= 3, "each refused push leaves its evidence")
        #expect(try harness.store.ownDurable(replica) == UInt64(batchSize), "the held versions stay")
        #expect(try harness.store.replicaSummaries().first?.lastError == "EQUIVOCATION")
    }

    @Test("a push whose change ids collide inside the batch with different contents is refused whole and never acknowledged")
    func collidingIDsInOneBatch() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let replica = Self.randomID()
        let batch = [Self.note(replica, 1, "a"), Self.note(replica, 2, "b"), Self.note(replica, 1, "a-again-but-different")]
        var signer = TestSigner()
        let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(replica, .enrolmentToken(try harness.token())),
                                                                      Self.frame(.push(batch: 1, changes: batch, provenance: Self.signed(Array(batch.prefix(2)), &signer))),
                                                                      Self.frame(.goodbye(reason: 0))])
        // Not a run of consecutive counters: the chain does not verify (or, read as versions, an equivocation).
        guard answers.count == 2, case let .error(code, _, _) = answers[1],
              [.equivocation, .signatureInvalid, .chainGap, .unsignedChanges].contains(code) else {
            throw SyncFailure(.unexpectedMessage, "expected the batch refused, got \(answers)")
        }
        #expect(try harness.store.head() == 0, "nothing of the batch is stored")
        #expect(try harness.store.ownDurable(replica) == 0)
    }
}

extension Integration.LoopbackTests {
    @Test("loopback: an enrolled attacker pushing under another replica's origin is refused SIGNATURE_INVALID (its own key) or UNKNOWN_DEVICE (no key); nothing is stored; the victim's own changes still reach another replica, verified")
    func forgedOriginRefused() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let victim = try harness.replica("victim"), reader = try harness.replica("reader")
        _ = try await harness.sync(victim, token: try harness.token())
        _ = try await harness.sync(reader, token: try harness.token())
        let unenrolled = Self.randomID()
        for (origin, expected) in [(victim.replicaID, WireError.Code.signatureInvalid), (unenrolled, .unknownDevice)] {
            let attacker = Self.randomID()
            let forged = [Self.note(origin, 1, "forged")]
            var signer = TestSigner()
            // Signed with the attacker's own (registered) key: the only key it has.
            let heads = Provenance(heads: signer.heads(forged, key: TestSigner.key(attacker)))
            let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(attacker, .enrolmentToken(try harness.token())),
                                                                          Self.frame(.push(batch: 1, changes: forged, provenance: heads))])
            Self.fatal(answers, expected, "a push under \(origin.short)")
        }
        #expect(try harness.store.head() == 0, "nothing of a forged push is stored")
        // The control: the victim's own edit, signed by its key, is relayed and verified by the reader.
        try victim.write(author: "amara.okafor") { try $0.create("note", id: "real", values: ["text": .text("real")]) }
        _ = try await harness.sync(victim)
        let pulled = try await harness.sync(reader)
        #expect(pulled.summary.applied == 1 && pulled.summary.pulled == 1)
        #expect(try reader.heldHeads(origin: victim.replicaID, in: 1...1).count == 1, "the reader keeps the victim's signed head, to relay it")
    }

    @Test("a hello under the hub's own id is refused (ENROLMENT_INVALID) and the token stays unused")
    func helloAsTheHub() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        let token = try harness.token()
        // The hello alone: the hub rejects it and closes, so nothing of ours is left unread there to
        // make its kernel reset the connection before the reject is read.
        let answers = try await RawPeer.exchange(port: harness.port, [Self.hello(harness.store.hubID, .enrolmentToken(token))])
        guard case let .reject(code, _, _)? = answers.first else { throw SyncFailure(.unexpectedMessage, "expected a reject, got \(answers)") }
        #expect(code == .enrolmentInvalid)
        #expect(try harness.store.replicaSummaries().isEmpty, "nothing is registered under the hub's id")
        let replica = try harness.replica("after")
        #expect(try await harness.sync(replica, token: token).summary.enrolled, "the token was not used up")
    }
}
