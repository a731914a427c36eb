import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SyncCore
import X509

/// The hub's TLS: its certificate and private key, as PEM files (`HubTLS.makeCertificate` makes a
/// self-signed pair; an operator CA's work as well). Paths only: no TLS library type in the
/// configuration.
public struct HubTLSConfiguration: Sendable, Equatable {
    /// The hub's certificate (PEM), optionally followed by its issuers.
    public var certificatePath: String
    /// The certificate's private key (PEM, PKCS#8 or SEC 1).
    public var privateKeyPath: String

    /// - Parameters:
    ///   - certificatePath: The hub's certificate chain, PEM.
    ///   - privateKeyPath: Its private key, PEM.
    public init(certificatePath: String, privateKeyPath: String) {
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
    }
}

/// The peer's certificate key, as the TLS layer verified it: set during the handshake, read by
/// the session layer (Protocol/identity.md: a device's client certificate carries its Ed25519
/// device key, which must be the key of its hello).
package final class PeerCertificateKey: Sendable {
    private let box = NIOLockedValueBox<[UInt8]?>(nil)

    package init() {}

    /// The raw public key of the peer's certificate (32 bytes for Ed25519); nil before the
    /// handshake verified one, and always on a plaintext (loopback) connection.
    package var rawKey: [UInt8]? { box.withLockedValue { $0 } }

    func record(_ key: [UInt8]) { box.withLockedValue { $0 = key } }
}

