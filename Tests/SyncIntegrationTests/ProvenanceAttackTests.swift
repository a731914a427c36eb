import CareRecords
import Foundation
import NIOCore
import SyncCore
import SyncEngine
import SyncIdentity
import SyncStore
import SyncTesting
import SyncWire
import Testing

/// Attacks on provenance (issue 9, Protocol/identity.md "Verifying a run of changes"), each against
/// the real stores that defend against it: the hub's store (what every push reaches) and a
/// replica's (what every relayed batch and bundle reaches). Each test names what it attacks, shows
/// the honest version of the same bytes accepted (so the refusal is the defence's, not an accident
/// of the setup), and checks that nothing of a refused message was stored.
extension Integration {
    @Suite("Provenance attacks: forged, replayed, truncated, reordered and equivocated logs")
    struct ProvenanceAttackTests {
        static let now: UInt64 = 1_750_000_000_000

        /// A hub store with three enrolled devices (honest `a`, `b`, and `mallory`), keyed as
        /// `TestSigner` keys them, and the catalogue's publisher signed by the hub key alone.
        final class World {
            let directory = NSTemporaryDirectory() + "caresync-provenance-" + UUID().uuidString
            let hub: SQLiteHubStore
            var random = SeededGenerator(seed: 9)
            let a = ReplicaID(high: 0xA, low: 1)
            let b = ReplicaID(high: 0xB, low: 2)
            let mallory = ReplicaID(high: 0x4D, low: 3)

            init() throws {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                hub = try SQLiteHubStore(path: "\(directory)/hub.db", wallClock: SimulatedClock(ProvenanceAttackTests.now), random: &random,
                                         hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
                for replica in [a, b, mallory] { try enrol(replica) }
            }

            func enrol(_ replica: ReplicaID) throws {
                let token = try hub.issueEnrolmentToken(team: "T", expiresAtMillis: ProvenanceAttackTests.now + 60_000, random: &random)
                guard case .enrolled = try hub.redeemEnrolmentToken(token, replica: replica, deviceKey: TestSigner.publicKey(replica),
                                                                     nowMillis: ProvenanceAttackTests.now, random: &random) else {
                    throw StoreError(.unknownDevice, "enrolment of \(replica.short) refused")
                }
            }

            /// A replica that pinned this hub's key and holds the certificates of `a`, `b` and `mallory`.
            func replica(_ name: String) throws -> ReplicaStore {
                let store = try ReplicaStore.create(at: "\(directory)/\(name).db", schema: SimulationSchema.schema, replicaID: .random(using: &random),
                                                    name: name, wallClock: SimulatedClock(ProvenanceAttackTests.now),
                                                    hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
                try store.pinHubKey(hub.hubKey)
                for origin in [a, b, mallory] {
                    if let certificate = try hub.certificate(for: origin) { try store.saveCertificate(certificate) }
                }
                return store
            }

            /// Pushes `changes` from `replica` with `heads`; the store's error code name when refused.
            func push(_ changes: [Change], heads: [SignedHead], from replica: ReplicaID) -> Result<HubAppendResult, StoreError> {
                do {
                    return .success(try hub.append(changes, from: replica, provenance: Provenance(sorting: heads, certificates: []),
                                                   receivedAtMillis: ProvenanceAttackTests.now))
                } catch let error as StoreError {
                    return .failure(error)
                } catch {
                    return .failure(StoreError(.database, "unexpected \(type(of: error))"))
                }
            }

            func held(_ origin: ReplicaID) throws -> [Change] {
                try hub.changes(ofOrigin: origin, after: 0, byteBudget: 1 << 20, maxCount: 10_000).decodeChanges()
            }

            deinit { try? FileManager.default.removeItem(atPath: directory) }
        }

        static func note(_ origin: ReplicaID, _ counter: UInt64, _ text: String, author: String = "amara.okafor") -> Change {
            Change(id: ChangeID(replica: origin, counter: counter), timestamp: HybridTimestamp(physicalMillis: now - 1_000 + counter, logical: 0),
                   author: author, table: "note", row: "n\(origin.short)-\(counter)", causalLength: 1, setsLife: true,
                   fields: [FieldEdit(column: "text", operation: .assign(.text(text)))])
        }

        static func notes(_ origin: ReplicaID, _ counters: ClosedRange<UInt64>) -> [Change] {
            counters.map { note(origin, $0, "line \($0)") }
        }

        /// `change` with another author (a field inside the signed canonical bytes).
        static func authored(_ change: Change, by author: String) -> Change {
            Change(id: change.id, timestamp: change.timestamp, author: author, table: change.table, row: change.row, scope: change.scope,
                   causalLength: change.causalLength, setsLife: change.setsLife, fields: change.fields)
        }

        /// `change`'s content under another id.
        static func renumbered(_ change: Change, to counter: UInt64) -> Change {
            Change(id: ChangeID(replica: change.id.replica, counter: counter), timestamp: change.timestamp, author: change.author,
                   table: change.table, row: change.row, scope: change.scope, causalLength: change.causalLength, setsLife: change.setsLife,
                   fields: change.fields)
        }

        static func code(_ result: Result<HubAppendResult, StoreError>) -> String {
            switch result {
            case .success: "stored"
            case let .failure(error): error.code.name
            }
        }

        /// What `replica` says to `changes` relayed with `heads`: "applied", or the refusal's code name.
        static func apply(_ changes: [Change], heads: [SignedHead], to replica: ReplicaStore) -> String {
            replicaCode { _ = try replica.apply(changes, provenance: Provenance(sorting: heads, certificates: [])) }
        }

        static func replicaCode(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "applied"
            } catch let error as IdentityError {
                return error.code.name
            } catch let error as StoreError {
                return error.code.name
            } catch {
                return "\(type(of: error))"
            }
        }

