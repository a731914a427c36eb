import Foundation
import SyncCore
import Testing

extension CLITests {
    @Test("a value over the change limit is refused at add and edit with exit 64 and LIMIT_EXCEEDED; nothing is written")
    func valueOverTheChangeLimit() throws {
        #expect(try run(["init", "\(directory)/a.db"]).status == 0)
        let person = ["young_person", "legal_given_name=A", "legal_family_name=B", "date_of_birth=2007-03-14"]
        let atLimit = String(repeating: "p", count: ChangeLimits.maxValueBytes)
        let over = atLimit + "p"
        let refused = try run(["add"] + person + ["preferred_name=\(over)"])
        #expect(refused.status == 64, "add exited \(refused.status): \(refused.stderr)")
        #expect(refused.stderr.contains("LIMIT_EXCEEDED") && refused.stderr.split(separator: "\n").count == 1)
        #expect(!refused.stderr.contains("ppppp"), "the value itself is not echoed")
        let listed = try run(["list", "young_person", "--json"])
        #expect((try json(listed.stdout) as? [Any])?.isEmpty == true, "nothing of the refused add was written")
        let added = try run(["add"] + person + ["preferred_name=\(atLimit)", "--json"])
        #expect(added.status == 0, "a value at the limit is accepted: \(added.stderr)")
        let id = try #require((try json(added.stdout) as? [String: Any])?["id"] as? String)
        let edited = try run(["edit", "young_person", id, "preferred_name=\(over)"])
        #expect(edited.status == 64 && edited.stderr.contains("LIMIT_EXCEEDED"), "edit exited \(edited.status): \(edited.stderr)")
    }
}
