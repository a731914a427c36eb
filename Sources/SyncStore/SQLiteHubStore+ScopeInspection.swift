import GRDB
import SyncCore

/// Who may hold one scope, as the hub decided it: for checks that compare what replicas hold
/// with what the hub routed (the scope-aware simulator), never for routing itself.
package struct ScopeAdmission: Sendable, Equatable {
    /// The scope (a young person's id).
    package let scope: String
    /// The teams of its audience.
    package let teams: Set<String>
    /// The replicas (hex ids) a restricted scope is limited to; nil when it is not restricted.
    package let restriction: Set<String>?

    /// Whether a replica of `team` with id `replica` may hold the scope.
    package func admits(team: String, replica: ReplicaID) -> Bool {
        teams.contains(team) && (restriction?.contains(replica.hex) ?? true)
    }
}

extension SQLiteHubStore {
    /// Every scope the hub's view holds, with its audience and restriction, read in one transaction.
    package func scopeAdmissions() throws -> [String: ScopeAdmission] {
        try ReplicaStore.guarded {
            try reads.read { db in
                var teams: [String: Set<String>] = [:]
                for scope in try String.fetchAll(db, sql: "SELECT scope FROM hub_scope") { teams[scope] = [] }
                for row in try Row.fetchAll(db, sql: "SELECT scope, team FROM hub_audience") {
                    teams[row[0] as String, default: []].insert(row[1])
                }
                var restrictions: [String: Set<String>] = [:]
                for scope in try String.fetchAll(db, sql: "SELECT scope FROM hub_restricted") { restrictions[scope] = [] }
                for row in try Row.fetchAll(db, sql: "SELECT scope, replica_id FROM hub_acl") {
                    restrictions[row[0] as String, default: []].insert(row[1])
                }
                var admissions: [String: ScopeAdmission] = [:]
                for (scope, members) in teams {
                    admissions[scope] = ScopeAdmission(scope: scope, teams: members, restriction: restrictions[scope])
                }
                return admissions
            }
        }
    }

    /// The ids of every quarantined change the hub holds (Protocol/scope.md, "Writes outside scope").
    package func quarantinedChangeIDs() throws -> Set<ChangeID> {
        try ReplicaStore.guarded {
            try reads.read { db in
                var ids: Set<ChangeID> = []
                for row in try Row.fetchAll(db, sql: """
                    SELECT o.replica_id, l.counter FROM hub_quarantine q JOIN hub_log l ON l.seq = q.seq JOIN hub_origin o ON o.id = l.origin
                    """) {
                    guard let origin = ReplicaID(hex: row[0]) else { continue }
                    ids.insert(ChangeID(replica: origin, counter: UInt64(clamping: row[1] as Int64)))
                }
                return ids
            }
        }
    }
}
