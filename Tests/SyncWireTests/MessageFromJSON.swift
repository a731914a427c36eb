import SyncCore
import SyncWire

/// A vector's `decoded` object (Protocol/vectors/README.md) built into a `Message` without the
/// decoder, so the encoder is checked against the vectors on its own: JSON → message → bytes.
enum MessageFromJSON {
    struct Unreadable: Error, CustomStringConvertible {
        let description: String
    }

    static func message(_ json: JSONValue) throws -> Message {
        let fields = Fields(json)
        switch try fields.string("type") {
        case "hello":
            let credential: Credential = switch try fields.oneKey("credential") {
            case ("none", _): .none
            case let ("enrolment_token", value): .enrolmentToken(try Fields.string(value))
            case let ("device_secret", value): .device(try Fields.hex(value))
            case let (other, _): throw Unreadable(description: "credential kind \(other)")
            }
            return .hello(Hello(protocolMin: try fields.uint("protocol_min"), protocolMax: try fields.uint("protocol_max"),
                                schemaVersion: try fields.uint("schema_version"), replica: try fields.replica("replica"),
                                appVersion: try fields.string("app_version"), credential: credential,
                                maxFrameBody: try fields.uint("max_frame_body"), deviceKey: try Fields.hex(fields.value("device_key"))))
        case "welcome":
            return .welcome(Welcome(protocolVersion: try fields.uint("protocol_version"), schemaVersion: try fields.uint("schema_version"),
                                    hub: try fields.replica("hub"), maxFrameBody: try fields.uint("max_frame_body"),
                                    issuedCredential: try Fields.hex(fields.value("issued_credential")),
                                    hubTimeMillis: try fields.uint("hub_time_ms"), heartbeatIntervalMillis: try fields.uint("heartbeat_interval_ms"),
                                    ownDurable: try fields.uint("own_durable"), hubKey: try Fields.hex(fields.value("hub_key")),
                                    incarnation: try Fields.hex(fields.value("incarnation")),
                                    certificate: try optionalCertificate(fields.value("certificate")),
                                    purges: try fields.array("purges").map(Fields.string)))
        case "reject":
            return .reject(code: try fields.code(), retryAfterMillis: try fields.uint("retry_after_ms"), message: try fields.string("message"))
        case "push":
            return .push(batch: try fields.uint("batch"), changes: try fields.changes(), provenance: try provenance(fields))
        case "push_ack":
            var counters: [ReplicaID: UInt64] = [:]
            for entry in try fields.array("durable") {
                let id = try changeID(entry)
                counters[id.replica] = id.counter
            }
            return .pushAck(batch: try fields.uint("batch"), durable: VersionVector(counters), hubHead: try fields.uint("hub_head"))
        case "pull":
            return .pull(cursor: try fields.uint("cursor"), byteBudget: try fields.uint("byte_budget"))
        case "batch":
            return .batch(nextCursor: try fields.uint("next_cursor"), more: try fields.bool("more"), changes: try fields.changes(),
                          provenance: try provenance(fields))
        case "recover":
            return .recover(origin: try fields.replica("origin"), after: try fields.uint("after"), byteBudget: try fields.uint("byte_budget"))
        case "recovered":
            return .recovered(origin: try fields.replica("origin"), nextCounter: try fields.uint("next_counter"), more: try fields.bool("more"),
                              changes: try fields.changes(), provenance: try provenance(fields))
        case "fork":
            return .fork(newReplica: try fields.replica("new_replica"), deviceKey: try Fields.hex(fields.value("device_key")))
        case "forked":
            return .forked(newReplica: try fields.replica("new_replica"), issuedCredential: try Fields.hex(fields.value("issued_credential")),
                           certificate: try optionalCertificate(fields.value("certificate")))
        case "heartbeat":
            return .heartbeat(ReplicaHealth(pendingChanges: try fields.uint("pending_changes"),
                                            oldestUnsyncedAgeMillis: try fields.uint("oldest_unsynced_age_ms"),
                                            openConflicts: try fields.uint("open_conflicts"), schemaVersion: try fields.uint("schema_version")))
        case "purge_ack":
            return .purgeAck(scopes: try fields.array("scopes").map(Fields.string))
        case "review":
            let decisions = try fields.array("decisions").map { entry in
                let decision = Fields(entry)
                let verdict: HeldVerdict = try decision.string("verdict") == "accept" ? .accept : .dismiss
                return HeldDecision(change: try changeID(decision.value("id")), verdict: verdict)
            }
            let after = try fields.value("after")
            return .review(decisions: decisions, after: after == .null ? nil : try changeID(after))
        case "held":
            let outcomes = try fields.array("outcomes").map { entry in
                let outcome = Fields(entry)
                guard let code = HeldOutcomeCode(rawValue: UInt8(clamping: try outcome.uint("outcome"))) else {
                    throw Unreadable(description: "outcome code")
                }
                return HeldOutcome(change: try changeID(outcome.value("id")), code: code)
            }
            let items = try fields.array("items").map { entry in
                let item = Fields(entry)
                guard let reason = HeldReason(name: try item.string("reason")) else { throw Unreadable(description: "held reason") }
                return HeldItem(fromReplica: try item.replica("from_replica"), reason: reason, receivedAtMillis: try item.uint("received_at_ms"),
                                change: try change(item.value("change")))
            }
            return .held(outcomes: outcomes, more: try fields.bool("more"), items: items)
        case "error":
            return .error(code: try fields.code(), fatal: try fields.bool("fatal"), message: try fields.string("message"))
        case "goodbye":
            return .goodbye(reason: try fields.uint("reason"))
        case let other:
            throw Unreadable(description: "message type \(other)")
        }
    }

