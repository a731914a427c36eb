import CareRecords
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import SyncWire

/// Fuzz target (d): the hub session driven by decoded messages against a real SQLite hub store.
///
/// Input: chunks separated by the four bytes `F5 5A C3 3C`. The first chunk is `mode | hello
/// payload`: the harness always sends a hello the hub accepts the credential of (so the fuzzer gets
/// past the handshake), taking its schema version, app version and frame limit from the payload
/// when it decodes (and, with mode bit 1, its protocol versions too). Mode bit 0 picks the
/// credential: 0, an unused enrolment token for a new replica; 1, the device secret of a replica
/// enrolled in the template (with its test key, `TestSigner.publicKey`, as the hello's device key
/// unless the decoded hello carries one of its own, which the hub then checks against that key).
/// Every later chunk is a frame body, `type | flags | payload`, decoded with the negotiated limit
/// and fed to `receive` (or to `protocolError` when it does not decode), as the TCP shell does,
/// until the session closes.
///
/// Every message the hub sends must fit the negotiated frame limit, survive encode and decode, and
/// a fatal error or reject must be followed by a close; an error frame is never answered with one.
enum HubFuzzTarget {
    static let separator: [UInt8] = [0xF5, 0x5A, 0xC3, 0x3C]
    static let baseMillis: UInt64 = 1_800_000_000_000

    struct Template {
        let path: String
        let token: String
        let newcomer: ReplicaID
        let device: ReplicaID
        let secret: [UInt8]
        /// The device's registered key: its test key (SyncTesting's `TestSigner`), which a seed
        /// generator can know (make_seeds.py holds it) and, in Swift, sign pushes with.
        var deviceKey: [UInt8] { TestSigner.publicKey(device) }
    }

    /// The template's enrolled device.
    static let deviceID = ReplicaID(high: 0xF022_4B0B, low: 0xDE71CE)

    /// A hub store made once per process, copied per input: one unused token, one enrolled
    /// device, and the published entitlement catalogue in the log so that pulls return changes.
    static let template: Result<Template, StoreSetupError> = {
        let path = FuzzScratch.path("template-hub.db")
        do {
            var random = SeededGenerator(seed: 0x4_0B5E)
            let store = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random,
                                           hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
            let expires = baseMillis + 86_400_000
            let token = try store.issueEnrolmentToken(team: "FUZZ-A", expiresAtMillis: expires, random: &random)
            let deviceToken = try store.issueEnrolmentToken(team: "FUZZ-B", expiresAtMillis: expires, random: &random)
            // A fixed id, so its test key is fixed too: Tools/fuzz/make_seeds.py puts that key in
            // the device-mode seeds' hellos, which the hub checks against the registered one.
            let device = deviceID
            // Since protocol 3 an enrolment registers the device's key (Protocol/identity.md).
            guard case let .enrolled(_, secret) = try store.redeemEnrolmentToken(deviceToken, replica: device, deviceKey: TestSigner.publicKey(device),
                                                                                 nowMillis: baseMillis, random: &random)
            else { return .failure(StoreSetupError(description: "template hub: the device token was not redeemed")) }
            // The catalogue's origin is hub-keyed: the hub signs its run, as a hub publishing it does.
            _ = try store.publish(EntitlementCatalogue.publishedChanges(), receivedAtMillis: baseMillis)
            return .success(Template(path: path, token: token, newcomer: ReplicaID.random(using: &random), device: device, secret: secret))
        } catch {
            return .failure(StoreSetupError(description: "template hub: \(error)"))
        }
    }()

    static func run(_ input: [UInt8]) -> FuzzOutcome {
        let chunks = split(input)
        guard let first = chunks.first, let mode = first.first else { return .refused("no hello chunk") }
        let store: SQLiteHubStore
        let template: Template
        do {
            template = try Self.template.get()
            let path = FuzzScratch.path("hub.db")
            try FuzzScratch.copy(template.path, to: path)
            var random = SeededGenerator(seed: 1)
            store = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random,
                                       hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
        } catch {
            return .invariantBroken("the fuzz hub could not be set up: \(error)")
        }
        // Fixed "randomness": secrets only need to be stable for a replayable run.
        var session = InlineHubSession(store: store, random: RandomSource { 0x5EED })
        let hello = forcedHello(mode: mode, payload: Array(first.dropFirst()), template)
        var limit = Frame.defaultMaxBody
        var outcome = FuzzOutcome.accepted
        var incoming = Message.hello(hello)
        var index: UInt64 = 0
        while true {
            let actions = session.receive(incoming, nowMillis: baseMillis + index * 1_000)
            if case let .send(.welcome(welcome))? = actions.first { limit = Int(clamping: welcome.maxFrameBody) }
            if let broken = check(actions, answering: incoming, limit: limit, outcome: &outcome) { return broken }
            index += 1
            guard session.state != .closed, Int(index) < chunks.count else { return outcome }
            let chunk = chunks[Int(index)]
            do {
                incoming = try decode(chunk, limit: limit)
            } catch {
                let actions = session.protocolError(error, nowMillis: baseMillis + index * 1_000)
                return check(actions, answering: nil, limit: limit, outcome: &outcome) ?? outcome
            }
        }
    }

