import SyncCore
import SyncTesting
import Testing

// What each policy decides, case by case. Every scenario is checked in every delivery order, so a
// test passes only if the outcome does not depend on which replica heard what first.

private let alice = ReplicaID(high: 0, low: 1)
private let bob = ReplicaID(high: 0, low: 2)
/// Greatest of the three: its high word is larger although its low word is the smallest.
private let carol = ReplicaID(high: 1, low: 0)
private let lattice = FieldWriteGenerator.statusLattice

private func write(_ replica: ReplicaID, _ counter: UInt64, at millis: UInt64, logical: UInt16 = 0,
                   causalLength: UInt64 = 1, by author: String = "amara.okafor", _ operation: FieldOperation,
                   supersedes: [ChangeID] = []) -> FieldWrite {
    FieldWrite(id: ChangeID(replica: replica, counter: counter),
               timestamp: HybridTimestamp(physicalMillis: 1_700_000_000_000 + millis, logical: logical),
               causalLength: causalLength, author: author, operation: operation, supersedes: supersedes)
}

private func apply(_ writes: [FieldWrite], _ policy: MergePolicy) -> FieldState {
    writes.reduce(FieldState.empty(for: policy)) { $0.applying($1, policy: policy) }
}

/// Every order of `items` (at most 5 items: 120 orders).
private func permutations<Element>(_ items: [Element]) -> [[Element]] {
    precondition(items.count <= 5, "keep scenarios small")
    guard let first = items.first else { return [[]] }
    return permutations(Array(items.dropFirst())).flatMap { rest in
        (0...rest.count).map { index in
            var order = rest
            order.insert(first, at: index)
            return order
        }
    }
}

/// The state after `writes`, having checked that every delivery order gives the same state.
private func converged(_ policy: MergePolicy, _ writes: [FieldWrite],
                       sourceLocation: SourceLocation = #_sourceLocation) -> FieldState {
    let expected = apply(writes, policy)
    for order in permutations(writes) {
        let state = apply(order, policy)
        #expect(state == expected, "order \(order.map(\.id))", sourceLocation: sourceLocation)
        if state != expected { break }
    }
    return expected
}

private func resolution(_ policy: MergePolicy, _ writes: [FieldWrite],
                        sourceLocation: SourceLocation = #_sourceLocation) -> FieldResolution {
    converged(policy, writes, sourceLocation: sourceLocation).resolution(policy: policy)
}

@Suite("Last writer wins")
struct LastWriterWinsTests {
    @Test("A timestamp tie goes to the greater replica id, comparing the high word first")
    func tieBreak() {
        let fromAlice = write(alice, 1, at: 100, .assign(.text("07700 900001")))
        let fromBob = write(bob, 1, at: 100, .assign(.text("07700 900002")))
        let fromCarol = write(carol, 1, at: 100, .assign(.text("07700 900003")))
        #expect(resolution(.lastWriterWins, [fromAlice, fromBob]).value == .text("07700 900002"))
        #expect(resolution(.lastWriterWins, [fromAlice, fromBob, fromCarol]).value == .text("07700 900003"))
    }

    @Test("A later timestamp wins, the logical counter included")
    func laterWins() {
        let early = write(carol, 1, at: 100, logical: 1, .assign(.integer(1)))
        let late = write(alice, 1, at: 100, logical: 2, .assign(.integer(2)))
        #expect(resolution(.lastWriterWins, [early, late]).value == .integer(2))
    }

    @Test("A write from a later life of the row beats a later timestamp from an earlier life")
    func causalLengthFirst() {
        let earlierLife = write(carol, 1, at: 9_000, causalLength: 1, .assign(.text("old")))
        let laterLife = write(alice, 1, at: 100, causalLength: 3, .assign(.text("re-created")))
        let result = resolution(.lastWriterWins, [earlierLife, laterLife])
        #expect(result.value == .text("re-created"))
        #expect(!result.inConflict)
    }

    @Test("An empty register shows null")
    func empty() {
        #expect(FieldState.empty(for: .lastWriterWins).resolution(policy: .lastWriterWins).value == .null)
    }
}