        @Test("forged origin: changes pushed under another device's origin, signed with the pusher's key, are SIGNATURE_INVALID at the hub and at a replica; an origin with no key is UNKNOWN_DEVICE")
        func forgedOrigin() throws {
            let world = try World()
            let forged = Self.notes(world.a, 1...2)
            var mallorySigner = TestSigner()
            let malloryHeads = mallorySigner.heads(forged, key: TestSigner.key(world.mallory))
            #expect(Self.code(world.push(forged, heads: malloryHeads, from: world.mallory)) == "SIGNATURE_INVALID")
            #expect(try world.held(world.a).isEmpty, "nothing of the forged push is stored")
            // An origin the hub has no key for.
            let stranger = ReplicaID(high: 0x5, low: 5)
            var strangerSigner = TestSigner()
            let strangers = Self.notes(stranger, 1...1)
            #expect(Self.code(world.push(strangers, heads: strangerSigner.heads(strangers), from: world.mallory)) == "UNKNOWN_DEVICE")
            // The honest device's own push of the same bytes is stored: the refusal is the signature's.
            var honest = TestSigner()
            #expect(Self.code(world.push(forged, heads: honest.heads(forged), from: world.a)) == "stored")

            // A replica given the forged run (a relayed batch, a bundle) refuses it the same way.
            let replica = try world.replica("r")
            #expect(Self.apply(forged, heads: malloryHeads, to: replica) == "SIGNATURE_INVALID")
            #expect(try replica.changes(notIn: VersionVector()).isEmpty)
        }

        @Test("forged author: an honest device's signed change with its author altered is SIGNATURE_INVALID, relayed or not; unaltered, the relay is stored")
        func forgedAuthor() throws {
            let world = try World()
            let original = Self.notes(world.a, 1...3)
            var signer = TestSigner()
            let heads = signer.heads(original)
            var altered = original
            altered[1] = Self.authored(original[1], by: "mallory.worker")
            #expect(Self.code(world.push(altered, heads: heads, from: world.mallory)) == "SIGNATURE_INVALID")
            #expect(Self.code(world.push(altered, heads: heads, from: world.a)) == "SIGNATURE_INVALID")
            #expect(try world.held(world.a).isEmpty)
            let replica = try world.replica("r")
            #expect(Self.apply(altered, heads: heads, to: replica) == "SIGNATURE_INVALID")
            // The same run unaltered, carried by another device, is a valid relay.
            #expect(Self.code(world.push(original, heads: heads, from: world.mallory)) == "stored")
            #expect(try world.held(world.a).map(\.author) == ["amara.okafor", "amara.okafor", "amara.okafor"])
            #expect(Self.apply(original, heads: heads, to: replica) == "applied")
        }

