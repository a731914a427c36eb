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
    /// Columns the hub's merge checks read (Protocol/entitlements.md), by table: merged into the
    /// hub's view like the deciding columns, but a change of them decides no audience. Unscoped
    /// tables among them (the catalogue) are viewed under the empty scope.
    var checkedColumns: [String: [String: MergePolicy]] { get }
    /// The hub-keyed origin the hub's decisions are made under; nil when the rules decide nothing.
    var decisionOrigin: ReplicaID? { get }
    /// What the hub decides about one scope after a replica's push changed it: rows it creates
    /// and fields it sets, as the hub's own changes under ``decisionOrigin``, in the push's
    /// transaction. Idempotent: given a view holding its earlier decisions, it returns none of
    /// them again. Pure.
    ///
    /// - Parameters:
    ///   - view: the scope's merged view (deciding and checked columns), this push included.
    ///   - shared: the view of the unscoped rows (the catalogue).
    ///   - context: who pushed, what arrived, and the hub's time.
    func decide(_ view: ScopeView, shared: ScopeView, context: DecisionContext) -> [HubDecision]
}

extension ScopeRules {
    /// No scope is restricted.
    public func restriction(_ view: ScopeView) -> Set<String>? { nil }

    /// The hub's generic event.
    public func audit(_ event: AuditEvent, of change: Change) -> AuditEvent { event }

    /// No merge checks.
    public var checkedColumns: [String: [String: MergePolicy]] { [:] }

    /// No decisions.
    public var decisionOrigin: ReplicaID? { nil }

    /// No decisions.
    public func decide(_ view: ScopeView, shared: ScopeView, context: DecisionContext) -> [HubDecision] { [] }
}

/// What the hub knows about the push its rules decide after (``ScopeRules/decide(_:shared:context:)``).
public struct DecisionContext: Sendable {
    /// The replica that pushed.
    public let pusher: ReplicaID
    /// The registry's team of the pusher.
    public let pusherTeam: String?
    /// The changes of this push the hub accepted into the scope (new to it).
    public let arrived: [Change]
    /// The hub's time of the push.
    public let nowMillis: UInt64
    /// When the pusher last pushed before this push; nil for its first.
    public let previousContactMillis: UInt64?
    /// Every enrolled replica (hex id) with its team, revoked ones left out.
    public let replicas: [String: String]

    /// The context of a push.
    public init(pusher: ReplicaID, pusherTeam: String?, arrived: [Change], nowMillis: UInt64, previousContactMillis: UInt64?,
                replicas: [String: String]) {
        self.pusher = pusher
        self.pusherTeam = pusherTeam
        self.arrived = arrived
        self.nowMillis = nowMillis
        self.previousContactMillis = previousContactMillis
        self.replicas = replicas
    }
}

/// One decision of the hub's rules: a row it creates (with its fields) or fields of a row it sets.
public struct HubDecision: Sendable, Equatable {
    /// The row's table.
    public let table: String
    /// The row's key.
    public let row: String
    /// Whether the decision creates the row.
    public let creates: Bool
    /// The fields written, by column.
    public let values: [String: FieldValue]

    /// A decision.
    public init(table: String, row: String, creates: Bool, values: [String: FieldValue]) {
        self.table = table
        self.row = row
        self.creates = creates
        self.values = values
    }
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

        /// The column's merged value (the earliest of a written-once field, the winner of the
        /// others); null when the row lacks it.
        public func value(_ column: String) -> FieldValue {
            guard let field = fields[column] else { return .null }
            return field.state.resolution(policy: field.policy).value
        }

        /// The origin that wrote the column's merged value, for a written-once or
        /// last-writer-wins column; nil otherwise.
        public func origin(_ column: String) -> ReplicaID? {
            switch fields[column]?.state {
            case let .immutable(register)?: register.writes.first?.id.replica
            case let .lastWriterWins(register)?: register.winner?.id.replica
            default: nil
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
