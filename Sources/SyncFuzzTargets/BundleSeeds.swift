import CareRecords
import Crypto
import Foundation
import SyncEngine
import SyncStore

/// The valid seeds of the bundle target: exports of the fuzz sender (``BundleFuzzTarget``) after a
/// few care records, without the SHA-256 trailer the harness appends. Made here rather than by
/// Tools/fuzz/make_seeds.py because a valid bundle is signed (format 3, Protocol/identity.md):
/// only the sender's key makes one the template verifies. Deterministic (fixed clock, ids and
/// keys; Ed25519 signatures are deterministic), so the committed seeds are checked byte for byte
/// against these (Tests/FuzzCorpusTests) and cannot go stale.
public enum BundleSeeds {
    /// The seeds by file name, in the order they were made.
    /// - Throws: `StoreError` or `CareError` if the sender cannot be made or written.
    public static func make() throws -> [(name: String, bytes: [UInt8])] {
        let path = FuzzScratch.path("seed-sender-\(UUID().uuidString.prefix(8)).db")
        let sender = try BundleFuzzTarget.makeSender(at: path)
        var seeds: [(name: String, bytes: [UInt8])] = []
        func export(_ name: String) throws {
            let bytes = try BundleExchange.export(from: sender.store, for: nil).bytes
            seeds.append((name, Array(bytes.dropLast(SHA256.byteCount))))
        }
        // Invented test data: no real person.
        let person = try sender.add("young_person", fields: ["legal_given_name": "Fuzz", "legal_family_name": "Seed",
                                                             "date_of_birth": "2010-01-02"], author: "fuzz")
        try export("seed-care-records-person")
        try sender.edit("young_person", id: person, fields: ["date_of_birth": "2010-02-03", "preferred_name": "F"], author: "fuzz")
        _ = try sender.add("case_note", fields: ["yp_id": person, "category": "contact", "occurred_at": "2025-06-23", "body": "Seed"],
                           author: "fuzz")
        try export("seed-care-records-edit-and-note")
        let reminder = try sender.add("reminder", fields: ["text": "t"], author: "fuzz")
        try sender.delete("reminder", id: reminder, author: "fuzz")
        try export("seed-care-records-delete")
        return seeds
    }
}
