import SyncCore
import SyncWire

/// A decoded message in the JSON shape of Protocol/vectors/README.md, so the codec's output can be
/// compared with a vector's `decoded` object.
enum MessageJSON {
    static func json(_ message: Message, compressed: Bool) -> JSONValue {
        var fields: [String: JSONValue] = ["type": .string(typeName(message.kind)), "compressed": .bool(compressed)]
        // A relayed batch has a batch's bytes, and reads as the batch it decodes to.
        switch message.decoded ?? message {
        case .relayedBatch, .relayedRecovered:
            fields["undecodable"] = .bool(true)
        case let .hello(hello):
            fields["protocol_min"] = .uint(hello.protocolMin)
            fields["protocol_max"] = .uint(hello.protocolMax)
            fields["schema_version"] = .uint(hello.schemaVersion)
            fields["replica"] = .string(hello.replica.hex)
            fields["app_version"] = .string(hello.appVersion)
            fields["credential"] = switch hello.credential {
            case .none: .object(["none": .null])
            case let .enrolmentToken(token): .object(["enrolment_token": .string(token)])
            case let .device(secret): .object(["device_secret": .string(secret.hexString)])
            }
            fields["max_frame_body"] = .uint(hello.maxFrameBody)
            fields["device_key"] = .string(hello.deviceKey.hexString)
        case let .welcome(welcome):
            fields["protocol_version"] = .uint(welcome.protocolVersion)
            fields["schema_version"] = .uint(welcome.schemaVersion)
            fields["hub"] = .string(welcome.hub.hex)
            fields["max_frame_body"] = .uint(welcome.maxFrameBody)
            fields["issued_credential"] = .string(welcome.issuedCredential.hexString)
            fields["hub_time_ms"] = .uint(welcome.hubTimeMillis)
            fields["heartbeat_interval_ms"] = .uint(welcome.heartbeatIntervalMillis)
            fields["own_durable"] = .uint(welcome.ownDurable)
            fields["hub_key"] = .string(welcome.hubKey.hexString)
            fields["incarnation"] = .string(welcome.incarnation.hexString)
            fields["certificate"] = welcome.certificate.map(json) ?? .null
            fields["purges"] = .array(welcome.purges.map { .string($0) })
        case let .reject(code, retryAfter, text):
            fields["code"] = .string(code.name)
            fields["retry_after_ms"] = .uint(retryAfter)
            fields["message"] = .string(text)
        case let .push(batch, changes, provenance):
            fields["batch"] = .uint(batch)
            fields["changes"] = .array(changes.map(json))
            add(provenance, to: &fields)
        case let .pushAck(batch, durable, head):
            fields["batch"] = .uint(batch)
            fields["durable"] = .array(durable.counters.sorted { $0.key < $1.key }.map {
                .object(["replica": .string($0.key.hex), "counter": .uint($0.value)])
            })
            fields["hub_head"] = .uint(head)
        case let .pull(cursor, budget):
            fields["cursor"] = .uint(cursor)
            fields["byte_budget"] = .uint(budget)
        case let .batch(next, more, changes, provenance):
            fields["next_cursor"] = .uint(next)
            fields["more"] = .bool(more)
            fields["changes"] = .array(changes.map(json))
            add(provenance, to: &fields)
        case let .heartbeat(health):
            fields["pending_changes"] = .uint(health.pendingChanges)
            fields["oldest_unsynced_age_ms"] = .uint(health.oldestUnsyncedAgeMillis)
            fields["open_conflicts"] = .uint(health.openConflicts)
            fields["schema_version"] = .uint(health.schemaVersion)
        case let .purgeAck(scopes):
            fields["scopes"] = .array(scopes.map { .string($0) })
        case let .review(decisions, after):
            fields["decisions"] = .array(decisions.map { decision in
                .object(["id": json(decision.change), "verdict": .string(decision.verdict == .accept ? "accept" : "dismiss")])
            })
            fields["after"] = after.map(json) ?? .null
        case let .held(outcomes, more, items):
            fields["outcomes"] = .array(outcomes.map { outcome in
                .object(["id": json(outcome.change), "outcome": .uint(UInt64(outcome.code.rawValue))])
            })
            fields["more"] = .bool(more)
            fields["items"] = .array(items.map { item in
                .object(["from_replica": .string(item.fromReplica.hex), "reason": .string(item.reason.name),
                         "received_at_ms": .uint(item.receivedAtMillis), "change": json(item.change)])
            })
        case let .error(code, fatal, text):
            fields["code"] = .string(code.name)
            fields["fatal"] = .bool(fatal)
            fields["message"] = .string(text)
        case let .goodbye(reason):
            fields["reason"] = .uint(reason)
        case let .recover(origin, after, budget):
            fields["origin"] = .string(origin.hex)
            fields["after"] = .uint(after)
            fields["byte_budget"] = .uint(budget)
        case let .recovered(origin, next, more, changes, provenance):
            fields["origin"] = .string(origin.hex)
            fields["next_counter"] = .uint(next)
            fields["more"] = .bool(more)
            fields["changes"] = .array(changes.map(json))
            add(provenance, to: &fields)
        case let .fork(newReplica, deviceKey):
            fields["new_replica"] = .string(newReplica.hex)
            fields["device_key"] = .string(deviceKey.hexString)
        case let .forked(newReplica, credential, certificate):
            fields["new_replica"] = .string(newReplica.hex)
            fields["issued_credential"] = .string(credential.hexString)
            fields["certificate"] = certificate.map(json) ?? .null
        }
        return .object(fields)
    }

