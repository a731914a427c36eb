import SyncCore
import SyncTesting
import Testing

@Suite("Hybrid clock")
struct HybridClockTests {
    let wall: UInt64 = 1_700_000_000_000

    @Test("Timestamps pack milliseconds over the logical counter, so integer order is time order")
    func packing() {
        let stamp = HybridTimestamp(physicalMillis: HybridTimestamp.maxPhysicalMillis, logical: .max)
        #expect(stamp.rawValue == .max)
        #expect(stamp.physicalMillis == HybridTimestamp.maxPhysicalMillis)
        #expect(stamp.logical == .max)
        #expect(HybridTimestamp(physicalMillis: 5, logical: .max) < HybridTimestamp(physicalMillis: 6, logical: 0))
    }

    @Test("Ticks strictly increase when the wall clock stands still or steps back")
    func monotoneWhenWallStepsBack() {
        var clock = HybridClock()
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: wall, logical: 0))
        #expect(clock.tick(wallMillis: wall - 60_000) == HybridTimestamp(physicalMillis: wall, logical: 1))
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: wall, logical: 2))
        #expect(clock.tick(wallMillis: wall + 1) == HybridTimestamp(physicalMillis: wall + 1, logical: 0))
    }

    @Test("Ticks strictly increase over a random walk of the wall clock")
    func monotoneRandomWalk() {
        let seed = PropertyRun.seed
        print("[monotoneRandomWalk] \(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: seed))")
        var random = SeededGenerator(seed: seed).stream("clock")
        var clock = HybridClock()
        var now = wall
        var previous = HybridTimestamp.zero
        for step in 0..<10_000 {
            now = UInt64(Int64(now) + Int64.random(in: -5...3, using: &random))
            let stamp = clock.tick(wallMillis: now)
            #expect(previous < stamp, "step \(step), seed \(SeededGenerator.spelling(of: seed))")
            #expect(stamp.physicalMillis >= now)
            guard previous < stamp else { return }
            previous = stamp
        }
    }

    @Test("An exhausted logical counter borrows the next millisecond")
    func logicalOverflow() {
        var clock = HybridClock(last: HybridTimestamp(physicalMillis: wall, logical: .max - 1))
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: wall, logical: .max))
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: wall + 1, logical: 0))
        #expect(clock.tick(wallMillis: wall - 5) == HybridTimestamp(physicalMillis: wall + 1, logical: 1))
        #expect(clock.tick(wallMillis: wall + 1) == HybridTimestamp(physicalMillis: wall + 1, logical: 2))
    }

    @Test("A remote timestamp more than five minutes ahead is refused and changes nothing")
    func remoteTooFarAhead() {
        var clock = HybridClock()
        _ = clock.tick(wallMillis: wall)
        let before = clock
        let bound = HybridClock.defaultMaxClockSkewMillis
        #expect(bound == 300_000)
        let remote = HybridTimestamp(physicalMillis: wall + bound + 1, logical: 0)
        #expect(throws: ClockError(remoteMillis: wall + bound + 1, localMillis: wall, limitMillis: bound)) {
            try clock.observe(remote, wallMillis: wall)
        }
        #expect(clock == before)
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: wall, logical: 1))

        let error = ClockError(remoteMillis: wall + 600_000, localMillis: wall, limitMillis: bound)
        #expect(error.code == .clockSkew && error.code.name == "CLOCK_SKEW")
        #expect((error.remoteMillis, error.localMillis, error.limitMillis, error.aheadMillis) == (wall + 600_000, wall, bound, 600_000))
        #expect(error.description == "remote clock is 600s ahead of this machine's (limit 300s); fix the clock on the sending machine")
        #expect(!error.description.contains("--"), "SyncCore names no CLI option: the program that has the setting says so")
    }

    @Test("The skew rule's boundary: exactly at the limit is allowed, one past it refused, and no sum wraps at UInt64.max")
    func skewBoundary() {
        let limit: UInt64 = 300_000
        func ahead(_ millis: UInt64) -> HybridTimestamp { HybridTimestamp(physicalMillis: millis, logical: .max) }
        #expect(!ClockSkew.isTooFarAhead(ahead(wall + limit), nowMillis: wall, limitMillis: limit))
        #expect(ClockSkew.isTooFarAhead(ahead(wall + limit + 1), nowMillis: wall, limitMillis: limit))
        #expect(!ClockSkew.isTooFarAhead(ahead(wall - 1), nowMillis: wall, limitMillis: 0))
        #expect(!ClockSkew.isTooFarAhead(ahead(wall), nowMillis: wall, limitMillis: 0))
        #expect(ClockSkew.isTooFarAhead(ahead(wall + 1), nowMillis: wall, limitMillis: 0))
        // `now &+ limit` wrapped here: a limit of UInt64.max refused every timestamp ahead of now.
        #expect(!ClockSkew.isTooFarAhead(ahead(HybridTimestamp.maxPhysicalMillis), nowMillis: wall, limitMillis: .max))
        #expect(!ClockSkew.isTooFarAhead(ahead(HybridTimestamp.maxPhysicalMillis), nowMillis: .max, limitMillis: limit))
        #expect(ClockSkew.isTooFarAhead(ahead(HybridTimestamp.maxPhysicalMillis), nowMillis: 0, limitMillis: limit))
        var clock = HybridClock(maxClockSkewMillis: .max)
        #expect(throws: Never.self) { try clock.observe(ahead(HybridTimestamp.maxPhysicalMillis), wallMillis: wall) }
    }

    @Test("A remote timestamp within the bound is adopted, and later ticks exceed it")
    func observeWithinBound() throws {
        var clock = HybridClock()
        _ = clock.tick(wallMillis: wall)
        let remote = HybridTimestamp(physicalMillis: wall + HybridClock.defaultMaxClockSkewMillis, logical: 7)
        try clock.observe(remote, wallMillis: wall)
        #expect(clock.last == remote)
        #expect(clock.tick(wallMillis: wall) == HybridTimestamp(physicalMillis: remote.physicalMillis, logical: 8))
    }

    @Test("An older remote timestamp leaves the clock where it is")
    func observeOlder() throws {
        var clock = HybridClock()
        let local = clock.tick(wallMillis: wall)
        try clock.observe(HybridTimestamp(physicalMillis: wall - 10_000, logical: 3), wallMillis: wall)
        #expect(clock.last == local)
    }

    @Test("The drift bound is configurable")
    func customBound() {
        var clock = HybridClock(maxClockSkewMillis: 1_000)
        #expect(throws: ClockError.self) { try clock.observe(HybridTimestamp(physicalMillis: wall + 1_001, logical: 0), wallMillis: wall) }
        #expect(throws: Never.self) { try clock.observe(HybridTimestamp(physicalMillis: wall + 1_000, logical: 0), wallMillis: wall) }
    }
}

