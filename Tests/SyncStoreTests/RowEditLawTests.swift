import Foundation
import PropertyBased
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// The merge laws inside row edits. Each case is one row edited concurrently from three origins:
/// edits of disjoint and overlapping field sets of every policy (and, for a deletable row, deletes
/// and re-creates), delivered to three replicas in random orders and batches, with duplicates.
/// The replicas must end identical (domain rows, field states, conflicts), and each field must be
/// exactly what merging that field's writes alone gives: a row edit is its fields' writes, no more.
///
/// Reproduce a failure with the seed it prints: `CARESYNC_SEED=0x… swift test --filter RowEditLaw`;
/// `CARESYNC_CASES` asks for more or fewer cases. A failing case is then run alone on fresh
/// replicas and shrunk (PropertyBased), one edit left out at a time while it still fails; the
/// smallest is reported.
@Suite("Merge laws inside row edits")
struct RowEditLawTests {
    static let origins = (1...3).map { ReplicaID(high: 0x10 + UInt64($0), low: 0xF0 + UInt64($0)) }
    static let authors = ["ann", "bob", "cy"]
    static let texts: [FieldValue] = [.text("one"), .text("two"), .text("three")]
    static let elements: [FieldValue] = [.text("north"), .text("south"), .integer(7)]

    /// One case's edits, made the way concurrent replicas would: each edit's supersedes name only
    /// earlier edits of the same case (what its author could have seen).
    struct CaseGenerator {
        let table: TableSchema
        let row: String
        let now: UInt64
        var counters: [UInt64]
        var edits: [Change] = []

        mutating func make(using random: inout SeededGenerator) -> [Change] {
            let count = 2 + random.index(below: 7)
            for index in 0..<count {
                if index == 0 {
                    edits.append(edit(life: 1, setsLife: true, fields: fields(using: &random, allowEmpty: true), using: &random))
                    continue
                }
                let roll = random.index(below: 10)
                if table.deletable && roll < 2 {
                    edits.append(edit(life: random.coin() ? 2 : 4, setsLife: true, fields: [], using: &random))
                } else if table.deletable && roll < 4 {
                    edits.append(edit(life: 3, setsLife: true, fields: fields(using: &random, allowEmpty: true), using: &random))
                } else if roll == 4 {
                    // A second, concurrent create of the same row from another origin.
                    edits.append(edit(life: 1, setsLife: true, fields: fields(using: &random, allowEmpty: false), using: &random))
                } else {
                    let life: UInt64 = table.deletable && random.coin() ? 3 : 1
                    edits.append(edit(life: life, setsLife: false, fields: fields(using: &random, allowEmpty: false), using: &random))
                }
            }
            return edits
        }

        mutating func edit(life: UInt64, setsLife: Bool, fields: [FieldEdit], using random: inout SeededGenerator) -> Change {
            let origin = random.index(below: RowEditLawTests.origins.count)
            counters[origin] += 1
            // A few milliseconds apart at most, and logical ties, so timestamp ties meet id order.
            let timestamp = HybridTimestamp(physicalMillis: now - 1_000 + UInt64(random.index(below: 4)),
                                            logical: UInt16(random.index(below: 2)))
            return Change(id: ChangeID(replica: RowEditLawTests.origins[origin], counter: counters[origin]), timestamp: timestamp,
                          author: random.element(of: RowEditLawTests.authors), table: table.name, row: row,
                          causalLength: life, setsLife: setsLife, fields: fields)
        }

        /// A random subset of the table's columns (each about one time in three), each with an
        /// operation its policy allows.
        func fields(using random: inout SeededGenerator, allowEmpty: Bool) -> [FieldEdit] {
            var chosen = table.columns.filter { _ in random.index(below: 3) == 0 }
            if chosen.isEmpty && !allowEmpty { chosen = [random.element(of: table.columns)] }
            return chosen.map { field(for: $0, using: &random) }
        }

