/// A row's life as a causal length (cr-sqlite's scheme): 0 for a row never created, then one more
/// for each create and each delete. Odd means the row exists, even that it was deleted (or never
/// made); the larger length wins, so a delete and a concurrent re-create settle the same way on
/// every replica.
public enum CausalLength {
    /// Whether a row whose causal length is `causalLength` exists: odd lengths are lives, even
    /// lengths deaths.
    ///
    /// - Parameter causalLength: The row's causal length.
    /// - Returns: True for an odd length.
    ///
    /// ```swift
    /// CausalLength.isAlive(1)  // true: created
    /// CausalLength.isAlive(2)  // false: deleted
    /// ```
    @inlinable
    public static func isAlive(_ causalLength: UInt64) -> Bool { causalLength & 1 == 1 }
}
