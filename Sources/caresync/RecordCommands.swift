import ArgumentParser
import CareRecords
import Foundation
import SyncCore
import SyncStore

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a new replica file.",
        discussion: """
            Example: caresync init alex.db --name "Alex (PA team)"
            The file is a plain SQLite database with the published entitlement catalogue. The device's \
            signing key goes into PATH.identity beside it (readable by you only): it proves which edits \
            this replica made. Back it up with the database; a copy of the .db alone is not this device.
            """)

    @Argument(help: ArgumentHelp("Path of the new replica file.", valueName: "path"))
    var path: String

    @Option(help: "A display name for this replica (team or device).")
    var name: String = "replica"

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func run() throws {
        Output.bootstrapLogging(verbose: false)
        let replica = try Output.run { try CareReplica.create(at: path, name: name, wallClock: SystemWallClock(), random: .system) }
        // The records are the children's: readable by the owner only, like the identity file
        // (SQLite gives its side files the database's mode).
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        }
        if json {
            struct Created: Encodable { let replicaID: String, path: String, schemaVersion: Int, identityFile: String }
            try Output.json(Created(replicaID: replica.store.replicaID.hex, path: path, schemaVersion: CareSchema.version,
                                    identityFile: replica.store.identityPath))
        } else {
            Output.line("created replica \(replica.store.replicaID.hex) at \(path) (schema v\(CareSchema.version))")
            Output.line("device key in \(replica.store.identityPath) (mode 0600): keep it private and keep it with \(path); without it this replica cannot sync or export")
        }
    }
}

struct KindsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kinds", abstract: "List record kinds, or one kind's fields with their merge policies.",
        discussion: """
            Example: caresync kinds plan
            Policies: IMM written once · LWW last writer wins · MVR keeps concurrent values as a conflict · \
            MON status that only moves forward · AWS add-wins set · RWS remove-wins set · CTR counter.
            """)

    @Argument(help: "A record kind.")
    var kind: String?

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func run() throws {
        guard let kind else {
            if json {
                try Output.json(CareSchema.kinds.map { ["kind": $0.name, "summary": $0.summary] })
            } else {
                Output.table(["KIND", "WHAT"], CareSchema.kinds.map { [$0.name, $0.summary] })
            }
            return
        }
        guard let recordKind = CareSchema.kind(kind) else {
            throw Output.fail("unknown record kind '\(kind)'; run `caresync kinds`", code: CareError.Code.unknownKind.name, exit: .refused)
        }
        if json {
            struct Field: Encodable { let field: String, policy: String, format: String, help: String, automatic: Bool }
            try Output.json(recordKind.fields.map {
                Field(field: $0.name, policy: $0.policy.name, format: $0.format.name, help: $0.help, automatic: $0.automatic)
            })
            return
        }
        Output.line("\(recordKind.name): \(recordKind.summary)")
        Output.line("required: \(recordKind.required.isEmpty ? "–" : recordKind.required.joined(separator: ", "))")
        Output.line("example:  \(KindExamples.example(recordKind))")
        Output.line()
        Output.table(["FIELD", "POLICY", "FORMAT", "MEANING"], recordKind.fields.map {
            [$0.name, $0.policy.name, $0.format.name, $0.help + ($0.automatic ? " (automatic)" : "")]
        })
    }
}