@Suite("Multi-value register")
struct MultiValueTests {
    let leaving = write(alice, 1, at: 100, by: "amara.okafor", .assign(.text("Independent living at 18")))
    let staying = write(bob, 1, at: 200, by: "ben.hughes", .assign(.text("Staying Put until 21")))

    @Test("Concurrent different values are kept, with author and replica, as a conflict")
    func keepsCandidates() throws {
        let result = resolution(.multiValue, [leaving, staying])
        #expect(result.inConflict)
        #expect(result.candidates.map(\.author) == ["amara.okafor", "ben.hughes"])
        #expect(result.candidates.map(\.id.replica) == [alice, bob])
        #expect(result.candidates.map(\.value) == [leaving.value, staying.value])
        // Every replica shows the same value while the conflict waits: the greatest version.
        #expect(result.value == staying.value)
    }

    @Test("A write superseding both candidates resolves the conflict, whenever they arrive")
    func resolutionWrite() throws {
        let conflict = apply([leaving, staying], .multiValue)
        let supersedes = conflict.supersededByLocalWrite(.assign(.text("Staying Put until 21, reviewed")), policy: .multiValue)
        #expect(supersedes == [leaving.id, staying.id])
        let resolving = write(carol, 1, at: 50, by: "cat.nguyen", .assign(.text("Staying Put until 21, reviewed")),
                              supersedes: supersedes)
        let state = converged(.multiValue, [leaving, staying, resolving])
        let result = state.resolution(policy: .multiValue)
        #expect(!result.inConflict)
        #expect(result.value == resolving.value)
        guard case let .multiValue(register) = state else { Issue.record("not a multi-value state"); return }
        #expect(register.candidates == [resolving])
    }

    @Test("A resolution superseding only part of a conflict leaves the rest in conflict")
    func partialResolution() {
        let resolving = write(carol, 1, at: 300, .assign(.text("Staying Put")), supersedes: [staying.id])
        let result = resolution(.multiValue, [leaving, staying, resolving])
        #expect(result.inConflict)
        #expect(result.candidates.map(\.id) == [leaving.id, resolving.id])
    }

    @Test("Replacement is transitive: a write replaced before it arrives still replaces what it saw")
    func replacementChain() {
        // Regression: delivered C, A, B, the register used to drop B's supersedes (B was already
        // replaced by C) and left A live, while A, B, C left only C.
        let first = write(alice, 1, at: 100, .assign(.text("first")))
        let second = write(bob, 1, at: 200, .assign(.text("second")), supersedes: [first.id])
        let third = write(carol, 1, at: 300, .assign(.text("third")), supersedes: [second.id])
        let state = converged(.multiValue, [first, second, third])
        guard case let .multiValue(register) = state else { Issue.record("not a multi-value state"); return }
        #expect(register.candidates == [third])
        #expect(register.superseded == [first.id, second.id])
    }

    @Test("Two concurrent writes of the same value are not a conflict")
    func equalValues() {
        let same = write(bob, 1, at: 200, by: "ben.hughes", .assign(leaving.value))
        let state = converged(.multiValue, [leaving, same])
        let result = state.resolution(policy: .multiValue)
        #expect(!result.inConflict)
        #expect(result.candidates.isEmpty)
        #expect(result.value == leaving.value)
        // Both stay in the state, so a later write knows to supersede both.
        #expect(state.supersededByLocalWrite(.assign(.text("x")), policy: .multiValue) == [leaving.id, same.id])
    }
}

@Suite("Monotonic status")
struct MonotonicTests {
    let policy = MergePolicy.monotonic(lattice)

    @Test("Status never goes backwards, even when the earlier status has the later timestamp")
    func neverBackwards() {
        let approved = write(alice, 1, at: 100, .assign(.text("approved")))
        let submitted = write(bob, 1, at: 900, .assign(.text("submitted")))
        let draft = write(carol, 1, at: 950, causalLength: 2, .assign(.text("draft")))
        #expect(resolution(policy, [approved, submitted, draft]).value == .text("approved"))
    }

