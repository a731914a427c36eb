import ArgumentParser
import CareRecords
import Foundation
import Testing
@testable import caresync

/// How refusals reach the user: the domain's code and message, the CLI's own hint (which names
/// its subcommands), the documented exit code, thrown as `ExitCode` so a command can run in process.
extension CLITests {
    @Test("a frozen plan's refusal names the CLI's plan-version command as its hint, on one line")
    func hints() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let person = try run(["add", "young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=2007-03-14"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let plan = try run(["add", "plan", "yp_id=\(person)", "kind=pathway", "title=T"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try run(["edit", "plan", plan, "status=submitted"]).status == 0)
        #expect(try run(["approve", plan, "--as", "morgan"]).status == 0)
        let refused = try run(["edit", "plan", plan, "title=U"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "error: plan \(plan) is approved: its content cannot change (I6/I10); it changes only in a new version; "
                + "create a new version with `caresync plan-version \(plan)` [PLAN_FROZEN]\n")
        let missing = try run(["add", "young_person", "legal_given_name=A"])
        #expect(missing.status == 1 && missing.stderr.contains("e.g. caresync add young_person ") && missing.stderr.hasSuffix("[REQUIRED_FIELD]\n"),
                "\(missing.stderr)")
    }

    @Test("the catalogue shows caps with their pence")
    func cataloguePence() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let catalogue = try run(["catalogue"]).stdout
        let bursary = try #require(catalogue.split(separator: "\n").first { $0.hasPrefix("APPRENTICE_BURSARY") })
        #expect(bursary.contains("£1000.00"), "\(bursary)")
        #expect(catalogue.split(separator: "\n").first { $0.hasPrefix("DRIVING") }?.contains(" 20 ") == true)
    }

    @Test("a refused command throws ExitCode in process instead of ending the process")
    func exitCodeInProcess() throws {
        let missing = "\(directory)/nowhere.db"
        let command = try #require(try CareSyncCommand.parseAsRoot(["status", "--replica", missing]) as? StatusCommand)
        #expect(throws: ExitCode(3)) { try command.run() }
        let unknown = try #require(try CareSyncCommand.parseAsRoot(["kinds", "spaceship"]) as? KindsCommand)
        #expect(throws: ExitCode(1)) { try unknown.run() }
    }

    @Test("every record kind has an example command line of the CLI's")
    func kindExamples() {
        for kind in CareSchema.kinds { #expect(KindExamples.byKind[kind.name] != nil, "\(kind.name)") }
        #expect(Set(KindExamples.byKind.keys) == Set(CareSchema.kinds.map(\.name)))
    }
}
