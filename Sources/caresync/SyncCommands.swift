import ArgumentParser
import CareRecords
import Crypto
import Foundation
import Logging
import ServiceLifecycle
import SyncClient
import SyncCore
import SyncEngine
import SyncHub
import SyncIdentity
import SyncStore
import SyncWire

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Sync this replica with the hub over TCP: push until acknowledged, then pull until caught up.",
        discussion: """
            Examples:
              caresync sync --hub 127.0.0.1:7700 --token cse1-…
              caresync sync
              caresync sync --hub hub.example.org:7700 --hub-ca hub-cert.pem
            The first sync enrols the replica, with a one-time token from the hub operator; later ones \
            need no options. An interrupted sync resumes from the last acknowledged batch. Transient failures are retried \
            with backoff. Prints a summary (--json for scripts); a progress line on a terminal.
            """)

    @OptionGroup var options: ReplicaOptions
    @Option(help: ArgumentHelp("Hub address host:port (default: the last one used by this replica).", valueName: "host:port"))
    var hub: String?
    @Option(help: "One-time enrolment token from the hub operator (first sync only).") var token: String?
    @Option(help: ArgumentHelp("The hub's TLS certificate (or its CA's), PEM, pinned as the only trust root: connects with TLS 1.3 and this device's client certificate. Give it at every sync with a TLS hub.", valueName: "path"))
    var hubCa: String?
    @Option(help: "Attempts before giving up on transient failures.") var attempts = 5
    @Flag(help: "No progress line, even on a terminal.") var quiet = false

    func run() async throws {
        let replica = try options.open()
        let address = try Output.run { try hub ?? replica.store.hubLink()?.address }
        guard let address else { throw ValidationError("give --hub host:port the first time") }
        let (host, port) = try HubAddress.parse(address)
        let showProgress = !quiet && !options.json && isatty(STDERR_FILENO) != 0
        let logger = Logger(label: "caresync.sync")
        let key = try DeviceKeyCheck.require(replica.store, for: "sync")
        // Rights whose lease ended go back at this contact, after every commit made under them.
        _ = try Output.run { try replica.returnRights(author: options.worker) }
        let tls = try hubCa.map { path in
            guard let roots = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Output.fail("cannot read --hub-ca \(path)", code: "TLS_UNREADABLE", exit: .badInput)
            }
            // The device's TLS client certificate is made from its device key (the identity
            // file's), so the hub can check that it is the key the hello registers.
            return try Output.run {
                try ClientTLSConfiguration.device(trustRootsPEM: roots,
                                                  deviceKey: Curve25519.Signing.PrivateKey(rawRepresentation: key.rawRepresentation),
                                                  replica: replica.store.replicaID, nowMillis: SystemWallClock().nowMillis())
            }
        }
        // Beyond loopback the records, the token and the secret travel only inside TLS.
        guard tls != nil || HubTLS.isLoopback(host) else {
            throw Output.fail("\(host) is not a loopback address: a sync beyond loopback needs TLS",
                              hint: "give --hub-ca <the hub's hub-cert.pem, from `caresync hub init-tls`>", code: "TLS_REQUIRED",
                              exit: .badArguments)
        }
        // Said in the summary, so that a refused sync stays one line.
        let transport = tls == nil ? " (plaintext, loopback only)" : " (TLS 1.3)"
        do {
            let report = try await SyncClient.sync(
                store: replica.store, host: host, port: port, enrolmentToken: token,
                configuration: ClientConfiguration(appVersion: "caresync/0.2"), tls: tls, retry: RetryPolicy(attempts: max(1, attempts)),
                logger: logger
            ) { progress in
                guard showProgress else { return }
                let line = "\r  pushed \(progress.pushed)  pulled \(progress.pulled)  ↑\(progress.bytesSent / 1024) KiB ↓\(progress.bytesReceived / 1024) KiB  (attempt \(progress.attempt))"
                FileHandle.standardError.write(Data(line.utf8))
            }
            if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            let summary = report.summary
            if options.json {
                try Output.json(Synced(
                    hub: OrNull(summary.hub?.hex), enrolled: summary.enrolled, pushed: summary.pushed,
                    pulled: summary.pulled, applied: summary.applied, duplicates: summary.duplicates,
                    conflictsOpened: summary.conflictsOpened, bytesSent: report.bytesSent,
                    bytesReceived: report.bytesReceived, roundTrips: summary.roundTrips, attempts: report.attempts,
                    durationS: report.durationSeconds, recovered: summary.recovered,
                    forkedFrom: OrNull(summary.forkedFrom?.hex), reissued: summary.reissued,
                    purged: summary.purged, purgesWaiting: summary.purgesWaiting, heldReceived: summary.heldReceived,
                    heldDecisionsRecorded: summary.heldDecisionsRecorded, replicaID: replica.store.replicaID.hex))
            } else {
                if summary.recovered > 0 {
                    Output.line("recovered \(summary.recovered) change(s) of this replica's own that the hub held and this file did not (restored from a backup?)")
                }
                if summary.purged > 0 {
                    Output.line("purged the records of \(summary.purged) young person(s) this team is no longer involved with, as the hub asked: nothing of them is left in this file")
                }
                if summary.purgesWaiting > 0 {
                    Output.line("\(summary.purgesWaiting) purge(s) the hub asked for wait for the next sync: their own edits are not on the hub yet")
                }
                if summary.heldDecisionsRecorded > 0 {
                    Output.line("the hub recorded \(summary.heldDecisionsRecorded) decision(s) on held writes")
                }
                if summary.heldReceived > 0 {
                    Output.line("\(summary.heldReceived) write(s) from other teams' replicas are held for this team's review: caresync quarantine list")
                }
                if let old = summary.forkedFrom {
                    Output.line("this file had diverged from what the hub holds of replica \(old.short) (a copy, or a restored backup written to): it now has a new identity \(replica.store.replicaID.short); \(summary.reissued) own change(s) re-issued under it, nothing lost")
                }
                Output.line("synced with hub \(summary.hub?.short ?? "?")\(transport)\(summary.enrolled ? " (enrolled)" : ""): pushed \(summary.pushed), pulled \(summary.pulled) (\(summary.applied) applied, \(summary.conflictsOpened) conflict(s) opened); \(report.bytesSent) bytes sent, \(report.bytesReceived) received, \(summary.roundTrips) round trips, \(String(format: "%.2f", report.durationSeconds)) s")
            }
        } catch let unreachable as HubUnreachable {
            if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            let hint = unreachable.code == .connectionRefused ? " (check --hub host:port, or start the hub)" : " (check --hub host:port)"
            throw Output.fail("sync failed: \(unreachable.description)\(hint)", code: unreachable.code.name, exit: .syncFailed)
        } catch let failure as SyncFailure {
            if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            // The engine names no command: the CLI says which one enrols a replica that has no credential.
            let enrol = failure.code == .authenticationFailed && token == nil && (try? replica.store.hubLink()?.credential) == nil
                ? ": run `caresync sync --token <token from the hub operator>`" : ""
            throw Output.fail("sync failed: \(failure.message)\(enrol)", code: failure.code.name, exit: failure.code == .clockSkew ? .clockSkew : .syncFailed)
        }
    }
}

