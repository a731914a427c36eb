// TEMPORARY: stands in for ReplicaStore.purge(scope:) and pendingOwnChanges(scope:) of branch
// h10-purge until it merges; removed at the merge.
import GRDB
import SyncCore

/// What a purge removed (stub).
public struct PurgeSummary: Equatable, Sendable {
    /// Rows removed.
    public var rows = 0
}

extension ReplicaStore {
    /// Stub: see h10-purge.
    public func purge(scope: String) throws -> PurgeSummary { PurgeSummary() }
    /// Stub: see h10-purge.
    public func pendingOwnChanges(scope: String) throws -> Int { 0 }
}
