import Foundation
import SyncCore
import SyncStore
import SyncTesting
import Testing

/// Generic scope rules for the store's tests: a `person` row is the scope's own, a live `grant`
/// row without `ended` names a team; `catalogue` rows belong to no one.
struct GrantRules: ScopeRules {
    static let restriction = StatusLattice(["no", "yes"], terminal: ["yes"])
    let decidingColumns: [String: [String: MergePolicy]] = [
        "grant": ["team": .immutable, "ended": .lastWriterWins],
        "person": ["restricted": .monotonic(GrantRules.restriction), "allowed": .addWinsSet],
    ]
    let scopeTable = "person"
    let unscopedTables: Set<String> = ["catalogue"]

    func restriction(_ view: ScopeView) -> Set<String>? {
        guard let person = view.rows.first(where: { $0.table == "person" }), person.values("restricted").contains(.text("yes")) else { return nil }
        return Set(person.values("allowed").compactMap(\.textValue))
    }

    func audience(_ view: ScopeView) -> Set<String> {
        var teams = Set(view.rows.filter { $0.isAlive && $0.table == "grant" && $0.values("ended").isEmpty }
            .flatMap { $0.values("team") }.compactMap(\.textValue))
        if teams.isEmpty, let creator = view.creatorTeam { teams.insert(creator) }
        return teams
    }
}

/// The hub store's part of Protocol/scope.md: audiences from the hub's own view, team feeds,
/// scope in and out, quarantine of writes outside scope, boundary heads and anchors.
@Suite("Hub store scope: team feeds, scope in and out, quarantine")
struct HubScopeTests {
    static let north1 = ReplicaID(high: 0x11, low: 1)
    static let north2 = ReplicaID(high: 0x12, low: 2)
    static let south1 = ReplicaID(high: 0x21, low: 3)