@Suite("Varints and byte reading")
struct ByteCodingTests {
    static let edges: [(UInt64, [UInt8])] = [
        (0, [0x00]), (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]),
        (16_383, [0xFF, 0x7F]), (16_384, [0x80, 0x80, 0x01]),
        (1 << 63, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        (.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    ]

    @Test("Edge values encode to their canonical bytes and back", arguments: edges)
    func varintEdges(_ value: UInt64, _ bytes: [UInt8]) throws {
        var writer = ByteWriter()
        writer.varint(value)
        #expect(writer.bytes == bytes)
        var reader = ByteReader(bytes)
        #expect(try reader.varint() == value)
        #expect(reader.isAtEnd)
    }

    @Test("Random values round-trip, unsigned and zig-zag signed")
    func varintRandom() throws {
        print("[varintRandom] \(SeededGenerator.seedVariable)=\(SeededGenerator.spelling(of: PropertyRun.seed))")
        var random = SeededGenerator(seed: PropertyRun.seed).stream("varint")
        var writer = ByteWriter()
        var unsigned: [UInt64] = []
        var signed: [Int64] = []
        for _ in 0..<2_000 {
            // Shifted so every length from 1 to 10 bytes is common.
            let value = random.next() >> UInt64.random(in: 0...63, using: &random)
            unsigned.append(value)
            signed.append(Int64(bitPattern: random.next()) >> Int64.random(in: 0...63, using: &random))
            writer.varint(value)
            writer.signedVarint(signed[signed.count - 1])
        }
        var reader = ByteReader(writer.bytes)
        for index in 0..<unsigned.count {
            #expect(try reader.varint() == unsigned[index])
            #expect(try reader.signedVarint() == signed[index])
        }
        #expect(reader.isAtEnd)
    }

    @Test("Zig-zag keeps small magnitudes short", arguments: [
        (0, [0x00]), (-1, [0x01]), (1, [0x02]), (-64, [0x7F]), (64, [0x80, 0x01]),
        (.max, [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        (.min, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    ] as [(Int64, [UInt8])])
    func zigZag(_ value: Int64, _ bytes: [UInt8]) throws {
        var writer = ByteWriter()
        writer.signedVarint(value)
        #expect(writer.bytes == bytes)
        var reader = ByteReader(bytes)
        #expect(try reader.signedVarint() == value)
    }

    @Test("Overlong encodings are refused", arguments: [
        [0x80, 0x00], [0xFF, 0x00], [0x80, 0x80, 0x00], [0x81, 0x80, 0x00],
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00],
    ] as [[UInt8]])
    func overlong(_ bytes: [UInt8]) {
        var reader = ByteReader(bytes + [0x2A])
        #expect(throws: ByteDecodingError(.overlongVarint, offset: 0, "varint has redundant trailing zero bytes")) {
            try reader.varint()
        }
    }

    @Test("Varints past 64 bits or 10 bytes are refused", arguments: [
        [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],
        [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7F],
    ] as [[UInt8]])
    func overflow(_ bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        let error = #expect(throws: ByteDecodingError.self) { try reader.varint() }
        #expect(error?.code == .varintOverflow)
        #expect(error?.offset == 0)
    }

    @Test("A varint cut short is truncated, at the byte that is missing", arguments: [
        [], [0x80], [0xFF, 0xFF], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
    ] as [[UInt8]])
    func truncatedVarint(_ bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        #expect(throws: ByteDecodingError(.truncated, offset: bytes.count, "expected 1 more byte")) { try reader.varint() }
    }

    @Test("Fixed-width and raw reads past the end are truncated")
    func truncatedFixed() {
        var reader = ByteReader([1, 2, 3, 4, 5, 6, 7])
        #expect(throws: ByteDecodingError(.truncated, offset: 7, "expected 1 more byte")) { try reader.fixed64() }
        var raw = ByteReader([1, 2])
        #expect(throws: ByteDecodingError(.truncated, offset: 0, "expected 3 bytes, 2 left")) { try raw.raw(count: 3) }
        var replica = ByteReader(Array(repeating: 0xAB, count: 15))
        #expect(throws: ByteDecodingError.self) { try replica.replica() }
        #expect(throws: ByteDecodingError(.truncated, offset: 0, "expected 1 more byte")) {
            var empty = ByteReader([])
            _ = try empty.byte()
        }
    }

    @Test("Length-prefixed fields: truncated, over the limit, invalid UTF-8")
    func lengthPrefixed() throws {
        var truncated = ByteReader([5, 0x61, 0x62])
        #expect(throws: ByteDecodingError(.truncated, offset: 1, "expected 5 bytes, 2 left")) { try truncated.lengthPrefixed() }

        var overLimit = ByteReader([4, 1, 2, 3, 4], maxFieldLength: 3)
        #expect(throws: ByteDecodingError(.limitExceeded, offset: 0, "field of 4 bytes exceeds limit 3")) { try overLimit.lengthPrefixed() }

        var badText = ByteReader([2, 0xC3, 0x28])
        #expect(throws: ByteDecodingError(.invalidUTF8, offset: 0, "string is not valid UTF-8")) { try badText.string() }

        var writer = ByteWriter()
        writer.string("Zoë 🧸")
        writer.lengthPrefixed([])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.string() == "Zoë 🧸")
        #expect(try reader.lengthPrefixed() == [])
        try reader.expectEnd()
    }

