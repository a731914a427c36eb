import Foundation
import Logging
import ProcessHarness
import SyncClient
import SyncCore
import SyncEngine
import SyncStore
import SyncTesting
import Testing

/// Process test: the real `caresync hub serve` binary is killed with SIGKILL while a replica
/// pushes. Every change the hub acknowledged before dying must be in its database afterwards
/// (an acknowledgement is sent only after the commit returned, with synchronous=FULL), and the
/// next sync, against a restarted hub, completes from where the acknowledgements stopped.
extension Integration {
    @Suite("Crash: kill -9 the hub mid-push")
    struct CrashTests {
        static let binary = CaresyncBinary.url.path
        typealias HubProcess = ProcessHarness.HubProcess

        static func run(_ arguments: [String]) throws -> String {
            let process = Process()
            let pipe = Pipe()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test("no acknowledged change is lost when the hub is killed mid-push", arguments: [40, 120, 300])
        func killDuringPush(afterMillis delay: Int) async throws {
            let directory = NSTemporaryDirectory() + "caresync-crash-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let hubPath = "\(directory)/hub.db"
            var hub = try HubProcess(database: hubPath)
            #expect(hub.port > 0, "the hub process started")
            let token = try Self.run(["hub", "enroll", "--db", hubPath, "--team", "CRASH"])
            var random = SystemRandomNumberGenerator()
            let replica = try ReplicaStore.create(at: "\(directory)/r.db", schema: SimulationSchema.schema,
                                                  replicaID: .random(using: &random), name: "r", wallClock: SystemWallClock())
            // Enrol with an empty replica first, then make a large backlog.
            _ = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: hub.port, enrolmentToken: token,
                                          retry: RetryPolicy(attempts: 1), logger: Logger(label: "crash"))
            try replica.write(author: "w") { tx in
                for index in 0..<6_000 { try tx.create("note", id: "n\(index)", values: ["text": .text("text \(index)")]) }
            }
            var configuration = ClientConfiguration()
            configuration.pushBatchChanges = 100
            let port = hub.port
            let pushing = Task {
                try await SyncClient.sync(store: replica, host: "127.0.0.1", port: port, enrolmentToken: nil, configuration: configuration,
                                          retry: RetryPolicy(attempts: 1), logger: Logger(label: "crash"))
            }
            try await Task.sleep(nanoseconds: UInt64(delay) * 1_000_000)
            hub.kill9()
            _ = try? await pushing.value

            // What the replica recorded as acknowledged must all be in the hub's file.
            let hubID = try #require(try replica.hubLink()?.hubID)
            let acknowledged = try replica.peerKnowledge(hubID)[replica.replicaID]
            var seededRandom = SeededGenerator(seed: 1)
            let store = try SQLiteHubStore(path: hubPath, wallClock: SystemWallClock(), random: &seededRandom)
            var held: Set<UInt64> = []
            var cursor: UInt64 = 0
            while true {
                let page = try store.changes(after: cursor, excludingOrigin: ReplicaID(high: 0, low: 0), byteBudget: 1 << 24, maxCount: 50_000)
                for change in try page.decodeChanges() where change.id.replica == replica.replicaID { held.insert(change.id.counter) }
                cursor = page.nextCursor
                if !page.more { break }
            }
            let missing = acknowledged > 0 ? (1...acknowledged).filter { !held.contains($0) } : []
            #expect(missing.isEmpty, "acknowledged up to \(acknowledged), missing \(missing.prefix(5)) after kill -9 at \(delay) ms")
            print("CrashTests: killed at \(delay) ms; \(acknowledged) of 12,000 changes acknowledged, \(held.count) in the hub file")

            // A restarted hub on the same file takes the rest; the next sync resumes, not restarts.
            hub = try HubProcess(database: hubPath)
            let report = try await SyncClient.sync(store: replica, host: "127.0.0.1", port: hub.port, enrolmentToken: nil,
                                                   retry: RetryPolicy(attempts: 2), logger: Logger(label: "crash"))
            #expect(report.summary.pushed <= 12_000 - Int(acknowledged) + 200, "resumed from the acknowledged counter")
            #expect(try replica.health(hub: hubID).pendingChanges == 0)
            hub.kill9()
        }
    }
}
