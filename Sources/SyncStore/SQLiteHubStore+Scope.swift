import Foundation
import GRDB
import SyncCore
import SyncIdentity

/// The hub's scope tables (Protocol/scope.md): its merged view of the deciding rows, each scope's
/// audience, each team's feed, and the quarantine of writes outside scope.
enum HubScopeSchema {
    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE hub_scope (scope TEXT PRIMARY KEY, creator_team TEXT) WITHOUT ROWID;
            CREATE TABLE hub_view_row (
              table_name TEXT NOT NULL, row_key TEXT NOT NULL, scope TEXT NOT NULL, causal_length INTEGER NOT NULL,
              PRIMARY KEY (table_name, row_key)) WITHOUT ROWID;
            CREATE INDEX hub_view_row_by_scope ON hub_view_row (scope);
            CREATE TABLE hub_view_field (
              table_name TEXT NOT NULL, row_key TEXT NOT NULL, column_name TEXT NOT NULL, state BLOB NOT NULL,
              PRIMARY KEY (table_name, row_key, column_name)) WITHOUT ROWID;
            CREATE TABLE hub_audience (scope TEXT NOT NULL, team TEXT NOT NULL, PRIMARY KEY (scope, team)) WITHOUT ROWID;
            CREATE TABLE hub_team (id INTEGER PRIMARY KEY, team TEXT NOT NULL UNIQUE, next_fseq INTEGER NOT NULL);
            CREATE TABLE hub_feed (
              team INTEGER NOT NULL, fseq INTEGER NOT NULL, seq INTEGER NOT NULL, scope TEXT NOT NULL,
              PRIMARY KEY (team, fseq)) WITHOUT ROWID;
            CREATE INDEX hub_feed_by_scope ON hub_feed (team, scope);
            CREATE TABLE hub_quarantine (
              seq INTEGER PRIMARY KEY, from_replica TEXT NOT NULL, team TEXT NOT NULL, scope TEXT NOT NULL,
              received_at INTEGER NOT NULL);
            CREATE TABLE hub_restricted (scope TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE hub_acl (scope TEXT NOT NULL, replica_id TEXT NOT NULL, PRIMARY KEY (scope, replica_id)) WITHOUT ROWID;
            CREATE TABLE hub_scope_state (id INTEGER PRIMARY KEY CHECK (id = 1), built INTEGER NOT NULL);
            INSERT INTO hub_scope_state (id, built) VALUES (1, 0);
            CREATE INDEX hub_log_by_scope ON hub_log (scope, seq);
            """)
    }
}

/// A change the hub has just stored, with its place in the log.
struct StoredChange {
    let seq: Int64
    let change: Change
    /// False for a protocol-2 row that was held and is chained now (new to the feeds only).
    var isNew = true
}

/// What one push did to scopes: counts for the result and the audit.
struct Routing {
    var quarantined: [StoredChange] = []
    /// Why each quarantined change was (by hub sequence): `OUT_OF_SCOPE`, `RESTRICTED` or `UNSCOPED`.
    var reasons: [Int64: String] = [:]
    var scopesIn: [(scope: String, team: String)] = []
    var scopesOut: [(scope: String, team: String)] = []
    /// The accepted new changes of checked tables, by scope: what the rules decide about.
    var checked: [String: [Change]] = [:]

    /// The audit events of the routing: each quarantined write, and each team a scope moved into
    /// or out of (ids and team ids only).
    func auditEvents(pusher: ReplicaID, receivedAtMillis: UInt64) -> [AuditEvent] {
        quarantined.map { entry in
            AuditEvent(kind: .quarantinedWrite, actor: entry.change.author, device: entry.change.id.replica, table: entry.change.table,
                       row: entry.change.row, scope: entry.change.scope, change: entry.change.id,
                       occurredAtMillis: entry.change.timestamp.physicalMillis, receivedAtMillis: receivedAtMillis,
                       detail: "OUT_OF_SCOPE" + (pusher == entry.change.id.replica ? "" : " RELAYED_BY=\(pusher.hex)"))
        } + scopesIn.map { moved in
            AuditEvent(kind: .scopeIn, device: pusher, scope: moved.scope, occurredAtMillis: receivedAtMillis, receivedAtMillis: receivedAtMillis,
                       detail: "TEAM=\(moved.team)")
        } + scopesOut.map { moved in
            AuditEvent(kind: .scopeOut, device: pusher, scope: moved.scope, occurredAtMillis: receivedAtMillis, receivedAtMillis: receivedAtMillis,
                       detail: "TEAM=\(moved.team)")
        }
    }
}

extension SQLiteHubStore {
    /// Routes a push's newly stored changes (Protocol/scope.md): writes outside the pusher's
    /// scope are quarantined; the deciding rows of the others update the hub's view; audiences
    /// that changed move bundles into feeds (scope in) or out of them with a purge owed (scope
    /// out); every other accepted change joins the feeds of its scope's audience. In the push's
    /// transaction. Does nothing without scope rules.
    func route(_ db: Database, _ stored: [StoredChange], pusher: ReplicaID, nowMillis: Int64) throws -> Routing {
        guard let rules = scopeRules, !stored.isEmpty else { return Routing() }
        var routing = Routing()
        let privileged = pusher == hubID || hubKeyed.contains(pusher)
        let team = privileged ? nil : try Self.team(db, of: pusher)
        // Scopes whose own row this push creates: the creator holds them (scope.md, rule 4). Only
        // a scope the hub does not hold yet: a "creation" of a known one (a forged copy of another
        // team's young person, naming its own team) is a write like any other.
        var created: Set<String> = []
        for entry in stored where Self.createsScope(entry.change, rules) && !created.contains(entry.change.scope) {
            if try !Self.holdsScopeRow(db, entry.change.scope, rules) { created.insert(entry.change.scope) }
        }
        var before: [String: Set<String>] = [:]
        // Each scope's restriction as the push found it: read once a scope, not once a change.
        var restrictions: [String: Set<String>?] = [:]
        var accepted: [StoredChange] = []
        for entry in stored {
            let scope = entry.change.scope
            // Rows of no one reach every team: only the hub's own (the catalogue's publisher, also
            // when a replica relays it), never a replica's, which would be a channel to every team.
            let hubOwned = entry.change.id.replica == hubID || hubKeyed.contains(entry.change.id.replica)
            if privileged || (scope.isEmpty && hubOwned && rules.unscopedTables.contains(entry.change.table)) {
                accepted.append(entry)
                continue
            }
            if !scope.isEmpty, before[scope] == nil { before[scope] = try Self.audience(db, of: scope) }
            // A restricted scope takes writes only from the replicas on its restriction.
            if !scope.isEmpty, restrictions[scope] == nil { restrictions[scope] = .some(try Self.restriction(db, of: scope)) }
            let barred = (restrictions[scope] ?? nil).map { !$0.contains(pusher.hex) } ?? false
            if let team, !scope.isEmpty, !barred, before[scope]?.contains(team) == true || created.contains(scope) {
                accepted.append(entry)
            } else {
                routing.quarantined.append(entry)
                routing.reasons[entry.seq] = scope.isEmpty ? "UNSCOPED" : barred ? "RESTRICTED" : "OUT_OF_SCOPE"
            }
        }
        for entry in routing.quarantined {
            try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO hub_quarantine (seq, from_replica, team, scope, received_at, reason) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [entry.seq, pusher.hex, team ?? "", entry.change.scope, nowMillis, routing.reasons[entry.seq] ?? "OUT_OF_SCOPE"])
        }
        var decided: Set<String> = []
        for entry in accepted {
            let checked = rules.checkedColumns[entry.change.table] != nil
            guard !entry.change.scope.isEmpty || checked else { continue }
            if try updateView(db, entry.change, rules), !entry.change.scope.isEmpty { decided.insert(entry.change.scope) }
            if checked, entry.isNew { routing.checked[entry.change.scope, default: []].append(entry.change) }
        }
        var feeds = FeedWriter()
        // Audiences that changed: bundles move in or out.
        var gained: [String: Set<String>] = [:]
        for scope in decided.sorted() {
            let recorded = try before[scope] ?? Self.audience(db, of: scope)
            // The pusher holds a scope it created in this push, whatever the push then decided.
            var old = recorded
            if created.contains(scope), let team { old.insert(team) }
            let view = try view(db, of: scope)
            let new = rules.audience(view)
            before[scope] = new
            let refilled = try restrict(db, scope, to: rules.restriction(view), audience: new, feeds: &feeds, nowMillis: nowMillis)
            gained[scope] = refilled
            if new != recorded {
                try db.execute(sql: "DELETE FROM hub_audience WHERE scope = ?", arguments: [scope])
                for member in new.sorted() {
                    try db.execute(sql: "INSERT INTO hub_audience (scope, team) VALUES (?, ?)", arguments: [scope, member])
                }
            }
            guard new != old else { continue }
            // A restriction (recorded above) still keeps out the joining team's replicas it does
            // not name: a purge owed to one of them stays owed.
            let admitted = try Self.restriction(db, of: scope)
            for joined in new.subtracting(old).sorted() {
                try feeds.appendHistory(db, of: scope, to: joined)
                try cancelPurge(scope, replicas: try Self.replicas(db, of: joined).filter { admitted?.contains($0) ?? true }
                    .compactMap(ReplicaID.init(hex:)), in: db)
                routing.scopesIn.append((scope, joined))
            }
            for left in old.subtracting(new).sorted() {
                try feeds.removeScope(db, scope, from: left)
                try owePurge(scope, team: left, nowMillis: nowMillis, in: db)
                routing.scopesOut.append((scope, left))
            }
            gained[scope, default: []].formUnion(new.subtracting(old))
        }
        for entry in accepted {
            let scope = entry.change.scope
            if scope.isEmpty {
                try feeds.appendToAll(db, entry)
                continue
            }
            let audience = try before[scope] ?? Self.audience(db, of: scope)
            before[scope] = audience
            // A team that has just gained the scope received its whole history, this one included.
            for member in audience.subtracting(gained[scope] ?? []).sorted() {
                try feeds.append(db, entry.seq, scope: scope, to: member)
            }
        }
        try feeds.finish(db)
        return routing
    }

    /// Whether `change` makes the scope's own row (the young person's record) alive.
    private static func createsScope(_ change: Change, _ rules: any ScopeRules) -> Bool {
        change.table == rules.scopeTable && change.row == change.scope && CausalLength.isAlive(change.causalLength)
    }

    /// Whether the hub's view holds the scope's own row (someone has created it).
    private static func holdsScopeRow(_ db: Database, _ scope: String, _ rules: any ScopeRules) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM hub_view_row WHERE table_name = ? AND row_key = ?"),
                          arguments: [rules.scopeTable, scope]) != nil
    }

    /// Merges the deciding columns of `change` into the hub's view; true when the change is of a
    /// deciding table (or the scope's own row), so the scope's audience may have changed.
    private func updateView(_ db: Database, _ change: Change, _ rules: any ScopeRules) throws -> Bool {
        let columns = rules.decidingColumns[change.table]
        let checked = rules.checkedColumns[change.table]
        let ownsScope = change.table == rules.scopeTable && change.row == change.scope
        guard columns != nil || checked != nil || ownsScope else { return false }
        if !change.scope.isEmpty {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO hub_scope (scope, creator_team) VALUES (?, NULL)").execute(arguments: [change.scope])
        }
        if ownsScope, Self.createsScope(change, rules) {
            let creator = try Self.team(db, of: change.id.replica)
            try db.cachedStatement(sql: "UPDATE hub_scope SET creator_team = ? WHERE scope = ? AND creator_team IS NULL")
                .execute(arguments: [creator, change.scope])
        }
        try db.cachedStatement(sql: """
            INSERT INTO hub_view_row (table_name, row_key, scope, causal_length) VALUES (?, ?, ?, ?)
            ON CONFLICT (table_name, row_key) DO UPDATE SET causal_length = max(causal_length, excluded.causal_length)
            """).execute(arguments: [change.table, change.row, change.scope, Int64(clamping: change.causalLength)])
        for edit in change.fields {
            guard let policy = columns?[edit.column] ?? checked?[edit.column] else { continue }
            let held = try Data.fetchOne(db.cachedStatement(sql: """
                SELECT state FROM hub_view_field WHERE table_name = ? AND row_key = ? AND column_name = ?
                """), arguments: [change.table, change.row, edit.column])
            let state = try held.map { data -> FieldState in
                do {
                    return try FieldState.decode(Array(data), policy: policy)
                } catch {
                    throw StoreError.unreadableState(table: change.table, column: edit.column, row: change.row, error)
                }
            } ?? FieldState.empty(for: policy)
            let merged = state.applying(change.write(of: edit), policy: policy)
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO hub_view_field (table_name, row_key, column_name, state) VALUES (?, ?, ?, ?)
                """).execute(arguments: [change.table, change.row, edit.column, Data(merged.encoded())])
        }
        return columns != nil || ownsScope
    }

    /// The hub's merged view of `scope`'s deciding rows.
    func view(_ db: Database, of scope: String) throws -> ScopeView {
        guard let rules = scopeRules else { return ScopeView(scope: scope, creatorTeam: nil, rows: []) }
        let creator = try String.fetchOne(db.cachedStatement(sql: "SELECT creator_team FROM hub_scope WHERE scope = ?"), arguments: [scope])
        // One query: each row with its fields (a row with none comes once, with a null column).
        var views: [ScopeView.Row] = []
        var current: (table: String, key: String, length: Int64, fields: [String: (state: FieldState, policy: MergePolicy)])?
        func flush() {
            guard let row = current else { return }
            views.append(ScopeView.Row(table: row.table, key: row.key, isAlive: CausalLength.isAlive(UInt64(clamping: row.length)), fields: row.fields))
        }
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT r.table_name, r.row_key, r.causal_length, f.column_name, f.state FROM hub_view_row r
            LEFT JOIN hub_view_field f ON f.table_name = r.table_name AND f.row_key = r.row_key
            WHERE r.scope = ? ORDER BY r.table_name, r.row_key
            """), arguments: [scope]) {
            let table: String = row[0]
            let key: String = row[1]
            if current?.table != table || current?.key != key {
                flush()
                current = (table, key, row[2], [:])
            }
            guard let column = row[3] as String?, let policy = rules.decidingColumns[table]?[column] ?? rules.checkedColumns[table]?[column],
                  let data = row[4] as Data? else { continue }
            do {
                current?.fields[column] = (try FieldState.decode(Array(data), policy: policy), policy)
            } catch {
                throw StoreError.unreadableState(table: table, column: column, row: key, error)
            }
        }
        flush()
        return ScopeView(scope: scope, creatorTeam: creator, rows: views)
    }

    /// The replicas a restricted scope is limited to; nil when it is not restricted.
    static func restriction(_ db: Database, of scope: String) throws -> Set<String>? {
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM hub_restricted WHERE scope = ?"), arguments: [scope]) != nil else { return nil }
        return Set(try String.fetchAll(db.cachedStatement(sql: "SELECT replica_id FROM hub_acl WHERE scope = ?"), arguments: [scope]))
    }

    /// Records the scope's restriction as the rules now give it. Replicas it excludes that may
    /// hold the scope are owed a purge; replicas it newly admits get the scope's history again
    /// in their team's feed (they skipped it) and are owed no purge of it.
    /// - Returns: the teams whose feed was given the scope's history again.
    private func restrict(_ db: Database, _ scope: String, to acl: Set<String>?, audience: Set<String>, feeds: inout FeedWriter,
                          nowMillis: Int64) throws -> Set<String> {
        let held = try Self.restriction(db, of: scope)
        guard held != acl else { return [] }
        try db.execute(sql: "DELETE FROM hub_restricted WHERE scope = ?; DELETE FROM hub_acl WHERE scope = ?", arguments: [scope, scope])
        if let acl {
            try db.execute(sql: "INSERT INTO hub_restricted (scope) VALUES (?)", arguments: [scope])
            for replica in acl.sorted() {
                try db.execute(sql: "INSERT INTO hub_acl (scope, replica_id) VALUES (?, ?)", arguments: [scope, replica])
            }
        }
        var members: [String: String] = [:]
        for team in audience.sorted() {
            for replica in try Self.replicas(db, of: team) { members[replica] = team }
        }
        let admittedBefore = held ?? Set(members.keys)
        let admittedNow = acl ?? Set(members.keys)
        for replica in admittedBefore.subtracting(admittedNow).sorted() where members[replica] != nil {
            try owePurge(scope, replicas: ReplicaID(hex: replica).map { [$0] } ?? [], nowMillis: UInt64(max(0, nowMillis)), in: db)
        }
        var refilled: Set<String> = []
        for replica in admittedNow.subtracting(admittedBefore).sorted() {
            guard let team = members[replica] else { continue }
            try cancelPurge(scope, replicas: ReplicaID(hex: replica).map { [$0] } ?? [], in: db)
            if refilled.insert(team).inserted { try feeds.appendHistory(db, of: scope, to: team) }
        }
        return refilled
    }

    static func audience(_ db: Database, of scope: String) throws -> Set<String> {
        Set(try String.fetchAll(db.cachedStatement(sql: "SELECT team FROM hub_audience WHERE scope = ?"), arguments: [scope]))
    }

    /// The registry's team of `replica`, if it is enrolled.
    static func team(_ db: Database, of replica: ReplicaID) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: "SELECT team FROM hub_replica WHERE replica_id = ?"), arguments: [replica.hex])
    }

    /// Every replica of `team`, revoked or not (a revoked device that comes back is a new identity).
    static func replicas(_ db: Database, of team: String) throws -> [String] {
        try String.fetchAll(db.cachedStatement(sql: "SELECT replica_id FROM hub_replica WHERE team = ? ORDER BY replica_id"), arguments: [team])
    }

    func owePurge(_ scope: String, team: String, nowMillis: Int64, in db: Database) throws {
        try owePurge(scope, replicas: try Self.replicas(db, of: team).compactMap(ReplicaID.init(hex:)), nowMillis: UInt64(max(0, nowMillis)), in: db)
    }

    func cancelPurge(_ scope: String, team: String, in db: Database) throws {
        try cancelPurge(scope, replicas: try Self.replicas(db, of: team).compactMap(ReplicaID.init(hex:)), in: db)
    }

    /// Makes sure `team` has a feed; a new one starts with every unscoped change (the catalogue).
    func ensureTeam(_ db: Database, _ team: String) throws {
        guard scopeRules != nil else { return }
        var feeds = FeedWriter()
        _ = try feeds.teamID(db, team)
        try feeds.finish(db)
    }
}

/// Appends to and removes from team feeds within one transaction, numbering each team's entries.
struct FeedWriter {
    private var teams: [String: (id: Int64, next: Int64)] = [:]
    /// Teams made by this writer: their feed already holds every unscoped change, this push's too.
    private var fresh: Set<String> = []

    /// The team's feed id, made (and given the unscoped history) when the team is new.
    mutating func teamID(_ db: Database, _ team: String) throws -> Int64 {
        if let known = teams[team] { return known.id }
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT id, next_fseq FROM hub_team WHERE team = ?"), arguments: [team]) {
            teams[team] = (row[0], row[1])
            return row[0]
        }
        try db.cachedStatement(sql: "INSERT INTO hub_team (team, next_fseq) VALUES (?, 1)").execute(arguments: [team])
        let id = db.lastInsertedRowID
        teams[team] = (id, 1)
        fresh.insert(team)
        try appendHistory(db, of: "", to: team)
        return id
    }

    mutating func append(_ db: Database, _ seq: Int64, scope: String, to team: String) throws {
        let id = try teamID(db, team)
        guard let next = teams[team]?.next else { return }
        try db.cachedStatement(sql: "INSERT INTO hub_feed (team, fseq, seq, scope) VALUES (?, ?, ?, ?)").execute(arguments: [id, next, seq, scope])
        teams[team] = (id, next + 1)
    }

    /// Every held, chained, not quarantined change of `scope`, in hub order, at the feed's end
    /// (entries of the scope it held are taken out first: a feed holds each change once).
    mutating func appendHistory(_ db: Database, of scope: String, to team: String) throws {
        let id = try teamID(db, team)
        try db.cachedStatement(sql: "DELETE FROM hub_feed WHERE team = ? AND scope = ?").execute(arguments: [id, scope])
        let seqs = try Int64.fetchAll(db.cachedStatement(sql: """
            SELECT l.seq FROM hub_log l WHERE l.scope = ? AND l.chain IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM hub_quarantine q WHERE q.seq = l.seq) ORDER BY l.seq
            """), arguments: [scope])
        for seq in seqs { try append(db, seq, scope: scope, to: team) }
    }

    /// An unscoped change joins every team's feed.
    mutating func appendToAll(_ db: Database, _ entry: StoredChange) throws {
        for team in try String.fetchAll(db.cachedStatement(sql: "SELECT team FROM hub_team ORDER BY id")) where !fresh.contains(team) {
            try append(db, entry.seq, scope: "", to: team)
        }
    }

    mutating func removeScope(_ db: Database, _ scope: String, from team: String) throws {
        let id = try teamID(db, team)
        try db.cachedStatement(sql: "DELETE FROM hub_feed WHERE team = ? AND scope = ?").execute(arguments: [id, scope])
    }

    func finish(_ db: Database) throws {
        for (_, team) in teams {
            try db.cachedStatement(sql: "UPDATE hub_team SET next_fseq = ? WHERE id = ?").execute(arguments: [team.next, team.id])
        }
    }
}

extension SQLiteHubStore {
    /// A pull's page from the requester's team feed (Protocol/scope.md, "The feed"): the cursor is
    /// a position in that feed. Each run of an origin that does not follow a change of it in the
    /// page gets an anchor (the head at the counter before it: the origin's own, or one the hub
    /// key attests), so the replica can verify part of the origin's log. Nil without scope rules.
    func feedPage(_ db: Database, after cursor: UInt64, for replica: ReplicaID, byteBudget: Int, maxCount: Int) throws -> HubPage? {
        guard scopeRules != nil else { return nil }
        let empty = HubPage(encoded: [], nextCursor: cursor, more: false, bytes: 0, provenance: .none)
        guard let team = try Self.team(db, of: replica),
              let teamID = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM hub_team WHERE team = ?"), arguments: [team])
        else { return empty }
        let excluded = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM hub_origin WHERE replica_id = ?"), arguments: [replica.hex]) ?? -1
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT f.fseq, l.origin, l.counter, l.bytes, l.chain, h.signer, h.signature,
              EXISTS (SELECT 1 FROM hub_restricted r WHERE r.scope = f.scope)
              AND NOT EXISTS (SELECT 1 FROM hub_acl a WHERE a.scope = f.scope AND a.replica_id = ?),
              EXISTS (SELECT 1 FROM hub_purge p WHERE p.replica_id = ? AND p.scope = f.scope AND p.acked_at IS NOT NULL) FROM hub_feed f
            JOIN hub_log l ON l.seq = f.seq
            LEFT JOIN hub_head h ON h.origin = l.origin AND h.counter = l.counter
            WHERE f.team = ? AND f.fseq > ? ORDER BY f.fseq
            """), arguments: [replica.hex, replica.hex, teamID, Int64(clamping: cursor)])
        var page = CutPageBuilder(byteBudget: byteBudget, maxCount: maxCount, position: cursor)
        var origins = OriginDirectory(store: self)
        var placed: [(origin: Int64, counter: Int64)] = []
        var last: [Int64: Int64] = [:]
        while let row = try rows.next() {
            let position = UInt64(clamping: row[0] as Int64)
            let origin: Int64 = row[1]
            let counter: Int64 = row[2]
            // Another copy's own changes, and a restricted scope's this replica is not on: passed
            // over. Its own changes of a scope it has purged are not: they are gone from its file,
            // and a scope in gives it the bundle again (duplicates of any it still holds are ignored).
            if (origin == excluded && !(row[8] as Bool)) || row[7] as Bool {
                page.skip(to: position)
                continue
            }
            let startsRun = counter > 1 && last[origin] != counter - 1
            let held = page.encoded.count
            let goesOn = try page.add(db, row, position: position, &origins, extra: startsRun ? SignedHead.minimumEncodedSize + 9 : 0)
            // A page whose first cut outgrows the budget ends with the row that completes the cut:
            // that row is in the page although `add` says the page is complete.
            if page.encoded.count > held {
                placed.append((origin, counter))
                last[origin] = counter
            }
            guard goesOn else { break }
        }
        page.finish()
        placed.removeLast(placed.count - page.encoded.count)
        let anchors = try self.anchors(db, for: placed, &origins)
        return HubPage(encoded: Self.ascendingPerOrigin(page.encoded, placed), nextCursor: page.position, more: page.more, bytes: page.bytes,
                       provenance: Provenance(sorting: Self.distinct(page.sortedHeads + anchors),
                                              certificates: try origins.certificates(db, page.origins)))
    }

    /// Heads at the counter before each run of the page that does not follow a change of its
    /// origin in the page: the origin's own head there if the hub holds one, else one the hub key
    /// attests (without a key, none: the replica then asks from where it holds).
    private func anchors(_ db: Database, for placed: [(origin: Int64, counter: Int64)], _ origins: inout OriginDirectory) throws -> [SignedHead] {
        var inPage: Set<[Int64]> = []
        for entry in placed { inPage.insert([entry.origin, entry.counter]) }
        var anchors: [SignedHead] = []
        var done: Set<[Int64]> = []
        for entry in placed where entry.counter > 1 && !inPage.contains([entry.origin, entry.counter - 1]) {
            let at = [entry.origin, entry.counter - 1]
            guard done.insert(at).inserted else { continue }
            let replica = try origins.replica(db, entry.origin)
            guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT l.counter, h.signer, h.signature, l.chain FROM hub_log l
                LEFT JOIN hub_head h ON h.origin = l.origin AND h.counter = l.counter
                WHERE l.origin = ? AND l.counter = ? AND l.chain IS NOT NULL
                """), arguments: [at[0], at[1]]) else { continue }
            if let head = Self.head(replica, row, counter: 0, signer: 1, signature: 2, chain: 3) {
                anchors.append(head)
            } else if let signingKey, let chain = row[3] as Data? {
                anchors.append(signingKey.head(origin: replica, counter: UInt64(entry.counter - 1), chain: Array(chain), signer: .hubAttestation))
            }
        }
        return anchors
    }

    /// The page's changes with each origin's in ascending counter order, in the places its changes
    /// hold (a scope in appends a bundle's older history after newer changes of the same origin;
    /// a receiver takes each origin's changes in ascending order).
    static func ascendingPerOrigin(_ encoded: [[UInt8]], _ placed: [(origin: Int64, counter: Int64)]) -> [[UInt8]] {
        var places: [Int64: [Int]] = [:]
        for (index, entry) in placed.enumerated() { places[entry.origin, default: []].append(index) }
        var result = encoded
        for (_, indices) in places {
            let sorted = indices.sorted { placed[$0].counter < placed[$1].counter }
            guard sorted != indices else { continue }
            for (slot, source) in zip(indices, sorted) { result[slot] = encoded[source] }
        }
        return result
    }

    /// One head per (origin, counter): a page must never repeat one (Provenance refuses it).
    static func distinct(_ heads: [SignedHead]) -> [SignedHead] {
        var seen: Set<ChangeID> = []
        return heads.filter { seen.insert(ChangeID(replica: $0.origin, counter: $0.counter)).inserted }
    }

    /// The end of the requester's team feed (its cursor never passes it); nil without scope rules.
    func feedHead(_ db: Database, for replica: ReplicaID) throws -> UInt64? {
        guard scopeRules != nil else { return nil }
        guard let team = try Self.team(db, of: replica) else { return 0 }
        let next = try Int64.fetchOne(db.cachedStatement(sql: "SELECT next_fseq FROM hub_team WHERE team = ?"), arguments: [team]) ?? 1
        return UInt64(max(0, next - 1))
    }
}

extension SQLiteHubStore {
    /// How the scope tables stand for the way the store is opened: with rules but not built (a
    /// hub from before team scoping, or one opened without rules since) they must be built;
    /// without rules, built ones are marked stale. `renew` when pull cursors change meaning
    /// (hub sequences and feed positions), so the incarnation must change and replicas pull from 0.
    static func scopeState(_ queue: DatabaseQueue, scoped: Bool) throws -> (rebuild: Bool, renew: Bool) {
        try ReplicaStore.guarded {
            try queue.write { db in
                let built = try Bool.fetchOne(db, sql: "SELECT built FROM hub_scope_state") ?? false
                let replicas = try Int.fetchOne(db, sql: "SELECT count(*) FROM hub_replica") ?? 0
                if scoped { return (!built, !built && replicas > 0) }
                guard built else { return (false, false) }
                try db.execute(sql: "UPDATE hub_scope_state SET built = 0")
                return (false, replicas > 0)
            }
        }
    }

    /// Builds the scope tables from the hub log, owing every existing replica a purge of each
    /// scope outside its team's audience (it may hold everything).
    func rebuildScopes(nowMillis: Int64) throws {
        try ReplicaStore.guarded {
            try durableWrite { db in
                // Reviewers' decisions are not derived from the log: they outlive the rebuild.
                let resolved = try Self.hasReviewColumns(db) ? try Row.fetchAll(db, sql: """
                    SELECT seq, state, resolved_by, resolved_at FROM hub_quarantine WHERE state != 'held'
                    """) : []
                try db.execute(sql: """
                    DELETE FROM hub_scope; DELETE FROM hub_view_row; DELETE FROM hub_view_field; DELETE FROM hub_audience;
                    DELETE FROM hub_team; DELETE FROM hub_feed; DELETE FROM hub_quarantine;
                    """)
                for team in try String.fetchAll(db, sql: "SELECT DISTINCT team FROM hub_replica ORDER BY team") {
                    try ensureTeam(db, team)
                }
                let rows = try Row.fetchCursor(db, sql: """
                    SELECT l.seq, l.bytes, o.replica_id FROM hub_log l JOIN hub_origin o ON o.id = l.origin
                    WHERE l.chain IS NOT NULL ORDER BY l.seq
                    """)
                while let row = try rows.next() {
                    let seq: Int64 = row[0]
                    let change = try Self.storedChange(row[1], seq: seq)
                    let origin = ReplicaID(hex: row[2]) ?? hubID
                    _ = try route(db, [StoredChange(seq: seq, change: change)], pusher: origin, nowMillis: nowMillis)
                }
                for team in try String.fetchAll(db, sql: "SELECT DISTINCT team FROM hub_replica ORDER BY team") {
                    for scope in try String.fetchAll(db, sql: """
                        SELECT scope FROM hub_scope WHERE scope NOT IN (SELECT scope FROM hub_audience WHERE team = ?) ORDER BY scope
                        """, arguments: [team]) {
                        try owePurge(scope, team: team, nowMillis: nowMillis, in: db)
                    }
                }
                for row in resolved {
                    try db.execute(sql: "UPDATE hub_quarantine SET state = ?, resolved_by = ?, resolved_at = ? WHERE seq = ?",
                                   arguments: [row[1] as String, row[2] as String?, row[3] as Int64?, row[0] as Int64])
                }
                try db.execute(sql: "UPDATE hub_scope_state SET built = 1")
            }
        }
    }
}

extension SQLiteHubStore {
    /// Whether the hub file's team feeds are built (it scopes): pull cursors are feed positions.
    /// A file from before team scoping, opened read-only and so not migrated, has none.
    static func feedsBuilt(_ db: Database) throws -> Bool {
        guard try db.tableExists("hub_scope_state") else { return false }
        return try Bool.fetchOne(db, sql: "SELECT built FROM hub_scope_state") ?? false
    }
}
