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
        let tls = try hubCa.map { path in
            guard let roots = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Output.fail("cannot read --hub-ca \(path)", code: "TLS_UNREADABLE", exit: .badInput)
            }
            // The device's client certificate is made from its device key. Until the replica's
            // identity file holds one (Protocol/identity.md), a key made for this sync stands in.
            return try Output.run {
                try ClientTLSConfiguration.device(trustRootsPEM: roots, deviceKey: Curve25519.Signing.PrivateKey(),
                                                  replica: replica.store.replicaID, nowMillis: SystemWallClock().nowMillis())
            }
        }
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
                    replicaID: replica.store.replicaID.hex))
            } else {
                if summary.recovered > 0 {
                    Output.line("recovered \(summary.recovered) change(s) of this replica's own that the hub held and this file did not (restored from a backup?)")
                }
                if let old = summary.forkedFrom {
                    Output.line("this file had diverged from what the hub holds of replica \(old.short) (a copy, or a restored backup written to): it now has a new identity \(replica.store.replicaID.short); \(summary.reissued) own change(s) re-issued under it, nothing lost")
                }
                Output.line("synced with hub \(summary.hub?.short ?? "?")\(summary.enrolled ? " (enrolled)" : ""): pushed \(summary.pushed), pulled \(summary.pulled) (\(summary.applied) applied, \(summary.conflictsOpened) conflict(s) opened); \(report.bytesSent) bytes sent, \(report.bytesReceived) received, \(summary.roundTrips) round trips, \(String(format: "%.2f", report.durationSeconds)) s")
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
    let durationS: Double, recovered: Int, forkedFrom: OrNull<String>, reissued: Int, replicaID: String
}

/// One replica in `caresync hub replicas --json`: what the replica last reported is null until it has.
private struct ReplicaJSON: Encodable {
    let replicaID: String, team: String, lagChanges: UInt64, changesStored: UInt64, revoked: Bool
    let firstSeen: OrNull<String>, lastSeen: OrNull<String>, pendingChanges: OrNull<UInt64>, oldestUnsyncedAgeS: OrNull<UInt64>
    let openConflicts: OrNull<UInt64>, schemaVersion: OrNull<UInt64>, appVersion: OrNull<String>, lastError: OrNull<String>
    let forkedFrom: OrNull<String>, equivocations: UInt64
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
        subcommands: [HubInitTLSCommand.self, HubServeCommand.self, HubStatusCommand.self, HubEnrollCommand.self, HubReplicasCommand.self, HubEquivocationsCommand.self,
                      HubRevokeCommand.self])
}

struct HubOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hub database file (created if missing).", valueName: "path")) var db = "hub.db"

    func open() throws -> SQLiteHubStore {
        var random = RandomSource.system
        return try Output.run { try SQLiteHubStore(path: db, wallClock: SystemWallClock(), random: &random) }
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
        if json {
            struct Status: Encodable {
                let hub: String, head: UInt64, replicas: Int, revoked: Int, tlsExpiresAt: OrNull<String>, tlsWarning: OrNull<String>
            }
            try Output.json(Status(hub: store.hubID.hex, head: head, replicas: replicas.count, revoked: replicas.filter(\.revoked).count,
                                   tlsExpiresAt: OrNull(expiry.map { Output.iso($0) }), tlsWarning: OrNull(warning)))
            return
        }
        Output.line("hub \(store.hubID.hex): head \(head), \(replicas.count) replica(s), \(replicas.filter(\.revoked).count) revoked")
        if let expiry { Output.line("TLS certificate expires \(Output.iso(expiry))") }
        if let warning { Output.line("warning: \(warning)") }
    }
}

struct HubEnrollCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll", abstract: "Issue a one-time enrolment token for a team; a replica exchanges it for its own credential.",
        discussion: """
            Example: caresync hub enroll --db hub.db --team PERM-THROUGHCARE
            Give the token to the replica's user: caresync sync --hub host:port --token <token>
            A token enrols one new replica id, once; it never takes over a replica the hub knows.
            To re-enrol a known replica (revoked, or its secret lost), bind the token to its id:
              caresync hub enroll --db hub.db --team PERM-THROUGHCARE --replica <replica id>
            Its next `caresync sync --token <token>` gets a new secret and the revocation is lifted.
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
        commandName: "revoke", abstract: "Revoke a replica's credential; its next hello is refused.",
        discussion: """
            Example: caresync hub revoke --db hub.db <replica id>
            A running hub ends the replica's open session within a few seconds. Revocation is final:
            to let the device back in, re-enrol it with `caresync hub enroll --replica <replica id>`.
            """)

    @OptionGroup var hub: HubOptions
    @Argument(help: "Replica id (32 hex digits).") var replica: String

    func run() throws {
        guard let id = ReplicaID(hex: replica) else { throw ValidationError("replica id must be 32 hex digits") }
        let store = try hub.open()
        let revoked = try Output.run { try store.revoke(replica: id, nowMillis: SystemWallClock().nowMillis()) }
        guard revoked else { throw Output.fail("no active replica \(id.hex) on this hub", code: CareError.Code.notFound.name, exit: .refused) }
        Output.line("revoked \(id.hex)")
    }
}

struct HubReplicasCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicas", abstract: "The operator view: every replica's health, never record contents.",
        discussion: "Example: caresync hub replicas --db hub.db --json\nLag counts hub changes from other replicas the replica has not pulled; pending, oldest unsynced write and open conflicts are as the replica last reported.")

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
                    forkedFrom: OrNull(summary.forkedFrom?.hex), equivocations: summary.equivocations)
            })
            return
        }
        Output.table(["REPLICA", "TEAM", "LAST SEEN", "LAG", "PENDING", "OLDEST UNSYNCED", "CONFLICTS", "SCHEMA", "APP", "LAST ERROR"],
                     replicas.map { summary in
                         [summary.replica.short + (summary.revoked ? " (revoked)" : ""), OperatorText.escaped(summary.team), time(summary.lastSeenMillis),
                          String(summary.lagChanges), count(summary.pendingChanges),
                          summary.oldestUnsyncedAgeMillis.map { "\($0 / 1000) s" } ?? "–", count(summary.openConflicts),
                          count(summary.schemaVersion), shown(summary.appVersion) ?? "–", shown(summary.lastError) ?? "–"]
                     })
        Output.line("\(replicas.count) replica(s); hub head \((try? store.head()) ?? 0)")
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
        abstract: "Second versions of a change id the hub refused: ids, digests and sizes, never contents.",
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
            struct Equivocation: Encodable {
                let change: String, origin: String, counter: UInt64, fromReplica: String, receivedAt: String
                let heldSha256: String, refusedSha256: String, refusedBytes: Int
            }
            try Output.json(records.map { record in
                Equivocation(change: record.change.description, origin: record.change.replica.hex, counter: record.change.counter,
                             fromReplica: record.from.hex, receivedAt: Output.iso(record.receivedAtMillis),
                             heldSha256: record.heldDigest, refusedSha256: record.refusedDigest, refusedBytes: record.refusedBytes)
            })
            return
        }
        Output.table(["CHANGE", "FROM", "RECEIVED", "HELD SHA-256", "REFUSED SHA-256", "BYTES"], records.map {
            [$0.change.description, $0.from.short, Output.iso($0.receivedAtMillis), String($0.heldDigest.prefix(16)),
             String($0.refusedDigest.prefix(16)), String($0.refusedBytes)]
        })
        Output.line("\(records.count) refused second version(s)")
    }
}