/// `caresync sync --json`.
private struct Synced: Encodable {
    let hub: OrNull<String>, enrolled: Bool, pushed: Int, pulled: Int, applied: Int, duplicates: Int
    let conflictsOpened: Int, bytesSent: Int, bytesReceived: Int, roundTrips: Int, attempts: Int
    let durationS: Double, recovered: Int, forkedFrom: OrNull<String>, reissued: Int, purged: Int, purgesWaiting: Int, heldReceived: Int
    let heldDecisionsRecorded: Int, replicaID: String
}

/// One replica in `caresync hub replicas --json`: what the replica last reported is null until it has.
private struct ReplicaJSON: Encodable {
    let replicaID: String, team: String, lagChanges: UInt64, changesStored: UInt64, revoked: Bool
    let firstSeen: OrNull<String>, lastSeen: OrNull<String>, pendingChanges: OrNull<UInt64>, oldestUnsyncedAgeS: OrNull<UInt64>
    let openConflicts: OrNull<UInt64>, schemaVersion: OrNull<UInt64>, appVersion: OrNull<String>, lastError: OrNull<String>
    let forkedFrom: OrNull<String>, equivocations: UInt64, purgesOwed: UInt64, purgesAcknowledged: UInt64, quarantined: UInt64
}

enum HubAddress {
    static func parse(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex, let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw ValidationError("hub address must be host:port, e.g. 127.0.0.1:7700")
        }
        return (String(text[..<colon]), port)
    }
}