    static func provenance(_ fields: Fields) throws -> Provenance {
        Provenance(heads: try fields.array("heads").map(head), certificates: try fields.array("certificates").map(certificate))
    }

    static func head(_ json: JSONValue) throws -> SignedHead {
        let fields = Fields(json)
        let signerNumber = try fields.uint("signer")
        guard let signer = HeadSigner(rawValue: UInt8(truncatingIfNeeded: signerNumber)), signerNumber <= 0xFF else {
            throw Unreadable(description: "head signer \(signerNumber)")
        }
        return SignedHead(origin: try fields.replica("origin"), counter: try fields.uint("counter"), chain: try Fields.hex(fields.value("chain")),
                          signer: signer, signature: try Fields.hex(fields.value("signature")))
    }

    static func certificate(_ json: JSONValue) throws -> DeviceCertificate {
        let fields = Fields(json)
        return DeviceCertificate(replica: try fields.replica("replica"), publicKey: try Fields.hex(fields.value("public_key")),
                                 team: try fields.string("team"), issuedAtMillis: try fields.uint("issued_at_ms"),
                                 attestedThrough: try fields.uint("attested_through"), signature: try Fields.hex(fields.value("signature")))
    }

    static func optionalCertificate(_ json: JSONValue) throws -> DeviceCertificate? {
        json == .null ? nil : try certificate(json)
    }

    static func change(_ json: JSONValue) throws -> Change {
        let fields = Fields(json)
        return Change(id: try changeID(fields.value("id")), timestamp: HybridTimestamp(rawValue: try fields.uint("timestamp")),
                      author: try fields.string("author"), table: try fields.string("table"), row: try fields.string("row"),
                      scope: try fields.string("scope"), causalLength: try fields.uint("causal_length"), setsLife: try fields.bool("sets_life"),
                      fields: try fields.array("fields").map(fieldEdit))
    }

