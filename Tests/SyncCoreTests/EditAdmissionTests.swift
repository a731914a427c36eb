import SyncCore
import Testing

/// The pure rules the store asks before it makes a local change: which assignments a field
/// takes, what counts as an open conflict, row life by causal length, and when a local
/// last-writer-wins write wins.
@Suite("Edit admission and row life")
struct EditAdmissionTests {
    static let lattice = StatusLattice(["draft", "open", "done", "void"], terminal: ["done", "void"])
    static let status = MergePolicy.monotonic(lattice)

    static func write(_ counter: UInt64, _ value: String) -> FieldWrite {
        FieldWrite(id: ChangeID(replica: ReplicaID(high: counter, low: counter), counter: counter),
                   timestamp: HybridTimestamp(physicalMillis: 1_000, logical: UInt16(counter)), author: "a", operation: .assign(.text(value)))
    }

    static func current(_ value: String?, conflicting: [String] = []) -> FieldResolution? {
        value.map { FieldResolution(value: .text($0), candidates: conflicting.enumerated().map { write(UInt64($0.offset + 1), $0.element) }) }
    }

    @Test("a local create takes the next odd causal length; a live row or a non-deletable table's re-create is refused")
    func createAndDeleteLengths() throws {
        #expect(try CausalLength.afterCreate(0, deletable: false) == 1)
        #expect(try CausalLength.afterCreate(2, deletable: true) == 3)
        #expect(throws: CausalLength.CreateRefusal.exists) { try CausalLength.afterCreate(1, deletable: true) }
        #expect(throws: CausalLength.CreateRefusal.exists) { try CausalLength.afterCreate(3, deletable: false) }
        #expect(throws: CausalLength.CreateRefusal.notDeletable) { try CausalLength.afterCreate(2, deletable: false) }
        #expect(CausalLength.afterDelete(1) == 2 && CausalLength.afterDelete(5) == 6)
        #expect(CausalLength.afterDelete(0) == nil && CausalLength.afterDelete(2) == nil)
    }

    @Test("a status moves forward, never back, never out of a terminal status", arguments: [
        (nil, "draft", AssignAdmission.admitted), (nil, "done", .admitted), ("draft", "open", .admitted), ("open", "open", .admitted),
        ("open", "draft", .backwards), ("done", "open", .backwards), ("done", "void", .backwards), ("done", "done", .admitted),
        ("open", "closed", .outsideLattice),
    ] as [(String?, String, AssignAdmission)])
    func statusMoves(from: String?, to: String, expected: AssignAdmission) {
        #expect(Self.status.admitsAssignment(.text(to), over: Self.current(from)) == expected)
    }

    @Test("while two terminal statuses conflict, only a terminal status is admitted")
    func terminalConflictResolution() {
        let conflict = Self.current("void", conflicting: ["done", "void"])
        #expect(Self.status.admitsAssignment(.text("done"), over: conflict) == .admitted)
        #expect(Self.status.admitsAssignment(.text("void"), over: conflict) == .admitted)
        #expect(Self.status.admitsAssignment(.text("open"), over: conflict) == .backwards)
        #expect(Self.status.admitsAssignment(.null, over: conflict) == .outsideLattice)
    }

    @Test("an immutable field takes a value while unset or null, or the value it holds")
    func immutable() {
        #expect(MergePolicy.immutable.admitsAssignment(.text("C"), over: nil) == .admitted)
        #expect(MergePolicy.immutable.admitsAssignment(.text("C"), over: FieldResolution(value: .null)) == .admitted)
        #expect(MergePolicy.immutable.admitsAssignment(.text("C"), over: FieldResolution(value: .text("C"))) == .admitted)
        #expect(MergePolicy.immutable.admitsAssignment(.text("D"), over: FieldResolution(value: .text("C"))) == .writtenOnce)
    }

    @Test("sets and counters take no assignment; registers always do")
    func assignments() {
        for policy in [MergePolicy.addWinsSet, .removeWinsSet, .counter] {
            #expect(!policy.takesAssignment)
            #expect(policy.admitsAssignment(.text("x"), over: nil) == .notAnAssignment)
        }
        for policy in [MergePolicy.lastWriterWins, .multiValue] {
            #expect(policy.takesAssignment)
            #expect(policy.admitsAssignment(.text("x"), over: FieldResolution(value: .text("y"))) == .admitted)
        }
    }

    @Test("an open conflict is concurrent values or a quarantined write")
    func openConflict() {
        #expect(!FieldResolution(value: .text("a")).isOpenConflict)
        #expect(FieldResolution(value: .text("a"), candidates: [Self.write(1, "a"), Self.write(2, "b")]).isOpenConflict)
        #expect(FieldResolution(value: .text("a"), quarantined: [Self.write(2, "b")]).isOpenConflict)
    }

    @Test("odd causal lengths are lives, even ones deaths")
    func causalLength() {
        #expect(!CausalLength.isAlive(0))
        #expect(CausalLength.isAlive(1) && !CausalLength.isAlive(2) && CausalLength.isAlive(3))
        #expect(CausalLength.isAlive(UInt64.max) && !CausalLength.isAlive(UInt64.max - 1))
    }

    @Test("a local write wins unless the stored version is from a later life of the row")
    func localWrite() {
        #expect(WriteVersion.localWrite(causalLength: 1, beats: 1))
        #expect(WriteVersion.localWrite(causalLength: 3, beats: 1))
        #expect(!WriteVersion.localWrite(causalLength: 1, beats: 3))
    }

    @Test("an operation code maps back to its operation, and an unknown one to none")
    func operationCodes() {
        for operation in [FieldOperation.assign(.text("x")), .add(.integer(1)), .remove(.null), .increment(-4)] {
            let operand: FieldValue = if case let .increment(amount) = operation { .integer(amount) } else {
                switch operation { case let .assign(v), let .add(v), let .remove(v): v; case .increment: .null }
            }
            #expect(FieldOperation(code: operation.code, operand: operand) == operation)
        }
        #expect(FieldOperation(code: 9, operand: .null) == nil)
        #expect(FieldOperation(code: 0, operand: .null) == nil)
        #expect(FieldOperation(code: 4, operand: .text("1")) == nil, "an increment by something not an integer is no operation")
    }
}
