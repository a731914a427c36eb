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

    /// Why a local create is refused.
    public enum CreateRefusal: Error, Equatable, Sendable {
        /// The row exists (its causal length is odd).
        case exists
        /// The row was deleted and its table's rows are never re-created.
        case notDeletable
    }

    /// The causal length a local create gives a row: one more than its current (even) length.
    ///
    /// - Parameters:
    ///   - current: The row's causal length here (0 for a row never seen).
    ///   - deletable: Whether the table's rows may be deleted, and so re-created.
    /// - Returns: The new, odd causal length.
    /// - Throws: ``CreateRefusal/exists`` for a live row; ``CreateRefusal/notDeletable`` for a
    ///   re-create in a table whose rows are never deleted.
    ///
    /// ```swift
    /// try CausalLength.afterCreate(0, deletable: false)  // 1
    /// try CausalLength.afterCreate(2, deletable: true)   // 3: re-created
    /// ```
    public static func afterCreate(_ current: UInt64, deletable: Bool) throws(CreateRefusal) -> UInt64 {
        if isAlive(current) { throw .exists }
        if current > 0 && !deletable { throw .notDeletable }
        return current + 1
    }

    /// The causal length a local delete gives a row: one more than its current (odd) length.
    ///
    /// - Parameter current: The row's causal length here.
    /// - Returns: The new, even causal length; nil if the row does not exist.
    public static func afterDelete(_ current: UInt64) -> UInt64? {
        isAlive(current) ? current + 1 : nil
    }
}