    /// A scoped hub with north1 and north2 (team north) and south1 (team south) enrolled.
    func hub(_ path: String = TestFiles.directory() + "/hub.db", enrolSouth: Bool = true) throws -> SQLiteHubStore {
        var random = SeededGenerator(seed: 7)
        let hub = try SQLiteHubStore(path: path, wallClock: FixedWallClock(millis: 1_750_000_000_000), random: &random, scopeRules: GrantRules())
        var tokens = SeededGenerator(seed: 8)
        for (replica, team) in [(Self.north1, "north"), (Self.north2, "north")] + (enrolSouth ? [(Self.south1, "south")] : []) {
            let token = try hub.issueEnrolmentToken(team: team, expiresAtMillis: .max, random: &tokens)
            let result = try hub.redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica), nowMillis: 1, random: &tokens)
            guard case .enrolled = result else {
                Issue.record("enrolment refused: \(result)")
                return hub
            }
        }
        return hub
    }

    static func change(_ origin: ReplicaID, _ counter: UInt64, table: String, row: String, column: String = "title",
                       value: FieldValue = .text("t"), scope: String) -> Change {
        Change(table: table, row: row, column: column,
               write: FieldWrite(id: ChangeID(replica: origin, counter: counter),
                                 timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000 + counter, logical: 0),
                                 author: "ann", operation: .assign(value)),
               scope: scope)
    }

    /// Pushes `changes` of one origin signed with a head at every scope boundary and the end.
    @discardableResult
    func push(_ hub: SQLiteHubStore, _ changes: [Change], from replica: ReplicaID, signer: inout TestSigner) throws -> HubAppendResult {
        var boundaries: Set<UInt64> = []
        for (change, next) in zip(changes, changes.dropFirst()) where change.scope != next.scope { boundaries.insert(change.id.counter) }
        return try hub.append(changes, from: replica, heads: signer.heads(changes, alsoAt: boundaries), receivedAtMillis: 1_750_000_000_000)
    }

    func pull(_ hub: SQLiteHubStore, _ replica: ReplicaID, after cursor: UInt64 = 0) throws -> HubPage {
        try hub.changes(after: cursor, excludingOrigin: replica, byteBudget: 1 << 20, maxCount: 10_000)
    }

    func scopes(_ page: HubPage) throws -> [String] { try page.decodeChanges().map(\.scope) }

    @Test("a replica pulls only its team's scopes: north2 gets north1's person and nothing of south's, and south gets nothing of north's")
    func pullsAreFiltered() throws {
        let hub = try hub()
        var north = TestSigner()
        var south = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1"),
                       Self.change(Self.north1, 2, table: "note", row: "n1", scope: "P1")], from: Self.north1, signer: &north)
        try push(hub, [Self.change(Self.south1, 1, table: "person", row: "P2", scope: "P2"),
                       Self.change(Self.south1, 2, table: "note", row: "n2", scope: "P2")], from: Self.south1, signer: &south)
        #expect(try scopes(pull(hub, Self.north2)) == ["P1", "P1"])
        #expect(try scopes(pull(hub, Self.south1)).isEmpty)
        #expect(try scopes(pull(hub, Self.north1)).isEmpty)
        #expect(try hub.head(for: Self.north2) == 2)
        #expect(try hub.head(for: Self.south1) == 2)
    }

    @Test("differential: north2's sync stream is byte-identical whether or not south's data exists on the hub")
    func streamIsIndependentOfOtherTeams() throws {
        func stream(withSouth: Bool) throws -> [[UInt8]] {
            let hub = try hub(TestFiles.directory() + "/hub.db", enrolSouth: withSouth)
            var north = TestSigner()
            var south = TestSigner()
            if withSouth {
                try push(hub, [Self.change(Self.south1, 1, table: "person", row: "S1", scope: "S1")], from: Self.south1, signer: &south)
            }
            try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1")], from: Self.north1, signer: &north)
            if withSouth {
                try push(hub, [Self.change(Self.south1, 2, table: "note", row: "s", scope: "S1"),
                               Self.change(Self.south1, 3, table: "person", row: "S2", scope: "S2")], from: Self.south1, signer: &south)
            }
            try push(hub, [Self.change(Self.north1, 2, table: "note", row: "n", scope: "P1")], from: Self.north1, signer: &north)
            var out: [[UInt8]] = []
            var cursor: UInt64 = 0
            // One change a page: every cursor, count and page boundary is compared.
            while true {
                let page = try hub.changes(after: cursor, excludingOrigin: Self.north2, byteBudget: 1, maxCount: 1)
                var writer = [UInt8]()
                writer += withUnsafeBytes(of: page.nextCursor.bigEndian, Array.init)
                writer += [page.more ? 1 : 0]
                for change in page.encoded { writer += change }
                for head in page.provenance.heads { writer += head.chain + head.signature }
                for certificate in page.provenance.certificates { writer += certificate.encoded }
                out.append(writer)
                guard page.more, page.nextCursor != cursor else { break }
                cursor = page.nextCursor
            }
            out.append(withUnsafeBytes(of: try hub.head(for: Self.north2).bigEndian, Array.init))
            return out
        }
        let without = try stream(withSouth: false)
        let with = try stream(withSouth: true)
        #expect(without.count == 3)
        #expect(with == without)
    }

    @Test("scope in and out: a grant to north moves south's person into north's feed whole and owes south's replica a purge; south's later write is quarantined")
    func transferMovesTheBundle() throws {
        let hub = try hub()
        var south = TestSigner()
        try push(hub, [Self.change(Self.south1, 1, table: "person", row: "P2", scope: "P2"),
                       Self.change(Self.south1, 2, table: "note", row: "n2", scope: "P2")], from: Self.south1, signer: &south)
        let before = try pull(hub, Self.north2)
        #expect(before.encoded.isEmpty)
        // South transfers the child: a grant naming north. South is no longer involved.
        let granted = try push(hub, [Self.change(Self.south1, 3, table: "grant", row: "g1", column: "team", value: .text("north"), scope: "P2")],
                               from: Self.south1, signer: &south)
        #expect(granted.quarantined == 0)
        let after = try pull(hub, Self.north2, after: before.nextCursor)
        #expect(try after.decodeChanges().map(\.id.counter) == [1, 2, 3])
        #expect(try hub.purgesOwed(replica: Self.south1, limit: 10) == ["P2"])
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10).isEmpty)
        // South's stale write: stored (its chain stays whole), quarantined, in nobody's feed.
        let stale = try push(hub, [Self.change(Self.south1, 4, table: "note", row: "n3", scope: "P2")], from: Self.south1, signer: &south)
        #expect(stale.stored == 1)
        #expect(stale.quarantined == 1)
        #expect(try pull(hub, Self.north2, after: after.nextCursor).encoded.isEmpty)
        #expect(try pull(hub, Self.south1).encoded.isEmpty)
        // Granted back to south: the bundle returns to south's feed (without the quarantined
        // write), and the purge not yet acknowledged is no longer owed.
        var north = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "grant", row: "g2", column: "team", value: .text("south"), scope: "P2"),
                       Self.change(Self.north1, 2, table: "grant", row: "g1", column: "ended", value: .text("2025-07-01"), scope: "P2")],
                 from: Self.north1, signer: &north)
        #expect(try pull(hub, Self.south1).decodeChanges().map(\.id).filter { $0.replica == Self.north1 }.map(\.counter) == [1, 2])
        #expect(try hub.purgesOwed(replica: Self.south1, limit: 10).isEmpty)
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10) == ["P2"])
    }

    @Test("a forged write for another team's person, or a replica's empty-scope row (even in an unscoped table), is quarantined; the hub's catalogue reaches every team")
    func forgedWritesQuarantined() throws {
        let hub = try hub()
        var south = TestSigner()
        var north = TestSigner()
        try push(hub, [Self.change(Self.south1, 1, table: "person", row: "P2", scope: "P2")], from: Self.south1, signer: &south)
        // North writes a grant to itself on south's person: the grant is not taken into the view.
        let forged = try push(hub, [Self.change(Self.north1, 1, table: "grant", row: "g9", column: "team", value: .text("north"), scope: "P2"),
                                    Self.change(Self.north1, 2, table: "note", row: "leak", scope: "")], from: Self.north1, signer: &north)
        #expect(forged.quarantined == 2)
        #expect(try pull(hub, Self.north2).encoded.isEmpty)
        #expect(try pull(hub, Self.south1).encoded.isEmpty)
        // Not even in an unscoped table: only the hub writes those.
        let catalogue = try push(hub, [Self.change(Self.north1, 3, table: "catalogue", row: "c0", scope: "")], from: Self.north1, signer: &north)
        #expect(catalogue.quarantined == 1)
        // The hub's catalogue (unscoped) reaches every team.
        _ = try hub.publish([Self.change(hub.hubID, 1, table: "catalogue", row: "c1", scope: "")], receivedAtMillis: 1)
        #expect(try pull(hub, Self.south1).decodeChanges().map(\.row) == ["c1"])
        #expect(try pull(hub, Self.north2).decodeChanges().map(\.row) == ["c1"])
    }

    @Test("a push with two scopes and no head between them is refused with UNSIGNED_CHANGES; nothing is stored")
    func boundaryHeadRequired() throws {
        let hub = try hub()
        var signer = TestSigner()
        let changes = [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1"),
                       Self.change(Self.north1, 2, table: "person", row: "P3", scope: "P3")]
        #expect(throws: StoreError.self) {
            try hub.append(changes, from: Self.north1, heads: signer.heads(changes), receivedAtMillis: 1)
        }
        #expect(try hub.head() == 0)
    }

    @Test("a run after a gap carries an anchor: the origin's head at the counter before it")
    func runsAfterAGapAreAnchored() throws {
        let hub = try hub()
        var north = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1"),
                       Self.change(Self.north1, 2, table: "person", row: "P2", scope: "P2"),
                       Self.change(Self.north1, 3, table: "grant", row: "g", column: "team", value: .text("south"), scope: "P2")],
                 from: Self.north1, signer: &north)
        // South holds P2 only: changes 2 and 3 of north1, anchored at 1.
        let page = try pull(hub, Self.south1)
        #expect(try page.decodeChanges().map(\.id.counter) == [2, 3])
        #expect(page.provenance.heads.map(\.counter).contains(1))
        #expect(page.provenance.heads.first { $0.counter == 1 }?.verifies(with: TestSigner.publicKey(Self.north1)) == true)
    }

    static func person(_ origin: ReplicaID, _ counter: UInt64, _ scope: String, _ column: String, _ operation: FieldOperation) -> Change {
        Change(table: "person", row: scope, column: column,
               write: FieldWrite(id: ChangeID(replica: origin, counter: counter),
                                 timestamp: HybridTimestamp(physicalMillis: 1_750_000_000_000 + counter, logical: 0),
                                 author: "ann", operation: operation),
               scope: scope)
    }

    @Test("a restricted person reaches only the replicas on its restriction: the others skip it, are owed a purge, and their writes are quarantined; a stale 'no' cannot lift it")
    func restrictedPersonsReachOnlyTheNamed() throws {
        let hub = try hub()
        var north = TestSigner()
        var north2 = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1"),
                       Self.change(Self.north1, 2, table: "note", row: "n1", scope: "P1")], from: Self.north1, signer: &north)
        let seen = try pull(hub, Self.north2)
        #expect(seen.encoded.count == 2)
        // north1 restricts P1 to itself.
        try push(hub, [Self.person(Self.north1, 3, "P1", "allowed", .add(.text(Self.north1.hex))),
                       Self.person(Self.north1, 4, "P1", "restricted", .assign(.text("yes")))], from: Self.north1, signer: &north)
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10) == ["P1"])
        #expect(try hub.purgesOwed(replica: Self.north1, limit: 10).isEmpty)
        let after = try pull(hub, Self.north2, after: seen.nextCursor)
        #expect(after.encoded.isEmpty)
        // north2, stale, writes "not restricted" and a note: quarantined, and the restriction holds.
        let stale = try push(hub, [Self.person(Self.north2, 1, "P1", "restricted", .assign(.text("no"))),
                                   Self.change(Self.north2, 2, table: "note", row: "n2", scope: "P1")], from: Self.north2, signer: &north2)
        #expect(stale.quarantined == 2)
        #expect(try pull(hub, Self.north2, after: after.nextCursor).encoded.isEmpty)
        // Even the replica on the restriction cannot lift it: the status is sticky.
        try push(hub, [Self.person(Self.north1, 5, "P1", "restricted", .assign(.text("no"))),
                       Self.change(Self.north1, 6, table: "note", row: "n3", scope: "P1")], from: Self.north1, signer: &north)
        #expect(try pull(hub, Self.north2, after: after.nextCursor).encoded.isEmpty)
        // Admitting north2 gives it the whole bundle again and cancels its purge.
        try push(hub, [Self.person(Self.north1, 7, "P1", "allowed", .add(.text(Self.north2.hex)))], from: Self.north1, signer: &north)
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10).isEmpty)
        let admitted = try pull(hub, Self.north2, after: after.nextCursor)
        #expect(try admitted.decodeChanges().filter { $0.id.replica == Self.north1 }.map(\.id.counter) == [1, 2, 3, 4, 5, 6, 7])
    }

    @Test("a team that joins a restricted person's audience again does not cancel the purge owed to its replica off the restriction (scoped simulation seed 5941406522745547211)")
    func rejoiningKeepsTheRestrictionsPurge() throws {
        let hub = try hub()
        var north = TestSigner()
        var south = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P1", scope: "P1"),
                       Self.change(Self.north1, 2, table: "note", row: "n1", scope: "P1")], from: Self.north1, signer: &north)
        #expect(try pull(hub, Self.north2).encoded.count == 2)
        // Restricted to north1 and south1: north2, which holds P1, is owed a purge.
        try push(hub, [Self.person(Self.north1, 3, "P1", "allowed", .add(.text(Self.north1.hex))),
                       Self.person(Self.north1, 4, "P1", "allowed", .add(.text(Self.south1.hex))),
                       Self.person(Self.north1, 5, "P1", "restricted", .assign(.text("yes")))], from: Self.north1, signer: &north)
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10) == ["P1"])
        // Transferred to south, and back: north leaves the audience and joins it again.
        try push(hub, [Self.change(Self.north1, 6, table: "grant", row: "g1", column: "team", value: .text("south"), scope: "P1")],
                 from: Self.north1, signer: &north)
        try push(hub, [Self.change(Self.south1, 1, table: "grant", row: "g1", column: "ended", value: .text("2025-07-01"), scope: "P1")],
                 from: Self.south1, signer: &south)
        #expect(try pull(hub, Self.north1).decodeChanges().contains { $0.id.replica == Self.south1 }, "north is in the audience again")
        // north2 is still off the restriction: its purge stays owed, and it gets nothing of P1.
        #expect(try hub.purgesOwed(replica: Self.north2, limit: 10) == ["P1"])
        #expect(try pull(hub, Self.north2).decodeChanges().filter { $0.scope == "P1" && $0.id.counter > 2 }.isEmpty)
    }

    @Test("a page gives each origin's changes in ascending counters, also when a scope in appended older history after newer changes")
    func pagesAscendPerOrigin() throws {
        let hub = try hub()
        var north = TestSigner()
        try push(hub, [Self.change(Self.north1, 1, table: "person", row: "P2", scope: "P2"),
                       Self.change(Self.north1, 2, table: "person", row: "P3", scope: "P3"),
                       Self.change(Self.north1, 3, table: "grant", row: "g3", column: "team", value: .text("south"), scope: "P3")],
                 from: Self.north1, signer: &north)
        try push(hub, [Self.change(Self.north1, 4, table: "grant", row: "g2", column: "team", value: .text("south"), scope: "P2")],
                 from: Self.north1, signer: &north)
        // South's feed: P3's 2 and 3, then P2's history 1 and 4.
        #expect(try pull(hub, Self.south1).decodeChanges().map(\.id.counter) == [1, 2, 3, 4])
    }

    @Test("the audit trail records each scope out and in (with the team), each quarantined write, and each purge acknowledged; it verifies")
    func scopeEventsAreAudited() throws {
        let hub = try hub()
        var south = TestSigner()
        try push(hub, [Self.change(Self.south1, 1, table: "person", row: "P2", scope: "P2"),
                       Self.change(Self.south1, 2, table: "grant", row: "g1", column: "team", value: .text("north"), scope: "P2")],
                 from: Self.south1, signer: &south)
        try push(hub, [Self.change(Self.south1, 3, table: "note", row: "n3", scope: "P2")], from: Self.south1, signer: &south)
        try hub.acknowledgePurges(["P2"], replica: Self.south1, nowMillis: 1_750_000_000_001)
        let events = try hub.auditEvents(after: 0, limit: 100).map(\.event)
        let routing = events.filter { [.scopeIn, .scopeOut, .quarantinedWrite, .purge].contains($0.kind) }.map { "\($0.kind) \($0.scope) \($0.detail)" }
        // South created P2 and handed it to north in one push: it held it, so it leaves.
        #expect(routing == ["\(AuditEvent.Kind.scopeIn) P2 TEAM=north", "\(AuditEvent.Kind.scopeOut) P2 TEAM=south",
                            "\(AuditEvent.Kind.quarantinedWrite) P2 OUT_OF_SCOPE",
                            "\(AuditEvent.Kind.purge) P2 ACKNOWLEDGED"], "\(routing)")
        #expect(try hub.verifyAudit().isIntact)
    }
}