        @Test("forged catalogue: a device publishing a change under the catalogue's publisher id is refused by the hub and by replicas, whoever it claims signed it; the hub's own publication is accepted")
        func forgedCatalogue() throws {
            let world = try World()
            let publisher = EntitlementCatalogue.publisher
            let version = [Self.note(publisher, 1, "catalogue v2: every award allowed at any age", author: "hub")]
            var signer = TestSigner()
            let deviceSigned = signer.heads(version, key: TestSigner.key(world.mallory))
            #expect(Self.code(world.push(version, heads: deviceSigned, from: world.mallory)) == "SIGNATURE_INVALID")
            // A head claiming the hub as signer, signed with the device's key.
            let claimed = deviceSigned.map { TestSigner.key(world.mallory).head(origin: $0.origin, counter: $0.counter, chain: $0.chain, signer: .hubAttestation) }
            #expect(Self.code(world.push(version, heads: claimed, from: world.mallory)) == "SIGNATURE_INVALID")
            #expect(try world.held(publisher).isEmpty)

            let replica = try world.replica("r")
            for heads in [deviceSigned, claimed] {
                #expect(Self.apply(version, heads: heads, to: replica) == "SIGNATURE_INVALID")
            }
            // The hub's publication of the same bytes verifies everywhere.
            _ = try world.hub.publish(version, receivedAtMillis: Self.now)
            let page = try world.hub.changes(ofOrigin: publisher, after: 0, byteBudget: 1 << 20, maxCount: 100)
            #expect(page.provenance.heads.allSatisfy { $0.verifies(with: world.hub.hubKey) })
            #expect(Self.replicaCode { _ = try replica.apply(try page.decodeChanges(), provenance: page.provenance) } == "applied")
        }

        @Test("replayed old batch: pushed again after later batches, it stores nothing and changes nothing, at the hub and at a replica")
        func replayedBatch() throws {
            let world = try World()
            var signer = TestSigner()
            let first = Self.notes(world.a, 1...3)
            let firstHeads = signer.heads(first)
            let second = Self.notes(world.a, 4...5)
            let secondHeads = signer.heads(second)
            #expect(Self.code(world.push(first, heads: firstHeads, from: world.a)) == "stored")
            #expect(Self.code(world.push(second, heads: secondHeads, from: world.a)) == "stored")
            let head = try world.hub.head()
            let replay = world.push(first, heads: firstHeads, from: world.mallory)
            #expect(try replay.get().stored == 0 && replay.get().duplicates == 3 && replay.get().equivocations.isEmpty)
            #expect(try world.hub.head() == head && world.held(world.a).count == 5)

            let replica = try world.replica("r")
            _ = try replica.apply(first + second, provenance: Provenance(sorting: firstHeads + secondHeads, certificates: []))
            let before = try ReplicaSnapshot.capture(replica)
            let again = try replica.apply(first, provenance: Provenance(sorting: firstHeads, certificates: []))
            #expect(again.applied == 0)
            #expect(try ReplicaSnapshot.capture(replica) == before)
        }

        @Test("truncated chain: a run cut before its signed head is UNSIGNED_CHANGES, one with a change taken out of its middle does not verify, one starting above the held log is CHAIN_GAP; nothing stored")
        func truncatedChain() throws {
            let world = try World()
            var signer = TestSigner()
            let run = Self.notes(world.a, 1...4)
            let heads = signer.heads(run)
            #expect(Self.code(world.push(Array(run.prefix(3)), heads: heads, from: world.mallory)) == "UNSIGNED_CHANGES")
            let holed = [run[0], run[1], run[3]]
            #expect(["SIGNATURE_INVALID", "CHAIN_GAP"].contains(Self.code(world.push(holed, heads: heads, from: world.mallory))))
            #expect(try world.held(world.a).isEmpty)
            // Above the held log: the hub holds 1…2, a run of 4 alone.
            var partial = TestSigner()
            #expect(Self.code(world.push(Array(run.prefix(2)), heads: partial.heads(Array(run.prefix(2))), from: world.a)) == "stored")
            #expect(Self.code(world.push([run[3]], heads: heads, from: world.mallory)) == "CHAIN_GAP")
            #expect(try world.held(world.a).count == 2)

            let replica = try world.replica("r")
            #expect(Self.apply(Array(run.prefix(3)), heads: heads, to: replica) == "UNSIGNED_CHANGES")
            #expect(Self.apply([run[3]], heads: heads, to: replica) == "CHAIN_GAP")
            #expect(try replica.changes(notIn: VersionVector()).isEmpty)
        }