struct HubCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub", abstract: "Run and operate the hub: serve, enrol replicas, see their health, revoke.",
        discussion: """
            Examples:
              caresync hub init-tls --out tls --host hub.example.org --host 10.0.0.5
              caresync hub serve --host 0.0.0.0 --tls-cert tls/hub-cert.pem --tls-key tls/hub-key.pem
              caresync hub enroll --db hub.db --team PERM-THROUGHCARE
            """,
        subcommands: [HubInitTLSCommand.self, HubServeCommand.self, HubStatusCommand.self, HubEnrollCommand.self, HubReplicasCommand.self,
                      HubEscrowCommand.self, HubEquivocationsCommand.self,
                      HubRevokeCommand.self, HubPublishCatalogueCommand.self, HubQuarantineCommand.self])
}

struct HubOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hub database file (created if missing).", valueName: "path")) var db = "hub.db"

    func open() throws -> SQLiteHubStore {
        var random = RandomSource.system
        // The catalogue is the hub's data: its publisher's changes verify with the hub key only.
        return try Output.run {
            try SQLiteHubStore(path: db, wallClock: SystemWallClock(), random: &random, hubKeyedOrigins: EntitlementCatalogue.hubOrigins,
                               scopeRules: CareScopeRules())
        }
    }

    /// For commands that only read: nothing is created or written, not even a missing file.
    func openReadOnly() throws -> SQLiteHubStore {
        try Output.run { try SQLiteHubStore(readingAt: db) }
    }
}

