import Foundation
import ProcessHarness
import Testing

/// Least privilege for the operator (issue 10, item 7): every hub operator command and every line
/// the hub logs shows health, counts and pseudonymous ids only.
///
/// The real binaries: a hub serving at its most verbose log level (`--verbose` and
/// `CARESYNC_LOG_LEVEL=trace`); four replicas of two teams, with a unique marker in every
/// free-text field, date and set element of every record kind a command writes; conflicts (one
/// resolved with a new value, one with a candidate, one left open); an approval and a new plan
/// version; scope changes (a young person leaving a team while one of its replicas edits them
/// offline; a replica writing for another team's young person); a fork (a replica file restored
/// from a backup and written to); an equivocation's evidence; a revoked replica that tries again;
/// a sync with a token never issued; bytes that are no frame; a restricted young person read with
/// `show`, `list` and `history` (views the hub audits). Then every `caresync hub`
/// subcommand, found from `caresync hub --help`, runs with and without `--json`, and its output,
/// the hub's log and its standard output, and `caresync audit list` and `verify`, are searched for every marker: as written (any case),
/// as UTF-8 hex, as base64 at each alignment, and for the marker prefix alone (a truncated value).
///
/// What the operator may see, and so is not a marker: worker ids (the author of every change and
/// an allocation's worker; logins or staff numbers the organisation administers), team ids (the
/// operator enrols replicas by team), catalogue item codes (the hub publishes the catalogue), and
/// record, replica and change ids (pseudonymous; `restricted_to` holds replica ids). What is a
/// marker beside the records' values: a replica's display name (`init --name`), which can name a
/// person ("Ava's carer's laptop"); the hub never receives it. Numbers are not markers: a value such as a count cannot be told from
/// the counts an operator is meant to see.
extension CLITests {
    /// Hub subcommands that only read: each runs with `--db` alone and with `--json`.
    static let hubReadCommands: Set<String> = ["escrow", "status", "replicas", "equivocations", "quarantine"]
    /// Hub subcommands that need arguments or change something: the scenario runs each of them.
    static let hubScenarioCommands: Set<String> = ["serve", "init-tls", "enroll", "revoke", "publish-catalogue"]

    /// Fields whose values the operator may see (see above): given ids, never markers.
    static let operatorVisible: [String: String] = [
        "plan.owning_team_id": "TEAM-A", "plan.owner_worker_id": "w-owner", "review.chair_iro_id": "w-iro",
        "allocation.worker_id": "w-social", "allocation.team_id": "TEAM-A", "young_person.involved_teams": "TEAM-A",
        "award.item_code": "STUDY_VISIT", "young_person.restricted_to": ownReplica,
    ]
    /// Stands for the id of the replica the record is written on.
    static let ownReplica = "<own replica id>"

    /// Record kinds no replica command writes, and why none of their values is a marker.
    static let kindsNotWritten: [String: String] = [
        "entitlement_item": "the hub's own catalogue, published by the operator",
        "ledger_entry": "written by the entitlement engine; no command writes one",
        "flag": "raised by the hub's checks at merge: codes, ids and figures; no command creates one",
        "approval": "written by `approve`: ids, a content hash, a worker, a decision and today's date (the test approves a plan)",
    ]

    /// Values the records need to pass the care rules; every other field gets a marker or a date.
    static let fixedValues: [String: String] = [
        "young_person.date_of_birth": "2008-07-19", "young_person.date_of_death": "2025-11-30", "award.decision_date": "2025-06-23", "award.requested_count": "1",
        "visit.seen_alone": "1",
    ]

    /// The marker of one field: unique, and each starts with `markerPrefix`.
    static func marker(_ kind: String, _ field: String, _ tag: String) -> String { "\(markerPrefix)_\(tag)_\(kind)_\(field)_QZ" }
    static let markerPrefix = "MRKZQ"

    /// The forms of `text` a search must not find: as written (compared ignoring case), its UTF-8
    /// in hex (ditto), and its base64 at each of the three alignments it can have inside a longer
    /// encoded value (only the characters that depend on its bytes alone; compared exactly).
    static func forms(of text: String) -> (anyCase: [String], exact: [String]) {
        let bytes = Array(text.utf8)
        var exact: [String] = []
        for offset in 0..<3 {
            let encoded = Array((Data(count: offset) + bytes).base64EncodedString())
            let start = offset == 0 ? 0 : 4
            let end = 4 * ((offset + bytes.count) / 3)
            if end - start >= 8 { exact.append(String(encoded[start..<end])) }
        }
        return ([text, bytes.map { String(format: "%02x", $0) }.joined()], exact)
    }