    /// `heads` and `certificates`, the provenance of a push, batch or recovered.
    static func add(_ provenance: Provenance, to fields: inout [String: JSONValue]) {
        fields["heads"] = .array(provenance.heads.map(json))
        fields["certificates"] = .array(provenance.certificates.map(json))
    }

    static func json(_ head: SignedHead) -> JSONValue {
        .object([
            "origin": .string(head.origin.hex),
            "counter": .uint(head.counter),
            "chain": .string(head.chain.hexString),
            "signer": .uint(UInt64(head.signer.rawValue)),
            "signature": .string(head.signature.hexString),
        ])
    }

    static func json(_ certificate: DeviceCertificate) -> JSONValue {
        .object([
            "replica": .string(certificate.replica.hex),
            "public_key": .string(certificate.publicKey.hexString),
            "team": .string(certificate.team),
            "issued_at_ms": .uint(certificate.issuedAtMillis),
            "attested_through": .uint(certificate.attestedThrough),
            "signature": .string(certificate.signature.hexString),
        ])
    }

    static func typeName(_ kind: Message.Kind) -> String {
        switch kind {
        case .hello: "hello"
        case .welcome: "welcome"
        case .reject: "reject"
        case .push: "push"
        case .pushAck: "push_ack"
        case .pull: "pull"
        case .batch: "batch"
        case .heartbeat: "heartbeat"
        case .purgeAck: "purge_ack"
        case .review: "review"
        case .held: "held"
        case .error: "error"
        case .goodbye: "goodbye"
        case .recover: "recover"
        case .recovered: "recovered"
        case .fork: "fork"
        case .forked: "forked"
        }
    }

    static func json(_ change: Change) -> JSONValue {
        .object([
            "id": json(change.id),
            "timestamp": .uint(change.timestamp.rawValue),
            "author": .string(change.author),
            "table": .string(change.table),
            "row": .string(change.row),
            "scope": .string(change.scope),
            "causal_length": .uint(change.causalLength),
            "sets_life": .bool(change.setsLife),
            "fields": .array(change.fields.map(json)),
        ])
    }

    static func json(_ field: FieldEdit) -> JSONValue {
        let operation: JSONValue = switch field.operation {
        case let .assign(value): .object(["assign": json(value)])
        case let .add(value): .object(["add": json(value)])
        case let .remove(value): .object(["remove": json(value)])
        case let .increment(delta): .object(["increment": .int(delta)])
        }
        return .object(["column": .string(field.column), "operation": operation, "supersedes": .array(field.supersedes.map(json))])
    }

    static func json(_ id: ChangeID) -> JSONValue {
        .object(["replica": .string(id.replica.hex), "counter": .uint(id.counter)])
    }

    static func json(_ value: FieldValue) -> JSONValue {
        switch value {
        case .null: .object(["null": .null])
        case let .integer(number): .object(["integer": .int(number)])
        case let .real(number): .object(["real": .double(number)])
        case let .text(text): .object(["text": .string(text)])
        case let .blob(bytes): .object(["blob": .string(bytes.hexString)])
        }
    }
}
