import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SyncCore
import SyncEngine
import X509

/// TLS to the hub: the hub's certificate (or its CA's) pinned as the only trust root, and this
/// device's client certificate and key. PEM texts only: no TLS library type in the configuration.
public struct ClientTLSConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// The hub's self-signed certificate or its CA's, PEM: the only roots trusted.
    public var trustRootsPEM: String
    /// This device's certificate, PEM (`ClientTLSConfiguration.device` makes one from the device key).
    public var certificatePEM: String
    /// The certificate's private key, PEM. Never logged.
    public var privateKeyPEM: String

    /// - Parameters:
    ///   - trustRootsPEM: The hub's certificate or its CA's.
    ///   - certificatePEM: This device's client certificate.
    ///   - privateKeyPEM: Its private key.
    public init(trustRootsPEM: String, certificatePEM: String, privateKeyPEM: String) {
        self.trustRootsPEM = trustRootsPEM
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }

    /// The configuration of a device whose client certificate is made from its Ed25519 device
    /// key (`DeviceTLSCertificate.make`).
    package static func device(trustRootsPEM: String, deviceKey: Curve25519.Signing.PrivateKey, replica: ReplicaID,
                               nowMillis: UInt64) throws -> ClientTLSConfiguration {
        let made = try DeviceTLSCertificate.make(deviceKey: deviceKey, replica: replica, nowMillis: nowMillis)
        return ClientTLSConfiguration(trustRootsPEM: trustRootsPEM, certificatePEM: made.certificatePEM, privateKeyPEM: made.privateKeyPEM)
    }

    /// Says that TLS is configured, never the key (nor the certificates' bytes).
    public var description: String { "ClientTLSConfiguration(TLS 1.3, pinned roots, client certificate, private key redacted)" }

    /// Equal when the same roots, certificate and key are configured.
    public static func == (lhs: ClientTLSConfiguration, rhs: ClientTLSConfiguration) -> Bool {
        lhs.trustRootsPEM == rhs.trustRootsPEM && lhs.certificatePEM == rhs.certificatePEM && lhs.privateKeyPEM == rhs.privateKeyPEM
    }
}

/// A device's TLS client certificate: self-issued, its public key the device's Ed25519 key
/// itself, so the hub can check it equals the key of the hello (Protocol/identity.md). BoringSSL
/// signs a TLS 1.3 CertificateVerify with Ed25519 once the hub lists it among the algorithms it
/// verifies, so no second (P-256) TLS key is needed.
package enum DeviceTLSCertificate {
    /// How long a certificate made for a sync lasts: it is made anew for each sync.
    package static let validityDays = 30

    /// A self-signed certificate for `deviceKey`, subject `CN=<replica id hex>`, valid from an hour
    /// before `nowMillis` (clocks drift) for `days`.
    ///
    /// - Returns: The certificate and the device key, both PEM.
    package static func make(deviceKey: Curve25519.Signing.PrivateKey, replica: ReplicaID, nowMillis: UInt64,
                             days: Int = validityDays) throws -> (certificatePEM: String, privateKeyPEM: String) {
        let now = Date(timeIntervalSince1970: Double(nowMillis) / 1000)
        let name = try DistinguishedName {
            CommonName(replica.hex)
            OrganizationName("CareSync device")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.clientAuth])
        }
        let key = Certificate.PrivateKey(deviceKey)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now - 3600, notValidAfter: now + Double(days) * 86_400,
            issuer: name, subject: name, extensions: extensions, issuerPrivateKey: key)
        return (try certificate.serializeAsPEM().pemString, try key.serializeAsPEM().pemString)
    }
}

/// The TLS context of a sync and the classification of TLS failures.
enum ClientTLS {
    /// TLS 1.3 only, the configured roots only, hostname (or IP address) verified against the
    /// hub certificate's subject alternative name.
    static func context(_ configuration: ClientTLSConfiguration) throws -> NIOSSLContext {
        do {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv13
            tls.maximumTLSVersion = .tlsv13
            tls.certificateVerification = .fullVerification
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(configuration.trustRootsPEM.utf8)))
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(configuration.certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(configuration.privateKeyPEM.utf8), format: .pem))
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SyncFailure(.authenticationFailed, "the TLS configuration cannot be used: a certificate or the key does not parse", cause: error)
        }
    }

    /// The handler for a connection to `host`: SNI and name verification for a host name; for
    /// an IP address, verification against the certificate's IP addresses (no SNI).
    static func handler(_ context: NIOSSLContext, host: String) throws -> NIOSSLClientHandler {
        let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
    }

    /// A TLS failure that retrying cannot fix (an untrusted or expired certificate either way, a
    /// certificate missing, a peer without TLS 1.3) as a not-retryable `SyncFailure`, so that an
    /// expiry does not become a reconnect storm; nil for anything else (a reset mid-handshake is
    /// retried with the usual backoff).
    static func failure(_ error: any Error) -> SyncFailure? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return SyncFailure(.authenticationFailed, "TLS: the hub's certificate is not for this host name or address", cause: error)
        }
        guard let reason = boringSSLReason(error) else { return nil }
        if reason.contains("CERTIFICATE_VERIFY_FAILED") {
            return SyncFailure(.authenticationFailed,
                               "TLS: the hub's certificate is not trusted: not signed by the pinned CA, expired, or not for this host", cause: error)
        }
        if reason.contains("PROTOCOL_VERSION") || reason.contains("WRONG_VERSION_NUMBER") || reason.contains("UNSUPPORTED_PROTOCOL") {
            return SyncFailure(.unsupportedVersion, "TLS: the hub does not speak TLS 1.3 at this address", cause: error)
        }
        if reason.contains("CERTIFICATE") || reason.contains("UNKNOWN_CA") || reason.contains("BAD_CERT") {
            return SyncFailure(.authenticationFailed,
                               "TLS: the hub refused this device's certificate (expired, not yet valid, or none)", cause: error)
        }
        return nil
    }

    /// BoringSSL's error text inside a NIOSSL error (reason names, never data), or nil.
    private static func boringSSLReason(_ error: any Error) -> String? {
        switch error {
        case let NIOSSLError.handshakeFailed(underlying): "\(underlying)"
        case let NIOSSLError.shutdownFailed(underlying): "\(underlying)"
        case let underlying as BoringSSLError: "\(underlying)"
        default: nil
        }
    }
}

/// Keeps the first error the TLS handler raises on a connection, and passes it on.
final class TLSErrorCapture: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let box = NIOLockedValueBox<(any Error)?>(nil)

    /// The first error seen, if any.
    var error: (any Error)? { box.withLockedValue { $0 } }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        box.withLockedValue { if $0 == nil { $0 = error } }
        context.fireErrorCaught(error)
    }
}