    @Test("List counts that cannot fit and trailing bytes are refused")
    func countsAndTrailing() throws {
        var tooMany = ByteReader([3, 0, 0, 0, 0, 0])
        #expect(throws: ByteDecodingError(.limitExceeded, offset: 0, "list of 3 items cannot fit")) { try tooMany.count(minimumItemSize: 2) }
        var fits = ByteReader([3, 0, 0, 0, 0, 0, 0])
        #expect(try fits.count(minimumItemSize: 2, limit: 3) == 3)
        var overLimit = ByteReader([4, 0, 0, 0, 0])
        #expect(throws: ByteDecodingError.self) { try overLimit.count(limit: 3) }
        var huge = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(throws: ByteDecodingError.self) { try huge.count() }

        var trailing = ByteReader([0x01, 0x02])
        _ = try trailing.byte()
        #expect(throws: ByteDecodingError(.trailingBytes, offset: 1, "1 unexpected trailing bytes")) { try trailing.expectEnd() }
    }

    @Test("Unknown tags and a zero change counter are refused")
    func invalidValues() {
        var value = ByteReader([9])
        #expect(throws: ByteDecodingError(.invalidTag, offset: 0, field: "value tag", "unknown value tag 9")) { try FieldValue.decode(from: &value) }
        var operation = ByteReader([0, 0])
        #expect(throws: ByteDecodingError(.invalidTag, offset: 0, field: "operation", "unknown operation 0")) { try FieldOperation.decode(from: &operation) }
        var change = ByteReader(Array(repeating: 0, count: 17))
        #expect(throws: ByteDecodingError(.invalidValue, offset: 16, field: "counter", "change counter 0")) { try ChangeID.decode(from: &change) }
        #expect(throws: ByteDecodingError.self) { try FieldState.decode([2, 0], policy: .counter) }
        #expect(throws: ByteDecodingError.self) { try FieldState.decode([], policy: .counter) }
    }

