import Foundation
import Testing

/// Restore and copy edge cases with the real binaries: a backup taken before enrolment, two
/// restores in a row, and a copy whose twin imports its bundle before either has synced.
extension Integration.RestoreProcessTests {
    typealias Steps = Integration.RestoreProcessTests

    /// Runs `body` in a fresh directory with a hub serving `hub.db` from it, given that address.
    static func withHub(_ body: (_ directory: String, _ address: String) throws -> Void) throws {
        let directory = NSTemporaryDirectory() + "caresync-restore-edge-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hub = try Integration.CrashTests.HubProcess(database: "\(directory)/hub.db")
        defer { hub.kill9() }
        try body(directory, "127.0.0.1:\(hub.port)")
    }

    /// Enrols `replica` with a fresh token and syncs it once.
    static func enrol(_ replica: String, at address: String, in directory: String) throws {
        let token = try Steps.caresync(["hub", "enroll", "--db", "hub.db", "--team", "T"], in: directory).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let enrolled = try Steps.caresync(["sync", "--replica", replica, "--hub", address, "--token", token, "--quiet"], in: directory)
        #expect(enrolled.status == 0, "\(enrolled.output)")
    }

    @Test("a backup from before enrolment: sync says it is not enrolled (exit 5, once, no trace); restoring twice in a row loses nothing")
    func restoredBeforeEnrolment() throws {
        try Self.withHub { directory, address in
            #expect(try Steps.caresync(["init", "r1.db"], in: directory).status == 0)
            #expect(try Steps.caresync(["add", "--replica", "r1.db", "reminder", "text=first"], in: directory).status == 0)
            #expect(try Steps.sqlite("r1.db", ".backup unenrolled.db", in: directory).isEmpty)
            try Self.enrol("r1.db", at: address, in: directory)
            #expect(try Steps.sqlite("r1.db", ".backup one.db", in: directory).isEmpty)
            #expect(try Steps.caresync(["add", "--replica", "r1.db", "reminder", "text=second"], in: directory).status == 0)
            #expect(try Steps.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            #expect(try Steps.sqlite("r1.db", ".backup two.db", in: directory).isEmpty)
            #expect(try Steps.caresync(["add", "--replica", "r1.db", "reminder", "text=third"], in: directory).status == 0)
            #expect(try Steps.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)

            try Steps.restore("unenrolled.db", over: "r1.db", in: directory)
            let before = FileManager.default.contents(atPath: "\(directory)/r1.db")
            let refused = try Steps.caresync(["sync", "--replica", "r1.db", "--hub", address], in: directory)
            #expect(refused.status == 5 && refused.output.contains("not enrolled"), "\(refused.output)")
            #expect(refused.output.split(separator: "\n").count == 1, "one line: \(refused.output)")
            #expect(FileManager.default.contents(atPath: "\(directory)/r1.db") == before, "a refused sync leaves the file as it was")

            // Two restores in a row, the second from a later backup: every acknowledged write comes back.
            try Steps.restore("one.db", over: "r1.db", in: directory)
            try Steps.restore("two.db", over: "r1.db", in: directory)
            let recovered = try Steps.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory)
            #expect(recovered.status == 0, "\(recovered.output)")
            #expect(try Steps.sqlite("r1.db", "select group_concat(text, ',') from (select text from reminder order by text)", in: directory)
                == "first,second,third")
        }
    }

    @Test("a copy's bundle imported by its twin before either syncs: EQUIVOCATION, exit 3, nothing applied, no contents; after the copy forks, its bundle imports")
    func twinBundle() throws {
        try Self.withHub { directory, address in
            #expect(try Steps.caresync(["init", "r1.db"], in: directory).status == 0)
            try Self.enrol("r1.db", at: address, in: directory)
            try FileManager.default.copyItem(atPath: "\(directory)/r1.db", toPath: "\(directory)/twin.db")
            // The whole device copied: the identity file (key and secret) with the database.
            try FileManager.default.copyItem(atPath: "\(directory)/r1.db.identity", toPath: "\(directory)/twin.db.identity")
            #expect(try Steps.caresync(["add", "--replica", "r1.db", "reminder", "text=MARKER-ORIGINAL"], in: directory).status == 0)
            #expect(try Steps.caresync(["add", "--replica", "twin.db", "reminder", "text=MARKER-TWIN"], in: directory).status == 0)
            #expect(try Steps.caresync(["export", "--replica", "twin.db", "twin.bundle"], in: directory).status == 0)
            let before = try Steps.sqlite("r1.db", "select count(*) from sync_change", in: directory)
            let refused = try Steps.caresync(["import", "--replica", "r1.db", "twin.bundle"], in: directory)
            #expect(refused.status == 3 && refused.output.contains("EQUIVOCATION") && refused.output.contains("nothing applied"), "\(refused.output)")
            #expect(!refused.output.contains("MARKER"), "no record contents in the error")
            #expect(try Steps.sqlite("r1.db", "select count(*) from sync_change", in: directory) == before)
            #expect(try Steps.caresync(["add", "--replica", "r1.db", "reminder", "text=later"], in: directory).status == 0,
                    "the refused import left the replica writable")

            #expect(try Steps.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            let fork = try Steps.caresync(["sync", "--replica", "twin.db"], in: directory)
            #expect(fork.status == 0 && fork.output.contains("new identity"), "\(fork.output)")
            #expect(try Steps.caresync(["export", "--replica", "twin.db", "twin-after.bundle"], in: directory).status == 0)
            let imported = try Steps.caresync(["import", "--replica", "r1.db", "twin-after.bundle"], in: directory)
            #expect(imported.status == 0, "\(imported.output)")
            #expect(try Steps.sqlite("r1.db", "select group_concat(text, ',') from (select text from reminder order by text)", in: directory)
                == "MARKER-ORIGINAL,MARKER-TWIN,later")
        }
    }
}
