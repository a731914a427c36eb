import Foundation
import CareRecords
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// Attacks on escrow rights and the hub's merge checks (Protocol/entitlements.md) by a hostile
/// replica, at the store and protocol level: rows written through a replica's own signed log
/// past CareReplica's refusals, and a device of team B that builds its log by hand (any row, any
/// field, any timestamp) and pushes it straight to the hub store. Real scoped hub, real care
/// rules, real care replicas (`ScopedCareWorld`).
@Suite("Escrow attacks: forged rights, borrowed grants, hostile integers, forged decisions")
struct EscrowAttackTests {
    /// A device enrolled in a team with a test key, whose log is built by hand and pushed to the
    /// hub store directly: nothing a CareReplica checks stands in its way.
    final class HostileDevice {
        let id: ReplicaID
        var signer = TestSigner()
        var counter: UInt64 = 0

        init(_ world: ScopedCareWorld, team: String = "B", id: ReplicaID = ReplicaID(high: 0x4D, low: 0xBAD)) throws {
            self.id = id
            var random = SeededGenerator(seed: 4242)
            let token = try world.hub.issueEnrolmentToken(team: team, expiresAtMillis: .max, random: &random)
            guard case .enrolled = try world.hub.redeemEnrolmentToken(token, replica: id, deviceKey: TestSigner.publicKey(id), nowMillis: world.now,
                                                                      random: &random) else {
                throw StoreError(.unknownDevice, "enrolment of the hostile device refused")
            }
        }

        /// The next change of this device's log: `fields` of `row`, stamped `millis` (its own
        /// clock, which it may set anywhere).
        func change(_ table: String, _ row: String, scope: String, creates: Bool, millis: UInt64, _ fields: [String: FieldValue]) -> Change {
            counter += 1
            return Change(id: ChangeID(replica: id, counter: counter), timestamp: HybridTimestamp(physicalMillis: millis, logical: 0), author: "mallory",
                          table: table, row: row, scope: scope, causalLength: 1, setsLife: creates,
                          fields: fields.keys.sorted().map { FieldEdit(column: $0, operation: .assign(fields[$0]!)) })
        }

        /// Pushes `changes`, signed with this device's key.
        @discardableResult
        func push(_ world: ScopedCareWorld, _ changes: [Change]) throws -> HubAppendResult {
            try world.hub.append(changes, from: id, provenance: Provenance(sorting: signer.heads(changes), certificates: []), receivedAtMillis: world.now)
        }
    }

    static func entry(_ y: String, _ kind: String, item: String = "DRIVING", _ amount: Int64, extra: [String: FieldValue] = [:]) -> [String: FieldValue] {
        let unit = HubEscrow.isCounted(item) ? "count" : "amount_pence"
        return ["yp_id": .text(y), "item_code": .text(item), "period_key": .text("lifetime"), "kind": .text(kind), unit: .integer(amount),
                "actor_id": .text("mallory"), "occurred_at": .text("2025-06-15")].merging(extra) { $1 }
    }

    /// Writes a ledger entry through `replica`'s own signed log, past CareReplica's checks.
    static func write(_ replica: CareReplica, _ y: String, id: String, _ values: [String: FieldValue]) throws {
        try replica.store.write(author: "mallory") { tx in try tx.create("ledger_entry", id: id, values: values, scope: y) }
    }

    static func flags(_ replica: CareReplica, _ code: String) throws -> [[String: FieldValue]] {
        try replica.flags().filter { $0["code"]?.textValue == code }
    }

    static func account(_ world: ScopedCareWorld, _ y: String, item: String = "DRIVING") throws -> Escrow.Account {
        try EscrowScenarioTests.account(world, y, item: item).account
    }

    // MARK: 1. rights a replica grants itself

