import SyncCore
import SyncStore

/// Schema v3 of the care records, each field with the merge policy the domain gives it (the README's
/// "The care records"). Balances, ages and content hashes are derived on read
/// (`CareReplica.describe(_:id:)`, `CareReplica.balances(person:)`), never stored as editable fields.
/// v2 added `restricted_to`; v3 the `record_view` table (`RecordView`: views of restricted records,
/// not a record kind anyone adds); v4 escrow rights on the ledger and stored flags
/// (Protocol/entitlements.md).
///
/// ```swift
/// let plan = CareSchema.kind("plan")!
/// plan.field("status")?.policy   // .monotonic(PlanStatus.lattice)
/// ```
public enum CareSchema {
    /// The schema version a replica file made by this program has.
    public static let version = 4

    static let planStatus = PlanStatus.lattice
    static let goalStatus = GoalStatus.lattice
    static let actionStatus = ActionStatus.lattice
    static let reviewStatus = ReviewStatus.lattice
    static let visitStatus = VisitStatus.lattice
    static let awardStatus = AwardStatus.lattice
    static let verified = Verification.lattice
    static let restriction = Restriction.lattice
    static let flagStatus = FlagStatus.lattice

    /// Columns schema v4 added (escrow rights).
    static let requestedOn = "requested_on"
    static let escrowGrantID = "escrow_grant_id"
    static let holderReplica = "holder_replica"
    static let expiresAtMillis = "expires_at_ms"
    static let requestID = "request_id"

    /// The columns every rule reads, named once (`CareColumn`).
    static let personID = CareColumn.personID.rawValue
    static let status = CareColumn.status.rawValue

    static func createdBy() -> CareField {
        CareField(CareColumn.createdBy.rawValue, .text, .immutable, "worker who created the record", automatic: true)
    }

    static func person() -> CareField { CareField(personID, .reference("young_person"), .immutable, "the young person") }

