import SyncCore

/// A list of scope ids on the wire: a welcome's `purges` and a purge-ack's `scopes`
/// (Protocol/messages.md, "Scope lists"). A `varint` count, then that many `string`s, each
/// non-empty, without U+0000, at most ``maxScopeBytes``, strictly ascending by their UTF-8 bytes
/// (so a list has one encoding and no duplicates), at most ``maxScopes`` of them.
///
/// Why these limits: a scope is a row's scope, which a change carries with the same limit
/// (README.md, "Limits on a change"), so every scope a hub can owe fits. A welcome travels under
/// the 4 MiB limit that holds until the welcome (framing.md), and 4,096 scopes of 128 bytes are
/// 532,480 bytes (each with its 2-byte length). A purge-ack travels under the negotiated limit,
/// which may be as small as 65,536: a client sends as many purge-acks as ``chunks(_:maxBody:)``
/// cuts, each within the limit.
public enum ScopeList {
    /// The most scopes in one list: a hub owing more names the rest in a later welcome.
    public static let maxScopes = 4_096
    /// The most UTF-8 bytes of one scope: a row's scope limit.
    public static let maxScopeBytes = ChangeLimits.maxRowBytes
    /// Bytes of a frame body besides a purge-ack's scopes: type and flags (2) and the count
    /// (a `varint` of at most ``maxScopes``: 2 bytes).
    static let purgeAckEnvelopeBytes = 4

    /// Why `scopes` is not a valid list (sizes and positions, never the scopes); nil if it is.
    public static func violation(of scopes: [String]) -> String? {
        guard scopes.count <= maxScopes else { return "\(scopes.count) scopes exceed \(maxScopes)" }
        for (index, scope) in scopes.enumerated() {
            let bytes = scope.utf8
            if bytes.isEmpty { return "scope \(index) is empty" }
            if bytes.count > maxScopeBytes { return "scope \(index) of \(bytes.count) bytes exceeds \(maxScopeBytes)" }
            if bytes.contains(0) { return "scope \(index) holds U+0000" }
            if index > 0, !scopes[index - 1].utf8.lexicographicallyPrecedes(bytes) {
                return "scope \(index) does not follow scope \(index - 1) in ascending order"
            }
        }
        return nil
    }

    /// `scopes` in the order a list carries them: ascending by UTF-8 bytes, without duplicates.
    public static func canonical(_ scopes: some Sequence<String>) -> [String] {
        var seen = Set<String>()
        return scopes.filter { seen.insert($0).inserted }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// `scopes` (a valid list) cut into purge-acks that each fit a frame under `maxBody`.
    public static func chunks(_ scopes: [String], maxBody: Int) -> [[String]] {
        var chunks: [[String]] = []
        var current: [String] = []
        var bytes = purgeAckEnvelopeBytes
        for scope in scopes {
            let size = scope.utf8.count + (scope.utf8.count < 128 ? 1 : 2)
            if !current.isEmpty && bytes + size > maxBody {
                chunks.append(current)
                current = []
                bytes = purgeAckEnvelopeBytes
            }
            current.append(scope)
            bytes += size
        }
        if !current.isEmpty { chunks.append(current) }
        return chunks
    }

    static func encode(_ scopes: [String], into writer: inout ByteWriter) {
        writer.varint(UInt64(scopes.count))
        for scope in scopes { writer.string(scope) }
    }

    /// Decodes a list strictly: `LIMIT_EXCEEDED` for a count or a scope over its limit (checked
    /// before anything is read for it), `MALFORMED_MESSAGE` for the rest.
    static func decode(from reader: inout ByteReader, field: String) throws -> [String] {
        let countAt = reader.offset
        let count = try reader.varint()
        guard count <= UInt64(maxScopes) else {
            throw WireError(.limitExceeded, "\(field): \(count) scopes exceed \(maxScopes)", offset: countAt, field: field)
        }
        // Each scope is at least 2 bytes (a length and one byte).
        guard count * 2 <= UInt64(reader.remaining) else {
            throw ByteDecodingError(.limitExceeded, offset: countAt, field: field, "list of \(count) scopes cannot fit")
        }
        var scopes: [String] = []
        scopes.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let at = reader.offset
            var peek = reader
            let length = try peek.varint()
            guard length <= UInt64(maxScopeBytes) else {
                throw WireError(.limitExceeded, "\(field)[\(index)]: a scope of \(length) bytes exceeds \(maxScopeBytes)", offset: at,
                                field: field)
            }
            let scope = try reader.string()
            if scope.utf8.isEmpty || scope.utf8.contains(0) {
                throw ByteDecodingError(.invalidValue, offset: at, field: field, "\(field)[\(index)] is empty or holds U+0000")
            }
            if let last = scopes.last, !last.utf8.lexicographicallyPrecedes(scope.utf8) {
                throw ByteDecodingError(.invalidValue, offset: at, field: field, "\(field)[\(index)] is not above the scope before it")
            }
            scopes.append(scope)
        }
        return scopes
    }
}