        func field(for column: ColumnSchema, using random: inout SeededGenerator) -> FieldEdit {
            func seen(_ keep: (FieldOperation) -> Bool) -> [ChangeID] {
                edits.compactMap { edit in edit.field(column.name).flatMap { keep($0.operation) && random.coin() ? edit.id : nil } }
            }
            switch column.policy {
            case .immutable:
                return FieldEdit(column: column.name, operation: .assign(random.element(of: [.text("A"), .text("B")])))
            case .lastWriterWins:
                let value: FieldValue = column.type == .integer ? .integer(Int64(random.index(below: 5))) : random.element(of: RowEditLawTests.texts)
                return FieldEdit(column: column.name, operation: .assign(value))
            case .multiValue:
                return FieldEdit(column: column.name, operation: .assign(random.element(of: RowEditLawTests.texts)), supersedes: seen { _ in true })
            case let .monotonic(lattice):
                return FieldEdit(column: column.name, operation: .assign(.text(random.element(of: lattice.order))), supersedes: seen { _ in true })
            case .addWinsSet:
                if random.coin() { return FieldEdit(column: column.name, operation: .add(random.element(of: RowEditLawTests.elements))) }
                // A remove names the add tags its author had observed.
                return FieldEdit(column: column.name, operation: .remove(random.element(of: RowEditLawTests.elements)),
                                 supersedes: seen { if case .add = $0 { true } else { false } })
            case .removeWinsSet:
                if random.coin() { return FieldEdit(column: column.name, operation: .remove(random.element(of: RowEditLawTests.elements))) }
                // An add names the removes its author had observed.
                return FieldEdit(column: column.name, operation: .add(random.element(of: RowEditLawTests.elements)),
                                 supersedes: seen { if case .remove = $0 { true } else { false } })
            case .counter:
                return FieldEdit(column: column.name, operation: .increment(Int64(random.index(below: 9)) - 3))
            }
        }
    }

    /// One generated case: a row of a table and its edits.
    struct RowCase: Sendable, CustomTestStringConvertible {
        let table: TableSchema
        let row: String
        var edits: [Change]
        /// The seed of the order and batches the case is delivered in, when it runs alone.
        let deliverySeed: UInt64

        var testDescription: String {
            "\(table.name) \(row), \(edits.count) edits:\n" + edits.map(Self.describe).joined(separator: "\n")
        }

        static func describe(_ edit: Change) -> String {
            let life = edit.setsLife ? " sets life" : ""
            let fields: [String] = edit.fields.map { field in "\(field.column) \(field.operation) supersedes \(field.supersedes.count)" }
            let origin = RowEditLawTests.origins.firstIndex(of: edit.id.replica).map { "o\($0)" } ?? edit.id.replica.short
            return "  \(origin):\(edit.id.counter) cl=\(edit.causalLength)\(life) t=\(edit.timestamp) " + fields.joined(separator: ", ")
        }
    }

    /// Delivers `edits` to each replica: every edit at least once, about one in three twice, in a
    /// random order and random batches.
    static func deliver(_ edits: [Change], to replicas: [ReplicaStore], using random: inout SeededGenerator) throws {
        for replica in replicas {
            var deliveries = random.shuffled(edits + edits.filter { _ in random.index(below: 3) == 0 })
            while !deliveries.isEmpty {
                let size = min(deliveries.count, 1 + random.index(below: random.coin() ? 8 : 200))
                _ = try replica.apply(Array(deliveries.prefix(size)))
                deliveries.removeFirst(size)
            }
        }
    }

    static func replicas(in directory: String, clock: SimulatedClock) throws -> [ReplicaStore] {
        try (0..<3).map { index in
            try ReplicaStore.create(at: "\(directory)/r\(index).db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 0x99, low: UInt64(index)),
                                    name: "r\(index)", wallClock: clock)
        }
    }

    /// What the replicas disagree on: snapshots, conflicts, version vectors.
    static func disagreements(_ replicas: [ReplicaStore]) throws -> [String] {
        var found: [String] = []
        let snapshots = try replicas.map { try ReplicaSnapshot.capture($0) }
        for index in 1..<snapshots.count where snapshots[index] != snapshots[0] {
            found.append("replicas 0 and \(index) differ: \(ReplicaSnapshot.difference(snapshots[0], snapshots[index]).prefix(800))")
        }
        let conflicts = try replicas.map { try $0.conflicts().map { "\($0.table) \($0.row) \($0.column) \($0.kind) \($0.candidates.map(\.id))" } }
        if conflicts.contains(where: { $0 != conflicts[0] }) { found.append("conflict sets differ") }
        let vectors = try replicas.map { try $0.versionVector() }
        if vectors.contains(where: { $0 != vectors[0] }) { found.append("version vectors differ") }
        return found
    }

