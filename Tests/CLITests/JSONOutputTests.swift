import Foundation
import Testing

/// One `--json` output per command family pinned byte for byte: keys, their order, types, and
/// `null` where a value can be absent (never a missing key). Ids, times and tokens, which differ
/// per run, are put into the expected text or replaced by a placeholder before comparing.
extension CLITests {
    /// `text` with the values of volatile keys replaced by `<key>`.
    static func normalised(_ text: String) -> String {
        var result = text
        for key in ["happened_at", "recorded_at", "hlc", "token", "expires_at"] {
            result = result.replacingOccurrences(of: "\"\(key)\" : \"[^\"]*\"", with: "\"\(key)\" : \"<\(key)>\"", options: .regularExpression)
        }
        return result
    }

    @Test("--json outputs keep their shape byte for byte: show, edit, history, status, hub enroll")
    func jsonShapes() throws {
        #expect(try run(["init", "\(directory)/a.db", "--name", "A"]).status == 0)
        let id = try run(["add", "reminder", "text=hello"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let replica = try #require((try json(try run(["status", "--json"]).stdout) as? [String: Any])?["replica_id"] as? String)

        #expect(try run(["show", "reminder", id, "--json"]).stdout == """
            {
              "conflicts" : {

              },
              "derived" : {

              },
              "fields" : {
                "due_on" : null,
                "owner" : "alex",
                "text" : "hello",
                "yp_id" : null
              },
              "id" : "\(id)",
              "kind" : "reminder"
            }

            """)

        #expect(try run(["edit", "reminder", id, "text=z", "due_on=2025-07-01", "--json"]).stdout == """
            {
              "changed" : [
                "due_on",
                "text"
              ],
              "id" : "\(id)",
              "kind" : "reminder"
            }

            """)

        let history = try run(["history", "reminder", id, "--field", "text", "--json"]).stdout
        func entry(_ counter: Int, _ value: String) -> String {
            """
              {
                "author" : "alex",
                "change" : "\(replica):\(counter)",
                "field" : "text",
                "happened_at" : "<happened_at>",
                "hlc" : "<hlc>",
                "operation" : "set",
                "recorded_at" : "<recorded_at>",
                "replica" : "\(replica)",
                "signed_by" : "alex on replica \(replica.prefix(8))",
                "value" : "\(value)"
              }
            """
        }
        #expect(Self.normalised(history) == "[\n" + entry(1, "hello") + ",\n" + entry(2, "z") + "\n]\n")
        let creation = try run(["history", "reminder", id, "--json"]).stdout
        #expect(Self.normalised(creation).hasPrefix("""
            [
              {
                "author" : "alex",
                "change" : "\(replica):1",
                "field" : null,
                "happened_at" : "<happened_at>",
                "hlc" : "<hlc>",
                "operation" : "create",
                "recorded_at" : "<recorded_at>",
                "replica" : "\(replica)",
                "signed_by" : "alex on replica \(replica.prefix(8))",
                "value" : null
              },
            """), "the record's own entry has null field and value")

        #expect(try run(["status", "--json"]).stdout == """
            {
              "database_private" : true,
              "identity_file" : "\(directory)/a.db.identity",
              "identity_present" : true,
              "identity_private" : true,
              "kept_unknown_changes" : 0,
              "local_changes" : 2,
              "name" : "A",
              "open_conflicts" : 0,
              "peers" : [

              ],
              "records" : {
                "action" : 0,
                "allocation" : 0,
                "approval" : 0,
                "award" : 0,
                "case_note" : 0,
                "entitlement_item" : 10,
                "flag" : 0,
                "goal" : 0,
                "ledger_entry" : 0,
                "plan" : 0,
                "record_view" : 0,
                "reminder" : 1,
                "review" : 0,
                "visit" : 0,
                "young_person" : 0
              },
              "replica_id" : "\(replica)",
              "schema_version" : 4,
              "total_changes" : 121,
              "warnings" : [

              ]
            }

            """)

        let enrolled = try run(["hub", "enroll", "--db", "\(directory)/hub.db", "--team", "T", "--replica", replica, "--json"]).stdout
        #expect(Self.normalised(enrolled) == """
            {
              "expires_at" : "<expires_at>",
              "replica" : "\(replica)",
              "team" : "T",
              "token" : "<token>"
            }

            """)
    }
}