    static func split(_ input: [UInt8]) -> [[UInt8]] {
        var chunks: [[UInt8]] = []
        var start = 0
        var index = 0
        while index + separator.count <= input.count {
            if input[index] == separator[0], Array(input[index..<index + separator.count]) == separator {
                chunks.append(Array(input[start..<index]))
                index += separator.count
                start = index
            } else {
                index += 1
            }
        }
        chunks.append(Array(input[start...]))
        return chunks
    }

    static func forcedHello(mode: UInt8, payload: [UInt8], _ template: Template) -> Hello {
        let device = mode & 1 == 1
        var hello = Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1, replica: device ? template.device : template.newcomer,
                          appVersion: "fuzz/1", credential: device ? .device(template.secret) : .enrolmentToken(template.token),
                          maxFrameBody: UInt64(Frame.defaultMaxBody), deviceKey: device ? template.deviceKey : [])
        if case let .hello(fuzzed)? = try? MessageCodec().decode(Frame(type: Message.Kind.hello.rawValue, payload: payload)) {
            hello.schemaVersion = fuzzed.schemaVersion
            hello.appVersion = fuzzed.appVersion
            hello.maxFrameBody = fuzzed.maxFrameBody
            // A decoded hello's key is empty below protocol_max 3, so it fits either range below.
            hello.deviceKey = fuzzed.deviceKey
            if mode & 2 == 2 {
                hello.protocolMin = fuzzed.protocolMin
                hello.protocolMax = fuzzed.protocolMax
            }
        }
        return hello
    }

    /// As the TCP shell does: a frame over the negotiated limit is refused before it is decoded.
    static func decode(_ chunk: [UInt8], limit: Int) throws(WireError) -> Message {
        guard chunk.count >= 2 else { throw WireError(.malformedFrame, "frame length \(chunk.count) is below the 2-byte minimum") }
        guard chunk.count <= limit else { throw WireError(.frameTooLarge, "frame of \(chunk.count) bytes exceeds the \(limit)-byte limit") }
        return try MessageCodec(maxBody: limit).decode(Frame(type: chunk[0], flags: chunk[1], payload: Array(chunk.dropFirst(2))))
    }

    /// The promises every reply of the hub keeps; nil when they hold. Refusals update `outcome`.
    static func check(_ actions: [SessionAction], answering incoming: Message?, limit: Int, outcome: inout FuzzOutcome) -> FuzzOutcome? {
        let codec = MessageCodec(maxBody: limit)
        for (position, action) in actions.enumerated() {
            guard case let .send(message) = action else { continue }
            let frame = codec.frame(message)
            guard frame.payload.count + 2 <= limit else {
                return .invariantBroken("the hub sent a \(message.kind) frame of \(frame.payload.count + 2) bytes over the \(limit)-byte limit")
            }
            if case let .invariantBroken(text) = MessageFuzzTarget.check(message, decodedFrom: nil, codec: codec) {
                return .invariantBroken(text)
            }
            switch message {
            case let .error(code, fatal, text):
                if case .error? = incoming { return .invariantBroken("the hub answered an error frame with an error frame") }
                if fatal, !actions[position...].contains(.close) { return .invariantBroken("a fatal error was not followed by a close") }
                outcome = FuzzOutcome.refusal(WireError(code, text))
            case let .reject(code, _, text):
                if !actions[position...].contains(.close) { return .invariantBroken("a reject was not followed by a close") }
                outcome = FuzzOutcome.refusal(WireError(code, text))
            default:
                break
            }
            if case .invariantBroken = outcome { return outcome }
        }
        return nil
    }
}