        @Test("reordered chain: two changes' contents swapped between their counters do not verify under the signed head; nothing stored")
        func reorderedChain() throws {
            let world = try World()
            var signer = TestSigner()
            let run = Self.notes(world.a, 1...3)
            let heads = signer.heads(run)
            let reordered = [run[0], Self.renumbered(run[2], to: 2), Self.renumbered(run[1], to: 3)]
            #expect(Self.code(world.push(reordered, heads: heads, from: world.mallory)) == "SIGNATURE_INVALID")
            #expect(try world.held(world.a).isEmpty)
            let replica = try world.replica("r")
            #expect(Self.apply(reordered, heads: heads, to: replica) == "SIGNATURE_INVALID")
            #expect(try replica.changes(notIn: VersionVector()).isEmpty)
        }

        @Test("equivocation: a device signing two different changes under one (origin, counter) gets the second refused; the hub keeps both signed heads as evidence; an honest replica never applies both")
        func equivocation() throws {
            let world = try World()
            let first = [Self.note(world.a, 1, "version one")]
            let second = [Self.note(world.a, 1, "version two")]
            var signerOne = TestSigner()
            var signerTwo = TestSigner()
            let firstHeads = signerOne.heads(first)
            let secondHeads = signerTwo.heads(second)
            #expect(Self.code(world.push(first, heads: firstHeads, from: world.a)) == "stored")
            let refused = try world.push(second, heads: secondHeads, from: world.a).get()
            #expect(refused.stored == 0 && refused.equivocations == [ChangeID(replica: world.a, counter: 1)])
            #expect(try world.held(world.a) == first, "the hub keeps the version it held")
            let evidence = try #require(try world.hub.equivocations().first)
            #expect(evidence.change == ChangeID(replica: world.a, counter: 1) && evidence.heldDigest != evidence.refusedDigest)
            let heldHead = try #require(evidence.heldHead)
            let refusedHead = try #require(evidence.refusedHead)
            // Both heads are the device's own signatures over the two chains: proof it said both.
            #expect(heldHead.chain != refusedHead.chain && heldHead.counter == 1 && refusedHead.counter == 1)
            #expect(heldHead.verifies(with: TestSigner.publicKey(world.a)) && refusedHead.verifies(with: TestSigner.publicKey(world.a)))

            let replica = try world.replica("r")
            _ = try replica.apply(first, provenance: Provenance(sorting: firstHeads, certificates: []))
            #expect(Self.apply(second, heads: secondHeads, to: replica) == "EQUIVOCATION")
            #expect(try replica.changes(notIn: VersionVector()).map(\.canonicalBytes) == first.map(\.canonicalBytes))
        }
    }
}

/// A raw-protocol attacker against the real hub on loopback: the refusal reaches the wire as the
/// specific fatal code, and the hub goes on serving honest relays.
extension Integration.LoopbackTests {
    @Test("forged origin over TCP: an enrolled raw-protocol peer pushing another device's origin under its own key gets a fatal SIGNATURE_INVALID; nothing stored; the honest heads relayed by it are acknowledged")
    func forgedOriginOverTCP() async throws {
        let harness = try await Harness()
        defer { harness.stop() }
        var random = SeededGenerator(seed: 11)
        let honest = ReplicaID.random(using: &random)
        let mallory = ReplicaID.random(using: &random)
        guard case .enrolled = try harness.store.redeemEnrolmentToken(try harness.token(), replica: honest, deviceKey: TestSigner.publicKey(honest),
                                                                       nowMillis: SystemWallClock().nowMillis(), random: &random) else {
            throw SyncFailure(.enrolmentInvalid, "the honest device was not enrolled")
        }
        let changes = [Self.note(honest, 1, "written by the honest device")]
        func attempt(_ replica: ReplicaID, heads: [SignedHead]) async throws -> [Message] {
            let hello = Self.frame(.hello(Hello(protocolMin: ProtocolConstants.version, protocolMax: ProtocolConstants.version, schemaVersion: 1,
                                                replica: replica, appVersion: "attacker", credential: .enrolmentToken(try harness.token()),
                                                maxFrameBody: UInt64(Frame.defaultMaxBody), deviceKey: TestSigner.publicKey(replica))))
            return try await RawPeer.exchange(port: harness.port, [hello, Self.frame(.push(batch: 1, changes: changes, provenance: Provenance(sorting: heads))),
                                                                   Self.frame(.goodbye(reason: 0))], readUpTo: 2)
        }
        var forger = TestSigner()
        let forged = try await attempt(mallory, heads: forger.heads(changes, key: TestSigner.key(mallory)))
        Self.fatal(forged, .signatureInvalid, "a push of another device's origin signed with the pusher's key")
        #expect(try harness.store.ownDurable(honest) == 0, "nothing of the forged push is stored")
        var signer = TestSigner()
        let relayed = try await attempt(ReplicaID.random(using: &random), heads: signer.heads(changes))
        #expect(relayed.contains { if case .pushAck = $0 { true } else { false } }, "the honest device's signed change, relayed: \(relayed)")
        #expect(try harness.store.ownDurable(honest) == 1)
    }
}

/// The same attacks through the real binaries (`caresync hub serve`, `sync`, `export`, `import`):
/// what a user with a copied file, a backup or a hex editor can do.
extension Integration {
    @Suite("Process: provenance attacks with the real binaries")
    struct ProvenanceProcessTests {
        typealias CLI = RestoreProcessTests

