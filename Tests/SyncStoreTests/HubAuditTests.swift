import Crypto
import Foundation
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

@Suite("Hub audit trail: an event per stored change and refused push, chained by hash, head signed by the hub key")
struct HubAuditTests {
    static let a = ReplicaID(high: 0xA, low: 1)
    static let b = ReplicaID(high: 0xB, low: 2)

    static func at(_ counter: UInt64) -> HybridTimestamp { HybridTimestamp(physicalMillis: 1_750_000_000_000 + counter, logical: 0) }

    /// A row edit of `origin`: a create (causal length 1), a field change, a delete (2) or a re-create (3).
    static func edit(_ origin: ReplicaID, _ counter: UInt64, row: String, life: UInt64? = nil, text: String = "t",
                     author: String = "ann", scope: String = "yp-1") -> Change {
        let deletes = life.map { !CausalLength.isAlive($0) } ?? false
        let fields = deletes ? [] : [FieldEdit(column: "title", operation: .assign(.text(text)))]
        return Change(id: ChangeID(replica: origin, counter: counter), timestamp: at(counter), author: author, table: "item", row: row,
                      scope: scope, causalLength: life ?? 1, setsLife: life != nil, fields: fields)
    }

    func openHub(_ path: String) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 1)
        let hub = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
        var enrolment = SeededGenerator(seed: 8)
        try hub.enrolForTests([Self.a, Self.b], random: &enrolment)
        return hub
    }

    /// A hub holding four audited changes of `a`: create, change, delete, re-create (the last
    /// relayed by `b`).
    func auditedHub() throws -> (SQLiteHubStore, String) {
        let path = TestFiles.directory() + "/hub.db"
        let hub = try openHub(path)
        var signer = TestSigner()
        let first = [Self.edit(Self.a, 1, row: "r1", life: 1), Self.edit(Self.a, 2, row: "r1"), Self.edit(Self.a, 3, row: "r1", life: 2)]
        _ = try hub.append([signer.push(first, from: Self.a, receivedAtMillis: 100)])[0].get()
        _ = try hub.append([signer.push([Self.edit(Self.a, 4, row: "r1", life: 3)], from: Self.b, receivedAtMillis: 200)])[0].get()
        return (hub, path)
    }

    @Test("each stored change is one event (create, change, delete, re-create; relayed ones say by whom); a duplicate is not audited again; the chain verifies")
    func eventPerStoredChange() throws {
        let (hub, _) = try auditedHub()
        var signer = TestSigner()
        let again = [Self.edit(Self.a, 1, row: "r1", life: 1), Self.edit(Self.a, 2, row: "r1")]
        let duplicate = try hub.append([signer.push(again, from: Self.a, receivedAtMillis: 300)])[0].get()
        #expect(duplicate.stored == 0 && duplicate.duplicates == 2)
        let records = try hub.auditEvents(after: 0, limit: 100)
        #expect(records.map(\.seq) == [1, 2, 3, 4])
        #expect(records.map(\.event.kind) == [.create, .change, .delete, .create])
        #expect(records.map(\.event.detail) == ["", "", "", "RECREATED RELAYED_BY=\(Self.b.hex)"])
        #expect(records.allSatisfy { $0.event.device == Self.a && $0.event.actor == "ann" && $0.event.table == "item" })
        #expect(records.allSatisfy { $0.event.row == "r1" && $0.event.scope == "yp-1" })
        #expect(records.map(\.event.change?.counter) == [1, 2, 3, 4])
        #expect(records.map(\.event.occurredAtMillis) == (1...4).map { Self.at($0).physicalMillis })
        #expect(records.map(\.event.receivedAtMillis) == [100, 100, 100, 200])
        #expect(try hub.auditEvents(after: 2, limit: 1).map(\.seq) == [3])
        let verification = try hub.verifyAudit()
        #expect(verification.isIntact, "\(String(describing: verification.broken))")
        #expect(verification.verifiedEvents == 4 && verification.headHash == records.last?.hash)
    }

    @Test("the chain is the documented one: hash(0) = SHA-256(\"caresync/audit/v1\"), hash(n) = SHA-256(hash(n-1) || encoding || u64be(n))")
    func chainAsDocumented() throws {
        let (hub, _) = try auditedHub()
        var previous = Array(SHA256.hash(data: Array("caresync/audit/v1".utf8)))
        #expect(AuditChain.genesis == previous)
        for record in try hub.auditEvents(after: 0, limit: 100) {
            var seq: [UInt8] = []
            for shift in stride(from: 56, through: 0, by: -8) { seq.append(UInt8(truncatingIfNeeded: record.seq >> UInt64(shift))) }
            let expected = Array(SHA256.hash(data: previous + record.event.canonicalBytes + seq))
            #expect(record.hash == expected, "event \(record.seq)")
            var reader = ByteReader(record.event.canonicalBytes)
            #expect(try AuditEvent.decode(from: &reader) == record.event)
            #expect(reader.isAtEnd)
            previous = expected
        }
        let head = try HubFixture.sqlite(hub.path, "SELECT count, hex(hash), length(signature) FROM hub_audit_head")
        #expect(head == "4|\(previous.hexString.uppercased())|64")
    }

    /// A tampering of the file, and what verification must say about it.
    struct Tampering: Sendable, CustomStringConvertible {
        let description: String
        let sql: String
        let seq: UInt64
        let reason: AuditVerification.Reason
        let verified: UInt64
    }

    static let tamperings: [Tampering] = [
        Tampering(description: "one field of a middle event changed", sql: "UPDATE hub_audit SET row_key = 'r9' WHERE seq = 2",
                  seq: 2, reason: .changed, verified: 1),
        Tampering(description: "a middle event's kind changed", sql: "UPDATE hub_audit SET kind = 'CHANGE' WHERE seq = 3",
                  seq: 3, reason: .changed, verified: 2),
        Tampering(description: "a middle event changed with its hash", sql: "UPDATE hub_audit SET received_at = 7, hash = X'\(String(repeating: "00", count: 32))' WHERE seq = 2",
                  seq: 2, reason: .changed, verified: 1),
        Tampering(description: "a middle event removed", sql: "DELETE FROM hub_audit WHERE seq = 2", seq: 2, reason: .removed, verified: 1),
        Tampering(description: "two events swapped", sql: "UPDATE hub_audit SET seq = -seq WHERE seq IN (2, 3); UPDATE hub_audit SET seq = 5 WHERE seq = -2; UPDATE hub_audit SET seq = 2 WHERE seq = -3; UPDATE hub_audit SET seq = 3 WHERE seq = 5",
                  seq: 2, reason: .changed, verified: 1),
        Tampering(description: "the last event removed", sql: "DELETE FROM hub_audit WHERE seq = 4", seq: 4, reason: .tailRemoved, verified: 3),
        Tampering(description: "the last two removed and the head's count and hash put back",
                  sql: "DELETE FROM hub_audit WHERE seq >= 3; UPDATE hub_audit_head SET count = 2, hash = (SELECT hash FROM hub_audit WHERE seq = 2)",
                  seq: 2, reason: .headSignatureInvalid, verified: 2),
        Tampering(description: "the head's signature forged", sql: "UPDATE hub_audit_head SET signature = X'\(String(repeating: "11", count: 64))'",
                  seq: 4, reason: .headSignatureInvalid, verified: 4),
        Tampering(description: "an event added behind the head",
                  sql: "INSERT INTO hub_audit SELECT 5, kind, actor, device, table_name, row_key, scope, change_origin, change_counter, occurred_at, received_at, detail, hash FROM hub_audit WHERE seq = 4",
                  seq: 5, reason: .changed, verified: 4),
        Tampering(description: "the head's hash changed", sql: "UPDATE hub_audit_head SET hash = X'\(String(repeating: "22", count: 32))'",
                  seq: 4, reason: .headMismatch, verified: 4),
        Tampering(description: "the head removed", sql: "DELETE FROM hub_audit_head", seq: 5, reason: .unreadable, verified: 4),
        Tampering(description: "an event's kind made unreadable", sql: "UPDATE hub_audit SET kind = 'NOT_A_KIND' WHERE seq = 1",
                  seq: 1, reason: .unreadable, verified: 0),
    ]

    @Test("verification finds the first tampered event, a removed tail and a forged head", arguments: tamperings)
    func tamperingIsFound(_ tampering: Tampering) throws {
        let (hub, path) = try auditedHub()
        #expect(try hub.verifyAudit().isIntact)
        try HubFixture.sqlite(path, tampering.sql)
        let found = try hub.verifyAudit()
        #expect(found.broken?.seq == tampering.seq, "\(String(describing: found.broken))")
        #expect(found.broken?.reason == tampering.reason, "\(String(describing: found.broken))")
        #expect(found.verifiedEvents == tampering.verified)
        // The read-only view (the operator's) finds the same.
        #expect(try SQLiteHubStore(readingAt: path).verifyAudit() == found)
    }

    @Test("an event added with its chained hash behind the head is not covered by the head")
    func eventBehindTheHead() throws {
        let (hub, path) = try auditedHub()
        let last = try #require(try hub.auditEvents(after: 3, limit: 1).first)
        let hash = AuditChain.next(after: last.hash, event: last.event, seq: 5)
        try HubFixture.sqlite(path, """
            INSERT INTO hub_audit SELECT 5, kind, actor, device, table_name, row_key, scope, change_origin, change_counter, occurred_at,
            received_at, detail, X'\(hash.hexString)' FROM hub_audit WHERE seq = 4
            """)
        let found = try hub.verifyAudit()
        #expect(found.broken?.seq == 5 && found.broken?.reason == .headMismatch, "\(String(describing: found.broken))")
        #expect(found.verifiedEvents == 5)
    }

    @Test("no field value of a change reaches the audit trail (every text value and set element a marker)")
    func noValuesInTheTrail() throws {
        let path = TestFiles.directory() + "/hub.db"
        let hub = try openHub(path)
        let marker = "MARKER-7f3a"
        let fields = ["body", "family_name", "given_name", "notes", "title"].map { FieldEdit(column: $0, operation: .assign(.text("\(marker)-\($0)"))) }
            + [FieldEdit(column: "tags", operation: .add(.text("\(marker)-tag"))), FieldEdit(column: "photo", operation: .assign(.blob(Array(marker.utf8))))]
        let changes = [
            Change(id: ChangeID(replica: Self.a, counter: 1), timestamp: Self.at(1), author: "ann", table: "case_note", row: "n1", scope: "yp-1",
                   causalLength: 1, setsLife: true, fields: fields),
            Change(id: ChangeID(replica: Self.a, counter: 2), timestamp: Self.at(2), author: "ann", table: "case_note", row: "n1", scope: "yp-1",
                   causalLength: 1, fields: [FieldEdit(column: "body", operation: .assign(.text("\(marker)-edit")))]),
        ]
        var signer = TestSigner()
        _ = try hub.append([signer.push(changes, from: Self.a, receivedAtMillis: 5)])[0].get()
        var refused = TestSigner()
        let forged = Change(id: ChangeID(replica: Self.b, counter: 1), timestamp: Self.at(3), author: "ann", table: "case_note", row: "n2",
                            scope: "yp-2", causalLength: 1, setsLife: true, fields: [FieldEdit(column: "body", operation: .assign(.text("\(marker)-forged")))])
        // Signed with another device's key: refused, and audited.
        let push = HubPush(changes: [forged], replica: Self.b, provenance: .of(refused.heads([forged], key: TestSigner.key(Self.a))), receivedAtMillis: 6)
        #expect(throws: StoreError.self) { try hub.append([push])[0].get() }
        #expect(try hub.auditEvents(after: 0, limit: 10).count == 3)
        for table in ["hub_audit", "hub_audit_head"] {
            let columns = try HubFixture.sqlite(path, "SELECT group_concat(name, ',') FROM pragma_table_info('\(table)')")
            let quoted = columns.split(separator: ",").map { "quote(\($0))" }.joined(separator: " || '|' || ")
            let dump = try HubFixture.sqlite(path, "SELECT \(quoted) FROM \(table)")
            #expect(table == "hub_audit_head" || dump.contains("case_note"), "the dump shows the rows")
            #expect(!dump.contains(marker) && !dump.uppercased().contains(Array(marker.utf8).hexString.uppercased()), "\(table) holds a field value")
        }
    }

    @Test("a refused push is one REJECTED_WRITE event (the sending replica, the refusal's code, no author), and the other pushes of its group are stored and audited")
    func refusedPushIsAudited() throws {
        let path = TestFiles.directory() + "/hub.db"
        let hub = try openHub(path)
        var signer = TestSigner()
        let good = Self.edit(Self.a, 1, row: "r1", life: 1)
        var other = TestSigner()
        let forged = Self.edit(Self.b, 1, row: "r2", life: 1, author: "mallory", scope: "yp-2")
        let results = hub.append([
            HubPush(changes: [forged], replica: Self.b, provenance: .of(other.heads([forged], key: TestSigner.key(Self.a))), receivedAtMillis: 40),
            signer.push([good], from: Self.a, receivedAtMillis: 41),
        ])
        #expect(throws: StoreError.self) { try results[0].get() }
        #expect(try results[1].get().stored == 1)
        // An equivocation: a:1 again with other bytes, under a chain of its own.
        var second = TestSigner()
        let equivocating = try hub.append([second.push([Self.edit(Self.a, 1, row: "r1", life: 1, text: "other")], from: Self.a,
                                                       receivedAtMillis: 42)])[0].get()
        #expect(equivocating.equivocations.count == 1)
        let records = try hub.auditEvents(after: 0, limit: 10)
        #expect(records.map(\.event.kind) == [.rejectedWrite, .create, .rejectedWrite])
        let rejected = records[0].event
        #expect(rejected.device == Self.b && rejected.actor == "" && rejected.detail == "SIGNATURE_INVALID changes=1")
        #expect(rejected.receivedAtMillis == 40 && rejected.occurredAtMillis == 40)
        #expect(records[2].event.device == Self.a && records[2].event.detail == "EQUIVOCATION changes=1")
        #expect(records[2].event.change == ChangeID(replica: Self.a, counter: 1) && records[2].event.row == "r1")
        #expect(try hub.verifyAudit().isIntact)
    }

    @Test("a hub made before the trail starts an empty one at its next open for writing, and audits from then on")
    func existingHubStartsEmpty() throws {
        let (hub, path) = try auditedHub()
        try hub.close()
        try HubFixture.sqlite(path, "DROP TABLE hub_audit; DROP TABLE hub_audit_head; DELETE FROM grdb_migrations WHERE identifier = 'hub-v7-audit'")
        #expect(throws: StoreError.self) { try SQLiteHubStore(readingAt: path).verifyAudit() }
        var random = SeededGenerator(seed: 1)
        let reopened = try SQLiteHubStore(path: path, wallClock: SystemWallClock(), random: &random)
        let empty = try reopened.verifyAudit()
        #expect(empty.isIntact && empty.verifiedEvents == 0 && empty.headHash == AuditChain.genesis)
        var signer = TestSigner()
        _ = signer.heads((1...4).map { Self.edit(Self.a, $0, row: "r1", life: [1, nil, 2, 3][Int($0) - 1]) })
        _ = try reopened.append([signer.push([Self.edit(Self.a, 5, row: "r1")], from: Self.a, receivedAtMillis: 9)])[0].get()
        #expect(try reopened.auditEvents(after: 0, limit: 10).map(\.event.change?.counter) == [5])
        #expect(try reopened.verifyAudit().isIntact)
    }
}