/// TLS 1.3 with mutual authentication between the hub and its devices (Protocol/identity.md,
/// issue 9 item 5): the pure decisions (loopback, client certificate checks) and the BoringSSL
/// context built from `HubTLSConfiguration`.
package enum HubTLS {
    /// Whether `host` is a loopback address or name: `localhost`, 127.0.0.0/8 or ::1. Only
    /// there may the hub listen in plaintext.
    package static func isLoopback(_ host: String) -> Bool {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) else { return false }
        return octets[0] == "127"
    }

    /// The server context: TLS 1.3 only, a client certificate required, Ed25519 and P-256
    /// signatures accepted (BoringSSL leaves Ed25519 out of its defaults).
    static func serverContext(_ configuration: HubTLSConfiguration) throws(HubServerError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(configuration.certificatePath)
        } catch {
            throw HubServerError(code: .tlsUnreadable, path: configuration.certificatePath, cause: error)
        }
        do {
            key = try NIOSSLPrivateKey(file: configuration.privateKeyPath, format: .pem)
        } catch {
            throw HubServerError(code: .tlsUnreadable, path: configuration.privateKeyPath, cause: error)
        }
        guard !chain.isEmpty else { throw HubServerError(code: .tlsUnreadable, path: configuration.certificatePath) }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        // Device certificates are self-issued: `clientCertificateVerifier` checks them instead
        // of a CA; `.noHostnameVerification` makes BoringSSL demand one (FAIL_IF_NO_PEER_CERT).
        tls.certificateVerification = .noHostnameVerification
        tls.verifySignatureAlgorithms = [.ed25519, .ecdsaSecp256R1Sha256, .ecdsaSecp384R1Sha384, .rsaPssRsaeSha256]
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw HubServerError(code: .tlsUnreadable, path: configuration.privateKeyPath, cause: error)
        }
    }

    /// Why a client certificate is refused at the TLS layer.
    package enum ClientCertificateProblem: Error, Equatable, Sendable {
        case missing, unreadable, notYetValid, expired, badSignature, unsupportedKey
    }

    /// The TLS-layer check of a device's certificate (DER): well-formed, within its validity at
    /// `nowMillis`, self-signed by the key it carries (device certificates are self-issued), and an
    /// Ed25519 or P-256 key. Returns the key's raw bytes (32 for Ed25519) for the session layer.
    package static func checkClientCertificate(_ der: [UInt8]?, nowMillis: UInt64) -> Result<[UInt8], ClientCertificateProblem> {
        guard let der else { return .failure(.missing) }
        guard let certificate = try? Certificate(derEncoded: der) else { return .failure(.unreadable) }
        let now = Date(timeIntervalSince1970: Double(nowMillis) / 1000)
        guard now >= certificate.notValidBefore else { return .failure(.notYetValid) }
        guard now <= certificate.notValidAfter else { return .failure(.expired) }
        guard certificate.publicKey.isValidSignature(certificate.signature, for: certificate) else { return .failure(.badSignature) }
        if let ed25519 = Curve25519.Signing.PublicKey(certificate.publicKey) { return .success(Array(ed25519.rawRepresentation)) }
        if let p256 = P256.Signing.PublicKey(certificate.publicKey) { return .success(Array(p256.x963Representation)) }
        return .failure(.unsupportedKey)
    }

    /// The server handler's verification callback: `checkClientCertificate` on the leaf, the key
    /// recorded in `peer` when it passes.
    static func clientCertificateVerifier(wallClock: any WallClock, peer: PeerCertificateKey,
                                          refused: @escaping @Sendable (ClientCertificateProblem) -> Void) -> NIOSSLCustomVerificationCallback {
        { certificates, promise in
            let der = certificates.first.flatMap { try? $0.toDERBytes() }
            switch checkClientCertificate(der, nowMillis: wallClock.nowMillis()) {
            case let .success(key):
                peer.record(key)
                promise.succeed(.certificateVerified)
            case let .failure(problem):
                refused(problem)
                promise.succeed(.failed)
            }
        }
    }

    /// A self-signed, CA-style hub certificate (P-256) for `hosts` (DNS names and IP addresses,
    /// all in its subject alternative name), valid from an hour before `nowMillis` for `days`.
    /// Replicas pin it as their trust root.
    ///
    /// - Returns: The certificate and its private key, both PEM.
    package static func makeCertificate(hosts: [String], days: Int, nowMillis: UInt64) throws -> (certificatePEM: String, privateKeyPEM: String) {
        precondition(!hosts.isEmpty && days >= 1, "a hub certificate names at least one host and lasts at least a day")
        let key = P256.Signing.PrivateKey()
        let now = Date(timeIntervalSince1970: Double(nowMillis) / 1000)
        let name = try DistinguishedName {
            CommonName(hosts[0])
            OrganizationName("CareSync hub")
        }
        let names = hosts.map { host -> GeneralName in
            if let address = ipAddressBytes(host) { return .ipAddress(.init(contentBytes: address[...])) }
            return .dnsName(host)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(names)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + Double(days) * 86_400,
            issuer: name, subject: name, extensions: extensions, issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString, try Certificate.PrivateKey(key).serializeAsPEM().pemString)
    }

    /// The file names `writeCertificate` uses inside its directory.
    package static let certificateFileName = "hub-cert.pem"
    /// The private key's file name (mode 0600).
    package static let privateKeyFileName = "hub-key.pem"

    /// Makes a hub certificate (`makeCertificate`) and writes it to `directory` as
    /// `hub-cert.pem` (0644) and `hub-key.pem` (0600), each created exclusively and fsynced: an
    /// existing file is never replaced, and a failure leaves neither file behind.
    ///
    /// - Returns: The configuration that serves with them, and the certificate's expiry.
    /// - Throws: `HubServerError` `TLS_WRITE_FAILED` with the path that could not be written.
    package static func writeCertificate(directory: String, hosts: [String], days: Int,
                                         nowMillis: UInt64) throws(HubServerError) -> (configuration: HubTLSConfiguration, expiresAtMillis: UInt64) {
        let made: (certificatePEM: String, privateKeyPEM: String)
        do { made = try makeCertificate(hosts: hosts, days: days, nowMillis: nowMillis) } catch {
            throw HubServerError(code: .tlsWriteFailed, path: directory, cause: error)
        }
        let certificatePath = (directory as NSString).appendingPathComponent(certificateFileName)
        let keyPath = (directory as NSString).appendingPathComponent(privateKeyFileName)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try writeExclusively(made.privateKeyPEM, to: keyPath, mode: 0o600)
        do { try writeExclusively(made.certificatePEM, to: certificatePath, mode: 0o644) } catch {
            unlink(keyPath)
            throw error
        }
        return (HubTLSConfiguration(certificatePath: certificatePath, privateKeyPath: keyPath),
                expiryMillis(certificatePEM: made.certificatePEM) ?? 0)
    }

    /// `O_CREAT | O_EXCL` with `mode` from the start (a key is never readable by others, not even
    /// for a moment), written whole and fsynced; removed again on failure.
    private static func writeExclusively(_ text: String, to path: String, mode: mode_t) throws(HubServerError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw HubServerError(code: .tlsWriteFailed, path: path, cause: POSIXErrorCode(rawValue: errno).map { POSIXError($0) }) }
        var bytes = Array(text.utf8)[...]
        var failed = false
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { failed = true; break }
            bytes = bytes.dropFirst(written)
        }
        if !failed, fsync(descriptor) != 0 { failed = true }
        close(descriptor)
        if failed {
            unlink(path)
            throw HubServerError(code: .tlsWriteFailed, path: path)
        }
    }

    /// The expiry (Unix milliseconds) of the first certificate in a PEM text; nil if it holds none.
    package static func expiryMillis(certificatePEM: String) -> UInt64? {
        guard let certificate = try? Certificate(pemEncoded: certificatePEM) else { return nil }
        let seconds = certificate.notValidAfter.timeIntervalSince1970
        return seconds <= 0 ? 0 : UInt64(seconds * 1000)
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address literal; nil for a host name.
    static func ipAddressBytes(_ host: String) -> [UInt8]? {
        if let address = try? SocketAddress(ipAddress: host, port: 0) {
            switch address {
            case let .v4(v4): return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
            case let .v6(v6): return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            default: return nil
            }
        }
        return nil
    }
}