struct AddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add a record: young_person, plan, goal, action, review, visit, case_note, allocation, reminder.",
        discussion: """
            Fields are given as field=value; `caresync kinds <kind>` lists them. Prints the new id.
            Examples:
              caresync add young_person legal_given_name=Ava legal_family_name=Le\\ Brun date_of_birth=2007-03-14
              caresync add plan yp_id=<id> kind=pathway title='Pathway plan'
              caresync add goal plan_id=<id> domain=accommodation statement='Move to own studio by Sept'
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Record kind.") var kind: String
    @Argument(help: ArgumentHelp("Fields as field=value.", valueName: "field=value")) var fields: [String] = []

    func run() throws {
        let replica = try options.open()
        let values = try Assignments.parse(fields)
        let id = try Output.run { try replica.add(kind, fields: values, author: options.worker) }
        if options.json { try Output.json(["id": id, "kind": kind]) } else { Output.line(id) }
    }
}

struct EditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit", abstract: "Change fields of a record (an empty value clears a field).",
        discussion: """
            Example: caresync edit goal <id> statement='Move to own studio by Oct' target_date=2025-10-31
            Statuses only move forward (draft → submitted → approved → superseded | closed); approved plans \
            are frozen (create a new version); written-once fields cannot change.
            """)

    @OptionGroup var options: ReplicaOptions
    @Argument(help: "Record kind.") var kind: String
    @Argument(help: "Record id.") var id: String
    @Argument(help: ArgumentHelp("Fields as field=value.", valueName: "field=value")) var fields: [String] = []

    func run() throws {
        let replica = try options.open()
        let values = try Assignments.parse(fields)
        try Output.run { try replica.edit(kind, id: id, fields: values, author: options.worker) }
        struct Edited: Encodable { let id: String, kind: String, changed: [String] }
        if options.json { try Output.json(Edited(id: id, kind: kind, changed: values.keys.sorted())) } else {
            Output.line("updated \(kind) \(id): \(values.keys.sorted().joined(separator: ", "))")
        }
    }
}

/// Which set element `set-add` and `set-remove` act on.
struct SetElementArguments: ParsableArguments {
    @Argument(help: "Record kind.") var kind: String
    @Argument(help: "Record id.") var id: String
    @Argument(help: "Set field (alerts, involved_teams, consent_to_share).") var field: String
    // Captures a value that starts with a dash too (`-dash-first` is an element, not options).
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("The element (it may start with a dash).", valueName: "element"))
    var elements: [String] = []

    var element: String { elements[0] }

    func validate() throws {
        guard elements.count == 1 else {
            throw ValidationError(elements.isEmpty ? "give the element to add or remove" : "give one element (got \(elements.count)); run the command once per element")
        }
    }
}

struct SetAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-add", abstract: "Add an element to a set field (alerts, involved_teams, consent_to_share).",
        discussion: "Example: caresync set-add young_person <id> alerts missing_risk")

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var target: SetElementArguments

    func run() throws {
        let replica = try options.open()
        try Output.run {
            try replica.setAdd(target.kind, id: target.id, field: target.field, element: target.element, author: options.worker)
        }
        struct Added: Encodable { let id: String, field: String, added = true }
        if options.json { try Output.json(Added(id: target.id, field: target.field)) } else {
            Output.line("added to \(target.kind).\(target.field)")
        }
    }
}

struct SetRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-remove", abstract: "Remove an element from a set field.",
        discussion: "Example: caresync set-remove young_person <id> consent_to_share staying_put_carer\nIn an add-wins set a concurrent add elsewhere survives; in consent_to_share (remove-wins) the withdrawal wins.")

    @OptionGroup var options: ReplicaOptions
    @OptionGroup var target: SetElementArguments

    func run() throws {
        let replica = try options.open()
        try Output.run {
            try replica.setRemove(target.kind, id: target.id, field: target.field, element: target.element, author: options.worker)
        }
        struct Removed: Encodable { let id: String, field: String, removed = true }
        if options.json { try Output.json(Removed(id: target.id, field: target.field)) } else {
            Output.line("removed from \(target.kind).\(target.field)")
        }
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a reminder. Case records are never deleted (void or close them).",
        discussion: "Example: caresync delete reminder <id>")

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument var id: String

    func run() throws {
        let replica = try options.open()
        try Output.run { try replica.delete(kind, id: id, author: options.worker) }
        struct Deleted: Encodable { let id: String, deleted = true }
        if options.json { try Output.json(Deleted(id: id)) } else { Output.line("deleted \(kind) \(id)") }
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one record: every field with its policy, conflict candidates and derived values.",
        discussion: "Example: caresync show plan <id> --json")

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument var id: String

    func run() throws {
        let replica = try options.open(.readOnly)
        let record = try Output.run { try replica.describe(kind, id: id) }
        try options.recordViews(of: [(record.kind, record.id)], via: .show, readIn: replica)
        if options.json {
            struct Shown: Encodable {
                let kind: String, id: String, fields: [String: JSONField], conflicts: [String: [CandidateJSON]], derived: [String: String]
            }
            try Output.json(Shown(
                kind: record.kind, id: record.id,
                fields: Dictionary(uniqueKeysWithValues: record.fields.map { ($0.name, JSONField($0.value)) }),
                conflicts: Dictionary(uniqueKeysWithValues: record.fields.filter { !$0.candidates.isEmpty }.map {
                    ($0.name, $0.candidates.map(CandidateJSON.init))
                }),
                derived: Dictionary(uniqueKeysWithValues: record.derived.map { ($0.name, $0.value) })))
            return
        }
        Output.line("\(record.kind) \(record.id)")
        var rows: [[String]] = []
        for field in record.fields {
            rows.append([field.name, field.policy, field.candidates.isEmpty ? Output.cell(field.value, width: 70) : "CONFLICT: \(field.candidates.count) candidates"])
            for (index, candidate) in field.candidates.enumerated() {
                rows.append(["", "  \(index + 1).", "\(Output.cell(candidate.value, width: 50))  — \(candidate.author) on \(candidate.replica.short) at \(Output.iso(candidate.timestamp))"])
            }
        }
        for (name, value) in record.derived { rows.append([name, "DER", value]) }
        Output.table(["FIELD", "POLICY", "VALUE"], rows)
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List records of a kind, optionally filtered by field=value.",
        discussion: "Examples:\n  caresync list young_person\n  caresync list goal plan_id=<id> --json")

    @OptionGroup var options: ReplicaOptions
    @Argument var kind: String
    @Argument(help: ArgumentHelp("Filters as field=value.", valueName: "field=value")) var filters: [String] = []

    func run() throws {
        let replica = try options.open(.readOnly)
        let rows = try Output.run { try replica.list(kind, where: try Assignments.parse(filters)) }
        let kindName = CareSchema.kind(kind)?.name ?? kind
        try options.recordViews(of: rows.compactMap { $0[CareColumn.id.rawValue]?.textValue }.map { (kindName, $0) }, via: .list, readIn: replica)
        if options.json { try Output.json(rows.map(Output.record)); return }
        guard let recordKind = CareSchema.kind(kind) else { return }
        let columns = ["id"] + recordKind.fields.filter { !$0.automatic && $0.name != CareColumn.createdBy.rawValue }.prefix(5).map(\.name)
        Output.table(columns.map { $0.uppercased() }, rows.map { row in columns.map { Output.cell(row[$0] ?? .null, width: 36) } })
        Output.line("\(rows.count) \(kind) record(s)")
    }
}
