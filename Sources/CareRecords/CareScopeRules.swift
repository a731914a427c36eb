import SyncCore
import SyncStore

/// Which teams may hold a young person's bundle (Protocol/scope.md, "Scope and audience"; the
/// domain's Access rules): the teams of the young person's open allocations, its
/// `involved_teams`, the owning teams of its live plans — or, while none of these names a team,
/// the team whose replica recorded the young person.
public struct CareScopeRules: ScopeRules {
    /// The rules.
    public init() {}

    /// The deciding columns, with the policies `CareSchema` gives them.
    public var decidingColumns: [String: [String: MergePolicy]] {
        func policies(_ kind: String, _ columns: [String]) -> [String: MergePolicy] {
            var result: [String: MergePolicy] = [:]
            for column in columns {
                if let field = CareSchema.kind(kind)?.field(column) { result[column] = field.policy }
            }
            return result
        }
        return [
            "allocation": policies("allocation", [Self.teamID, Self.endedOn]),
            YoungPerson.kindName: policies(YoungPerson.kindName, [Self.involvedTeams, Self.restricted, CareSchema.restrictedTo]),
            "plan": policies("plan", [Self.owningTeam, CareColumn.status.rawValue]),
        ]
    }

    /// The young person's own record: its row id is the scope.
    public var scopeTable: String { YoungPerson.kindName }

    /// The entitlement catalogue belongs to no one and goes to every team.
    public var unscopedTables: Set<String> { [EntitlementItem.kindName] }

    /// The audience of one young person.
    public func audience(_ view: ScopeView) -> Set<String> {
        var teams: Set<String> = []
        for row in view.rows where row.isAlive {
            switch row.table {
            case "allocation" where row.values(Self.endedOn).isEmpty:
                teams.formUnion(row.values(Self.teamID).compactMap(\.textValue))
            case YoungPerson.kindName:
                teams.formUnion(row.values(Self.involvedTeams).compactMap(\.textValue))
            case "plan" where !row.values(CareColumn.status.rawValue).contains(where: Self.endsPlan):
                teams.formUnion(row.values(Self.owningTeam).compactMap(\.textValue))
            default:
                break
            }
        }
        teams = teams.filter { !$0.isEmpty }
        if teams.isEmpty, let creator = view.creatorTeam { teams.insert(creator) }
        return teams
    }

    /// A restricted young person (`restricted` = yes, sticky) reaches only the replicas named in
    /// `restricted_to`, within the involved teams (as Mosaic restricts records).
    public func restriction(_ view: ScopeView) -> Set<String>? {
        guard let person = view.rows.first(where: { $0.table == YoungPerson.kindName && $0.key == view.scope }),
              person.values(Self.restricted).contains(.text(Restriction.yes.rawValue)) else { return nil }
        return Set(person.values(CareSchema.restrictedTo).compactMap(\.textValue).map { $0.lowercased() })
    }

    static let restricted = CareColumn.restricted.rawValue
    /// A closed or superseded plan (either of two conflicting terminal statuses ends it) no longer
    /// keeps its owning team involved.
    static func endsPlan(_ status: FieldValue) -> Bool {
        status.textValue.flatMap(PlanStatus.init(rawValue:))?.isClosed ?? false
    }

    static let teamID = "team_id"
    static let endedOn = "ended_on"
    static let involvedTeams = "involved_teams"
    static let owningTeam = "owning_team_id"
}