    /// Where one case's row, as `view` holds it, is not what merging each field's writes alone
    /// gives (or a row deleted at its causal length is there, or a live one missing).
    static func fieldFailures(_ rowCase: RowCase, in view: ReadView) throws -> [String] {
        let (table, row, edits) = (rowCase.table, rowCase.row, rowCase.edits)
        let life = edits.filter(\.setsLife).map(\.causalLength).max() ?? 0
        let domain = try view.row(table.name, id: row)
        guard life % 2 == 1 else {
            return domain == nil ? [] : ["row \(row) at causal length \(life) should be deleted"]
        }
        guard let domain else { return ["row \(row) at causal length \(life) is missing"] }
        var failures: [String] = []
        for column in table.columns {
            let writes = edits.compactMap { edit in edit.field(column.name).map { edit.write(of: $0) } }
            guard !writes.isEmpty else { continue }
            let empty = FieldState.empty(for: column.policy)
            let alone = writes.reduce(empty) { $0.applying($1, policy: column.policy) }
            if alone == empty {
                // Writes that change nothing (removes of an element never added) leave the field
                // as never written.
                let stored = try view.fieldState(table.name, id: row, column: column.name)
                if !(stored == nil || stored == empty) { failures.append("\(table.name).\(column.name) of \(row) was written by no-ops") }
                continue
            }
            let stored = column.policy.keepsState ? try view.fieldState(table.name, id: row, column: column.name) : alone
            if domain[column.name] != alone.resolution(policy: column.policy).value {
                failures.append("\(table.name).\(column.name) of \(row)")
            }
            if stored != alone { failures.append("merge state of \(table.name).\(column.name) of \(row)") }
        }
        return failures
    }

    /// One case alone on three fresh replicas: everything that fails.
    static func failuresAlone(_ rowCase: RowCase) throws -> [String] {
        try TestFiles.withDirectory("row-edit-case") { directory in
            let replicas = try replicas(in: directory, clock: SimulatedClock())
            var random = SeededGenerator(seed: rowCase.deliverySeed)
            try deliver(rowCase.edits, to: replicas, using: &random)
            return try disagreements(replicas) + replicas[0].read { try fieldFailures(rowCase, in: $0) }
        }
    }

    /// A failing case, shrunk by PropertyBased: one edit left out at a time (never the first, the
    /// row's create) while the case still fails alone, each smaller case delivered in its own and
    /// three other orders; the smallest is reported with the seed.
    static func shrink(_ rowCase: RowCase, seed: UInt64) async {
        let input = Generator(run: { _ in rowCase }, shrink: { (shrinking: RowCase) in
            Shrink.omitSingleElement(from: Array(shrinking.edits.dropFirst())).flatMap { rest in
                (0..<4 as Range<UInt64>).map { variant in
                    RowCase(table: shrinking.table, row: shrinking.row, edits: [shrinking.edits[0]] + rest,
                            deliverySeed: variant == 0 ? shrinking.deliverySeed : SeededGenerator(seed: shrinking.deliverySeed ^ variant).stream("shrink").seed)
                }
            }
        })
        await propertyCheck(count: 1, input: input) { candidate in
            do {
                let failures = try failuresAlone(candidate)
                #expect(failures.isEmpty, "seed \(SeededGenerator.spelling(of: seed)), delivery seed \(candidate.deliverySeed): \(failures.prefix(3))")
            } catch {
                Issue.record(error, "seed \(SeededGenerator.spelling(of: seed)): the case could not run alone")
            }
        }
    }

