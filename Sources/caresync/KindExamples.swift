import CareRecords

/// An example command line that makes a record of each kind, for `caresync kinds <kind>` and the
/// hint on a missing required field: the domain knows its kinds and fields, only the CLI its
/// command lines.
enum KindExamples {
    static let byKind: [String: String] = [
        "young_person": "caresync add young_person legal_given_name=Ava legal_family_name=Le\\ Brun date_of_birth=2007-03-14",
        "plan": "caresync add plan yp_id=<person id> kind=pathway title='Pathway plan 2025'",
        "goal": "caresync add goal plan_id=<plan id> domain=accommodation statement='Move to own studio by Sept'",
        "action": "caresync add action goal_id=<goal id> description='Arrange dentist registration' due_date=2025-07-01",
        "review": "caresync add review yp_id=<person id> kind=cla_review scheduled_for=2025-07-10",
        "visit": "caresync add visit yp_id=<person id> kind=statutory_cla occurred_at=2025-06-23 seen_alone=1",
        "case_note": "caresync add case_note yp_id=<person id> category=contact occurred_at=2025-06-23 body='Phoned Ava'",
        "allocation": "caresync add allocation yp_id=<person id> role=social_worker worker_id=quinn team_id=CIN-1 from_date=2025-06-16",
        "entitlement_item": "caresync catalogue",
        "award": "caresync request-award yp_id=<person id> item_code=DRIVING requested_count=2 decision_date=2025-06-23",
        "ledger_entry": "(written by the entitlement engine: caresync award commit|release|refund, caresync rights request|return)",
        "flag": "(raised by the hub's checks at merge; caresync flags resolve <flag id> --resolution '…')",
        "approval": "caresync approve <plan id>",
        "reminder": "caresync add reminder text='Call school' due_on=2025-07-01",
    ]

    /// The example for `kind`; every kind of the schema has one (`CLITests` checks).
    static func example(_ kind: RecordKind) -> String { byKind[kind.name] ?? "caresync add \(kind.name) <field>=<value> …" }
}