    @Test("Every field value kind round-trips, keeping the bits of reals")
    func fieldValues() throws {
        let values: [FieldValue] = [.null, .integer(.min), .integer(.max), .real(-0.0), .real(.infinity),
                                    .real(.leastNonzeroMagnitude), .text(""), .text("e\u{301}"), .blob([0, 0xFF])]
        for value in values {
            var writer = ByteWriter()
            value.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            let decoded = try FieldValue.decode(from: &reader)
            var again = ByteWriter()
            decoded.encode(into: &again)
            #expect(decoded == value)
            #expect(again.bytes == writer.bytes, "\(value.shape)")
        }
    }
}

@Suite("Replica ids")
struct ReplicaIDTests {
    @Test("Hex round-trips; dashes and upper case are accepted")
    func hexRoundTrip() throws {
        var random = SeededGenerator(seed: 99)
        for _ in 0..<200 {
            let id = ReplicaID.random(using: &random)
            #expect(id.hex.count == 32)
            #expect(ReplicaID(hex: id.hex) == id)
            #expect(ReplicaID(hex: id.hex.uppercased()) == id)
        }
        let uuid = try #require(ReplicaID(hex: "0190A3B4-C5D6-7E8F-9012-3456789ABCDE"))
        #expect(uuid.hex == "0190a3b4c5d67e8f90123456789abcde")
        #expect(uuid.short == "0190a3b4")
        #expect(ReplicaID(high: 0, low: 0).hex == String(repeating: "0", count: 32))
        #expect(ReplicaID(high: 0, low: 1) < ReplicaID(high: 1, low: 0))
    }

