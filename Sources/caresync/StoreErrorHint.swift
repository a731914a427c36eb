import SyncStore

extension StoreError {
    /// The store says what is wrong with a file; the CLI says which of its commands helps (the
    /// store names no command or flag of any program).
    var hint: String? {
        switch code {
        case .notAReplica: "create one with `caresync init`, or name a replica with `--replica` (a hub database goes with `caresync hub … --db`)"
        case .notAHub: "`caresync hub enroll --db <new path>` creates one (a replica goes with `caresync … --replica`)"
        case .schemaTooNew: "upgrade caresync"
        case .schemaTooOld: "run a command that writes (e.g. `caresync sync`) once"
        default: nil
        }
    }

    /// The message with the CLI's hint, if it has one.
    var messageWithHint: String { hint.map { "\(message); \($0)" } ?? message }
}
