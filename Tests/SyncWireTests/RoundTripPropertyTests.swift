import SyncCore
import SyncWire
import SyncTesting
import Testing

/// decode(encode(m)) == m for generated messages, with and without compression; and no input,
/// however mangled, makes the decoder do anything but return a message or throw a WireError.
@Suite("Property: message round trips")
struct RoundTripPropertyTests {
    static let cases = 2_500

    @Test("decode(encode(m)) == m, uncompressed (canonical) and compressed")
    func roundTrip() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("RoundTripPropertyTests.roundTrip seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        let plain = MessageCodec(compressionThreshold: nil)
        let compressing = MessageCodec(compressionThreshold: 0)
        var compressedFrames = 0
        for index in 0..<Self.cases {
            var generator = MessageGenerator(random: random)
            let message = generator.message(large: index % 50 == 0)
            random = generator.random
            let bytes = plain.encode(message)
            let decoded = try plain.decode(bytes: bytes)
            #expect(plain.encode(decoded) == bytes, "seed \(seed) case \(index): re-encoding differs")
            if !message.hasNaN {
                #expect(decoded == message, "seed \(seed) case \(index): \(message.kind) did not round-trip")
            }

            let frame = compressing.frame(message)
            if frame.isCompressed {
                compressedFrames += 1
                #expect(message.kind.mayCompress, "seed \(seed) case \(index): \(message.kind) was compressed")
            }
            do {
                let inflated = try compressing.decode(bytes: frame.encoded())
                #expect(plain.encode(inflated) == bytes, "seed \(seed) case \(index): compressed round trip differs")
            } catch {
                Issue.record("seed \(seed) case \(index): the codec refused its own compressed \(message.kind): \(error)")
            }
        }
        #expect(compressedFrames > Self.cases / 50, "seed \(seed): only \(compressedFrames) frames were compressed")
    }

    @Test("a payload that compresses past 100:1 is sent uncompressed, and still decodes")
    func ratioLimitOnEncode() throws {
        let change = Change(id: ChangeID(replica: ReplicaID(high: 1, low: 2), counter: 1), timestamp: HybridTimestamp(rawValue: 1),
                            author: "w", table: "note", row: "n", causalLength: 1,
                            fields: [FieldEdit(column: "scan", operation: .assign(.blob([UInt8](repeating: 0, count: 200_000))))])
        let message = Message.batch(nextCursor: 1, more: false, changes: [change], provenance: .none)
        let codec = MessageCodec()
        #expect(try codec.decode(bytes: codec.encode(message)) == message)
    }

    @Test("mangled vectors decode or throw a WireError, never trap")
    func mangled() throws {
        let seed = SeededGenerator.seedFromEnvironment(default: UInt64.random(in: 1...UInt64.max))
        print("RoundTripPropertyTests.mangled seed=\(seed) (replay with CARESYNC_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        let codec = MessageCodec()
        let vectors = Vectors.positive
        var refused = 0
        for _ in 0..<Self.cases {
            var bytes = vectors.randomElement(using: &random)!.bytes
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let index = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &random)
                default: if bytes.count > 6 { bytes.remove(at: max(index, 6)) }
                }
            }
            do { _ = try codec.decode(bytes: bytes) } catch { refused += 1 }
        }
        #expect(refused > 0, "seed \(seed)")
    }
}

extension Message {
    /// The changes a push, batch, recovered or held carries; none for any other message.
    var changes: [Change] {
        switch self {
        case let .push(_, changes, _), let .batch(_, _, changes, _), let .recovered(_, _, _, changes, _): changes
        case let .held(_, _, items): items.map(\.change)
        default: []
        }
    }

    var hasNaN: Bool { changes.contains(where: \.hasNaN) }
}

extension Change {
    /// A NaN is never equal to itself, so a change holding one is compared by its bytes only.
    var hasNaN: Bool {
        fields.contains { field in
            if case let .real(value) = field.value { value.isNaN } else { false }
        }
    }
}

/// Random messages covering every case, with extreme numbers and multi-byte text.
struct MessageGenerator {
    var random: SeededGenerator

    mutating func number() -> UInt64 {
        switch Int.random(in: 0..<6, using: &random) {
        case 0: 0
        case 1: UInt64.random(in: 1...127, using: &random)
        case 2: UInt64.random(in: 128...16_383, using: &random)
        case 3: UInt64.max - UInt64.random(in: 0...1, using: &random)
        case 4: UInt64(1) << UInt64.random(in: 0...63, using: &random)
        default: random.next()
        }
    }

    mutating func signed() -> Int64 {
        switch Int.random(in: 0..<4, using: &random) {
        case 0: Int64.min
        case 1: Int64.max
        case 2: Int64.random(in: -300...300, using: &random)
        default: Int64(bitPattern: random.next())
        }
    }

