import SyncCore

/// The column names the rules, the derived values and the CLI read by name: each spelled once,
/// here, and checked against the schema by `CareDomainTests`.
public enum CareColumn: String, Sendable, CaseIterable {
    case id
    case personID = "yp_id"
    case planID = "plan_id"
    case goalID = "goal_id"
    case status
    case createdBy = "created_by"
    case kind
    case role
    case workerID = "worker_id"
    case fromDate = "from_date"
    case endedOn = "ended_on"
    case restricted
    case owner
    case dateOfBirth = "date_of_birth"
    case dateOfDeath = "date_of_death"
    case lineageID = "lineage_id"
    case versionNumber = "version_no"
    case supersedesID = "supersedes_id"
    case title
    case amendsNoteID = "amends_note_id"
    case subjectType = "subject_type"
    case subjectID = "subject_id"
    case subjectContentHash = "subject_content_hash"
    case approverID = "approver_id"
    case decision
    case decidedAt = "decided_at"
    case itemCode = "item_code"
    case version
    case name
    case capKind = "cap_kind"
    case capAmountPence = "cap_amount_pence"
    case capCount = "cap_count"
    case period
    case periodKey = "period_key"
    case minimumAge = "min_age_incl"
    case ageLimit = "max_age_excl"
    case requiresFields = "requires_fields"
    case effectiveFrom = "effective_from"
    case effectiveTo = "effective_to"
    case catalogueVersion = "catalogue_version"
    case decisionDate = "decision_date"
    case requestedAmountPence = "requested_amount_pence"
    case requestedCount = "requested_count"
    case amountPence = "amount_pence"
    case count
    case awardID = "award_id"
    case reversesEntryID = "reverses_entry_id"
}

// `package`, not `public`: it would add a member to every importer's `[String: FieldValue]`.
extension Dictionary where Key == String, Value == FieldValue {
    /// The value of a named column: `row[.status]`.
    package subscript(_ column: CareColumn) -> FieldValue? {
        get { self[column.rawValue] }
        set { self[column.rawValue] = newValue }
    }
}

/// A status field's values in their forward order, the last ones terminal: a status moves only
/// forward (`MergePolicy.monotonic`), and two concurrent terminal values are a conflict.
public protocol CareStatus: RawRepresentable<String>, CaseIterable, Hashable, Sendable where AllCases == [Self] {
    /// The values no later value replaces.
    static var terminal: Set<Self> { get }
}

extension CareStatus {
    /// The lattice the merge policy of the status field uses.
    public static var lattice: StatusLattice {
        StatusLattice(allCases.map(\.rawValue), terminal: Set(terminal.map(\.rawValue)))
    }
}

/// A plan's status: `draft < submitted < approved < superseded | closed`.
public enum PlanStatus: String, CareStatus {
    case draft, submitted, approved, superseded, closed
    /// The values no later value replaces.
    public static let terminal: Set<PlanStatus> = [.superseded, .closed]

    /// I4: a closed or superseded plan takes no new goals or actions.
    public var isClosed: Bool { self == .closed || self == .superseded }
    /// I6/I10: an approved, closed or superseded plan's content cannot change.
    public var isFrozen: Bool { self == .approved || isClosed }
}

/// A goal's status.
public enum GoalStatus: String, CareStatus {
    case open, inProgress = "in_progress", achieved, notAchieved = "not_achieved", withdrawn
    /// The values no later value replaces.
    public static let terminal: Set<GoalStatus> = [.achieved, .notAchieved, .withdrawn]
}

/// An action's status.
public enum ActionStatus: String, CareStatus {
    case open, inProgress = "in_progress", done, cancelled, relocated
    /// The values no later value replaces.
    public static let terminal: Set<ActionStatus> = [.done, .cancelled, .relocated]
}

/// A review's status. A review really held offline outranks a stale cancellation.
public enum ReviewStatus: String, CareStatus {
    case scheduled, cancelled, held, reportDraft = "report_draft", signedOff = "signed_off"
    /// The values no later value replaces.
    public static let terminal: Set<ReviewStatus> = [.signedOff]
}

/// A visit's status: `draft < finalised < manager_reviewed`; only a draft's record can change.
public enum VisitStatus: String, CareStatus {
    case draft, finalised, managerReviewed = "manager_reviewed"
    /// The values no later value replaces.
    public static let terminal: Set<VisitStatus> = [.managerReviewed]
}