    /// The places in `outputs` where one of `forbidden` (or the marker prefix) appears, as
    /// "where: what" lines.
    static func leaks(in outputs: [(label: String, text: String)], of forbidden: [String]) -> [String] {
        var found: [String] = []
        for (label, text) in outputs {
            for value in forbidden + [markerPrefix] {
                let (anyCase, exact) = forms(of: value)
                if let form = anyCase.first(where: { text.range(of: $0, options: .caseInsensitive) != nil })
                    ?? exact.first(where: { text.contains($0) }) {
                    found.append("\(label): \(value)\(form == value ? "" : " as \(form)")")
                }
            }
        }
        return found
    }

    @Test("the operator-output search finds a marker as written in any case, truncated, in UTF-8 hex and in base64 at every alignment")
    func markerSearch() {
        let marker = Self.marker("plan", "summary", "t")
        let base64 = (0..<3).map { (Data(count: $0) + Data(marker.utf8) + Data(count: 2)).base64EncodedString() }
        let leaking = [marker, marker.lowercased(), String(marker.prefix(12)) + "…",
                       Data(marker.utf8).map { String(format: "%02X", $0) }.joined()] + base64
        for text in leaking {
            #expect(!Self.leaks(in: [("output", "id 3f2a " + text + " 12 changes")], of: [marker]).isEmpty, "not found in \(text)")
        }
        #expect(Self.leaks(in: [("output", "3 replica(s), head 161, TEAM-A, 804089dd:5, 2026-12-01T21:27:07Z")], of: [marker, "2025-01-03"]).isEmpty)
        #expect(!Self.leaks(in: [("output", "born 2025-01-03")], of: [marker, "2025-01-03"]).isEmpty)
    }

    struct FieldSpec: Decodable { let field: String, format: String, automatic: Bool }

