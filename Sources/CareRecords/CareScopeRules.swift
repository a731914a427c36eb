import SyncCore
import SyncStore

/// Which teams may hold a young person's bundle (Protocol/scope.md, "Scope and audience"; the
/// domain's Access rules): the teams of the young person's open allocations, its
/// `involved_teams`, the owning teams of its live plans — or, while none of these names a team,
/// the team whose replica recorded the young person.
public struct CareScopeRules: ScopeRules {
    /// The deciding columns, with the policies `CareSchema` gives them.
    public let decidingColumns: [String: [String: MergePolicy]]
    /// What the entitlement checks read (`CareScopeRules+Entitlements`), with their policies.
    public let checkedColumns: [String: [String: MergePolicy]]

    /// The rules. Their columns are worked out once here: the hub reads them for every field it views.
    public init() {
        func policies(_ kind: String, _ columns: [String]? = nil) -> [String: MergePolicy] {
            var result: [String: MergePolicy] = [:]
            for field in CareSchema.kind(kind)?.fields ?? [] where columns?.contains(field.name) ?? true { result[field.name] = field.policy }
            return result
        }
        decidingColumns = [
            "allocation": policies("allocation", [Self.teamID, Self.endedOn]),
            YoungPerson.kindName: policies(YoungPerson.kindName, [Self.involvedTeams, Self.restricted, CareSchema.restrictedTo]),
            "plan": policies("plan", [Self.owningTeam, CareColumn.status.rawValue]),
        ]
        checkedColumns = Self.entitlementColumns(policies)
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

    /// The audit event of a stored change (Protocol/scope.md, "Audit"): a `record_view` row's
    /// creation is a `RESTRICTED_VIEW` of the record it names (its kind and id, when the worker
    /// viewed it by the replica's clock, how: `VIA=show`); an edit that replaces two or more
    /// concurrent values of a multi-value field, or conflicting terminal statuses, is a
    /// `CONFLICT_RESOLUTION` (`FIELD=<column> CANDIDATES=<n>`), told from the write's superseded
    /// ids without reading a value. Every other change keeps the hub's generic event.
    public func audit(_ event: AuditEvent, of change: Change) -> AuditEvent {
        if change.table == RecordView.tableName, change.setsLife, CausalLength.isAlive(change.causalLength) {
            return Self.view(event, of: change)
        }
        guard !change.setsLife, let kind = CareSchema.kind(change.table) else { return event }
        let resolved = change.fields.filter { edit in
            guard edit.supersedes.count >= 2, let policy = kind.field(edit.column)?.policy else { return false }
            switch policy {
            case .multiValue, .monotonic: return true
            default: return false
            }
        }
        guard !resolved.isEmpty else { return event }
        let detail = ["FIELD=\(resolved.map(\.column).joined(separator: ",")) CANDIDATES=\(resolved.map(\.supersedes.count).max() ?? 0)"]
            + (event.detail.isEmpty ? [] : [event.detail])
        return AuditEvent(kind: .conflictResolution, actor: event.actor, device: event.device, table: event.table, row: event.row,
                          scope: event.scope, change: event.change, occurredAtMillis: event.occurredAtMillis,
                          receivedAtMillis: event.receivedAtMillis, detail: detail.joined(separator: " "))
    }

    /// A view's event: the viewed record's kind and id as the `record_view` row names them, if they
    /// are a kind and an id (a forged row cannot carry other text into the trail: `MALFORMED`).
    private static func view(_ event: AuditEvent, of change: Change) -> AuditEvent {
        let kind = change.field(RecordView.viewedKind)?.value.textValue ?? ""
        let id = change.field(RecordView.viewedID)?.value.textValue ?? ""
        let wellFormed = CareSchema.kind(kind) != nil && isRecordID(id)
        var detail: [String] = []
        if let via = change.field(RecordView.via)?.value.textValue.flatMap(RecordView.Access.init(rawValue:)) { detail.append("VIA=\(via.rawValue)") }
        if !wellFormed { detail.append("MALFORMED") }
        if !event.detail.isEmpty { detail.append(event.detail) }
        var occurred = event.occurredAtMillis
        if case let .integer(millis)? = change.field(RecordView.viewedAt)?.value, millis >= 0 { occurred = UInt64(millis) }
        return AuditEvent(kind: .restrictedView, actor: event.actor, device: event.device, table: wellFormed ? kind : "",
                          row: wellFormed ? id : "", scope: event.scope, change: event.change, occurredAtMillis: occurred,
                          receivedAtMillis: event.receivedAtMillis, detail: detail.joined(separator: " "))
    }

    /// An id as replicas make them (a UUID), or one of the same few characters: never free text.
    static func isRecordID(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
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
