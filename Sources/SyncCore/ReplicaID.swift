/// A replica's identity: 128 random bits, written as 32 lowercase hex digits.
///
/// Replica ids order changes that tie on their hybrid timestamp, so the order is total and the
/// same on every replica.
public struct ReplicaID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The id's upper 64 bits.
    public let high: UInt64
    /// The id's lower 64 bits.
    public let low: UInt64

    /// The id with these halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses 32 hex digits; dashes (UUID spelling) are ignored.
    public init?(hex: String) {
        let digits = hex.utf8.filter { $0 != UInt8(ascii: "-") }
        guard digits.count == 32 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in digits.enumerated() {
            guard let nibble = HexDigits.value(of: byte) else { return nil }
            if index < 16 { high = high << 4 | UInt64(nibble) } else { low = low << 4 | UInt64(nibble) }
        }
        self.init(high: high, low: low)
    }

    /// A new random id.
    /// - Parameter generator: the randomness, injected so simulations replay.
    /// - Returns: a fresh id.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> ReplicaID {
        ReplicaID(high: generator.next(), low: generator.next())
    }

    /// The 32 lowercase hex digits.
    public var hex: String { HexDigits.string(high, width: 16) + HexDigits.string(low, width: 16) }
    /// The hex spelling.
    public var description: String { hex }
    /// The first 8 hex digits: enough to tell replicas apart on a screen.
    public var short: String { String(hex.prefix(8)) }

    /// Ordered by the 128-bit value.
    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// A change's identity: the replica that made it and that replica's change counter.
/// Counters start at 1 and have no gaps on the origin replica.
public struct ChangeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The origin replica.
    public let replica: ReplicaID
    /// The origin's change counter, from 1, without gaps.
    public let counter: UInt64

    /// The id of change `counter` of `replica`.
    public init(replica: ReplicaID, counter: UInt64) {
        precondition(counter > 0, "change counters start at 1")
        self.replica = replica
        self.counter = counter
    }

    /// `<first 8 hex digits of the replica>:<counter>`.
    public var description: String { "\(replica.short):\(counter)" }

    /// Ordered by replica, then counter.
    public static func < (lhs: ChangeID, rhs: ChangeID) -> Bool {
        (lhs.replica, lhs.counter) < (rhs.replica, rhs.counter)
    }
}

enum HexDigits {
    static let alphabet = Array("0123456789abcdef".utf8)

    static func value(of byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func string(_ value: UInt64, width: Int) -> String {
        var bytes = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var rest = value
        for index in stride(from: width - 1, through: 0, by: -1) {
            bytes[index] = alphabet[Int(rest & 0xF)]
            rest >>= 4
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func string(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(alphabet[Int(byte >> 4)])
            out.append(alphabet[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Lowercase hex spelling of these bytes.
    package var hexString: String { HexDigits.string(self) }
}