    @Test("A terminal status absorbs every later non-terminal one")
    func terminalAbsorbs() {
        let closed = write(alice, 1, at: 100, .assign(.text("closed")))
        let reopened = write(bob, 1, at: 900, .assign(.text("draft")))
        let approved = write(carol, 1, at: 950, .assign(.text("approved")))
        let result = resolution(policy, [closed, reopened, approved])
        #expect(result.value == .text("closed"))
        #expect(!result.inConflict)
    }

    @Test("Two different terminal statuses are a conflict; one terminal superseding both resolves it")
    func terminalConflict() {
        let closed = write(alice, 1, at: 100, by: "amara.okafor", .assign(.text("closed")))
        let withdrawn = write(bob, 1, at: 200, by: "ben.hughes", .assign(.text("withdrawn")))
        let approved = write(carol, 1, at: 50, .assign(.text("approved")))
        let conflict = converged(policy, [closed, withdrawn, approved])
        let result = conflict.resolution(policy: policy)
        #expect(result.inConflict)
        #expect(result.candidates.map(\.value) == [.text("closed"), .text("withdrawn")])
        #expect(result.candidates.map(\.author) == ["amara.okafor", "ben.hughes"])
        #expect(result.value == .text("withdrawn"), "the later status in the declared order shows meanwhile")

        // A non-terminal local write supersedes nothing; a terminal one supersedes both terminals.
        #expect(conflict.supersededByLocalWrite(.assign(.text("approved")), policy: policy).isEmpty)
        let supersedes = conflict.supersededByLocalWrite(.assign(.text("closed")), policy: policy)
        #expect(supersedes == [closed.id, withdrawn.id])
        let resolving = write(carol, 2, at: 300, by: "cat.nguyen", .assign(.text("closed")), supersedes: supersedes)
        let resolved = resolution(policy, [closed, withdrawn, approved, resolving])
        #expect(!resolved.inConflict)
        #expect(resolved.value == .text("closed"))
    }

    @Test("The same terminal reached twice is not a conflict")
    func sameTerminalTwice() {
        let closedByAlice = write(alice, 1, at: 100, .assign(.text("closed")))
        let closedByBob = write(bob, 1, at: 200, .assign(.text("closed")))
        let result = resolution(policy, [closedByAlice, closedByBob])
        #expect(!result.inConflict)
        #expect(result.value == .text("closed"))
    }

    @Test("A status this schema does not know ranks below every known one")
    func unknownStatus() {
        let draft = write(alice, 1, at: 100, .assign(.text("draft")))
        let unknown = write(bob, 1, at: 900, .assign(.text("paused-pending-court")))
        #expect(resolution(policy, [draft, unknown]).value == .text("draft"))
        #expect(resolution(policy, [unknown]).value == .text("paused-pending-court"))
    }
}

@Suite("Sets")
struct SetTests {
    let team = FieldValue.text("team-north")

    @Test("Add-wins: an add the remove did not observe survives it")
    func addWins() {
        let add = write(alice, 1, at: 100, .add(team))
        let state = apply([add], .addWinsSet)
        let supersedes = state.supersededByLocalWrite(.remove(team), policy: .addWinsSet)
        #expect(supersedes == [add.id])
        let remove = write(bob, 1, at: 300, .remove(team), supersedes: supersedes)
        let concurrentAdd = write(carol, 1, at: 200, .add(team))
        #expect(resolution(.addWinsSet, [add, remove, concurrentAdd]).value == .text("[\"team-north\"]"))
        #expect(resolution(.addWinsSet, [add, remove]).value == .text("[]"))
    }

    @Test("Add-wins: a remove takes away only the element whose tags it observed")
    func addWinsOtherElements() {
        let north = write(alice, 1, at: 100, .add(team))
        let south = write(alice, 2, at: 100, .add(.text("team-south")))
        let remove = write(bob, 1, at: 300, .remove(team), supersedes: [north.id])
        #expect(resolution(.addWinsSet, [north, south, remove]).value == .text("[\"team-south\"]"))
    }

