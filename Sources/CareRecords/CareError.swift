import SyncStore

/// A refused care-record operation: a stable ``Code``, a one-line message saying what was wrong,
/// and the context as data (record kind, id, field), after GRDB's `DatabaseError`.
///
/// Messages name kinds, fields, ids and the dates of rules, never record contents, and never a
/// command or flag of a program: a program maps the code and context to its own hints (the CLI
/// says which subcommand to run) and exit codes.
///
/// ```swift
/// do {
///     try replica.approve(plan: planID, author: "morgan")
/// } catch let error as CareError where error.code == .fourEyes {
///     // ask someone who did not write the plan
/// }
/// ```
public struct CareError: Error, Sendable, CustomStringConvertible {
    /// A stable code naming the rule or check that refused. Its ``name`` (`"PLAN_FROZEN"`) is part
    /// of the CLI's interface (`--json` errors, scripts); codes can be added without breaking
    /// callers that match on the ones they know.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Sendable {
            case afterDeath = "AFTER_DEATH"
            case ageLimit = "AGE_LIMIT"
            case automaticField = "AUTOMATIC_FIELD"
            case badPick = "BAD_PICK"
            case badRecord = "BAD_RECORD"
            case badReference = "BAD_REFERENCE"
            case badResolution = "BAD_RESOLUTION"
            case badValue = "BAD_VALUE"
            case badWorker = "BAD_WORKER"
            case dobConflict = "DOB_CONFLICT"
            case endAllocation = "END_ALLOCATION"
            case finalised = "FINALISED"
            case fourEyes = "FOUR_EYES"
            case hubOwned = "HUB_OWNED"
            case immutableField = "IMMUTABLE_FIELD"
            case ledgerOnly = "LEDGER_ONLY"
            case nothingToEdit = "NOTHING_TO_EDIT"
            case notASet = "NOT_A_SET"
            case notDeletable = "NOT_DELETABLE"
            case notFound = "NOT_FOUND"
            case notInForce = "NOT_IN_FORCE"
            case notSubmitted = "NOT_SUBMITTED"
            case noConflict = "NO_CONFLICT"
            case noDateOfBirth = "NO_DOB"
            case noRights = "NO_RIGHTS"
            case notCommitted = "NOT_COMMITTED"
            case notWaiting = "NOT_WAITING"
            case flagResolved = "FLAG_RESOLVED"
            case openConflicts = "OPEN_CONFLICTS"
            case planApproved = "PLAN_APPROVED"
            case planClosed = "PLAN_CLOSED"
            case planFrozen = "PLAN_FROZEN"
            case quarantined = "QUARANTINED"
            case requiredField = "REQUIRED_FIELD"
            case setField = "SET_FIELD"
            case unknownField = "UNKNOWN_FIELD"
            case unknownItem = "UNKNOWN_ITEM"
            case unknownKind = "UNKNOWN_KIND"
            case useApprove = "USE_APPROVE"
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The stable name, as the CLI prints it: `"PLAN_FROZEN"`.
        public var name: String { value.rawValue }
        /// The stable name.
        public var description: String { name }