/// An award's status.
public enum AwardStatus: String, CareStatus {
    case requested, approved, committed, rejected, cancelled, fulfilled
    /// The values no later value replaces.
    public static let terminal: Set<AwardStatus> = [.rejected, .cancelled, .fulfilled]
}

/// Whether a date of birth was verified.
public enum Verification: String, CareStatus {
    case unverified, verified
    /// The values no later value replaces.
    public static let terminal: Set<Verification> = [.verified]
}

/// Whether a record is restricted. Sticky: only an explicit, privileged unrestrict event (a later
/// issue) clears a restriction.
public enum Restriction: String, CareStatus {
    case no, yes
    /// The values no later value replaces.
    public static let terminal: Set<Restriction> = [.yes]
}

/// The decision an approval records.
public enum ApprovalDecision: String, Sendable, CaseIterable {
    case approved, rejected, returned
}

/// How an entitlement item is capped.
public enum CapKind: String, Sendable, CaseIterable {
    case none, amount, count
    case amountPerPeriod = "amount_per_period"
    case countPerPeriod = "count_per_period"
}

/// The role an allocation gives a worker.
public enum AllocationRole: String, Sendable, CaseIterable {
    case socialWorker = "social_worker", personalAdviser = "pa", iro
    case supervisingSocialWorker = "supervising_sw", virtualSchoolOfficer = "vs_officer"

    /// I8: at most one open allocation of these roles per young person.
    public var isExclusive: Bool { [.socialWorker, .personalAdviser, .iro].contains(self) }
}

/// A ledger entry's kind; the kind gives the sign of its (never negative) amount.
public enum LedgerKind: String, Sendable, CaseIterable {
    /// The hub grants a replica spend rights (escrow) under a lease.
    case grantRights = "grant_rights"
    /// The holder gives unused rights back before the lease ends.
    case returnRights = "return_rights"
    /// The holder gives back what its lease left unused, once it has expired.
    case expireRights = "expire_rights"
    /// The hub writes rights of a lost replica off: never reallocated (unknown commits may exist).
    case burnRights = "burn_rights"
    /// A replica asks the hub for rights ahead of an award.
    case requestRights = "request_rights"
    /// Rights set aside for an award awaiting a decision.
    case reserve
    /// Spend, within rights held (or beyond them by an emergency override, which is flagged).
    case commit
    /// Part of an award committed: the rest waits for rights.
    case partialCommit = "partial_commit"
    /// A commit or reservation undone (a cancellation); within a live grant, its rights return to it.
    case release
    /// Money spent that came back.
    case refund
    /// A correction by the hub, with a reason.
    case adjust
}

/// A flag's status: `open < resolved`.
public enum FlagStatus: String, CareStatus {
    case open, resolved
    /// The values no later value replaces.
    public static let terminal: Set<FlagStatus> = [.resolved]
}

/// The rule a flag records as broken at merge (DOMAIN.md, "Invariants").
public enum FlagCode: String, Sendable, CaseIterable {
    /// Committed spend above the cap, or a commit not covered by rights held (I1/I2): entries
    /// kept, the excess held for an exception or recovery.
    case overCap = "OVER_CAP"
    /// A request the cap can no longer meet: refused (not revived when rights come back).
    case capReached = "CAP_REACHED"
    /// Not eligible on the decision date by the hub's date of birth (I3).
    case eligibilityLost = "ELIGIBILITY_LOST"
    /// A decision dated before the replica's last contact, or beyond the hub's clock window.
    case clockSuspect = "CLOCK_SUSPECT"
    /// An award decided under another catalogue version than the one in force on its date (I16).
    case staleCatalogue = "STALE_CATALOGUE"
    /// Rights no replica was granted by the hub (a grant written elsewhere): not counted.
    case forgedRights = "FORGED_RIGHTS"
    /// A goal or action added to a plan closed or superseded elsewhere (I4): kept, out of active
    /// work, for the plan's owner to move to the successor plan or void.
    case addedAfterClose = "ADDED_AFTER_CLOSE"
    /// Two or more open allocations of an exclusive role (I8): both stay responsible until one ends.
    case allocationConflict = "ALLOCATION_CONFLICT"
    /// A content edit of an approved plan (or its goals and actions) made concurrently with the
    /// approval (I6): the approval stays valid only for the content it hashed; re-approval required.
    case editedAfterApproval = "EDITED_AFTER_APPROVAL"
}