    mutating func text(maxLength: Int = 12) -> String {
        let alphabet: [Unicode.Scalar] = ["a", "z", "0", " ", "-", "é", "ë", "’", "✓", "中", "👍", "\u{0}", "\u{7F}", "\u{10FFFF}"]
        let length = Int.random(in: 0...maxLength, using: &random)
        var scalars = String.UnicodeScalarView()
        for _ in 0..<length { scalars.append(alphabet.randomElement(using: &random)!) }
        return String(scalars)
    }

    mutating func blob(maxLength: Int = 20) -> [UInt8] {
        (0..<Int.random(in: 0...maxLength, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    mutating func replica() -> ReplicaID {
        // A few fixed ids make version vectors and supersedes lists share replicas.
        Bool.random(using: &random) ? ReplicaID(high: UInt64.random(in: 0...3, using: &random), low: 7) : ReplicaID.random(using: &random)
    }

    mutating func changeID() -> ChangeID { ChangeID(replica: replica(), counter: max(1, number())) }

    mutating func value() -> FieldValue {
        switch Int.random(in: 0..<5, using: &random) {
        case 0: .null
        case 1: .integer(signed())
        case 2: .real(Double(bitPattern: random.next()))  // any bit pattern, NaNs included
        case 3: .text(text())
        default: .blob(blob())
        }
    }

    mutating func operation() -> FieldOperation {
        switch Int.random(in: 0..<4, using: &random) {
        case 0: .assign(value())
        case 1: .add(value())
        case 2: .remove(value())
        default: .increment(signed())
        }
    }

    mutating func fieldEdit(_ column: String, large: Bool) -> FieldEdit {
        // Duplicates are dropped and the rest sorted by FieldEdit: the decoder accepts only that.
        let supersedes = (0..<Int.random(in: 0...3, using: &random)).map { _ in changeID() }
        return FieldEdit(column: column, operation: large ? .assign(.text(String(repeating: "visit note ", count: 200))) : operation(),
                         supersedes: supersedes)
    }

    /// A column name: any text but the empty one, which names no column.
    mutating func columnName() -> String {
        let name = text(maxLength: 6)
        return name.isEmpty ? "c" : name
    }

    /// A row edit as the decoder accepts it: 0 to 6 fields on distinct columns (none for a
    /// delete, at least one for an edit that does not set the row's life), every operation,
    /// supersedes lists, any causal length and flag.
    mutating func change(large: Bool = false) -> Change {
        let setsLife = Int.random(in: 0..<3, using: &random) == 0
        let causalLength = max(1, number())
        var columns = Set((0..<Int.random(in: 0...6, using: &random)).map { _ in columnName() })
        if setsLife && causalLength % 2 == 0 { columns = [] }
        if !setsLife && columns.isEmpty { columns = [columnName()] }
        let largeColumn = large ? columns.randomElement(using: &random) : nil
        return Change(id: changeID(), timestamp: HybridTimestamp(rawValue: number()), author: text(), table: text(), row: text(),
                      scope: text(), causalLength: causalLength, setsLife: setsLife,
                      fields: columns.sorted().map { fieldEdit($0, large: $0 == largeColumn) })
    }

    mutating func changes(large: Bool) -> [Change] {
        let count = large ? Int.random(in: 5...40, using: &random) : Int.random(in: 0...3, using: &random)
        return (0..<count).map { _ in change(large: large && Bool.random(using: &random)) }
    }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }

    mutating func head() -> SignedHead {
        SignedHead(origin: replica(), counter: max(1, number()), chain: bytes(SignedHead.chainSize),
                   signer: HeadSigner.allCases.randomElement(using: &random)!, signature: bytes(SignedHead.signatureSize))
    }

    mutating func certificate(replica: ReplicaID? = nil) -> DeviceCertificate {
        let team = text(maxLength: 8)
        return DeviceCertificate(replica: replica ?? self.replica(), publicKey: bytes(DeviceCertificate.publicKeySize),
                                 team: team.isEmpty ? "t" : team, issuedAtMillis: number(), attestedThrough: number(),
                                 signature: bytes(SignedHead.signatureSize))
    }

    /// Heads and certificates in their canonical order (sorted, one per key), 0 to 4 of each.
    mutating func provenance() -> Provenance {
        var heads: [String: SignedHead] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            let head = head()
            heads["\(head.origin.hex)/\(head.counter)"] = head
        }
        var certificates: [ReplicaID: DeviceCertificate] = [:]
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            let certificate = certificate()
            certificates[certificate.replica] = certificate
        }
        return Provenance(heads: heads.values.sorted { ($0.origin, $0.counter) < ($1.origin, $1.counter) },
                          certificates: certificates.values.sorted { $0.replica < $1.replica })
    }