struct HubServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve replicas over TCP until SIGTERM or SIGINT (graceful shutdown).",
        discussion: """
            Examples:
              caresync hub serve --db hub.db --host 127.0.0.1 --port 7700
              caresync hub serve --host 0.0.0.0 --tls-cert tls/hub-cert.pem --tls-key tls/hub-key.pem
            Beyond loopback (127.0.0.0/8, ::1, localhost) the hub serves only TLS 1.3 with client \
            certificates, and refuses to start without --tls-cert and --tls-key (make them with \
            `caresync hub init-tls`). On loopback without them it serves plaintext and says so.
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: ArgumentHelp("The hub's TLS certificate, PEM (from `caresync hub init-tls` or an operator CA).", valueName: "path"))
    var tlsCert: String?
    @Option(help: ArgumentHelp("The TLS certificate's private key, PEM.", valueName: "path")) var tlsKey: String?
    @Option(help: "TCP port (0 picks a free one and prints it).") var port = 7700
    @Option(help: "Most connections served at once; more are refused with BUSY.") var maxConnections = 256
    @Flag(help: "Log each session (ids and counts only).") var verbose = false

    func validate() throws {
        // NIO would take a port above 65535 modulo 2^16 and listen somewhere unexpected.
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("give --tls-cert and --tls-key together") }
    }

    func run() async throws {
        Output.bootstrapLogging(verbose: verbose)
        let store = try hub.open()
        var configuration = HubServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.maxConnections = maxConnections
        if let tlsCert, let tlsKey { configuration.tls = HubTLSConfiguration(certificatePath: tlsCert, privateKeyPath: tlsKey) }
        let logger = Logger(label: "caresync.hub")
        let hubID = store.hubID
        // "listening on host:port" ends the line: scripts read the address from there.
        let transport = configuration.tls == nil ? "plaintext: loopback only" : "TLS 1.3, client certificates required"
        let server = HubServer(store: store, configuration: configuration, logger: logger, wallClock: SystemWallClock()) { [host] bound in
            // Unbuffered, so a script waiting for this line sees it at once.
            FileHandle.standardOutput.write(Data("hub \(hubID.hex) (\(transport)) listening on \(host):\(bound)\n".utf8))
        }
        let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let error as HubServerError where error.code == .tlsRequired {
            throw Output.fail("\(error.description)", hint: "give --tls-cert and --tls-key (make them with `caresync hub init-tls`), or listen on 127.0.0.1",
                              code: error.code.name, exit: .badArguments)
        } catch let error as HubServerError where error.code == .tlsUnreadable {
            throw Output.fail("\(error.description)", hint: "check --tls-cert and --tls-key", code: error.code.name, exit: .badInput)
        }
        Output.line("hub stopped")
    }
}

struct HubInitTLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-tls", abstract: "Make the hub's self-signed TLS certificate (P-256) and its key (mode 0600).",
        discussion: """
            Example: caresync hub init-tls --out tls --host hub.example.org --host 10.0.0.5 --days 365
            Writes DIR/hub-cert.pem and DIR/hub-key.pem; never replaces an existing file. Every --host \
            (name or IP address) goes into the certificate's subject alternative name: replicas verify the \
            address they connect to against it. Serve with \
            `caresync hub serve --tls-cert DIR/hub-cert.pem --tls-key DIR/hub-key.pem`; give replicas \
            hub-cert.pem for `caresync sync --hub-ca`.
            """)

    @Option(help: ArgumentHelp("Directory for hub-cert.pem and hub-key.pem (created if missing).", valueName: "dir")) var out: String
    @Option(name: .customLong("host"), help: ArgumentHelp("A host name or IP address replicas connect to (repeat for more).", valueName: "name"))
    var hosts: [String]
    @Option(help: "Days the certificate is valid.") var days = 365
    @Flag(help: "Print machine-readable JSON.") var json = false

    func validate() throws {
        guard !hosts.isEmpty else { throw ValidationError("give at least one --host, the name or address replicas connect to") }
        guard hosts.allSatisfy({ !$0.isEmpty && !$0.contains(where: { $0.isWhitespace || $0 == "/" }) }) else {
            throw ValidationError("--host must be a host name or IP address")
        }
        guard (1...3650).contains(days) else { throw ValidationError("--days must be from 1 to 3650") }
    }

    func run() throws {
        let written: (configuration: HubTLSConfiguration, expiresAtMillis: UInt64)
        do {
            written = try HubTLS.writeCertificate(directory: out, hosts: hosts, days: days, nowMillis: SystemWallClock().nowMillis())
        } catch {
            throw Output.fail(error.description, code: error.code.name, exit: .badInput)
        }
        if json {
            try Output.json(["certificate": written.configuration.certificatePath, "key": written.configuration.privateKeyPath,
                             "expires_at": Output.iso(written.expiresAtMillis)])
        } else {
            Output.line("wrote \(written.configuration.certificatePath) and \(written.configuration.privateKeyPath) (0600); expires \(Output.iso(written.expiresAtMillis))")
        }
    }
}

struct HubStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "The operator view of the hub itself: its id, log head, replicas and TLS certificate expiry.",
        discussion: """
            Example: caresync hub status --db hub.db --tls-cert tls/hub-cert.pem --json
            Warns when the certificate expires within 14 days (renew with `caresync hub init-tls` and give \
            replicas the new hub-cert.pem).
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: ArgumentHelp("The hub's TLS certificate, PEM, to show its expiry.", valueName: "path")) var tlsCert: String?
    @Flag(help: "Print machine-readable JSON.") var json = false

    /// How far ahead an expiry is warned of.
    static let warningDays: UInt64 = 14

    func run() throws {
        let store = try hub.openReadOnly()
        let replicas = try Output.run { try store.replicaSummaries() }
        let head = try Output.run { try store.head() }
        let expiry = try tlsCert.map { path in
            guard let text = try? String(contentsOfFile: path, encoding: .utf8), let millis = HubTLS.expiryMillis(certificatePEM: text) else {
                throw Output.fail("cannot read a certificate from --tls-cert \(path)", code: "TLS_UNREADABLE", exit: .badInput)
            }
            return millis
        }
        let now = SystemWallClock().nowMillis()
        let warning: String? = expiry.flatMap { expiry in
            if expiry <= now { return "the TLS certificate has expired: replicas cannot connect" }
            let days = (expiry - now) / 86_400_000
            return days < Self.warningDays ? "the TLS certificate expires in \(days) day(s)" : nil
        }
        let identityPath = IdentityFile.path(forStore: hub.db)
        let identityPrivate = try? IdentityFile.isPrivate(identityPath)
        var fileWarnings = identityPrivate == false ? [FilePrivacy.readable(identityPath, "the hub's signing key")] : []
        if identityPrivate == nil { fileWarnings.append("the hub identity file \(identityPath) is missing: the hub cannot sign") }
        if (try? IdentityFile.isPrivate(hub.db)) == false { fileWarnings.append(FilePrivacy.readable(hub.db, "every replica's records")) }
        let equivocations = try Output.run { try store.equivocations() }
        let incarnation = store.incarnation.hexString
        if json {
            struct Status: Encodable {
                let hub: String, head: UInt64, replicas: Int, revoked: Int, tlsExpiresAt: OrNull<String>, tlsWarning: OrNull<String>
                let incarnation: String, identityFile: String, identityPrivate: OrNull<Bool>, equivocations: Int, warnings: [String]
            }
            try Output.json(Status(hub: store.hubID.hex, head: head, replicas: replicas.count, revoked: replicas.filter(\.revoked).count,
                                   tlsExpiresAt: OrNull(expiry.map { Output.iso($0) }), tlsWarning: OrNull(warning),
                                   incarnation: incarnation, identityFile: identityPath, identityPrivate: OrNull(identityPrivate),
                                   equivocations: equivocations.count, warnings: fileWarnings + (warning.map { [$0] } ?? [])))
            return
        }
        Output.line("hub \(store.hubID.hex): head \(head), \(replicas.count) replica(s), \(replicas.filter(\.revoked).count) revoked")
        Output.line("incarnation \(incarnation)")
        if let expiry { Output.line("TLS certificate expires \(Output.iso(expiry))") }
        if !equivocations.isEmpty { Output.line("\(equivocations.count) equivocation(s): caresync hub equivocations") }
        for text in fileWarnings + (warning.map { [$0] } ?? []) { Output.line("warning: \(text)") }
    }
}

