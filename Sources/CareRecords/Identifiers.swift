import SyncCore
import SyncEngine

/// Makes record ids: UUIDv7 (48-bit millisecond time, then random bits), so ids made on different
/// replicas never collide and sort by creation time. Time and randomness are injected, so a test
/// or a simulation makes the same ids from the same seed.
///
/// ```swift
/// let ids = RecordIDGenerator(wallClock: clock, random: RandomSource { seeded.next() })
/// let id = ids.next()   // "0197a0b4-…"
/// ```
struct RecordIDGenerator: Sendable {
    let wallClock: any WallClock
    let random: RandomSource

    /// - Parameters:
    ///   - wallClock: the time in each id's first 48 bits.
    ///   - random: the source of its 74 random bits (`RandomSource.system` in a program).
    init(wallClock: any WallClock, random: RandomSource) {
        self.wallClock = wallClock
        self.random = random
    }

    /// A new id, in the canonical 8-4-4-4-12 hex form.
    func next() -> String {
        var random = random
        let millis = wallClock.nowMillis() & 0xFFFF_FFFF_FFFF
        let randomA = random.next()
        let randomB = random.next()
        let high = millis << 16 | 0x7000 | (randomA & 0x0FFF)
        let low = (randomB & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        let hex = ReplicaID(high: high, low: low).hex
        let characters = Array(hex)
        return String(characters[0..<8]) + "-" + String(characters[8..<12]) + "-" + String(characters[12..<16]) + "-"
            + String(characters[16..<20]) + "-" + String(characters[20..<32])
    }
}