    @Test("Malformed hex is refused", arguments: [
        "", "0190a3b4c5d67e8f90123456789abcd", "0190a3b4c5d67e8f90123456789abcdef",
        "0190a3b4c5d67e8f90123456789abcdg", "0190a3b4 c5d67e8f90123456789abcd", "0x90a3b4c5d67e8f90123456789abcde",
        "0190a3b4c5d67e8f90123456789abcé", "--------------------------------",
    ])
    func badHex(_ text: String) {
        #expect(ReplicaID(hex: text) == nil)
    }
}

@Suite("Version vectors")
struct VersionVectorTests {
    let a = ReplicaID(high: 1, low: 0), b = ReplicaID(high: 1, low: 1), c = ReplicaID(high: 2, low: 0)

    func encoded(_ entries: [(ReplicaID, UInt64)]) -> [UInt8] {
        var writer = ByteWriter()
        writer.varint(UInt64(entries.count))
        for (replica, counter) in entries {
            writer.replica(replica)
            writer.varint(counter)
        }
        return writer.bytes
    }

    @Test("Encoding is canonical (sorted by replica) and decodes back")
    func roundTrip() throws {
        var random = SeededGenerator(seed: 2024)
        for size in 0..<30 {
            var counters: [ReplicaID: UInt64] = [:]
            for _ in 0..<size { counters[.random(using: &random)] = random.next() >> UInt64.random(in: 0...63, using: &random) | 1 }
            let vector = VersionVector(counters)
            var writer = ByteWriter()
            vector.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            #expect(try VersionVector.decode(from: &reader) == vector)
            try reader.expectEnd()
        }
        let vector = VersionVector([c: 3, a: 1, b: 2])
        var writer = ByteWriter()
        vector.encode(into: &writer)
        #expect(writer.bytes == encoded([(a, 1), (b, 2), (c, 3)]))
    }

    @Test("Entries out of order or repeated are refused", arguments: [
        [(ReplicaID(high: 1, low: 1), 2), (ReplicaID(high: 1, low: 0), 1)],
        [(ReplicaID(high: 2, low: 0), 1), (ReplicaID(high: 1, low: 1), 5)],
        [(ReplicaID(high: 1, low: 0), 1), (ReplicaID(high: 1, low: 0), 1)],
    ] as [[(ReplicaID, UInt64)]])
    func outOfOrder(_ entries: [(ReplicaID, UInt64)]) {
        var reader = ByteReader(encoded(entries))
        #expect(throws: ByteDecodingError(.invalidValue, offset: 1 + 16 + 1, field: "entries", "version vector entries out of order")) {
            try VersionVector.decode(from: &reader)
        }
    }

    @Test("A zero counter is refused: it would give the same vector a second encoding")
    func zeroCounter() {
        var reader = ByteReader(encoded([(a, 1), (b, 0)]))
        #expect(throws: ByteDecodingError(.invalidValue, offset: 1 + 17 + 16, field: "entries", "version vector counter 0")) {
            try VersionVector.decode(from: &reader)
        }
    }

    @Test("Merge keeps the larger counter per replica; includes and total follow")
    func merge() {
        var mine = VersionVector([a: 3, b: 1, c: 0])
        #expect(mine.counters.count == 2)
        mine.merge(VersionVector([b: 4, c: 2]))
        #expect(mine == VersionVector([a: 3, b: 4, c: 2]))
        #expect(mine.total == 9)
        #expect(mine.includes(ChangeID(replica: b, counter: 4)))
        #expect(!mine.includes(ChangeID(replica: b, counter: 5)))
        #expect(!mine.includes(ChangeID(replica: ReplicaID(high: 9, low: 9), counter: 1)))
    }
}