struct HubEnrollCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll", abstract: "Issue a one-time enrolment token for a team; a replica exchanges it for its own credential.",
        discussion: """
            Example: caresync hub enroll --db hub.db --team PERM-THROUGHCARE
            Give the token to the replica's user: caresync sync --hub host:port --token <token>
            A token enrols one new replica id, once; it never takes over a replica the hub knows.
            To re-enrol a known replica whose secret was lost, bind the token to its id:
              caresync hub enroll --db hub.db --team PERM-THROUGHCARE --replica <replica id>
            A revoked replica id is never re-enrolled: its device comes back as a new identity \
            (`caresync init` a new replica and enrol it with an unbound token).
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: "Team the replica will belong to.") var team: String
    @Option(help: "Re-enrol this known replica id (32 hex digits): only it can redeem the token.") var replica: String?
    @Option(help: "Hours until the token expires.") var expiresInHours = 72
    @Flag(help: "Print machine-readable JSON.") var json = false

    /// A year at most: a token is for a replica being set up now, and hours beyond that would
    /// overflow the expiry time.
    static let maxExpiryHours = 24 * 366

    func validate() throws {
        // The team is shown to operators and matched on every session: no blank or invisible ids.
        guard !team.trimmingCharacters(in: .whitespaces).isEmpty, team.count <= 64,
              !team.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("--team must be a team id of 1 to 64 visible characters, e.g. PERM-THROUGHCARE")
        }
        guard (1...Self.maxExpiryHours).contains(expiresInHours) else {
            throw ValidationError("--expires-in-hours must be from 1 to \(Self.maxExpiryHours)")
        }
    }

    func run() throws {
        let bound = try replica.map { text in
            guard let id = ReplicaID(hex: text) else { throw ValidationError("--replica must be 32 hex digits") }
            return id
        }
        let store = try hub.open()
        if let bound, try Output.run({ try store.replicaSummaries() }).contains(where: { $0.replica == bound && $0.revoked }) {
            throw Output.fail("replica \(bound.hex) is revoked, and revocation is final: its key and its id are never accepted again",
                              hint: "enrol the device as a new identity: `caresync init <new path>` on it, and a token without --replica",
                              code: "REVOKED", exit: .refused)
        }
        var random = RandomSource.system
        let expires = SystemWallClock().nowMillis() + UInt64(expiresInHours) * 3_600_000
        let token = try Output.run { try store.issueEnrolmentToken(team: team, replica: bound, expiresAtMillis: expires, random: &random) }
        var fields = ["token": token, "team": team, "expires_at": Output.iso(expires)]
        if let bound { fields["replica"] = bound.hex }
        if json { try Output.json(fields) } else { Output.line(token) }
    }
}

struct HubRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a replica for good: its next hello is refused and its key is never accepted again.",
        discussion: """
            Example: caresync hub revoke --db hub.db <replica id>
            A running hub ends the replica's open session within a few seconds. Revocation is final: \
            the device key is never accepted again, and the replica id is never re-enrolled. Changes it \
            signed before stay valid. To let the device back in, make it a new identity: \
            `caresync init <new path>` on the device and a new token from `caresync hub enroll`.
            """)

    @OptionGroup var hub: HubOptions
    @Argument(help: "Replica id (32 hex digits).") var replica: String
    @Flag(help: "The device is lost: also burn the escrow rights it holds (they stay counted against their caps, never granted again).")
    var lost = false
    @Flag(help: "Print machine-readable JSON.") var json = false

    func run() throws {
        guard let id = ReplicaID(hex: replica) else { throw ValidationError("replica id must be 32 hex digits") }
        let store = try hub.open()
        let now = SystemWallClock().nowMillis()
        let revoked = try Output.run { try store.revoke(replica: id, nowMillis: now) }
        guard revoked else { throw Output.fail("no active replica \(id.hex) on this hub", code: CareError.Code.notFound.name, exit: .refused) }
        let burned = lost ? try Output.run { try HubEscrow.burnRights(of: id, hub: store, nowMillis: now) } : 0
        if json {
            struct Revoked: Encodable { let replicaID: String, revoked: Bool, final: Bool, keyRefusedForever: Bool, reenrol: String, grantsBurned: Int? }
            try Output.json(Revoked(replicaID: id.hex, revoked: true, final: true, keyRefusedForever: true, reenrol: "new_identity",
                                    grantsBurned: lost ? burned : nil))
        } else {
            Output.line("revoked \(id.hex): final; its device key is never accepted again, and re-enrolment makes a new identity")
            if lost { Output.line("burned \(burned) grant(s) of escrow rights it held: counted against their caps for good") }
        }
    }
}

struct HubReplicasCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicas", abstract: "The operator view: every replica's health, never record contents.",
        discussion: "Example: caresync hub replicas --db hub.db --json\nLag counts hub changes from other replicas the replica has not pulled; pending, oldest unsynced write and open conflicts are as the replica last reported; purges owed counts the young people's records the hub has told the replica to purge and it has not yet acknowledged; quarantined counts its writes outside its team's scope, which the hub holds and relays to no one.")

    @OptionGroup var hub: HubOptions
    @Flag(help: "Print machine-readable JSON.") var json = false

    func run() throws {
        let store = try hub.openReadOnly()
        let replicas = try Output.run { try store.replicaSummaries() }
        func time(_ millis: UInt64?) -> String { millis.map { Output.iso($0) } ?? "–" }
        func count(_ value: UInt64?) -> String { value.map(String.init) ?? "–" }
        // What a peer or an enrolment sent is shown escaped: no control character reaches the
        // operator's terminal, even from a store written before the hub sanitised it.
        func shown(_ text: String?) -> String? { text.map(OperatorText.escaped) }
        if json {
            try Output.json(replicas.map { summary in
                ReplicaJSON(
                    replicaID: summary.replica.hex, team: OperatorText.escaped(summary.team), lagChanges: summary.lagChanges,
                    changesStored: summary.changesStored, revoked: summary.revoked,
                    firstSeen: OrNull(summary.firstSeenMillis.map { Output.iso($0) }),
                    lastSeen: OrNull(summary.lastSeenMillis.map { Output.iso($0) }),
                    pendingChanges: OrNull(summary.pendingChanges),
                    oldestUnsyncedAgeS: OrNull(summary.oldestUnsyncedAgeMillis.map { $0 / 1000 }),
                    openConflicts: OrNull(summary.openConflicts), schemaVersion: OrNull(summary.schemaVersion),
                    appVersion: OrNull(shown(summary.appVersion)), lastError: OrNull(shown(summary.lastError)),
                    forkedFrom: OrNull(summary.forkedFrom?.hex), equivocations: summary.equivocations,
                    purgesOwed: summary.purgesOwed, purgesAcknowledged: summary.purgesAcknowledged, quarantined: summary.quarantined)
            })
            return
        }
        Output.table(["REPLICA", "TEAM", "LAST SEEN", "LAG", "PENDING", "OLDEST UNSYNCED", "CONFLICTS", "PURGES OWED", "QUARANTINED", "SCHEMA", "APP",
                      "LAST ERROR"],
                     replicas.map { summary in
                         [summary.replica.short + (summary.revoked ? " (revoked)" : ""), OperatorText.escaped(summary.team), time(summary.lastSeenMillis),
                          String(summary.lagChanges), count(summary.pendingChanges),
                          summary.oldestUnsyncedAgeMillis.map { "\($0 / 1000) s" } ?? "–", count(summary.openConflicts),
                          String(summary.purgesOwed), String(summary.quarantined), count(summary.schemaVersion), shown(summary.appVersion) ?? "–", shown(summary.lastError) ?? "–"]
                     })
        Output.line("\(replicas.count) replica(s); hub head \((try? store.head()) ?? 0), incarnation \(store.incarnation.hexString)")
        for summary in replicas where summary.forkedFrom != nil || summary.equivocations > 0 {
            if let parent = summary.forkedFrom { Output.line("\(summary.replica.short) was forked from \(parent.short) (a copy or restored backup that diverged)") }
            if summary.equivocations > 0 {
                Output.line("\(summary.replica.short) pushed \(summary.equivocations) refused second version(s) of a change id: caresync hub equivocations")
            }
        }
    }
}

struct HubEquivocationsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "equivocations",
        abstract: "Second versions of a change id the hub refused: ids, digests, sizes and signed heads, never contents.",
        discussion: """
            Example: caresync hub equivocations --db hub.db --json
            A replica restored from a backup or copied to a second machine can reuse a change id with other \
            content. The hub never acknowledges such a push: it keeps the version it holds (and relays) and \
            this second version as evidence. The replica recovers at its next sync and, if it diverged, takes a \
            new identity (see `hub replicas`, column forked_from).
            """)

    @OptionGroup var hub: HubOptions
    @Flag(help: "Print machine-readable JSON.") var json = false

    func run() throws {
        let store = try hub.openReadOnly()
        let records = try Output.run { try store.equivocations() }
        if json {
            struct Head: Encodable { let counter: UInt64, chainSha256: String, signer: String }
            struct Equivocation: Encodable {
                let change: String, origin: String, counter: UInt64, fromReplica: String, receivedAt: String
                let heldSha256: String, refusedSha256: String, refusedBytes: Int, heldHead: OrNull<Head>, refusedHead: OrNull<Head>
            }
            func head(_ head: SignedHead?) -> OrNull<Head> {
                OrNull(head.map { Head(counter: $0.counter, chainSha256: $0.chain.hexString, signer: $0.signer == .origin ? "device" : "hub") })
            }
            try Output.json(records.map { record in
                Equivocation(change: record.change.description, origin: record.change.replica.hex, counter: record.change.counter,
                             fromReplica: record.from.hex, receivedAt: Output.iso(record.receivedAtMillis),
                             heldSha256: record.heldDigest, refusedSha256: record.refusedDigest, refusedBytes: record.refusedBytes,
                             heldHead: head(record.heldHead), refusedHead: head(record.refusedHead))
            })
            return
        }
        // The two signed heads prove it: each is the origin's signature over its log to a counter.
        func head(_ head: SignedHead?) -> String { head.map { "\($0.counter):\($0.chain.hexString.prefix(12))" } ?? "–" }
        Output.table(["CHANGE", "FROM", "RECEIVED", "HELD SHA-256", "REFUSED SHA-256", "BYTES", "HELD HEAD", "REFUSED HEAD"], records.map {
            [$0.change.description, $0.from.short, Output.iso($0.receivedAtMillis), String($0.heldDigest.prefix(16)),
             String($0.refusedDigest.prefix(16)), String($0.refusedBytes), head($0.heldHead), head($0.refusedHead)]
        })
        Output.line("\(records.count) refused second version(s)")
    }
}

struct HubPublishCatalogueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish-catalogue",
        abstract: "Publish entitlement catalogue versions, signed by the hub key (replicas accept no one else's).",
        discussion: """
            Examples:
              caresync hub publish-catalogue --db hub.db
              caresync hub publish-catalogue --db hub.db --file home-setup-v3.json
            Without --file, publishes the built-in catalogue every replica starts with (once; again does \
            nothing). --file is a JSON array of item versions: {"code", "version", "name", "category", \
            "min_age", "max_age", "cap_kind", "period", "effective_from"} and optionally "cap_amount_pence", \
            "cap_count", "requires", "effective_to". Replicas get them at their next sync.
            """)

    @OptionGroup var hub: HubOptions
    @Option(help: ArgumentHelp("JSON file of catalogue item versions to publish.", valueName: "path")) var file: String?
    @Flag(help: "Print machine-readable JSON.") var json = false

    /// One item version of `--file`.
    struct ItemJSON: Decodable {
        let code: String, version: Int64, name: String, category: String, minAge: Int64, maxAge: Int64, capKind: String
        let capAmountPence: Int64?, capCount: Int64?, period: String, requires: String?, effectiveFrom: String, effectiveTo: String?
    }

    func run() throws {
        let items = try file.map { path -> [EntitlementCatalogue.Item] in
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            guard let data = FileManager.default.contents(atPath: path) else {
                throw Output.fail("cannot read --file \(path)", code: "FILE_UNREADABLE", exit: .badInput)
            }
            do {
                return try decoder.decode([ItemJSON].self, from: data).map { item in
                    EntitlementCatalogue.Item(code: item.code, version: item.version, name: item.name, category: item.category,
                                              minAge: item.minAge, maxAge: item.maxAge, capKind: item.capKind, capAmount: item.capAmountPence,
                                              capCount: item.capCount, period: item.period, requires: item.requires,
                                              from: item.effectiveFrom, to: item.effectiveTo)
                }
            } catch {
                throw Output.fail("--file \(path) is not a JSON array of catalogue items (see --help)", code: "BAD_CATALOGUE", exit: .badInput)
            }
        } ?? []
        let store = try hub.open()
        let now = SystemWallClock().nowMillis()
        let held = try Output.run { try store.ownDurable(EntitlementCatalogue.publisher) }
        let changes = EntitlementCatalogue.publication(of: items, held: held, nowMillis: now)
        if !changes.isEmpty { _ = try Output.run { try store.publish(changes, receivedAtMillis: now) } }
        if json {
            struct Published: Encodable { let publisher: String, changes: Int, items: Int, catalogueChanges: UInt64 }
            try Output.json(Published(publisher: EntitlementCatalogue.publisher.hex, changes: changes.count, items: items.count,
                                      catalogueChanges: held + UInt64(changes.count)))
        } else {
            Output.line("published \(changes.count) catalogue change(s) (\(items.count) new item version(s)), signed by the hub key; the catalogue now has \(held + UInt64(changes.count)) change(s)")
        }
    }
}
