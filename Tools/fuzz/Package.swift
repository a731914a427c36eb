// swift-tools-version: 6.0
// libFuzzer executables for CareSync, one per fuzz target. Kept out of the main package so the
// ordinary build and Tools/test.sh are not slowed. Build and run with Tools/fuzz/run.sh, which
// passes --sanitize=fuzzer --sanitize=address (plain `-Xswiftc -sanitize=fuzzer` does not link:
// SwiftPM renames the executable's main and libFuzzer supplies its own) and asks for coverage
// instrumentation with -sanitize-coverage, which SwiftPM's --sanitize=fuzzer leaves out.
import PackageDescription

let targets = ["frame", "message", "bundle", "hub"]

let package = Package(
    name: "CareSyncFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "CareSync", path: "../..")],
    targets: targets.map { name in
        .executableTarget(name: "fuzz-\(name)", dependencies: [.product(name: "SyncFuzzTargets", package: "CareSync")],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    }
)