    /// Creates one record of every kind a replica command writes, for a new young person, with a
    /// marker in every free-text field and set element and a unique date in every date field.
    /// - Returns: the ids by kind, and every value the operator must never see.
    func fillEveryKind(replica: String, id replicaID: String, tag: String, dates: inout Int) throws -> (ids: [String: String], forbidden: [String]) {
        let kinds = try #require(try json(try run(["kinds", "--json"], replica: replica).stdout) as? [[String: Any]]).compactMap { $0["kind"] as? String }
        // `request-award` writes awards; `add` every other kind a command writes.
        let order = ["young_person", "plan", "goal", "action", "review", "visit", "case_note", "allocation", "reminder", "award"]
        #expect(Set(kinds) == Set(order).union(Self.kindsNotWritten.keys),
                "a record kind is neither filled with markers here nor listed in kindsNotWritten: \(Set(kinds).symmetricDifference(Set(order).union(Self.kindsNotWritten.keys)))")
        var ids: [String: String] = [:]
        var forbidden: [String] = []
        for kind in order {
            let fields = try JSONDecoder().decode([FieldSpec].self, from: Data(try run(["kinds", kind, "--json"], replica: replica).stdout.utf8))
            var assignments: [String] = []
            var sets: [(String, String)] = []
            // A status starts at its lattice's bottom, set by the record's workflow.
            for field in fields where !field.automatic && field.field != "status" {
                let key = "\(kind).\(field.field)"
                let value: String?
                if let visible = Self.operatorVisible[key] {
                    value = visible == Self.ownReplica ? replicaID : visible
                } else if let fixed = Self.fixedValues[key] {
                    value = fixed
                    if field.format == "date" { forbidden.append(fixed) }
                } else if field.format == "text" || field.format == "set" {
                    value = Self.marker(kind, field.field, tag)
                    forbidden.append(value ?? "")
                } else if field.format == "date" {
                    // Days of early 2025, one per date field: in the past, and unlike any time the hub shows.
                    value = String(format: "2025-%02d-%02d", 1 + dates / 28, 1 + dates % 28)
                    dates += 1
                    forbidden.append(value ?? "")
                } else if field.format.hasSuffix(" id") {
                    value = ids[String(field.format.dropLast(" id".count))]
                } else if field.format.contains("|") {
                    value = field.format.split(separator: "|").first.map(String.init)
                } else {
                    value = nil
                }
                guard let value else { continue }
                if field.format == "set" { sets.append((field.field, value)) } else { assignments.append("\(field.field)=\(value)") }
            }
            let command = kind == "award" ? ["request-award"] : ["add", kind]
            let added = try run(command + assignments, replica: replica)
            #expect(added.status == 0, "\(kind) on \(replica): \(added.stderr)")
            let id = added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            ids[kind] = id
            for (field, element) in sets {
                let result = try run(["set-add", kind, id, field, element], replica: replica)
                #expect(result.status == 0, "set-add \(kind) \(field): \(result.stderr)")
            }
        }
        return (ids, forbidden)
    }

    @Test("no record content, replica display name or their encodings in any hub operator command's output or the hub's log")
    func operatorSeesNoContent() throws {
        let started = ContinuousClock.now
        let hubDB = "\(directory)/hub.db"
        var outputs: [(label: String, text: String)] = []
        var forbidden: [String] = []
        var exercised: Set<String> = []
        var tokens: [String] = []
        @discardableResult
        func keep(_ label: String, _ result: Result) -> Result {
            outputs += [(label + " (stdout)", result.stdout), (label + " (stderr)", result.stderr)]
            return result
        }
        @discardableResult
        func operate(_ arguments: [String]) throws -> Result {
            let result = keep("caresync hub " + arguments.joined(separator: " "), try run(["hub"] + arguments, replica: nil))
            #expect(result.status == 0, "hub \(arguments): \(result.stderr)")
            exercised.insert(arguments[0])
            return result
        }
        func replica(_ name: String, _ arguments: [String], expect status: Int32 = 0) throws {
            let result = try run(arguments, replica: "\(name).db")
            #expect(result.status == status, "\(name): \(arguments.prefix(3)) exited \(result.status): \(result.stderr)")
        }

        try operate(["init-tls", "--out", "\(directory)/tls", "--host", "127.0.0.1"])
        try operate(["init-tls", "--out", "\(directory)/tls2", "--host", "127.0.0.1", "--json"])
        try operate(["publish-catalogue", "--db", hubDB])
        let logPath = "\(directory)/hub.log"
        #expect(FileManager.default.createFile(atPath: logPath, contents: nil))
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let hub = try HubProcess(database: hubDB, options: ["--verbose"], environment: ["CARESYNC_LOG_LEVEL": "trace"], log: log)
        let address = hub.address
        exercised.insert("serve")
        var stopped = false
        defer { if !stopped { hub.kill9() } }

        // Two teams: a and c (TEAM-A) share a young person; b and d are TEAM-B.
        var replicaIDs: [String: String] = [:]
        for (name, team) in [("a", "TEAM-A"), ("b", "TEAM-B"), ("c", "TEAM-A"), ("d", "TEAM-B")] {
            let display = Self.marker("replica", "name", name)
            forbidden.append(display)
            let created = try run(["init", "\(directory)/\(name).db", "--name", display, "--json"], replica: nil)
            replicaIDs[name] = try #require(try json(created.stdout) as? [String: Any])["replica_id"] as? String
            let token = try operate(["enroll", "--db", hubDB, "--team", team] + (name == "d" ? ["--json"] : [])).stdout
            let secret = (name == "d" ? try #require(try json(token) as? [String: Any])["token"] as? String ?? "" : token)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            tokens.append(secret)
            try replica(name, ["sync", "--hub", address, "--token", secret, "--quiet"])
        }
        var dates = 0
        let (ids, filledA) = try fillEveryKind(replica: "a.db", id: try #require(replicaIDs["a"]), tag: "a", dates: &dates)
        let (_, filledB) = try fillEveryKind(replica: "b.db", id: try #require(replicaIDs["b"]), tag: "b", dates: &dates)
        forbidden += filledA + filledB
        for name in ["a", "b", "c"] { try replica(name, ["sync", "--quiet"]) }

        // Conflicts: a and c edit the same fields concurrently; one is resolved with a new value,
        // one with a candidate, one stays open (the replicas report open conflicts to the hub).
        let person = try #require(ids["young_person"]), plan = try #require(ids["plan"])
        let conflicting = [("young_person", person, "legal_given_name"), ("young_person", person, "legal_family_name"), ("plan", plan, "summary")]
        for name in ["a", "c"] {
            for (kind, id, field) in conflicting {
                let value = Self.marker(kind, field, "conflict\(name)")
                forbidden.append(value)
                try replica(name, ["edit", kind, id, "\(field)=\(value)"])
            }
        }
        for name in ["a", "c", "a"] { try replica(name, ["sync", "--quiet"]) }
        let resolved = Self.marker("young_person", "legal_given_name", "resolved")
        forbidden.append(resolved)
        try replica("a", ["resolve", "young_person", person, "legal_given_name", "--value", resolved])
        try replica("a", ["resolve", "plan", plan, "summary", "--pick", "1"])
        // An approval bound to the plan's content, and a new version copying it.
        try replica("a", ["edit", "plan", plan, "status=submitted"])
        try replica("a", ["approve", plan, "--as", "w-manager"])
        try replica("a", ["plan-version", plan])
        for name in ["a", "c"] { try replica(name, ["sync", "--quiet"]) }

        // A restricted young person (restricted to a), read on a: each view is recorded there,
        // uploaded and audited with ids only, as the resolutions above are.
        let secret = Self.marker("young_person", "legal_given_name", "restricted")
        let secretNote = Self.marker("case_note", "body", "restricted")
        forbidden += [secret, secretNote, "2009-05-17"]
        let hidden = try run(["add", "young_person", "legal_given_name=\(secret)", "legal_family_name=\(secret)", "date_of_birth=2009-05-17"],
                             replica: "a.db").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hiddenNote = try run(["add", "case_note", "yp_id=\(hidden)", "category=visit", "occurred_at=2025-03-04", "body=\(secretNote)"],
                                 replica: "a.db").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try replica("a", ["set-add", "young_person", hidden, "restricted_to", try #require(replicaIDs["a"])])
        try replica("a", ["edit", "young_person", hidden, "restricted=yes"])
        try replica("a", ["show", "young_person", hidden])
        try replica("a", ["list", "case_note", "yp_id=\(hidden)"])
        try replica("a", ["history", "case_note", hiddenNote, "--json"])
        try replica("a", ["sync", "--quiet"])

        // Scope changes (issue 10): a third young person leaves TEAM-A for TEAM-B while c, offline,
        // edits them (purges owed, a write to quarantine); and b, of TEAM-B, edits TEAM-A's young
        // person from a bundle it was handed (a write outside its scope).
        let leaving = try run(["add", "young_person", "legal_given_name=\(Self.marker("young_person", "legal_given_name", "leaving"))",
                               "legal_family_name=\(Self.marker("young_person", "legal_family_name", "leaving"))", "date_of_birth=2009-02-27"],
                              replica: "a.db").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        forbidden += [Self.marker("young_person", "legal_given_name", "leaving"), Self.marker("young_person", "legal_family_name", "leaving"), "2009-02-27"]
        let allocation = try run(["add", "allocation", "yp_id=\(leaving)", "role=social_worker", "worker_id=w-social", "team_id=TEAM-A",
                                  "from_date=2025-03-01"], replica: "a.db").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try replica("a", ["set-add", "young_person", leaving, "involved_teams", "TEAM-A"])
        for name in ["a", "c"] { try replica(name, ["sync", "--quiet"]) }
        let offline = Self.marker("young_person", "preferred_name", "offline")
        forbidden.append(offline)
        try replica("c", ["edit", "young_person", leaving, "preferred_name=\(offline)"])
        try replica("a", ["add", "allocation", "yp_id=\(leaving)", "role=social_worker", "worker_id=w-other", "team_id=TEAM-B", "from_date=2025-03-02"])
        try replica("a", ["edit", "allocation", allocation, "ended_on=2025-03-02"])
        try replica("a", ["set-remove", "young_person", leaving, "involved_teams", "TEAM-A"])
        try replica("a", ["set-add", "young_person", leaving, "involved_teams", "TEAM-B"])
        for name in ["a", "c"] { try replica(name, ["sync", "--quiet"]) }
        try replica("b", ["sync", "--quiet"])
        // A bundle handed across teams is refused (BUNDLE_OTHER_TEAM, exit 2): its refusal is searched too.
        try replica("a", ["export", "\(directory)/handed.bundle"])
        try replica("b", ["import", "\(directory)/handed.bundle"], expect: 2)
        let outside = Self.marker("case_note", "body", "outside")
        forbidden.append(outside)
        try replica("b", ["add", "case_note", "yp_id=\(leaving)", "category=visit", "occurred_at=2025-03-03", "body=\(outside)"])
        try replica("b", ["sync", "--quiet"])
        // c's offline edit of the young person who left is held for TEAM-B's review: b dismisses
        // it with a reason (record content, which stays on b).
        let heldForB = try #require(try json(try run(["quarantine", "list", "--json"], replica: "b.db").stdout) as? [[String: Any]])
        let heldID = try #require(heldForB.first?["id"] as? Int, "c's offline edit is held for b")
        let dismissal = Self.marker("quarantine", "reason", "dismissed")
        forbidden.append(dismissal)
        try replica("b", ["quarantine", "dismiss", String(heldID), "--as", "w-reviewer", "--reason", dismissal])
        try replica("b", ["sync", "--quiet"])

        // c restored from a backup and written to: it reuses a change id with other content, finds
        // out at its next sync, and forks (the hub sees the fork, not the reused id).
        _ = try sqlite("c.db", ".backup '\(directory)/c-backup.db'")
        let held = Self.marker("young_person", "preferred_name", "held")
        let refused = Self.marker("young_person", "preferred_name", "refused")
        forbidden += [held, refused]
        try replica("c", ["edit", "young_person", person, "preferred_name=\(held)"])
        try replica("c", ["sync", "--quiet"])
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: "\(directory)/c.db\(suffix)") }
        try FileManager.default.copyItem(atPath: "\(directory)/c-backup.db", toPath: "\(directory)/c.db")
        try replica("c", ["edit", "young_person", person, "preferred_name=\(refused)"])
        try replica("c", ["sync", "--quiet"])
        try replica("c", ["sync", "--quiet"])

        // A revoked replica that tries again, a token never issued, and bytes that are no frame.
        let late = Self.marker("reminder", "text", "revoked")
        forbidden.append(late)
        try replica("d", ["add", "reminder", "text=\(late)"])
        try operate(["revoke", "--db", hubDB, try #require(replicaIDs["d"])])
        try replica("d", ["sync", "--quiet", "--attempts", "1"], expect: 5)
        #expect(try run(["init", "\(directory)/e.db", "--name", Self.marker("replica", "name", "e")], replica: nil).status == 0)
        forbidden.append(Self.marker("replica", "name", "e"))
        tokens.append("cse1-" + String(repeating: "0", count: 32))
        try replica("e", ["sync", "--hub", address, "--token", tokens.last ?? "", "--quiet", "--attempts", "1"], expect: 5)
        let junk = Self.marker("wire", "junk", "bytes")
        forbidden.append(junk)
        let port = try #require(address.split(separator: ":").last.map(String.init))
        let sent = Process()
        sent.executableURL = URL(fileURLWithPath: "/bin/bash")
        sent.arguments = ["-c", "printf '%s' \"$0\" > /dev/tcp/127.0.0.1/\(port)", String(repeating: junk, count: 4)]
        try sent.run()
        sent.waitUntilExit()
        #expect(sent.terminationStatus == 0, "the junk was sent")
        // The hub reads the junk on its own time; under load, the shutdown's goodbye could close
        // that connection before it is read. Wait for its line (bounded) so the log check below
        // tests what the hub logs, not a race.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(String(decoding: FileManager.default.contents(atPath: logPath) ?? Data(), as: UTF8.self)).contains("framing error") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        try replica("b", ["sync", "--quiet"])

        // Graceful shutdown, so that the log has every line the hub writes.
        outputs.append(("caresync hub serve (stdout after the address)", hub.stop()))
        stopped = true
        try log.close()
        let logged = String(decoding: FileManager.default.contents(atPath: logPath) ?? Data(), as: UTF8.self)
        outputs.append(("caresync hub serve (log)", logged))
        for line in ["session ended", "hello refused", "framing error", "hub stopped"] {
            // The line's name first: a long log would hide which one is missing.
            #expect(logged.contains(line), "the hub did not log \(line) (\(logged.utf8.count) bytes of log, \(logged.split(separator: "\n").count) lines)")
        }

        // A client that pushes the reused id instead: the hub keeps the refused version as evidence
        // (written as the hub writes it; the CLI's client checks first and never sends one).
        let evidence = Self.marker("equivocation", "refused_bytes", "hub")
        forbidden.append(evidence)
        try insertEquivocation("hub.db", origin: try #require(replicaIDs["c"]), refusedBytes: Array(evidence.utf8))

        // Every read command, with and without --json; the revoke and enrol --json forms too.
        try operate(["revoke", "--db", hubDB, try #require(replicaIDs["b"]), "--json"])
        try operate(["publish-catalogue", "--db", hubDB, "--json"])
        try operate(["status", "--db", hubDB, "--tls-cert", "\(directory)/tls/hub-cert.pem"])
        let subcommands = Self.subcommands(in: try help(["hub"]))
        for command in subcommands where Self.hubReadCommands.contains(command) {
            try operate([command, "--db", hubDB])
            try operate([command, "--db", hubDB, "--json"])
        }
        let unexercised = Set(subcommands).subtracting(exercised)
        #expect(unexercised.isEmpty, "hub subcommands this test does not run: \(unexercised.sorted()); add each to hubReadCommands or to the scenario")
        #expect(Set(subcommands) == Self.hubReadCommands.union(Self.hubScenarioCommands), "\(subcommands)")

        // The audit trail, as the operator lists and verifies it.
        for arguments in [["list", "--db", hubDB, "--limit", "10000"], ["list", "--db", hubDB, "--limit", "10000", "--json"], ["verify", "--db", hubDB]] {
            let result = keep("caresync audit " + arguments.joined(separator: " "), try run(["audit"] + arguments, replica: nil))
            #expect(result.status == 0, "audit \(arguments): \(result.stderr)")
        }

        // Every surface had something to show.
        let audited = try #require(try json(try run(["audit", "list", "--db", hubDB, "--limit", "10000", "--json"], replica: nil).stdout) as? [[String: Any]])
        #expect(audited.filter { $0["kind"] as? String == "RESTRICTED_VIEW" }.count == 3, "the three reads of the restricted record")
        #expect(audited.filter { $0["kind"] as? String == "CONFLICT_RESOLUTION" }.count == 2, "the two resolutions")
        let replicas = try #require(try json(try run(["hub", "replicas", "--db", hubDB, "--json"], replica: nil).stdout) as? [[String: Any]])
        #expect(replicas.count >= 5 && replicas.contains { $0["revoked"] as? Bool == true }, "\(replicas.count) replicas")
        #expect(replicas.contains { $0["forked_from"] is String }, "the restored replica forked")
        #expect(replicas.contains { ($0["open_conflicts"] as? Int ?? 0) > 0 }, "a replica reported an open conflict")
        let quarantine = try #require(try json(try run(["hub", "quarantine", "--db", hubDB, "--json"], replica: nil).stdout) as? [String: Any])
        let states = (quarantine["counts"] as? [[String: Any]] ?? []).compactMap { $0["state"] as? String }
        #expect(states.contains("dismissed"), "b's dismissal reached the hub: \(states)")
        let equivocations = try #require(try json(try run(["hub", "equivocations", "--db", hubDB, "--json"], replica: nil).stdout) as? [Any])
        #expect(!equivocations.isEmpty, "the hub kept an equivocation")

        let leaks = Self.leaks(in: outputs, of: forbidden)
        #expect(leaks.isEmpty, "record contents reached the operator:\n\(leaks.joined(separator: "\n"))")
        // A token is the operator's to hand over, so `hub enroll` prints it; nothing else does, the log least of all.
        let tokenLeaks = Self.leaks(in: outputs.filter { !$0.label.hasPrefix("caresync hub enroll") }, of: tokens)
        #expect(tokenLeaks.isEmpty, "an enrolment token was shown:\n\(tokenLeaks.joined(separator: "\n"))")
        let bytes = outputs.reduce(0) { $0 + $1.text.utf8.count }
        print("OperatorPrivacy: \(forbidden.count) markers, \(outputs.count) outputs (\(bytes) bytes) searched, \(leaks.count) leak(s), \(started.duration(to: .now))")
    }
}
