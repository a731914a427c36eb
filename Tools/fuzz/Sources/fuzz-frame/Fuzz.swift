import SyncFuzzTargets

/// libFuzzer's entry point for the frame target: the same code the corpus replay test runs.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let outcome = FuzzTarget.frame.run(Array(UnsafeBufferPointer(start: data, count: size)))
    if case let .invariantBroken(why) = outcome { fatalError("invariant broken: \(why)") }
    return 0
}
