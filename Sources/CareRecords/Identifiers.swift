import SyncCore

/// Makes record ids: UUIDv7 (48-bit millisecond time, then random bits), so ids made on different
/// replicas never collide and sort by creation time. Time and randomness are injected.
public struct RecordIDGenerator: Sendable {
    let wallClock: any WallClock
    let random: @Sendable () -> UInt64

    public init(wallClock: any WallClock, random: @escaping @Sendable () -> UInt64 = { UInt64.random(in: .min ... .max) }) {
        self.wallClock = wallClock
        self.random = random
    }

    public func next() -> String {
        let millis = wallClock.nowMillis() & 0xFFFF_FFFF_FFFF
        let randomA = random()
        let randomB = random()
        let high = millis << 16 | 0x7000 | (randomA & 0x0FFF)
        let low = (randomB & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        let hex = ReplicaID(high: high, low: low).hex
        let characters = Array(hex)
        return String(characters[0..<8]) + "-" + String(characters[8..<12]) + "-" + String(characters[12..<16]) + "-"
            + String(characters[16..<20]) + "-" + String(characters[20..<32])
    }
}
