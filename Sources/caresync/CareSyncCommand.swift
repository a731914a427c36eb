import ArgumentParser
import CareRecords
import Foundation
import Logging
import SyncCore
import SyncEngine
import SyncStore

@main
struct CareSyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caresync",
        abstract: "Offline-first care records: edit a local replica anywhere, merge with other replicas later.",
        discussion: """
            Each team keeps a replica: one SQLite file (readable with `sqlite3`). Edits work with no \
            network. Replicas exchange changes as bundle files (`export` / `import`); every field \
            merges by its declared policy, and concurrent narrative edits become conflicts for a \
            person to resolve instead of being overwritten.

            Quick start:
              caresync init team.db --name "PA team"
              export CARESYNC_REPLICA=team.db CARESYNC_USER=alex
              caresync add young_person legal_given_name=Ava legal_family_name=Le\\ Brun date_of_birth=2007-03-14
              caresync list young_person
              caresync sync --hub 127.0.0.1:7700 --token <token from `caresync hub enroll`>
              caresync export for-usb.bundle

            Exit codes: 0 success; 1 refused by a care rule or a field value out of its range (the \
            message says which); 2 could not read a bundle or other input file (nothing applied); \
            3 replica or storage problem; 4 clock skew (a change is too far in the future); 5 sync \
            failed (the message gives the code: the hub's, or CONNECTION_REFUSED / HOST_NOT_FOUND); \
            6 the hub's audit trail does not verify (`audit verify`); 64 bad arguments (an unknown option, a \
            malformed field=value, a bad worker id or address). \
            A refused command writes nothing.

            Help is `--help` (or `caresync help <command>`); there is no `-h`, so a value that starts \
            with a dash, such as an alert named -high-risk, is taken as a value.
            """,
        subcommands: [
            InitCommand.self, KindsCommand.self, AddCommand.self, EditCommand.self, SetAddCommand.self,
            SetRemoveCommand.self, DeleteCommand.self, ShowCommand.self, ListCommand.self, ApproveCommand.self,
            PlanVersionCommand.self, CatalogueCommand.self, RequestAwardCommand.self, ConflictsCommand.self,
            ResolveCommand.self, HistoryCommand.self, StatusCommand.self, ExportCommand.self, ImportCommand.self,
            AwardCommand.self, RightsCommand.self, FlagsCommand.self,
            SyncCommand.self, QuarantineCommand.self, HubCommand.self, AuditCommand.self,
        ],
        helpNames: [.long])
}

/// Options every command that touches a replica takes.
struct ReplicaOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Replica file (default: $CARESYNC_REPLICA, else ./replica.db).", valueName: "path"))
    var replica: String?

    @Option(name: .customLong("as"), help: ArgumentHelp("Worker id recorded as the author (default: $CARESYNC_USER, else $USER).", valueName: "worker"))
    var author: String?

    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false

    @Flag(name: .long, help: "Log progress to standard error (ids and counts only, never record contents).")
    var verbose = false

    var path: String { replica ?? ProcessInfo.processInfo.environment["CARESYNC_REPLICA"] ?? "replica.db" }

    var worker: String {
        author ?? ProcessInfo.processInfo.environment["CARESYNC_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown"
    }

    /// A bad worker id is a bad argument (exit 64), refused before anything is opened.
    func validate() throws {
        do {
            _ = try WorkerID.canonical(worker)
        } catch let error as CareError {
            throw ValidationError("\(author == nil ? "$CARESYNC_USER/$USER" : "--as"): \(error.message)"
                                  + (Hints.hint(for: error).map { "; \($0)" } ?? ""))
        }
    }

    /// Opens the replica; commands that only read pass `.readOnly`, so a read never changes the file.
    func open(_ access: StoreAccess = .readWrite) throws -> CareReplica {
        Output.bootstrapLogging(verbose: verbose)
        return try Output.run { try CareReplica.open(at: path, wallClock: SystemWallClock(), random: .system, access: access) }
    }

    /// Records the worker's views of the restricted records among `records`, read through
    /// `replica` (opened read-only), before any of them is shown: a restricted record is printed
    /// only once its view is durable, and a read of nothing restricted leaves the file as it was.
    func recordViews(of records: [(kind: String, id: String)], via access: RecordView.Access, readIn replica: CareReplica) throws {
        let restricted = try Output.run { try replica.restrictedRecords(among: records) }
        guard !restricted.isEmpty else { return }
        let writable = try open()
        try Output.run { try writable.recordViews(of: restricted, via: access, author: worker) }
    }
}

/// Parses `field=value` arguments.
enum Assignments {
    static func parse(_ arguments: [String]) throws -> [String: String] {
        var fields: [String: String] = [:]
        for argument in arguments {
            if argument.hasPrefix("-") {
                throw ValidationError("unknown option '\(argument.prefix(40))'; fields are given as field=value, help is --help")
            }
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else {
                throw ValidationError("expected field=value, got '\(argument.prefix(40))'")
            }
            let name = String(argument[..<equals])
            guard fields[name] == nil else { throw ValidationError("field \(name) given twice") }
            fields[name] = String(argument[argument.index(after: equals)...])
        }
        return fields
    }
}