        /// I14: dated on or after the recorded date of death.
        public static let afterDeath = Code(.afterDeath)
        /// I3: outside the age limits on the date that counts.
        public static let ageLimit = Code(.ageLimit)
        /// A field the program sets was given by hand.
        public static let automaticField = Code(.automaticField)
        /// A conflict candidate number out of range.
        public static let badPick = Code(.badPick)
        /// A stored record lacks a field its kind needs, or holds one of the wrong type.
        public static let badRecord = Code(.badRecord)
        /// A reference to a record that is not on this replica (or is the wrong one).
        public static let badReference = Code(.badReference)
        /// Neither or both of a picked candidate and a new value.
        public static let badResolution = Code(.badResolution)
        /// A value of the wrong format or out of its range.
        public static let badValue = Code(.badValue)
        /// An empty, over-long or invisible worker id.
        public static let badWorker = Code(.badWorker)
        /// I3: no age can be judged while the date of birth is in conflict.
        public static let dobConflict = Code(.dobConflict)
        /// An allocation conflict is resolved by ending an allocation, not by picking.
        public static let endAllocation = Code(.endAllocation)
        /// I10: a finalised visit's record is fixed.
        public static let finalised = Code(.finalised)
        /// I6: an approver wrote part of what they approve.
        public static let fourEyes = Code(.fourEyes)
        /// The entitlement catalogue is published by the hub.
        public static let hubOwned = Code(.hubOwned)
        /// I10: a written-once field cannot change.
        public static let immutableField = Code(.immutableField)
        /// Ledger entries are written by the entitlement engine.
        public static let ledgerOnly = Code(.ledgerOnly)
        /// An edit with no fields.
        public static let nothingToEdit = Code(.nothingToEdit)
        /// An element given for a field that is not a set.
        public static let notASet = Code(.notASet)
        /// I10: statutory records are never deleted.
        public static let notDeletable = Code(.notDeletable)
        /// No record of that kind and id on this replica.
        public static let notFound = Code(.notFound)
        /// I16: no catalogue version in force on the date.
        public static let notInForce = Code(.notInForce)
        /// Only a submitted plan can be approved.
        public static let notSubmitted = Code(.notSubmitted)
        /// No open conflict on that field.
        public static let noConflict = Code(.noConflict)
        /// I3: eligibility needs a date of birth.
        public static let noDateOfBirth = Code(.noDateOfBirth)
        /// I1/I2: a commit beyond the rights this replica holds (it waits as a request instead).
        public static let noRights = Code(.noRights)
        /// Only a committed award can be released or refunded.
        public static let notCommitted = Code(.notCommitted)
        /// Only a waiting request can be committed.
        public static let notWaiting = Code(.notWaiting)
        /// A flag already resolved stays resolved.
        public static let flagResolved = Code(.flagResolved)
        /// Unresolved conflicts block submitting and approving.
        public static let openConflicts = Code(.openConflicts)
        /// I6: an approved plan is frozen.
        public static let planApproved = Code(.planApproved)
        /// I4: a closed or superseded plan takes no new content.
        public static let planClosed = Code(.planClosed)
        /// I6/I10: a frozen plan's content cannot change.
        public static let planFrozen = Code(.planFrozen)
        /// A differing write to a written-once field stays quarantined.
        public static let quarantined = Code(.quarantined)
        /// A required field missing or cleared.
        public static let requiredField = Code(.requiredField)
        /// A set field was assigned instead of added to or removed from.
        public static let setField = Code(.setField)
        /// The kind has no field of that name.
        public static let unknownField = Code(.unknownField)
        /// No entitlement item of that code.
        public static let unknownItem = Code(.unknownItem)
        /// No record kind of that name.
        public static let unknownKind = Code(.unknownKind)
        /// Approvals (and a plan's approved status) are recorded only by approving.
        public static let useApprove = Code(.useApprove)
    }

    /// Which rule or check refused.
    public let code: Code
    /// One line saying what was wrong; names and ids only, never record contents.
    public let message: String
    /// The record kind concerned, if one is.
    public let recordKind: String?
    /// The id of the record concerned, if one is.
    public let recordID: String?
    /// The field concerned, if one is.
    public let field: String?
    /// The error this one wraps, if it has one (a store error while checking a rule).
    public let cause: (any Error & Sendable)?

    /// A refusal with its context.
    ///
    /// - Parameters:
    ///   - code: the rule or check that refused.
    ///   - message: one line, without record contents or program commands.
    ///   - kind: the record kind concerned.
    ///   - id: the record concerned.
    ///   - field: the field concerned.
    ///   - cause: the underlying error, when this one wraps another.
    public init(_ code: Code, _ message: String, kind: String? = nil, id: String? = nil, field: String? = nil,
                cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.recordKind = kind
        self.recordID = id
        self.field = field
        self.cause = cause
    }

    /// The message.
    public var description: String { message }
}

extension CareError: Equatable {
    /// Equal when code, message and context are; the cause is not compared (errors need not be `Equatable`).
    public static func == (lhs: CareError, rhs: CareError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.recordKind == rhs.recordKind && lhs.recordID == rhs.recordID
            && lhs.field == rhs.field
    }
}
