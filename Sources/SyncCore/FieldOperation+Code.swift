extension FieldOperation {
    /// The operation that `code` (``code``: 1 assign, 2 add, 3 remove, 4 increment) stands for,
    /// with its operand: the one mapping from a stored operation code back to an operation (the
    /// canonical decoder reads the same codes, then an operand of the kind the code names).
    ///
    /// - Parameters:
    ///   - code: The operation code.
    ///   - operand: The value assigned, added or removed; for an increment, its integer amount.
    /// - Returns: Nil for an unknown code, or an increment whose operand is not an integer: never
    ///   another operation in its place.
    public init?(code: UInt8, operand: FieldValue) {
        switch code {
        case 1: self = .assign(operand)
        case 2: self = .add(operand)
        case 3: self = .remove(operand)
        case 4:
            guard let amount = operand.integerValue else { return nil }
            self = .increment(amount)
        default: return nil
        }
    }
}