    @Test("property: concurrent row edits of disjoint and overlapping fields, in any order with duplicates, converge; each field merges as its writes alone")
    func rowEditsConverge() async throws {
        let seed = SeededGenerator.seedFromEnvironment(default: SeededGenerator.freshSeed())
        let cases = SeededGenerator.caseCountFromEnvironment(default: 1_000)
        print("RowEditLawTests.rowEditsConverge \(cases) cases, \(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: seed))")
        var random = SeededGenerator(seed: seed)
        let directory = TestFiles.directory()
        defer { TestFiles.remove(directory) }
        let clock = SimulatedClock()
        let replicas = try Self.replicas(in: directory, clock: clock)
        // Rows are independent, so the cases share the replicas: case i edits row "c<i>".
        var counters = Array(repeating: UInt64(0), count: Self.origins.count)
        var generated: [RowCase] = []
        for index in 0..<cases {
            let table = random.index(below: 10) < 7 ? SimulationSchema.item : SimulationSchema.note
            var generator = CaseGenerator(table: table, row: "c\(index)", now: clock.nowMillis(), counters: counters)
            let edits = generator.make(using: &random)
            counters = generator.counters
            generated.append(RowCase(table: table, row: "c\(index)", edits: edits, deliverySeed: random.next()))
        }
        try Self.deliver(generated.flatMap(\.edits), to: replicas, using: &random)
        let disagreements = try Self.disagreements(replicas)
        for disagreement in disagreements { Issue.record("seed \(seed): \(disagreement)") }
        #expect(try !replicas[0].conflicts().isEmpty, "seed \(seed): the cases made no conflict at all, so they test too little")

        // Per field: exactly the merge of that field's writes alone (FieldState, unchanged).
        var failing: [Int] = []
        let deleted = try replicas[0].read { view in
            var deleted = 0
            for (index, rowCase) in generated.enumerated() where failing.count < 5 {
                let failures = try Self.fieldFailures(rowCase, in: view)
                for failure in failures { Issue.record("seed \(seed) case \(index): \(failure)") }
                if !failures.isEmpty { failing.append(index) }
                if (rowCase.edits.filter(\.setsLife).map(\.causalLength).max() ?? 0) % 2 == 0 { deleted += 1 }
            }
            return deleted
        }
        #expect(deleted > 0, "seed \(seed): no case ended with its row deleted")
        guard !failing.isEmpty || !disagreements.isEmpty else { return }
        // Shrink the first case that fails alone: those that failed above, else any.
        let candidates = failing + generated.indices.filter { !failing.contains($0) }
        if let index = try candidates.first(where: { try !Self.failuresAlone(generated[$0]).isEmpty }) {
            await Self.shrink(generated[index], seed: seed)
        } else {
            Issue.record("seed \(seed): no case fails alone; the failure needs several rows")
        }
    }

    @Test("a row edit with a column this schema does not know is kept, its known fields applied; after the upgrade the rest applies")
    func unknownColumnInAnEdit() throws {
        let directory = TestFiles.directory()
        defer { TestFiles.remove(directory) }
        let clock = SimulatedClock()
        let newer = try ReplicaStore.create(at: "\(directory)/newer.db", schema: SimulationSchema.v2, replicaID: ReplicaID(high: 1, low: 1),
                                            name: "newer", wallClock: clock)
        let older = try ReplicaStore.create(at: "\(directory)/older.db", schema: SimulationSchema.v1, replicaID: ReplicaID(high: 2, low: 2),
                                            name: "older", wallClock: clock)
        try newer.write(author: "ann") { try $0.create("note", id: "n", values: ["text": .text("hi")]) }
        _ = try older.apply(try newer.changes(notIn: VersionVector()))
        clock.advance(10)
        // One edit of a known and an unknown field: the known one must not wait for the upgrade.
        try newer.write(author: "ann") { try $0.update("note", id: "n", values: ["pinned": .integer(1), "colour": .text("blue")]) }
        let edit = try #require(try newer.changes(notIn: VersionVector()).last)
        #expect(edit.fields.map(\.column) == ["colour", "pinned"], "one row edit carries both fields")
        let summary = try older.apply([edit])
        #expect(summary.parked == 1 && summary.applied == 0)
        #expect(try older.read { try $0.row("note", id: "n") } == ["id": .text("n"), "text": .text("hi"), "pinned": .integer(1)])
        #expect(try older.status().parkedChanges == 1)
        // Kept whole: the older replica relays the edit as it was written, unknown field included.
        let relayed = try #require(try older.changes(notIn: VersionVector()).first { $0.id == edit.id })
        #expect(relayed.isSameVersion(as: edit))
        // A later edit of the known field from the older replica still wins over the kept one.
        clock.advance(10)
        try older.write(author: "bob") { try $0.update("note", id: "n", values: ["pinned": .integer(2)]) }
        let upgraded = try ReplicaStore.open(at: "\(directory)/older.db", schema: SimulationSchema.v2, wallClock: clock)
        #expect(try upgraded.status().parkedChanges == 0)
        #expect(try upgraded.read { try $0.row("note", id: "n") }
            == ["id": .text("n"), "text": .text("hi"), "pinned": .integer(2), "colour": .text("blue")])
        _ = try newer.apply(try upgraded.changes(notIn: VersionVector()))
        #expect(try ReplicaSnapshot.capture(newer) == ReplicaSnapshot.capture(upgraded))
    }
}