        static func scratch() throws -> String {
            let directory = NSTemporaryDirectory() + "caresync-provenance-process-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return directory
        }

        /// `caresync init` and an enrolling sync for each name.
        static func enrol(_ names: [String], hub address: String, in directory: String) throws {
            for name in names {
                #expect(try CLI.caresync(["init", "\(name).db", "--name", name], in: directory).status == 0)
                let token = try CLI.caresync(["hub", "enroll", "--db", "hub.db", "--team", "T"], in: directory).output
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let enrolled = try CLI.caresync(["sync", "--replica", "\(name).db", "--hub", address, "--token", token, "--quiet"], in: directory)
                #expect(enrolled.status == 0, "\(enrolled.output)")
            }
        }

        static func addPerson(_ given: String, on replica: String, in directory: String) throws -> String {
            let add = try CLI.caresync(["add", "--replica", replica, "young_person", "legal_given_name=\(given)", "legal_family_name=Okafor",
                                        "date_of_birth=2008-01-01"], in: directory)
            #expect(add.status == 0, "\(add.output)")
            return add.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        static func givenNames(_ replica: String, in directory: String) throws -> [String] {
            try CLI.sqlite(replica, "select legal_given_name from young_person order by legal_given_name", in: directory)
                .split(separator: "\n").map(String.init)
        }

        @Test("hand-edited bundle: a record's text changed and the SHA-256 recomputed is refused by `caresync import` with a clear message and a non-zero exit; nothing applied; the unedited bundle imports")
        func handEditedBundle() throws {
            let directory = try Self.scratch()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            defer { hub.kill9() }
            try Self.enrol(["r1", "r2"], hub: "127.0.0.1:\(hub.port)", in: directory)
            _ = try Self.addPerson("Amara", on: "r1.db", in: directory)
            // r2 learns r1's certificate with r1's first changes.
            #expect(try CLI.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            #expect(try CLI.caresync(["sync", "--replica", "r2.db", "--quiet"], in: directory).status == 0)
            _ = try Self.addPerson("Original", on: "r1.db", in: directory)
            let export = try CLI.caresync(["export", "--replica", "r1.db", "a.bundle"], in: directory)
            #expect(export.status == 0, "\(export.output)")

            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(directory)/a.bundle")))
            let marker = Array("Original".utf8)
            let at = try #require((0...(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker },
                                  "the record's text is in the bundle")
            bytes.replaceSubrange(at..<(at + marker.count), with: Array("Forgedxx".utf8))
            // The checksum recomputed, as anyone can: the bundle's last 32 bytes are SHA-256 of the rest.
            bytes.replaceSubrange((bytes.count - 32)..., with: OriginChain.digest(of: Array(bytes.dropLast(32))))
            try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/edited.bundle"))

            let refused = try CLI.caresync(["import", "--replica", "r2.db", "edited.bundle"], in: directory)
            #expect(refused.status != 0, "\(refused.output)")
            let said = refused.output.lowercased()
            #expect(said.contains("signature") || said.contains("does not verify"), "says why: \(refused.output)")
            #expect(refused.output.split(separator: "\n").count <= 3, "one clear message: \(refused.output)")
            #expect(!refused.output.contains("Forgedxx") && !refused.output.contains("Original"), "no record contents in the message")
            #expect(try Self.givenNames("r2.db", in: directory) == ["Amara"], "nothing of the edited bundle applied")

            let imported = try CLI.caresync(["import", "--replica", "r2.db", "a.bundle"], in: directory)
            #expect(imported.status == 0, "\(imported.output)")
            #expect(try Self.givenNames("r2.db", in: directory) == ["Amara", "Original"])
        }

