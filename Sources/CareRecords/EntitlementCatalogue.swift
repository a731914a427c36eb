import SyncCore

/// The published entitlement catalogue (Jersey's 2020 care-leaver offer; every number is versioned
/// catalogue data with an effective date, never hard-coded in rules).
///
/// Until the hub publishes the catalogue, each replica seeds it as changes from a fixed publisher
/// replica id with fixed timestamps: every replica makes byte-identical changes with identical
/// change ids, so exchanging them is idempotent rather than a source of conflicts.
package enum EntitlementCatalogue {
    /// The replica id the catalogue's changes are made under.
    package static let publisher = ReplicaID(high: 0, low: 0xCA7A_10)
    /// Every origin only the hub key signs: the catalogue's publisher and the escrow desk's.
    public static let hubOrigins: Set<ReplicaID> = [publisher, Escrow.origin]
    /// 2020-01-01T00:00:00Z, when the offer was published.
    static let publishedAt = HybridTimestamp(physicalMillis: 1_577_836_800_000, logical: 0)

    /// One version of a catalogue item, as published.
    package struct Item: Sendable, Equatable {
        let code: String
        let version: Int64
        let name: String
        let category: String
        let minAge: Int64
        let maxAge: Int64
        let capKind: String
        let capAmount: Int64?
        let capCount: Int64?
        let period: String
        let requires: String?
        let from: String
        let to: String?

        /// The fields as published, in order (null for a field left out).
        var publishedFields: [(String, FieldValue)] {
            [
                ("item_code", .text(code)), ("version", .integer(version)), ("name", .text(name)),
                ("category", .text(category)), ("eligible_statuses", .text("care_leaver")),
                ("min_age_incl", .integer(minAge)), ("max_age_excl", .integer(maxAge)),
                ("cap_kind", .text(capKind)), ("cap_amount_pence", capAmount.map(FieldValue.integer) ?? .null),
                ("cap_count", capCount.map(FieldValue.integer) ?? .null), ("period", .text(period)),
                ("requires_fields", requires.map(FieldValue.text) ?? .null), ("effective_from", .text(from)),
                ("effective_to", to.map(FieldValue.text) ?? .null),
            ]
        }

        /// An item from its published fields; `nil` fields are left out of the published row.
        package init(code: String, version: Int64, name: String, category: String, minAge: Int64, maxAge: Int64,
                     capKind: String, capAmount: Int64?, capCount: Int64?, period: String, requires: String?, from: String, to: String?) {
            self.code = code
            self.version = version
            self.name = name
            self.category = category
            self.minAge = minAge
            self.maxAge = maxAge
            self.capKind = capKind
            self.capAmount = capAmount
            self.capCount = capCount
            self.period = period
            self.requires = requires
            self.from = from
            self.to = to
        }
    }

    /// The built-in catalogue as records: what the hub's checks use until it holds a published one.
    static let seedRecords: [EntitlementItem] = items.compactMap { try? EntitlementItem(row: Dictionary(uniqueKeysWithValues: $0.publishedFields)) }

    static let items: [Item] = [
        Item(code: "PA_ALLOC", version: 1, name: "Personal adviser", category: "support", minAge: 14, maxAge: 25,
             capKind: "none", capAmount: nil, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
        Item(code: "STUDY_VISIT", version: 1, name: "Off-island study visit with an approved adult", category: "education",
             minAge: 16, maxAge: 25, capKind: "count", capAmount: nil, capCount: 5, period: "lifetime",
             requires: "approved_adult_id", from: "2020-01-01", to: nil),
        Item(code: "DRIVING", version: 1, name: "Driving lessons", category: "independence", minAge: 16, maxAge: 25,
             capKind: "count", capAmount: nil, capCount: 20, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
        Item(code: "APPRENTICE_BURSARY", version: 1, name: "Apprentice bursary", category: "education", minAge: 16, maxAge: 25,
             capKind: "amount", capAmount: 100_000, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
        Item(code: "POSTGRAD_BURSARY", version: 1, name: "Post-graduate bursary", category: "education", minAge: 16, maxAge: 25,
             capKind: "amount", capAmount: 200_000, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
        Item(code: "BIRTHDAY", version: 1, name: "Birthday gift", category: "wellbeing", minAge: 16, maxAge: 25,
             capKind: "amount_per_period", capAmount: 5_000, capCount: nil, period: "per_birthday", requires: nil,
             from: "2020-01-01", to: nil),
        Item(code: "HOME_SETUP", version: 1, name: "Setting up home", category: "accommodation", minAge: 16, maxAge: 25,
             capKind: "amount", capAmount: 200_000, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01",
             to: "2025-06-30"),
        // Test fixture from the acceptance scenarios (Jersey's amount is still to be confirmed).
        Item(code: "HOME_SETUP", version: 2, name: "Setting up home", category: "accommodation", minAge: 16, maxAge: 25,
             capKind: "amount", capAmount: 300_000, capCount: nil, period: "lifetime", requires: nil, from: "2025-07-01", to: nil),
        Item(code: "EDUCATION_EQUIPMENT", version: 1, name: "Education equipment grant", category: "education", minAge: 16,
             maxAge: 25, capKind: "none", capAmount: nil, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
        Item(code: "BROADBAND_DEVICE", version: 1, name: "Broadband and a device", category: "independence", minAge: 16,
             maxAge: 25, capKind: "none", capAmount: nil, capCount: nil, period: "lifetime", requires: nil, from: "2020-01-01", to: nil),
    ]

    /// The catalogue as changes from the publisher. Every replica seeds the same changes under the
    /// same ids, and replicas made before row edits hold them as `ChangeV1` migrated them, so they
    /// stay in that shape (one edit per field) rather than one edit per item: another shape under
    /// the same ids would be an equivocation.
    package static func publishedChanges() -> [Change] {
        changes(for: items, after: 0, at: publishedAt.physicalMillis)
    }

    /// What the hub publishes (Protocol/identity.md: the catalogue is the hub's, signed by its
    /// key) when it holds `held` changes of the publisher: the seed every replica made, if it
    /// holds none yet (the same bytes, so replicas only verify them), then `newItems` continuing
    /// the publisher's counters, stamped `nowMillis`.
    ///
    /// - Precondition: `held` is 0 or at least the seed's length (the hub publishes the seed whole).
    package static func publication(of newItems: [Item], held: UInt64, nowMillis: UInt64) -> [Change] {
        let seed = publishedChanges()
        precondition(held == 0 || held >= UInt64(seed.count), "the hub publishes the seed whole")
        let start = max(held, UInt64(seed.count))
        return (held == 0 ? seed : []) + changes(for: newItems, after: start, at: max(nowMillis, publishedAt.physicalMillis + 1))
    }

    /// Items as changes from the publisher, counters from `counter + 1`, one create and one edit
    /// per field with a value, at `millis` with ascending logical times.
    static func changes(for items: [Item], after counter: UInt64, at millis: UInt64) -> [Change] {
        var changes: [Change] = []
        var counter = counter
        var logical: UInt16 = 0
        func next() -> (ChangeID, HybridTimestamp) {
            counter += 1
            logical += 1
            return (ChangeID(replica: publisher, counter: counter), HybridTimestamp(physicalMillis: millis, logical: logical))
        }
        for item in items {
            let row = "\(item.code)@\(item.version)"
            let (id, time) = next()
            changes.append(ChangeV1.rowEdit(table: "entitlement_item", row: row, column: "",
                                            write: FieldWrite(id: id, timestamp: time, causalLength: 1, author: "hub", operation: .assign(.null))))
            for (column, value) in item.publishedFields where !value.isNull {
                let (id, time) = next()
                changes.append(ChangeV1.rowEdit(table: "entitlement_item", row: row, column: column,
                                                write: FieldWrite(id: id, timestamp: time, author: "hub", operation: .assign(value))))
            }
        }
        return changes
    }
}
