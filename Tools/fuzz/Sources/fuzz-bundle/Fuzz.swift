import SyncFuzzTargets

/// libFuzzer's entry point for the bundle target: the same code the corpus replay test runs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let outcome = FuzzTarget.bundle.run(Array(UnsafeBufferPointer(start: data, count: size)))
    if case let .invariantBroken(why) = outcome { fatalError("invariant broken: \(why)") }
    return 0
}