    @Test("Remove-wins: a concurrent remove beats an add; an add that observed the remove re-adds")
    func removeWins() {
        let add = write(alice, 1, at: 300, .add(team))
        let remove = write(bob, 1, at: 100, .remove(team))
        #expect(resolution(.removeWinsSet, [add, remove]).value == .text("[]"))

        let state = apply([add, remove], .removeWinsSet)
        let observed = state.supersededByLocalWrite(.add(team), policy: .removeWinsSet)
        #expect(observed == [remove.id])
        let reAdd = write(carol, 1, at: 50, .add(team), supersedes: observed)
        #expect(resolution(.removeWinsSet, [add, remove, reAdd]).value == .text("[\"team-north\"]"))

        // A later remove the re-add did not observe withdraws it again.
        let secondRemove = write(bob, 2, at: 400, .remove(team))
        #expect(resolution(.removeWinsSet, [add, remove, reAdd, secondRemove]).value == .text("[]"))
    }

    @Test("Sets render as sorted JSON arrays, escaping text")
    func rendering() {
        let writes = [write(alice, 1, at: 1, .add(.text("b\"q"))), write(alice, 2, at: 1, .add(.integer(3))),
                      write(alice, 3, at: 1, .add(.text("a\n"))), write(bob, 1, at: 1, .add(.integer(3)))]
        #expect(resolution(.addWinsSet, writes).value == .text("[3,\"a\\n\",\"b\\\"q\"]"))
    }
}

@Suite("Counter")
struct CounterTests {
    @Test("Increments sum; a change id counts once however often it arrives")
    func sumsOnce() {
        let plusThree = write(alice, 1, at: 1, .increment(3))
        let plusFour = write(bob, 1, at: 1, .increment(4))
        let minusTwo = write(alice, 2, at: 1, .increment(-2))
        #expect(resolution(.counter, [plusThree, plusFour, minusTwo]).value == .integer(5))
        #expect(apply([plusThree, plusFour, plusThree, minusTwo, plusFour], .counter).resolution(policy: .counter).value == .integer(5))

        let mine = apply([plusThree, plusFour], .counter)
        let theirs = apply([plusFour, minusTwo], .counter)
        #expect(mine.merged(with: theirs, policy: .counter).resolution(policy: .counter).value == .integer(5))
    }
}

@Suite("Immutable")
struct ImmutableTests {
    @Test("A differing value is quarantined and the earliest write stays, in any order")
    func quarantine() {
        let original = write(bob, 1, at: 100, .assign(.text("NHS 943 476 5919")))
        let differing = write(alice, 1, at: 200, .assign(.text("NHS 943 476 5870")))
        let result = resolution(.immutable, [original, differing])
        #expect(result.value == original.value)
        #expect(result.quarantined == [differing])
        #expect(!result.inConflict)
    }

    @Test("The same value written again is not quarantined, and the earliest copy is kept")
    func sameValue() {
        let first = write(bob, 1, at: 100, .assign(.integer(42)))
        let again = write(alice, 1, at: 200, .assign(.integer(42)))
        let state = converged(.immutable, [first, again])
        #expect(state.resolution(policy: .immutable) == FieldResolution(value: .integer(42)))
        guard case let .immutable(register) = state else { Issue.record("not an immutable state"); return }
        #expect(register.writes == [first])
    }

    @Test("A NaN value re-applied is quarantined against itself")
    func notANumber() {
        // FieldValue equality is IEEE equality, so NaN never equals itself and the register keeps a
        // second copy of the same write. Local writes cannot carry NaN (SQLite stores it as NULL),
        // but FieldValue.decode accepts it from a bundle. Fixing it is a decision: refuse NaN when
        // decoding, or compare values bitwise here.
        let nan = write(alice, 1, at: 1, .assign(.real(.nan)))
        let once = apply([nan], .immutable)
        withKnownIssue("IMM compares values with ==, which NaN fails") {
            #expect(once.applying(nan, policy: .immutable).resolution(policy: .immutable).quarantined.isEmpty)
        }
    }
}
