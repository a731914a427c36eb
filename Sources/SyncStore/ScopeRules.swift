import SyncCore

/// Which teams may hold a scope (Protocol/scope.md, "Scope and audience"), as an application
/// states it: the few columns that decide, and the rule over their merged values. The hub keeps
/// its own merged view of those columns from the changes it holds and asks the rule; it never takes
/// a team from what a client says.
///
/// ```swift
/// struct Rules: ScopeRules {
///     let decidingColumns = ["allocation": ["team_id": MergePolicy.immutable]]
///     let scopeTable = "young_person"
///     let unscopedTables: Set<String> = ["entitlement_item"]
///     func audience(_ view: ScopeView) -> Set<String> {
///         Set(view.rows.filter(\.isAlive).flatMap { $0.values("team_id") }.compactMap(\.textValue))
///     }
/// }
/// ```
public protocol ScopeRules: Sendable {
    /// For each deciding table, the columns the rule reads, with the merge policy of each.
    var decidingColumns: [String: [String: MergePolicy]] { get }
    /// The table whose row id is the scope itself (for care records, `young_person`): the team of
    /// the replica that created that row is the view's ``ScopeView/creatorTeam``.
    var scopeTable: String { get }
    /// Tables whose rows belong to no one (empty scope) and go to every team, such as the
    /// entitlement catalogue. A replica's empty-scope change of any other table is quarantined.
    var unscopedTables: Set<String> { get }
    /// The teams that may hold `view.scope`. Pure: the same view always gives the same teams.
    func audience(_ view: ScopeView) -> Set<String>
    /// For a restricted scope, the replicas (hex ids) it is limited to within its audience's
    /// teams; nil when it is not restricted. Pure.
    func restriction(_ view: ScopeView) -> Set<String>?
    /// The audit event of a stored change, as the application tells it (Protocol/scope.md,
    /// "Audit"): `event` is the hub's generic one (`CREATE`, `CHANGE` or `DELETE`, with the change's
    /// author, origin, record and times); the rules may name another kind for it and the record it
    /// is about, such as a `RESTRICTED_VIEW` for a row that records a view, or a
    /// `CONFLICT_RESOLUTION` for an edit that replaces concurrent values. Ids and codes only, never
    /// a value of a record. Pure.
    func audit(_ event: AuditEvent, of change: Change) -> AuditEvent
}

extension ScopeRules {
    /// No scope is restricted.
    public func restriction(_ view: ScopeView) -> Set<String>? { nil }

    /// The hub's generic event.
    public func audit(_ event: AuditEvent, of change: Change) -> AuditEvent { event }
}

/// The hub's merged view of one scope's deciding rows.
public struct ScopeView: Sendable {
    /// One deciding row: its table and key, whether it is alive, and its deciding columns merged.
    public struct Row: Sendable {
        /// The row's table.
        public let table: String
        /// The row's key.
        public let key: String
        /// Whether the row is alive (its causal length is odd).
        public let isAlive: Bool
        /// The merged deciding columns the row has, by name, each with its policy.
        public let fields: [String: (state: FieldState, policy: MergePolicy)]

        /// A row of a view.
        public init(table: String, key: String, isAlive: Bool, fields: [String: (state: FieldState, policy: MergePolicy)]) {
            self.table = table
            self.key = key
            self.isAlive = isAlive
            self.fields = fields
        }

        /// Every value the column holds: a set's elements, each candidate of a conflict, or the
        /// one merged value; none when the row lacks the column or holds null.
        public func values(_ column: String) -> [FieldValue] {
            guard let field = fields[column] else { return [] }
            switch field.state {
            case let .addWinsSet(set): return set.elements
            case let .removeWinsSet(set): return set.elements
            default:
                let resolution = field.state.resolution(policy: field.policy)
                let values = resolution.inConflict ? resolution.candidates.map(\.value) : [resolution.value]
                return values.filter { $0 != .null }
            }
        }
    }

    /// The scope (a young person's id).
    public let scope: String
    /// The registry's team of the replica that created the scope's own row, if the hub holds it.
    public let creatorTeam: String?
    /// The scope's deciding rows.
    public let rows: [Row]

    /// A view of `scope`.
    public init(scope: String, creatorTeam: String?, rows: [Row]) {
        self.scope = scope
        self.creatorTeam = creatorTeam
        self.rows = rows
    }
}