    /// 0 to 5 scopes as a scope list carries them: non-empty, without U+0000, ascending, no duplicates.
    mutating func scopes() -> [String] {
        ScopeList.canonical((0..<Int.random(in: 0...5, using: &random)).map { _ in text(maxLength: 12) }
            .map { $0.split(separator: "\u{0}").joined() }.filter { !$0.isEmpty })
    }

    mutating func optionalCertificate() -> DeviceCertificate? { Bool.random(using: &random) ? certificate() : nil }

    mutating func code() -> WireError.Code { WireError.Code.allCases.randomElement(using: &random)! }

    mutating func message(large: Bool) -> Message {
        let kind = large ? [Message.Kind.push, .batch, .recovered].randomElement(using: &random)! : Message.Kind.allCases.randomElement(using: &random)!
        switch kind {
        case .hello:
            let credential: Credential = switch Int.random(in: 0..<3, using: &random) {
            case 0: .none
            case 1: .enrolmentToken(text())
            default: .device(blob(maxLength: 64))
            }
            let protocolMax = number()
            let keyed = Hello.carriesDeviceKey(protocolMax: protocolMax) && Bool.random(using: &random)
            return .hello(Hello(protocolMin: number(), protocolMax: protocolMax, schemaVersion: number(), replica: replica(),
                                appVersion: text(), credential: credential, maxFrameBody: number(),
                                deviceKey: keyed ? bytes(DeviceCertificate.publicKeySize) : []))
        case .welcome:
            return .welcome(Welcome(protocolVersion: number(), schemaVersion: number(), hub: replica(), maxFrameBody: number(),
                                    issuedCredential: blob(maxLength: 64), hubTimeMillis: number(), heartbeatIntervalMillis: number(),
                                    ownDurable: number(), hubKey: bytes(DeviceCertificate.publicKeySize), incarnation: bytes(Welcome.incarnationSize),
                                    certificate: optionalCertificate(), purges: scopes()))
        case .reject:
            return .reject(code: code(), retryAfterMillis: number(), message: text(maxLength: 40))
        case .push:
            return .push(batch: number(), changes: changes(large: large), provenance: provenance())
        case .pushAck:
            var counters: [ReplicaID: UInt64] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &random) { counters[replica()] = max(1, number()) }
            return .pushAck(batch: number(), durable: VersionVector(counters), hubHead: number())
        case .pull:
            return .pull(cursor: number(), byteBudget: number())
        case .batch:
            return .batch(nextCursor: number(), more: Bool.random(using: &random), changes: changes(large: large), provenance: provenance())
        case .heartbeat:
            return .heartbeat(ReplicaHealth(pendingChanges: number(), oldestUnsyncedAgeMillis: number(),
                                            openConflicts: number(), schemaVersion: number()))
        case .purgeAck:
            return .purgeAck(scopes: scopes())
        case .review:
            let ids = Set((0..<Int.random(in: 0...4, using: &random)).map { _ in changeID() }).sorted()
            return .review(decisions: ids.map { HeldDecision(change: $0, verdict: Bool.random(using: &random) ? .accept : .dismiss) },
                           after: Bool.random(using: &random) ? changeID() : nil)
        case .held:
            let outcomes = (0..<Int.random(in: 0...4, using: &random)).map { _ in
                HeldOutcome(change: changeID(), code: [HeldOutcomeCode.recorded, .resolvedAlready, .refused].randomElement(using: &random)!)
            }
            var seen: Set<ChangeID> = []
            let items = (0..<Int.random(in: 0...3, using: &random)).map { _ in change() }.filter { seen.insert($0.id).inserted }
                .sorted { $0.id < $1.id }.map {
                    HeldItem(fromReplica: replica(), reason: Bool.random(using: &random) ? .outOfScope : .restricted, receivedAtMillis: number(),
                             change: $0)
                }
            return .held(outcomes: outcomes, more: Bool.random(using: &random), items: items)
        case .error:
            return .error(code: code(), fatal: Bool.random(using: &random), message: text(maxLength: 40))
        case .goodbye:
            return .goodbye(reason: number())
        case .recover:
            return .recover(origin: replica(), after: number(), byteBudget: number())
        case .recovered:
            return .recovered(origin: replica(), nextCounter: number(), more: Bool.random(using: &random), changes: changes(large: large),
                              provenance: provenance())
        case .fork:
            return .fork(newReplica: replica(), deviceKey: bytes(DeviceCertificate.publicKeySize))
        case .forked:
            return .forked(newReplica: replica(), issuedCredential: blob(maxLength: 64), certificate: optionalCertificate())
        }
    }
}
