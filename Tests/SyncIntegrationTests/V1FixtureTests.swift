import CareRecords
import Foundation
import SyncCore
import SyncEngine
import SyncStore
import Testing

/// A replica file made by the CLI as it was before row edits (Tests/Fixtures/v1, README there)
/// opened by today's code: the migration runs and nothing the v1 file held is lost.
@Suite("A v1 replica file migrates to row edits with nothing lost")
struct V1FixtureTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/v1")


    let directory = NSTemporaryDirectory() + "caresync-v1-" + UUID().uuidString

    /// A copy of the fixture: the committed file is never opened for writing.
    func copy(_ name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/\(name)"
        try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent(name).path, toPath: path)
        return path
    }

    static func expected(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected/\(name)")))
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: Integration.CrashTests.binary)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func json(_ arguments: [String]) throws -> Any {
        let (status, output) = try run(arguments)
        guard status == 0 else { throw StoreError(.corrupt, "caresync \(arguments.first ?? "") exited \(status)") }
        return try JSONSerialization.jsonObject(with: Data(output.utf8))
    }

    /// Whether `new` holds everything `old` held: every key of an object with a matching value
    /// (new keys are allowed), and arrays of the same length matched element by element in any
    /// order (entries with equal timestamps may be listed in another order).
    static func holds(_ new: Any, everythingIn old: Any) -> Bool {
        switch (old, new) {
        case let (old as [String: Any], new as [String: Any]):
            return old.allSatisfy { key, value in new[key].map { holds($0, everythingIn: value) } ?? false }
        case let (old as [Any], new as [Any]):
            guard old.count == new.count else { return false }
            var unmatched = new
            for element in old {
                guard let index = unmatched.firstIndex(where: { holds($0, everythingIn: element) }) else { return false }
                unmatched.remove(at: index)
            }
            return true
        case let (old as NSNumber, new as NSNumber): return old == new
        case let (old as String, new as String): return old == new
        case (is NSNull, is NSNull): return true
        default: return false
        }
    }

    /// The v1 change log as the v1 file holds it, read with the sqlite3 CLI before anything opens
    /// the file, each change made into the row edit `ChangeV1.rowEdit` makes of it.
    static func v1Changes(_ path: String) throws -> [Change] {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sqlite3", "-json", "-readonly", path, """
            SELECT o.replica_id AS replica, c.counter, c.hlc, t.name AS tbl, r.key, ifnull(n.name, '') AS col, c.causal_length AS life,
              a.name AS author, c.op, typeof(c.value) AS type, CASE typeof(c.value) WHEN 'blob' THEN hex(c.value) ELSE c.value END AS value,
              ifnull(hex(c.supersedes), '') AS supersedes
            FROM sync_change c JOIN sync_origin o ON o.id = c.origin JOIN sync_row r ON r.id = c.row
            JOIN sync_name t ON t.id = r.table_name LEFT JOIN sync_name n ON n.id = c.column_name JOIN sync_name a ON a.id = c.author
            ORDER BY o.replica_id, c.counter
            """]
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let rows = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        func bytes(_ hex: String) -> [UInt8] {
            var result: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex {
                let next = hex.index(index, offsetBy: 2)
                result.append(UInt8(hex[index..<next], radix: 16)!)
                index = next
            }
            return result
        }
        return try rows.map { row in
            let value: FieldValue = switch row["type"] as? String {
            case "text": .text(row["value"] as! String)
            case "integer": .integer((row["value"] as! NSNumber).int64Value)
            case "real": .real((row["value"] as! NSNumber).doubleValue)
            case "blob": .blob(bytes(row["value"] as! String))
            default: .null
            }
            let operation: FieldOperation = switch (row["op"] as! NSNumber).intValue {
            case 1: .assign(value)
            case 2: .add(value)
            case 3: .remove(value)
            default: .increment(value.integerValue ?? 0)
            }
            var supersedes: [ChangeID] = []
            if let hex = row["supersedes"] as? String, !hex.isEmpty {
                var reader = ByteReader(bytes(hex))
                for _ in 0..<(try reader.count(minimumItemSize: 17)) { supersedes.append(try ChangeID.decode(from: &reader)) }
            }
            let id = ChangeID(replica: ReplicaID(hex: row["replica"] as! String)!, counter: (row["counter"] as! NSNumber).uint64Value)
            let write = FieldWrite(id: id, timestamp: HybridTimestamp(rawValue: (row["hlc"] as! NSNumber).uint64Value),
                                   causalLength: (row["life"] as! NSNumber).uint64Value, author: row["author"] as! String,
                                   operation: operation, supersedes: supersedes)
            return ChangeV1.rowEdit(table: row["tbl"] as! String, row: row["key"] as! String, column: row["col"] as! String, write: write)
        }
    }

    @Test("every record, field value, open conflict, history entry and kept change of a v1 replica is there after the migration")
    func replicaMigrates() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = try copy("replica-v1.db")
        let v1 = try Self.v1Changes(path)
        #expect(v1.count == 167, "the fixture's log, as `status` showed it")
        // A read-only command refuses a file that needs the upgrade, and changes nothing.
        let refused = try Self.run(["status", "--json", "--replica", path])
        #expect(refused.status != 0)
        let replica = try CareReplica.open(at: path, wallClock: SystemWallClock(), random: .system)
        let migrated = Dictionary(uniqueKeysWithValues: try replica.store.changes(notIn: VersionVector()).map { ($0.id, $0) })
        #expect(migrated.count == v1.count, "one row edit per v1 change, none dropped or added")
        var differing: [ChangeID] = []
        for change in v1 where !(migrated[change.id]?.isSameVersion(as: change) ?? false) { differing.append(change.id) }
        #expect(differing.isEmpty, "v1 changes not held as their one-field row edit: \(differing.prefix(5))")
        #expect(try replica.store.status().parkedChanges == 1)

        let ids = try #require(try Self.expected("../ids.json") as? [String: String])
        let (person, plan, reminder, deleted) = (ids["young_person"]!, ids["plan"]!, ids["reminder"]!, ids["reminder_deleted"]!)
        let checks: [(file: String, arguments: [String])] = [
            ("status.json", ["status"]),
            ("conflicts.json", ["conflicts"]),
            ("show-young_person.json", ["show", "young_person", person]),
            ("show-plan.json", ["show", "plan", plan]),
            ("show-reminder.json", ["show", "reminder", reminder]),
            ("list-reminder.json", ["list", "reminder"]),
            ("list-approval.json", ["list", "approval"]),
            ("history-young_person.json", ["history", "young_person", person]),
            ("history-plan.json", ["history", "plan", plan]),
            ("history-reminder.json", ["history", "reminder", reminder]),
            ("history-reminder-deleted.json", ["history", "reminder", deleted]),
        ]
        for (file, arguments) in checks {
            var old = try Self.expected(file)
            // Derived values (an age) depend on the day the command runs, not on the file.
            // The schema version is the one the file migrated to, not v1's.
            if var object = old as? [String: Any] {
                object.removeValue(forKey: "derived")
                object.removeValue(forKey: "schema_version")
                old = object
            }
            let new = try Self.json(arguments + ["--json", "--replica", path])
            #expect(Self.holds(new, everythingIn: old), "\(file): today's `caresync \(arguments.joined(separator: " "))` lost something the v1 file showed")
        }
    }

    @Test("a v1 hub file migrates: it holds every change it held, as the same row edits a v1 replica migrates to, and its operator view keeps every replica")
    func hubMigrates() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let hubPath = try copy("hub-v1.db")
        let replicaPath = try copy("replica-v1.db")
        var random = SystemRandomNumberGenerator()
        let hub = try SQLiteHubStore(path: hubPath, wallClock: SystemWallClock(), random: &random)
        let page = try hub.changes(after: 0, excludingOrigin: ReplicaID(high: 0, low: 1), byteBudget: .max, maxCount: 100_000)
        let held = try page.decodeChanges()
        #expect(!page.more)
        #expect(held.count == 167, "the v1 hub held 167 changes (`hub replicas` showed them stored)")
        #expect(try hub.head() == UInt64(held.count), "sequences kept, so every replica's pull cursor still means the same")
        // The hub stores SHA-256 hashes of device secrets, made by the hand-written SHA-256 the v1
        // code had: the replica's secret must still hash to what the hub holds, or no enrolled
        // replica could sync after the change to swift-crypto.
        let replica = try CareReplica.open(at: replicaPath, wallClock: SystemWallClock(), random: .system)
        let link = try #require(try replica.store.hubLink())
        let secret = try #require(link.credential)
        // Its first protocol-3 hello registers the device key the upgrade gave it.
        let key = try #require(replica.store.signingKey).publicKey
        #expect(try hub.authenticate(replica: replica.store.replicaID, secret: secret, deviceKey: key, nowMillis: 1) == .accepted(team: "north"))
        #expect(try hub.authenticate(replica: replica.store.replicaID, secret: secret.reversed(), deviceKey: key, nowMillis: 1) == .unknown)
        try hub.close()
        // Replica a synced last, so it holds everything the hub does: both migrated every v1 change
        // to the same bytes, or a hub relaying them would look like an equivocation to the replica.
        let local = Dictionary(uniqueKeysWithValues: try replica.store.changes(notIn: VersionVector()).map { ($0.id, $0) })
        var differing: [ChangeID] = []
        for change in held where !(local[change.id]?.isSameVersion(as: change) ?? false) { differing.append(change.id) }
        #expect(differing.isEmpty, "hub and replica migrated these v1 changes differently: \(differing.prefix(5))")

        let old = try #require(try Self.expected("hub-replicas.json") as? [[String: Any]])
        let new = try #require(try Self.json(["hub", "replicas", "--json", "--db", hubPath]) as? [[String: Any]])
        // Times of the last session and lag move on with the clock; identities, teams and counts must not.
        let kept = ["replica_id", "team", "changes_stored", "revoked", "forked_from", "equivocations", "open_conflicts", "schema_version"]
        func view(_ rows: [[String: Any]]) -> [Any] { rows.map { $0.filter { kept.contains($0.key) } } }
        #expect(Self.holds(view(new), everythingIn: view(old)), "`hub replicas` lost something the v1 hub showed")
    }
}
