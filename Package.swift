// swift-tools-version: 6.0
// CareSync: an offline-first sync engine proven on children's social care records.
// Layering (enforced by Tests/TidyTests): SyncCore → SyncStore → SyncEngine → shells → caresync,
// with the domain in CareRecords. The README describes the modules.
import PackageDescription

let package = Package(
    name: "CareSync",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "caresync", targets: ["caresync"]),
        .library(name: "SyncCore", targets: ["SyncCore"]),
        .library(name: "SyncStore", targets: ["SyncStore"]),
        .library(name: "CareRecords", targets: ["CareRecords"]),
        // The fuzz entry points, for the libFuzzer package in Tools/fuzz.
        .library(name: "SyncFuzzTargets", targets: ["SyncFuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // SHA-256 for bundle checksums, hub token hashes and record content hashes.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Shrinking for the merge-law property tests (test targets only).
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        // TLS 1.3 between replicas and the hub (SyncHub, SyncClient) and the certificates they present.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
    ],
    targets: [
        // Pure merge algebra: stdlib only, no Foundation.
        .target(name: "SyncCore"),
        // The system zlib (Debian: zlib1g-dev), for compressed batches.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Bytes <-> frames <-> messages, exactly as Protocol/ says.
        .target(name: "SyncWire", dependencies: [
            "SyncCore", "CZlib",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        // Device keys, origin-log chains, signed heads and their verification (Protocol/identity.md): pure, no I/O.
        .target(name: "SyncIdentity", dependencies: ["SyncCore", .product(name: "Crypto", package: "swift-crypto")]),
        // The SQLite replica. GRDB stays behind this module's API.
        .target(name: "SyncStore", dependencies: [
            "SyncCore", "SyncIdentity",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Exchange of changes between replicas (bundles today, sessions with the hub next).
        .target(name: "SyncEngine", dependencies: [
            "SyncCore", "SyncIdentity", "SyncWire", "SyncStore", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Async shell for a replica: connect, retry with backoff, drive the client session.
        .target(name: "SyncClient", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            // Transactional file creation for bundle files (DurableFile).
            .product(name: "_NIOFileSystem", package: "swift-nio"),
            // TLS 1.3 with mutual authentication, and the certificates it presents.
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Async shell for the hub: NIO listener, connection cap, deadlines, graceful shutdown.
        .target(name: "SyncHub", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            // TLS 1.3 with mutual authentication, and the certificates it presents.
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The domain: care records, their merge policies and invariants.
        .target(name: "CareRecords", dependencies: [
            "SyncCore", "SyncIdentity", "SyncStore", "SyncEngine", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Seeded generators and helpers that drive production code in tests and the simulator.
        .target(name: "SyncTesting", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncIdentity",
            // The frame decoder's NIOSingleStepByteToMessageProcessor, so the simulator parses frames as the pipelines do.
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        // The fuzz targets' entry points, shared by the libFuzzer executables (Tools/fuzz) and the
        // corpus replay test, so both run the same code.
        .target(name: "SyncFuzzTargets", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncTesting",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "caresync", dependencies: [
            "SyncCore", "SyncIdentity", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncClient", "SyncHub",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            // Curve25519 device keys for the TLS client certificate.
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Release-build benchmark with same-run plain-SQLite baselines, C API and GRDB (not a test).
        .executableTarget(name: "caresync-bench", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncClient", "SyncHub", "SyncTesting",
            .product(name: "GRDB", package: "GRDB.swift"),
            // The SQLite C API itself, for the headline plain baseline (PlainSQLiteConnection).
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/CareSyncBench"),
        .testTarget(name: "SyncCoreTests", dependencies: [
            "SyncCore", "SyncTesting", .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
        .testTarget(name: "SyncIdentityTests", dependencies: ["SyncCore", "SyncIdentity", "SyncTesting"]),
        .testTarget(name: "SyncWireTests", dependencies: [
            "SyncCore", "SyncWire", "SyncTesting", .product(name: "NIOCore", package: "swift-nio"),
            // ByteToMessageDecoderVerifier, for the frame decoder (test target only).
            .product(name: "NIOTestUtils", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        // Test-only SQLite VFS that counts syncs and simulates power loss (never linked into a product).
        .target(name: "CSQLiteFaultVFS", path: "Tests/CSQLiteFaultVFS", linkerSettings: [.linkedLibrary("sqlite3")]),
        .testTarget(name: "SyncStoreTests", dependencies: [
            "SyncCore", "SyncIdentity", "SyncStore", "SyncEngine", "SyncTesting", "CSQLiteFaultVFS", .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
        .testTarget(name: "CareRecordsTests", dependencies: ["SyncCore", "SyncWire", "SyncStore", "SyncEngine", "CareRecords", "SyncTesting"]),
        // Session transcripts: messages and events into ClientSession and HubSession, the exact actions out (no network).
        .testTarget(name: "SyncEngineTests", dependencies: ["SyncCore", "SyncWire", "SyncStore", "SyncEngine", "SyncTesting", "SyncIdentity",
                                                            .product(name: "Crypto", package: "swift-crypto")]),
        // Test-only: the `caresync` binary and a `hub serve` process, for the process tests of both suites below.
        .target(name: "ProcessHarness", path: "Tests/ProcessHarness"),
        .testTarget(name: "SyncIntegrationTests", dependencies: [
            "SyncCore", "SyncWire", "SyncStore", "SyncEngine", "SyncTesting", "SyncClient", "SyncHub", "CareRecords", "caresync", "SyncIdentity",
            "ProcessHarness",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "TidyTests"),
        // Replays every committed fuzz input (Tests/Fuzz/corpus) through the fuzzers' entry points.
        .testTarget(name: "FuzzCorpusTests", dependencies: ["SyncFuzzTargets"]),
        // help/: the golden --help files HelpGoldenTests reads by path (not resources).
        .testTarget(name: "CLITests", dependencies: ["caresync", "ProcessHarness"], exclude: ["help"]),
    ]
)