    @Test("a grant_rights entry a replica writes for itself is no rights: not held there, not counted at the hub, flagged FORGED_RIGHTS, and a commit against it is flagged OVER_CAP NOT_COVERED_BY_RIGHTS")
    func selfGrantedRightsAreNotRights() throws {
        let world = try ScopedCareWorld(name: "attack-self-grant")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let far = Int64(world.now) + 86_400_000
        try Self.write(world.b2, y, id: "forged-grant", Self.entry(y, "grant_rights", 20, extra: [
            "holder_replica": .text(world.b2.store.replicaID.hex), "expires_at_ms": .integer(far), "request_id": .text("none"),
        ]))
        #expect(try world.b2.heldRights(person: y).isEmpty, "a grant not written by the escrow origin is no rights, even on its writer")
        let award = try world.b2.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "5", "decision_date": "2025-06-15"], author: "w")
        #expect(award.status == "requested" && award.waiting == 5, "commitAward does not commit against the forged grant")
        try Self.write(world.b2, y, id: "forged-commit", Self.entry(y, "commit", 5, extra: ["escrow_grant_id": .text("forged-grant")]))
        try world.sync(world.b2)
        try world.sync(world.b1)
        let account = try Self.account(world, y)
        #expect(account.grants["forged-grant"] == nil && account.forged == ["forged-grant"])
        #expect(account.committed == 5 && account.uncovered.contains("forged-commit"))
        #expect(try Self.flags(world.b1, "FORGED_RIGHTS").map { $0["subject_id"]?.textValue } == ["forged-grant"])
        let overCap = try Self.flags(world.b1, "OVER_CAP")
        #expect(overCap.contains { ($0["detail"]?.textValue ?? "").hasPrefix("NOT_COVERED_BY_RIGHTS ENTRY=forged-commit") })
        #expect(try world.b1.heldRights(person: y).isEmpty)
    }

    // MARK: 2. another replica's grant

    @Test("a commit naming another replica's genuine grant is flagged NOT_COVERED_BY_RIGHTS and takes nothing from the holder's rights")
    func commitAgainstAnotherReplicasGrant() throws {
        let world = try ScopedCareWorld(name: "attack-borrowed-grant")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let request = try world.b1.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b1)
        try world.sync(world.b2)
        try Self.write(world.b2, y, id: "borrowed-commit", Self.entry(y, "commit", 5, extra: ["escrow_grant_id": .text("grant-" + request)]))
        #expect(try world.b2.heldRights(person: y).isEmpty, "b2 holds nothing")
        try world.sync(world.b2)
        try world.sync(world.b1)
        #expect(try world.b1.heldRights(person: y).first?.available == 20, "the holder's rights are untouched")
        let account = try Self.account(world, y)
        #expect(account.grants["grant-" + request]?.remaining == 20)
        #expect(account.committed == 5 && account.outstanding == 20, "committed + outstanding is over the cap…")
        #expect(try Self.flags(world.b1, "OVER_CAP").contains { ($0["detail"]?.textValue ?? "").hasPrefix("NOT_COVERED_BY_RIGHTS ENTRY=borrowed-commit") },
                "…and not unnoticed")
        // The holder spends its twenty: committed 25 over the cap of 20 is flagged on the account too.
        let spend = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "20", "decision_date": "2025-06-15"], author: "w")
        #expect(spend.status == "committed")
        try world.sync(world.b1)
        #expect(try Self.flags(world.b1, "OVER_CAP").contains { ($0["detail"]?.textValue ?? "").hasPrefix("COMMITTED=25 CAP=20") })
    }

    @Test("a write by another origin to a genuine grant's fields (holder, amount), stamped before the hub's, never moves its rights: the holder keeps them, the writer gains none")
    func grantFieldsRewrittenByAnotherOrigin() throws {
        let world = try ScopedCareWorld(name: "attack-grant-hijack")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let mallory = try HostileDevice(world)
        let request = try world.b1.requestRights(person: y, item: "DRIVING", amount: 3, author: "w")
        try world.sync(world.b1)
        let grant = "grant-" + request
        #expect(try world.b1.heldRights(person: y).first?.available == 3)
        // An edit of the grant row (not its kind), stamped long before the hub's write: the
        // written-once register keeps the earliest write first.
        let hijack = mallory.change("ledger_entry", grant, scope: y, creates: false, millis: 1, [
            "holder_replica": .text(mallory.id.hex), "count": .integer(20),
        ])
        let commit = mallory.change("ledger_entry", "hijack-commit", scope: y, creates: true, millis: world.now,
                                    Self.entry(y, "commit", 20, extra: ["escrow_grant_id": .text(grant)]))
        try mallory.push(world, [hijack, commit])
        try world.sync(world.b1)
        let account = try Self.account(world, y)
        #expect(account.grants[grant]?.holder == world.b1.store.replicaID.hex, "the hub's grant is still b1's")
        #expect(account.grants[grant]?.granted == 3, "and still of 3")
        #expect(account.committed == 20 && account.uncovered.contains("hijack-commit"), "mallory's commit is covered by nothing")
        #expect(try world.b1.heldRights(person: y).first?.available == 3, "b1 still holds its 3")
        #expect(try world.b1.heldRights(person: y).first?.grants.map(\.holder) == [world.b1.store.replicaID.hex])
        #expect(try Self.flags(world.b1, "OVER_CAP").contains { ($0["detail"]?.textValue ?? "").hasPrefix("NOT_COVERED_BY_RIGHTS ENTRY=hijack-commit") })
    }

    @Test("a write by another origin to another replica's commit entry (its amount, stamped earlier) does not shrink what the account has committed")
    func commitAmountRewrittenByAnotherOrigin() throws {
        let world = try ScopedCareWorld(name: "attack-commit-shrink")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let mallory = try HostileDevice(world)
        let spend = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "20", "decision_date": "2025-06-15"], author: "w")
        try world.sync(world.b1)
        _ = try world.b1.commitAward(spend.award, author: "w")
        try world.sync(world.b1)
        #expect(try Self.account(world, y).committed == 20)
        let commit = try #require(try world.b1.list("ledger_entry", where: ["award_id": spend.award]).first { $0["kind"]?.textValue == "commit" })
        let id = try #require(commit["id"]?.textValue)
        try mallory.push(world, [mallory.change("ledger_entry", id, scope: y, creates: false, millis: 1, ["count": .integer(0)])])
        #expect(try Self.account(world, y).committed == 20, "the commit's writer said 20")
        // With the commit shrunk the hub would grant twenty more.
        let more = try world.b2.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b2)
        #expect(try Self.account(world, y).grants["grant-" + more] == nil, "no rights beyond the cap")
    }

    // MARK: 3. extreme integers

    @Test("extreme and negative integers in raw entries saturate or count as nothing: no trap, no grant beyond the cap, the excess flagged")
    func extremeIntegers() throws {
        let world = try ScopedCareWorld(name: "attack-integers")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        try Self.write(world.b2, y, id: "e1-max-request", Self.entry(y, "request_rights", .max))
        try world.sync(world.b2)
        #expect(try world.b2.list("ledger_entry", where: ["id": "grant-e1-max-request"]).isEmpty, "no grant of Int64.max")
        #expect(try Self.flags(world.b2, "CAP_REACHED").contains { $0["subject_id"]?.textValue == "e1-max-request" })
        // Negative amounts count as nothing (a negative commit or refund would make room under the cap).
        try Self.write(world.b2, y, id: "e2-negative-commit", Self.entry(y, "commit", -1_000))
        try Self.write(world.b2, y, id: "e3-negative-refund", Self.entry(y, "refund", -1_000))
        try Self.write(world.b2, y, id: "e4-min-release", Self.entry(y, "release", .min))
        // A count on an amount item is not pence.
        try Self.write(world.b2, y, id: "e5-pence-on-count", Self.entry(y, "commit", item: "DRIVING", 0, extra: ["amount_pence": .integer(.max)]))
        try Self.write(world.b2, y, id: "e5-count-on-pence", Self.entry(y, "commit", item: "APPRENTICE_BURSARY", 0, extra: ["count": .integer(.max)]))
        try world.sync(world.b2)
        #expect(try Self.account(world, y).committed == 0)
        #expect(try Self.account(world, y, item: "APPRENTICE_BURSARY").committed == 0)
        // Two commits of Int64.max saturate.
        try Self.write(world.b2, y, id: "e6-max-commit", Self.entry(y, "commit", .max))
        try Self.write(world.b2, y, id: "e7-max-commit", Self.entry(y, "commit", .max))
        try world.sync(world.b2)
        let account = try Self.account(world, y)
        #expect(account.committed == .max)
        #expect(try Self.flags(world.b2, "OVER_CAP").contains { ($0["detail"]?.textValue ?? "").hasPrefix("COMMITTED=\(Int64.max) CAP=20") })
        let request = try world.b1.requestRights(person: y, item: "DRIVING", amount: 1, author: "w")
        try world.sync(world.b1)
        #expect(try Self.account(world, y).grants["grant-" + request] == nil)
        _ = try world.b1.heldRights(person: y)
        _ = try world.b2.heldRights(person: y)
        _ = try world.b2.balances(person: y)
    }

    @Test("a refund or release no commit backs makes no room under the cap: two replicas are never granted more than the cap between them")
    func unbackedRefundMakesNoRoom() throws {
        let world = try ScopedCareWorld(name: "attack-refund")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        try Self.write(world.b2, y, id: "refund-of-nothing", Self.entry(y, "refund", 20, extra: ["award_id": .text("no-such-award")]))
        try Self.write(world.b2, y, id: "release-of-nothing", Self.entry(y, "release", 20))
        try world.sync(world.b2)
        let first = try world.b1.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b1)
        let second = try world.b2.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b2)
        let account = try Self.account(world, y)
        let granted = account.grants.values.reduce(Int64(0)) { $0 + $1.granted }
        #expect(account.grants["grant-" + first] != nil)
        #expect(account.grants["grant-" + second] == nil, "the cap is 20 and 20 are out")
        #expect(granted <= 20)
        #expect(account.committed >= 0)
    }

    @Test("a release naming the holder's own grant without a commit behind it gives the holder no rights beyond what was granted")
    func unbackedReleaseIntoOwnGrant() throws {
        let world = try ScopedCareWorld(name: "attack-release-into-grant")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let request = try world.b2.requestRights(person: y, item: "DRIVING", amount: 2, author: "w")
        try world.sync(world.b2)
        try Self.write(world.b2, y, id: "release-into-grant", Self.entry(y, "release", 18, extra: ["escrow_grant_id": .text("grant-" + request)]))
        #expect(try world.b2.heldRights(person: y).first?.available == 2, "rights are what the hub granted, at most")
        try world.sync(world.b2)
        #expect(try Self.account(world, y).grants["grant-" + request]?.remaining == 2)
    }

    // MARK: 4. the hub's origins

    @Test("a change under the escrow origin or the catalogue's publisher pushed and signed by a device is refused; nothing of it is stored or relayed")
    func hubOriginsRefused() throws {
        let world = try ScopedCareWorld(name: "attack-hub-origins")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let mallory = try HostileDevice(world)
        for origin in EntitlementCatalogue.hubOrigins.sorted() {
            let held = try world.hub.changes(ofOrigin: origin, after: 0, byteBudget: 1 << 22, maxCount: 10_000).decodeChanges().count
            let forged = Change(id: ChangeID(replica: origin, counter: UInt64(held) + 1), timestamp: HybridTimestamp(physicalMillis: world.now, logical: 0),
                                author: "hub", table: "ledger_entry", row: "grant-forged-\(origin.short)", scope: y, causalLength: 1, setsLife: true,
                                fields: Self.entry(y, "grant_rights", 20, extra: ["holder_replica": .text(mallory.id.hex),
                                                                                 "expires_at_ms": .integer(.max)])
                                    .sorted { $0.key < $1.key }.map { FieldEdit(column: $0.key, operation: .assign($0.value)) })
            var signer = TestSigner()
            #expect(throws: StoreError.self, "signed with the device's key") {
                try world.hub.append([forged], from: mallory.id, provenance: Provenance(sorting: signer.heads([forged], key: TestSigner.key(mallory.id)),
                                                                                        certificates: []), receivedAtMillis: world.now)
            }
            #expect(try world.hub.changes(ofOrigin: origin, after: 0, byteBudget: 1 << 22, maxCount: 10_000).decodeChanges().count == held)
        }
        try world.sync(world.b1)
        #expect(try world.b1.list("ledger_entry").allSatisfy { !($0["id"]?.textValue ?? "").hasPrefix("grant-forged") })
        #expect(try HubEscrow.accounts(world.hub, nowMillis: world.now).allSatisfy { $0.account.grants.isEmpty })
    }

    // MARK: 5. replays

    @Test("a request pushed twice, or decided twice, gets one grant, whose id is grant-<request id>")
    func duplicateRequestOneGrant() throws {
        let world = try ScopedCareWorld(name: "attack-duplicate")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let request = try world.b1.requestRights(person: y, item: "DRIVING", amount: 4, author: "w")
        let own = try world.b1.store.changes(notIn: VersionVector()).filter { $0.id.replica == world.b1.store.replicaID }
        try world.sync(world.b1)
        // The same changes again, as from a file restored from before the sync.
        let again = try world.hub.append(own, from: world.b1.store.replicaID, provenance: world.b1.store.provenance(for: own),
                                         receivedAtMillis: world.now)
        #expect(again.stored == 0)
        // And relayed by another replica of the team.
        try world.sync(world.b2)
        try world.sync(world.b2)
        try world.sync(world.b1)
        let account = try Self.account(world, y)
        #expect(Array(account.grants.keys) == ["grant-" + request])
        #expect(account.outstanding == 4)
        #expect(try world.b1.heldRights(person: y).map(\.available) == [4])
    }

    // MARK: 6. forged decisions

    @Test("a flag row a replica writes under the hub's deterministic id, already resolved, does not stop the hub raising its OVER_CAP flag")
    func forgedResolvedFlagDoesNotSilenceOverCap() throws {
        let world = try ScopedCareWorld(name: "attack-forged-flag")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        try Self.write(world.b2, y, id: "silent-commit", Self.entry(y, "commit", 25))
        try world.b2.store.write(author: "mallory") { tx in
            for id in ["flag-over_cap-silent-commit", "flag-over_cap-DRIVING-lifetime-25"] {
                try tx.create("flag", id: id, values: ["yp_id": .text(y), "code": .text("OVER_CAP"), "subject_kind": .text("award"),
                                                       "subject_id": .text("silent-commit"), "routed_to": .text("head_of_service"),
                                                       "detail": .text("NOT_COVERED_BY_RIGHTS"), "status": .text("resolved"),
                                                       "resolution": .text("nothing to see"), "resolved_by": .text("mallory")], scope: y)
            }
        }
        try world.sync(world.b2)
        try world.sync(world.b1)
        #expect(try Self.account(world, y).committed == 25)
        let open = try world.b1.flags(openOnly: true).filter { $0["code"]?.textValue == "OVER_CAP" }
        #expect(!open.isEmpty, "an open OVER_CAP flag raised by the hub reaches the head of service")
    }

    @Test("a grant row a replica writes under a waiting award's deterministic grant id does not stop the hub granting it when rights come back")
    func squattedGrantIDDoesNotBlockTheRequest() throws {
        let world = try ScopedCareWorld(name: "attack-squat")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let mallory = try HostileDevice(world)
        try world.b1.requestRights(person: y, item: "DRIVING", amount: 20, author: "w")
        try world.sync(world.b1)
        let waiting = try world.b2.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "5", "decision_date": "2025-06-15"],
                                           author: "w")
        try world.sync(world.b2)
        #expect(try EscrowScenarioTests.status(world.b2, award: waiting.award) == "requested", "all twenty are out: it waits")
        // Mallory, holding the bundle, takes the row the hub will grant it under.
        try mallory.push(world, [mallory.change("ledger_entry", "grant-" + waiting.award, scope: y, creates: true, millis: world.now,
                                                ["yp_id": .text(y), "actor_id": .text("mallory")])])
        #expect(try world.b1.returnRights(all: true, author: "w") == 1)
        try world.sync(world.b1)
        try world.sync(world.b2)
        #expect(try world.b2.heldRights(person: y).first?.available == 5, "the returned rights go to the waiting award all the same")
    }

    @Test("a forged award status (committed, or rejected) from a replica neither commits spend nor grants rights")
    func forgedAwardStatus() throws {
        let world = try ScopedCareWorld(name: "attack-award-status")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        let award = try world.b1.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "30", "decision_date": "2025-06-15"],
                                         author: "w")
        // Marked committed before the hub can refuse it: no ledger entry, so nothing is spent and nothing waits.
        try world.b1.store.write(author: "mallory") { tx in try tx.update("award", id: award.award, values: ["status": .text("committed")]) }
        try world.sync(world.b1)
        let accounts = try HubEscrow.accounts(world.hub, nowMillis: world.now).filter { $0.scope == y }
        #expect(accounts.allSatisfy { $0.account.committed == 0 && $0.account.outstanding == 0 }, "no ledger entry: nothing spent, nothing granted")
        #expect(try Self.flags(world.b1, "CAP_REACHED").isEmpty, "a committed award waits for nothing: nothing to refuse")
    }

    // MARK: 7. to whom the hub grants

    @Test("an award whose requested_on names a replica of a team outside the young person's audience, or a revoked one, is granted nothing")
    func grantsOnlyToReplicasThatHoldTheBundle() throws {
        let world = try ScopedCareWorld(name: "attack-requested-on")
        defer { world.remove() }
        let y = try EscrowScenarioTests.careLeaver(world)
        _ = try world.hub.revoke(replica: world.a3.store.replicaID, nowMillis: world.now)
        for (name, replica) in [("outsider", world.c1), ("revoked", world.a3)] {
            try world.b1.store.write(author: "mallory") { tx in
                try tx.create("award", id: "award-\(name)", values: [
                    "yp_id": .text(y), "item_code": .text("DRIVING"), "requested_count": .integer(10), "decision_date": .text("2025-06-15"),
                    "status": .text("requested"), "requested_on": .text(replica.store.replicaID.hex), "catalogue_version": .integer(1),
                    "period_key": .text("lifetime"), "created_by": .text("w"),
                ], scope: y)
            }
        }
        try world.sync(world.b1)
        let grants = try HubEscrow.accounts(world.hub, nowMillis: world.now).filter { $0.scope == y }.flatMap(\.account.grants.keys)
        #expect(!grants.contains("grant-award-revoked"), "no rights to a revoked replica")
        #expect(!grants.contains("grant-award-outsider"), "no rights to a replica that cannot hold the bundle: they would be stranded")
        // The same award on a replica of the audience is granted: the refusals are the holder's.
        let honest = try world.b2.request(award: ["yp_id": y, "item_code": "DRIVING", "requested_count": "10", "decision_date": "2025-06-15"],
                                          author: "w")
        try world.sync(world.b2)
        #expect(try world.b2.heldRights(person: y).first?.available == 10, "award \(honest.award) granted")
    }
}
