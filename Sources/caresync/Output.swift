import ArgumentParser
import CareRecords
import Foundation
import Logging
import SyncClient
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore

/// Printing, JSON and the mapping of errors to one-line messages, hints and exit codes.
enum Output {
    // Safety: written only by `bootstrapLogging`, which a command calls on its one task before it
    // starts any other; argument-parser runs one command per process.
    nonisolated(unsafe) private static var loggingReady = false

    static func bootstrapLogging(verbose: Bool) {
        guard !loggingReady else { return }
        loggingReady = true
        // CARESYNC_LOG_LEVEL (trace, debug, info, notice, warning, error, critical) overrides
        // --verbose, for diagnosis; every level logs ids and counts only (the operator privacy
        // test reads the hub's log at trace).
        let chosen = ProcessInfo.processInfo.environment["CARESYNC_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = chosen ?? (verbose ? .info : .warning)
            return handler
        }
    }

    /// Runs `body`, turning known errors into a one-line message on standard error and a
    /// meaningful exit code (thrown as argument-parser's `ExitCode`).
    static func run<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as CareError {
            throw fail(error.message, hint: Hints.hint(for: error), code: error.code.name, exit: .refused)
        } catch let error as StoreError {
            switch error.code {
            case .clockSkew: throw fail(error.message, code: error.code.name, exit: .clockSkew)
            // A value too long to ever sync is a bad argument: the same command with a shorter one works.
            case .limitExceeded: throw fail(error.message, code: error.code.name, exit: .badArguments)
            case .rowNotFound, .rowExists, .immutableField, .statusBackwards, .notDeletable, .wrongOperation, .wrongType,
                 .unknownTable, .unknownColumn:
                throw fail(error.message, code: error.code.name, exit: .refused)
            default: throw fail(error.message, hint: Hints.hint(for: error), code: error.code.name, exit: .storage)
            }
        } catch let error as BundleError {
            throw fail(error.description, code: error.code.name, exit: .badInput)
        } catch let error as IdentityError {
            // Changes that do not verify (a bundle edited by hand, a forged origin): bad input; two
            // signed histories of one origin (a copied replica) are shown as for the hub's refusal.
            throw fail("\(error.message); nothing applied", hint: Hints.hint(for: error), code: error.code.name,
                       exit: error.code == .equivocation ? .storage : .badInput)
        } catch let error as DurableFile.FileError {
            throw fail(error.description, code: error.code.name, exit: .badInput)
        }
    }

    /// `run(_:)` for a body that awaits (file I/O): the same messages and exit codes. (Not an
    /// overload of `run`: in an async command that would be chosen for every synchronous body too.)
    static func runAwaiting<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { return try run { throw error } }
    }

    /// Writes `error: <message>[; <hint>] [<code>]` to standard error and returns the exit code to throw.
    static func fail(_ message: String, hint: String? = nil, code: String, exit: ExitCode) -> ExitCode {
        FileHandle.standardError.write(Data("error: \(message)\(hint.map { "; \($0)" } ?? "") [\(code)]\n".utf8))
        return exit
    }

    static func line(_ text: String = "") { print(text) }

    /// Prints `value` as pretty JSON with sorted, snake_case keys (`approvalID` → `approval_id`).
    /// Record field names, which are already snake_case, pass through the key conversion unchanged.
    static func json(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let data: Data
        do { data = try encoder.encode(value) } catch {
            // Only the key path that failed: an EncodingError's description carries the value.
            var path = ""
            if case let EncodingError.invalidValue(_, context) = error { path = context.codingPath.map(\.stringValue).joined(separator: ".") }
            throw fail("could not encode JSON output\(path.isEmpty ? "" : " at \(path)")", code: "OUTPUT", exit: .storage)
        }
        print(String(decoding: data, as: UTF8.self))
    }

    static func record(_ row: [String: FieldValue]) -> [String: JSONField] {
        row.mapValues(JSONField.init)
    }

    /// A hybrid timestamp's physical part as UTC ISO-8601.
    static func iso(_ millis: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    static func iso(_ timestamp: HybridTimestamp) -> String { iso(timestamp.physicalMillis) }

    /// Value shown in a table cell: one line, shortened.
    static func cell(_ value: FieldValue, width: Int = 48) -> String {
        let text = value.isNull ? "–" : value.description.replacingOccurrences(of: "\n", with: " ")
        return text.count > width ? String(text.prefix(width - 1)) + "…" : text
    }

    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func render(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        line(render(header))
        for row in rows { line(render(row)) }
    }
}