    static func fieldEdit(_ json: JSONValue) throws -> FieldEdit {
        let fields = Fields(json)
        let operation: FieldOperation = switch try fields.oneKey("operation") {
        case let ("assign", value): .assign(try self.value(value))
        case let ("add", value): .add(try self.value(value))
        case let ("remove", value): .remove(try self.value(value))
        case let ("increment", delta): .increment(try Fields.int(delta))
        case let (other, _): throw Unreadable(description: "operation \(other)")
        }
        return FieldEdit(column: try fields.string("column"), operation: operation, supersedes: try fields.array("supersedes").map(changeID))
    }

    static func value(_ json: JSONValue) throws -> FieldValue {
        switch try Fields(json).oneKey(nil) {
        case ("null", _): .null
        case let ("integer", number): .integer(try Fields.int(number))
        case let ("real", number): .real(try Fields.double(number))
        case let ("text", text): .text(try Fields.string(text))
        case let ("blob", hex): .blob(try Fields.hex(hex))
        case let (other, _): throw Unreadable(description: "value type \(other)")
        }
    }

    static func changeID(_ json: JSONValue) throws -> ChangeID {
        let fields = Fields(json)
        return ChangeID(replica: try fields.replica("replica"), counter: try fields.uint("counter"))
    }

    /// Typed access to one JSON object's fields; a missing or mistyped field throws.
    struct Fields {
        let json: JSONValue

        init(_ json: JSONValue) { self.json = json }

        func value(_ key: String) throws -> JSONValue {
            guard let value = json.field(key) else { throw Unreadable(description: "no field \(key) in \(json)") }
            return value
        }

        func string(_ key: String) throws -> String { try Self.string(value(key)) }
        func uint(_ key: String) throws -> UInt64 { try Self.uint(value(key)) }
        func bool(_ key: String) throws -> Bool {
            guard case let .bool(flag) = try value(key) else { throw Unreadable(description: "\(key) is not a boolean") }
            return flag
        }

        func array(_ key: String) throws -> [JSONValue] {
            guard case let .array(items) = try value(key) else { throw Unreadable(description: "\(key) is not a list") }
            return items
        }

        func replica(_ key: String) throws -> ReplicaID {
            guard let id = ReplicaID(hex: try string(key)) else { throw Unreadable(description: "\(key) is not a replica id") }
            return id
        }

        func code() throws -> WireError.Code {
            let name = try string("code")
            guard let code = WireError.Code.allCases.first(where: { $0.name == name }) else { throw Unreadable(description: "code \(name)") }
            return code
        }

        func changes() throws -> [Change] { try array("changes").map(MessageFromJSON.change) }

        /// The one key of a `{"kind": payload}` object (a credential, an operation, a value): of
        /// the field `key`, or of this object itself when `key` is nil.
        func oneKey(_ key: String?) throws -> (String, JSONValue) {
            let object = try key.map(value) ?? json
            guard case let .object(entries) = object, entries.count == 1, let entry = entries.first else {
                throw Unreadable(description: "\(key ?? "value") is not an object of one key")
            }
            return (entry.key, entry.value)
        }

        static func string(_ json: JSONValue) throws -> String {
            guard case let .string(text) = json else { throw Unreadable(description: "\(json) is not a string") }
            return text
        }

        static func hex(_ json: JSONValue) throws -> [UInt8] {
            guard let bytes = Hex.bytes(try string(json)) else { throw Unreadable(description: "\(json) is not hex") }
            return bytes
        }

        static func uint(_ json: JSONValue) throws -> UInt64 {
            switch json {
            case let .int(number) where number >= 0: return UInt64(number)
            case let .uint(number): return number
            default: throw Unreadable(description: "\(json) is not an unsigned integer")
            }
        }

        static func int(_ json: JSONValue) throws -> Int64 {
            guard case let .int(number) = json else { throw Unreadable(description: "\(json) is not a signed 64-bit integer") }
            return number
        }

        static func double(_ json: JSONValue) throws -> Double {
            switch json {
            case let .double(number): return number
            case let .int(number): return Double(number)
            case let .uint(number): return Double(number)
            default: throw Unreadable(description: "\(json) is not a number")
            }
        }
    }
}