    /// Every record kind, in the order a listing shows them.
    public static let kinds: [RecordKind] = [
        RecordKind("young_person", summary: "a child or care leaver", required: ["legal_given_name", "legal_family_name", "date_of_birth"],
                   fields: [
                       CareField("legal_given_name", .text, .multiValue, "legal given name (concurrent spellings need a person)"),
                       CareField("legal_family_name", .text, .multiValue, "legal family name"),
                       CareField("preferred_name", .text, .lastWriterWins, "the name the young person chooses"),
                       CareField("date_of_birth", .date, .multiValue, "drives eligibility; awards are blocked while it is in conflict"),
                       CareField("dob_verified", .choice(verified.order), .monotonic(verified), "whether the DOB was verified"),
                       CareField("sex", .text, .lastWriterWins, "sex"),
                       CareField("legal_status", .choice(["cla", "care_leaver", "cin", "other"]), .lastWriterWins,
                                 "looked after (cla), care leaver, child in need, other"),
                       CareField("risk_rating", .choice(["green", "amber", "red"]), .lastWriterWins, "daily risk rating"),
                       CareField("alerts", .set, .addWinsSet, "alerts (CSE risk, missing risk…); a concurrent add survives a remove"),
                       CareField("involved_teams", .set, .addWinsSet, "teams involved with the young person"),
                       CareField("consent_to_share", .set, .removeWinsSet, "recipients the young person consents to share with; withdrawal wins"),
                       CareField("restricted", .choice(restriction.order), .monotonic(restriction), "restricted record (sticky)"),
                       CareField(restrictedTo, .set, .addWinsSet,
                                 "replica ids a restricted record reaches (only these replicas of the involved teams hold it)"),
                       CareField("date_of_death", .date, .multiValue, "date of death"),
                       createdBy(),
                   ]),
        RecordKind("plan", summary: "a versioned plan: care, placement, pathway, PEP, personal housing or transition",
                   required: [personID, "kind", "title"],
                   fields: [
                       person(),
                       CareField("kind", .choice(["care", "placement", "pathway", "pep", "personal_housing", "transition"]),
                                 .immutable, "kind of plan"),
                       CareField("lineage_id", .text, .immutable, "shared by every version of the plan", automatic: true),
                       CareField("version_no", .integer, .immutable, "version within the lineage", automatic: true),
                       CareField("supersedes_id", .reference("plan"), .immutable, "the version this one replaces", automatic: true),
                       CareField(status, .choice(planStatus.order), .monotonic(planStatus),
                                 "draft < submitted < approved < superseded | closed; never backwards"),
                       CareField("owning_team_id", .text, .multiValue, "owning team (a change is a handover)"),
                       CareField("owner_worker_id", .text, .multiValue, "owning worker"),
                       CareField("title", .text, .lastWriterWins, "title"),
                       CareField("effective_from", .date, .lastWriterWins, "date the plan takes effect"),
                       CareField("summary", .text, .multiValue, "plan summary (narrative: concurrent edits are kept for a person)"),
                       CareField("child_views", .text, .multiValue, "the child's own views"),
                       CareField("contact_arrangements", .text, .multiValue, "contact arrangements"),
                       CareField("closed_reason", .text, .lastWriterWins, "why the plan was closed"),
                       createdBy(),
                   ]),
        RecordKind("goal", summary: "a goal under a plan", required: ["plan_id", "statement"],
                   fields: [
                       CareField("plan_id", .reference("plan"), .immutable, "the plan"),
                       CareField(personID, .reference("young_person"), .immutable, "the young person (from the plan)", automatic: true),
                       CareField("domain", .choice(["health", "education", "accommodation", "family", "identity", "emotional",
                                                    "finance", "independent_living"]), .lastWriterWins, "pathway domain"),
                       CareField("statement", .text, .multiValue, "what the goal is (narrative)"),
                       CareField("success_measure", .text, .multiValue, "how success is judged (narrative)"),
                       CareField("target_date", .date, .lastWriterWins, "target date"),
                       CareField(status, .choice(goalStatus.order), .monotonic(goalStatus), "goal status"),
                       CareField("sort_key", .text, .lastWriterWins, "ordering key"),
                       createdBy(),
                   ]),
        RecordKind("action", summary: "an action towards a goal", required: ["goal_id", "description"],
                   fields: [
                       CareField("goal_id", .reference("goal"), .immutable, "the goal"),
                       CareField("plan_id", .reference("plan"), .immutable, "the plan (from the goal)", automatic: true),
                       CareField(personID, .reference("young_person"), .immutable, "the young person (from the goal)", automatic: true),
                       CareField("description", .text, .multiValue, "what is to be done (narrative)"),
                       CareField("responsible", .text, .lastWriterWins, "worker id or role (young person, foster carer)"),
                       CareField("due_date", .date, .lastWriterWins, "due date"),
                       CareField(status, .choice(actionStatus.order), .monotonic(actionStatus), "action status"),
                       CareField("moved_from", .reference("action"), .immutable, "the action this one replaces"),
                       createdBy(),
                   ]),
        RecordKind("review", summary: "an IRO-chaired review", required: [personID, "kind"],
                   fields: [
                       person(),
                       CareField("plan_id", .reference("plan"), .immutable, "the plan reviewed"),
                       CareField("kind", .choice(["cla_review", "pathway_review", "pep_meeting", "placement_stability",
                                                  "accommodation_review"]), .immutable, "kind of review"),
                       CareField("scheduled_for", .date, .lastWriterWins, "date scheduled"),
                       CareField("chair_iro_id", .text, .lastWriterWins, "chairing IRO"),
                       CareField("held_on", .date, .multiValue, "date held (a fact: two values means someone is wrong)"),
                       CareField(status, .choice(reviewStatus.order), .monotonic(reviewStatus), "review status"),
                       CareField("participation_code", .text, .lastWriterWins, "903 participation code"),
                       CareField("child_views", .text, .multiValue, "the child's views"),
                       createdBy(),
                   ]),
        RecordKind("visit", summary: "a visit to a young person", required: [personID, "kind", "occurred_at"],
                   fields: [
                       person(),
                       CareField("worker_id", .text, .immutable, "visiting worker", automatic: true),
                       CareField("kind", .choice(["statutory_cla", "pa", "accommodation", "unannounced", "off_island", "virtual"]),
                                 .immutable, "kind of visit"),
                       CareField("occurred_at", .date, .lastWriterWins, "when the visit happened (fixed once finalised)"),
                       CareField("location_kind", .text, .lastWriterWins, "where (kind of place)"),
                       CareField("seen_alone", .integer, .lastWriterWins, "1 if the child was seen alone, else 0", range: 0...1),
                       CareField("observations", .text, .multiValue, "observations (fixed once finalised)"),
                       CareField(status, .choice(visitStatus.order), .monotonic(visitStatus), "draft < finalised < manager_reviewed"),
                       createdBy(),
                   ]),
        RecordKind("case_note", summary: "a case note or addendum (append-only)", required: [personID, "category", "occurred_at", "body"],
                   fields: [
                       person(),
                       CareField("category", .text, .immutable, "category"),
                       CareField("occurred_at", .date, .immutable, "when it happened"),
                       CareField("body", .text, .immutable, "the note (never changes; corrections are addenda)"),
                       CareField("amends_note_id", .reference("case_note"), .immutable, "the note this addendum amends"),
                       createdBy(),
                   ]),
        RecordKind("allocation", summary: "who is the social worker, PA, IRO… for a young person", required: [personID, "role", "worker_id", "from_date"],
                   fields: [
                       person(),
                       CareField("role", .choice(AllocationRole.allCases.map(\.rawValue)), .immutable, "role"),
                       CareField("worker_id", .text, .immutable, "allocated worker"),
                       CareField("team_id", .text, .immutable, "team"),
                       CareField("from_date", .date, .immutable, "start date"),
                       CareField("ended_on", .date, .lastWriterWins, "end date (ending resolves an allocation conflict)"),
                       CareField("end_reason", .text, .lastWriterWins, "why the allocation ended"),
                       createdBy(),
                   ]),
        RecordKind("entitlement_item", summary: "a catalogue item (hub-owned, immutable per version)", required: [],
                   fields: [
                       CareField("item_code", .text, .immutable, "item code"),
                       CareField("version", .integer, .immutable, "catalogue version"),
                       CareField("name", .text, .immutable, "name"),
                       CareField("category", .text, .immutable, "category"),
                       CareField("eligible_statuses", .text, .immutable, "eligible legal statuses"),
                       CareField("min_age_incl", .integer, .immutable, "minimum age (inclusive)"),
                       CareField("max_age_excl", .integer, .immutable, "age limit (exclusive)"),
                       CareField("cap_kind", .text, .immutable, CapKind.allCases.map(\.rawValue).joined(separator: ", ")),
                       CareField("cap_amount_pence", .money, .immutable, "cap in pence"),
                       CareField("cap_count", .integer, .immutable, "cap as a count"),
                       CareField("period", .text, .immutable, "lifetime, per_birthday, academic_year…"),
                       CareField("requires_fields", .text, .immutable, "fields an award must carry"),
                       CareField("effective_from", .date, .immutable, "first day in force"),
                       CareField("effective_to", .date, .immutable, "last day in force"),
                   ]),
        RecordKind("award", summary: "a request or decision for an entitlement", required: [personID, "item_code", "decision_date"],
                   fields: [
                       person(),
                       CareField("item_code", .text, .immutable, "catalogue item code"),
                       CareField("catalogue_version", .integer, .immutable, "catalogue version in force on the decision date", automatic: true),
                       CareField("period_key", .text, .immutable, "cap period", automatic: true),
                       CareField("requested_amount_pence", .money, .immutable, "amount requested, pence"),
                       CareField("requested_count", .integer, .immutable, "count requested"),
                       CareField("purpose", .text, .lastWriterWins, "purpose"),
                       CareField("approved_adult_id", .text, .lastWriterWins, "approved adult (study visits)"),
                       CareField("decision_date", .date, .immutable, "eligibility is judged on this date"),
                       CareField(status, .choice(awardStatus.order), .monotonic(awardStatus), "award status"),
                       createdBy(),
                       CareField(requestedOn, .text, .immutable, "the replica that requested it (rights for it are granted there)", automatic: true),
                   ]),
        RecordKind("ledger_entry", summary: "an append-only money or count movement", required: [],
                   fields: [
                       CareField("award_id", .reference("award"), .immutable, "award"),
                       person(),
                       CareField("item_code", .text, .immutable, "item"),
                       CareField("period_key", .text, .immutable, "period"),
                       CareField("kind", .choice(LedgerKind.allCases.map(\.rawValue)), .immutable, "movement kind; gives the sign"),
                       CareField("amount_pence", .money, .immutable, "amount (≥ 0)"),
                       CareField("count", .integer, .immutable, "count (≥ 0)"),
                       CareField("actor_id", .text, .immutable, "who"),
                       CareField("occurred_at", .date, .immutable, "when"),
                       CareField("reason", .text, .immutable, "reason"),
                       CareField("reverses_entry_id", .reference("ledger_entry"), .immutable, "entry corrected"),
                       CareField(escrowGrantID, .reference("ledger_entry"), .immutable, "the grant of rights a commit, release or return moves"),
                       CareField(holderReplica, .text, .immutable, "the replica a grant's rights are held by"),
                       CareField(expiresAtMillis, .integer, .immutable, "when a grant's lease expires (Unix ms, hub time)"),
                       CareField(requestID, .text, .immutable, "the award or rights request a grant answers"),
                   ]),
        RecordKind("flag", summary: "a rule broken at merge, kept for a named role to resolve (the hub raises them)", required: [],
                   fields: [
                       person(),
                       CareField("code", .choice(FlagCode.allCases.map(\.rawValue)), .immutable, "the rule: OVER_CAP, CAP_REACHED…"),
                       CareField("subject_kind", .text, .immutable, "kind of the record it is about"),
                       CareField("subject_id", .text, .immutable, "the record it is about"),
                       CareField("routed_to", .text, .immutable, "the role that resolves it"),
                       CareField("detail", .text, .immutable, "what the check found (codes and figures, never content)"),
                       CareField("raised_at", .integer, .immutable, "when the hub raised it (Unix ms)"),
                       CareField(status, .choice(flagStatus.order), .monotonic(flagStatus), "open < resolved"),
                       CareField("resolution", .text, .lastWriterWins, "how it was resolved"),
                       CareField("resolved_by", .text, .lastWriterWins, "who resolved it", automatic: true),
                   ]),
        RecordKind("approval", summary: "an approval bound to a content hash (append-only)", required: [],
                   fields: [
                       person(),
                       CareField("subject_type", .text, .immutable, "kind approved"),
                       CareField("subject_id", .text, .immutable, "record approved"),
                       CareField("subject_content_hash", .text, .immutable, "SHA-256 of the approved content"),
                       CareField("approver_id", .text, .immutable, "approver"),
                       CareField("decision", .choice(ApprovalDecision.allCases.map(\.rawValue)), .immutable, "decision"),
                       CareField("decided_at", .date, .immutable, "date of decision"),
                   ]),
        RecordKind("reminder", summary: "a worker's own reminder (not a statutory record: may be deleted)", required: ["text"],
                   deletable: true,
                   fields: [
                       CareField("owner", .text, .immutable, "worker", automatic: true),
                       CareField(personID, .reference("young_person"), .immutable, "the young person, if any"),
                       CareField("text", .text, .lastWriterWins, "what to remember"),
                       CareField("due_on", .date, .lastWriterWins, "when"),
                   ]),
    ]