/// What to run next, for a refusal: CareRecords says what was wrong and names kinds, ids and
/// fields; only the CLI knows its own subcommands and flags.
enum Hints {
    static func hint(for error: CareError) -> String? {
        let id = error.recordID ?? "<id>"
        switch error.code {
        case .badWorker:
            return "give --as <worker> or set CARESYNC_USER"
        case .useApprove:
            return error.recordID.map { "approve it with `caresync approve \($0)`" } ?? "use `caresync approve <plan id>`"
        case .setField:
            return "use `caresync set-add \(error.recordKind ?? "<kind>") <id> \(error.field ?? "<field>") <element>` (or set-remove)"
        case .planApproved, .planFrozen:
            return error.recordKind == Plan.kindName ? "create a new version with `caresync plan-version \(id)`" : nil
        case .openConflicts:
            return "see `caresync conflicts`"
        case .endAllocation:
            return "`caresync edit allocation <id> ended_on=YYYY-MM-DD end_reason=…`"
        case .badResolution:
            return "give --pick N or --value TEXT"
        case .unknownItem:
            return "see `caresync catalogue`"
        case .requiredField:
            // Creating (no id): show how a record of the kind is made.
            guard error.recordID == nil, let kind = error.recordKind.flatMap(CareSchema.kind),
                  let field = error.field, kind.required.contains(field) else { return nil }
            return "e.g. \(KindExamples.example(kind))"
        default:
            return nil
        }
    }

    /// What lets a replica verify a bundle's changes: the certificates a hub issues at enrolment.
    static func hint(for error: IdentityError) -> String? {
        switch error.code {
        case .unknownDevice:
            "bundles verify between replicas enrolled with the same hub: run `caresync sync` on both (the sender once since it made these edits), then export again"
        case .chainGap: "export again without --for: the bundle must start where this replica's changes of that device end"
        default: nil
        }
    }

    /// The store says what is wrong with a file; the CLI says which of its commands helps (the
    /// store names no command or flag of any program).
    static func hint(for error: StoreError) -> String? {
        switch error.code {
        case .notAReplica: "create one with `caresync init`, or name a replica with `--replica` (a hub database goes with `caresync hub … --db`)"
        case .notAHub: "`caresync hub enroll --db <new path>` creates one (a replica goes with `caresync … --replica`)"
        case .schemaTooNew: "upgrade caresync"
        case .schemaTooOld: "run a command that writes (e.g. `caresync sync`) once"
        default: nil
        }
    }
}

/// A field value as JSON: null, a number, text, or a blob as hex.
struct JSONField: Encodable {
    let value: FieldValue

    init(_ value: FieldValue) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch value {
        case .null: try container.encodeNil()
        case let .integer(number): try container.encode(number)
        case let .real(number): try container.encode(number)
        case let .text(text): try container.encode(text)
        case let .blob(bytes): try container.encode(bytes.hexString)
        }
    }
}

/// An optional that is written as JSON `null` when absent, where the synthesised `Encodable`
/// would leave the key out: keys whose value can be null are always present.
struct OrNull<Wrapped: Encodable>: Encodable {
    let value: Wrapped?

    init(_ value: Wrapped?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

/// The exit codes `caresync --help` documents, named once (argument-parser's `ExitCode`).
extension ExitCode {
    /// Refused by a care rule, or a field value out of its range.
    static let refused = ExitCode(1)
    /// A bundle or other input file could not be read; nothing applied.
    static let badInput = ExitCode(2)
    /// A replica or storage problem.
    static let storage = ExitCode(3)
    /// A change is too far in the future.
    static let clockSkew = ExitCode(4)
    /// The sync failed (the message gives the hub's code, or CONNECTION_REFUSED / HOST_NOT_FOUND).
    static let syncFailed = ExitCode(5)
    /// The hub's audit trail does not verify: an event changed, removed or reordered, or the head forged.
    static let auditBroken = ExitCode(6)
    /// Bad arguments: an unknown option, a malformed field=value, a bad worker id or address.
    static let badArguments = ExitCode(64)
}

/// Signing needs the device key from the replica's identity file: without it a replica still reads
/// and writes locally, but nothing it sends could be verified (Protocol/identity.md).
enum DeviceKeyCheck {
    /// The replica's device key, or a one-line refusal (exit 3) naming the missing file and the way back.
    static func require(_ store: ReplicaStore, for action: String) throws -> SigningKey {
        if let key = store.signingKey { return key }
        throw Output.fail("cannot \(action): the identity file \(store.identityPath) is missing, so this replica has no device key to sign with",
                          hint: "restore that file from this device's backup, or re-enrol as a new identity: `caresync init <new path>` "
                              + "and `caresync sync --replica <new path> --hub <host:port> --token <token from `caresync hub enroll`>` "
                              + "(edits this file never synced cannot be signed, so they stay here only)",
                          code: "NO_DEVICE_KEY", exit: .storage)
    }
}