        @Test("cloned file syncing from two processes at once: a .db and its identity file copied, both copies write and sync concurrently; every write survives on both under an identity")
        func clonedFileTwoProcesses() throws {
            let directory = try Self.scratch()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            defer { hub.kill9() }
            try Self.enrol(["a"], hub: "127.0.0.1:\(hub.port)", in: directory)
            #expect(try CLI.sqlite("a.db", ".backup copy.db", in: directory).isEmpty)
            try FileManager.default.copyItem(atPath: "\(directory)/a.db.identity", toPath: "\(directory)/copy.db.identity")
            var names: [String] = []
            for round in 0..<2 {
                for file in ["a.db", "copy.db"] {
                    let name = "P\(round)\(file.prefix(1))"
                    _ = try Self.addPerson(name, on: file, in: directory)
                    names.append(name)
                }
                // Two `caresync sync` processes on the two copies at the same time.
                let runs = try ["a.db", "copy.db"].map { file in
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: CrashTests.binary)
                    process.arguments = ["sync", "--replica", file, "--quiet"]
                    process.currentDirectoryURL = URL(fileURLWithPath: directory)
                    process.standardOutput = FileHandle.nullDevice
                    process.standardError = FileHandle.nullDevice
                    try process.run()
                    return process
                }
                for process in runs { process.waitUntilExit() }
            }
            for _ in 0..<2 {
                for file in ["a.db", "copy.db"] {
                    let sync = try CLI.caresync(["sync", "--replica", file, "--quiet"], in: directory)
                    #expect(sync.status == 0, "\(file): \(sync.output)")
                }
            }
            for file in ["a.db", "copy.db"] {
                #expect(try Self.givenNames(file, in: directory) == names.sorted(), "\(file) holds every write of both copies")
            }
            #expect(try CLI.sqlite("a.db", "select replica_id from sync_state", in: directory)
                        != CLI.sqlite("copy.db", "select replica_id from sync_state", in: directory), "the copies write under two identities")
        }

        @Test("restored backup of the hub: its incarnation changes, replicas push again, nothing acknowledged is lost")
        func restoredHub() throws {
            let directory = try Self.scratch()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            try Self.enrol(["r1", "r2"], hub: "127.0.0.1:\(hub.port)", in: directory)
            _ = try Self.addPerson("Before", on: "r1.db", in: directory)
            #expect(try CLI.caresync(["sync", "--replica", "r1.db", "--quiet"], in: directory).status == 0)
            func stop(_ hub: CrashTests.HubProcess) {
                kill(hub.process.processIdentifier, SIGTERM)
                hub.process.waitUntilExit()
            }
            stop(hub)
            for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: "\(directory)/hub.db\(suffix)") {
                try FileManager.default.copyItem(atPath: "\(directory)/hub.db\(suffix)", toPath: "\(directory)/hub-backup.db\(suffix)")
            }
            hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            _ = try Self.addPerson("After", on: "r1.db", in: directory)
            let acknowledged = try CLI.caresync(["sync", "--replica", "r1.db", "--hub", "127.0.0.1:\(hub.port)", "--quiet"], in: directory)
            #expect(acknowledged.status == 0, "\(acknowledged.output)")
            stop(hub)
            // The operator restores the backup: the hub's log loses "After", which r1 holds as acknowledged.
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: "\(directory)/hub.db\(suffix)") }
            for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: "\(directory)/hub-backup.db\(suffix)") {
                try FileManager.default.copyItem(atPath: "\(directory)/hub-backup.db\(suffix)", toPath: "\(directory)/hub.db\(suffix)")
            }
            let incarnationBefore = try CLI.sqlite("r1.db", "select hex(incarnation) from sync_hub", in: directory)
            hub = try CrashTests.HubProcess(database: "\(directory)/hub.db")
            defer { hub.kill9() }
            let address = "127.0.0.1:\(hub.port)"
            for replica in ["r1.db", "r2.db", "r1.db", "r2.db"] {
                let sync = try CLI.caresync(["sync", "--replica", replica, "--hub", address, "--quiet"], in: directory)
                #expect(sync.status == 0, "\(replica): \(sync.output)")
            }
            #expect(try CLI.sqlite("r1.db", "select hex(incarnation) from sync_hub", in: directory) != incarnationBefore,
                    "r1 recorded the restored hub's new incarnation")
            #expect(try Self.givenNames("r2.db", in: directory) == ["After", "Before"], "the write the lost log held reached r2 through r1's push")
            try Self.enrol(["r3"], hub: address, in: directory)
            #expect(try Self.givenNames("r3.db", in: directory) == ["After", "Before"], "the restored hub holds it again")
        }
    }
}