    /// The record kind of that name, if there is one.
    public static func kind(_ name: String) -> RecordKind? { kinds.first { $0.name == name } }

    /// The column schema v2 added: the replicas a restricted record reaches.
    static let restrictedTo = "restricted_to"

    /// Columns added after v1, by kind: the v1 migration makes the tables without them.
    static let addedColumns: [String: Set<String>] = [YoungPerson.kindName: [restrictedTo], "award": [requestedOn],
                                                      "ledger_entry": [escrowGrantID, holderReplica, expiresAtMillis, requestID]]
    /// Kinds added after v1.
    static let addedKinds: Set<String> = ["flag"]

    /// The tables as schema v1 made them.
    static var tablesV1: [TableSchema] {
        kinds.filter { !addedKinds.contains($0.name) }.map { kind in
            let added = addedColumns[kind.name] ?? []
            return TableSchema(kind.name, deletable: kind.deletable, columns: kind.fields.filter { !added.contains($0.name) }.map(\.column))
        }
    }

    /// The schema as the store takes it: tables, columns with their policies, and migrations.
    public static let schema: ReplicaSchema = ReplicaSchema(
        version: version, tables: kinds.map(\.table) + [RecordView.table],
        migrations: [SchemaMigration("care-v1", sql: tablesV1.map { $0.createStatement + ";" }.joined(separator: "\n")
                                         + "\nCREATE INDEX plan_by_person ON plan (yp_id);"
                                         + "\nCREATE INDEX goal_by_plan ON goal (plan_id);"
                                         + "\nCREATE INDEX action_by_goal ON action (goal_id);"
                                         + "\nCREATE INDEX ledger_by_person ON ledger_entry (yp_id, item_code, period_key);"),
                     SchemaMigration("care-v2-restriction", sql: "ALTER TABLE young_person ADD COLUMN \(restrictedTo) TEXT;"),
                     RecordView.migration,
                     SchemaMigration("care-v4-escrow", sql: """
                         ALTER TABLE award ADD COLUMN \(requestedOn) TEXT;
                         ALTER TABLE ledger_entry ADD COLUMN \(escrowGrantID) TEXT;
                         ALTER TABLE ledger_entry ADD COLUMN \(holderReplica) TEXT;
                         ALTER TABLE ledger_entry ADD COLUMN \(expiresAtMillis) INTEGER;
                         ALTER TABLE ledger_entry ADD COLUMN \(requestID) TEXT;
                         \(kind("flag")!.table.createStatement);
                         CREATE INDEX flag_by_person ON flag (yp_id);
                         """)])
}
