@testable import CareRecords
import Foundation
import SyncCore
import SyncIdentity
import SyncStore
import SyncTesting
import Testing

/// The catalogue is the hub's data (Protocol/identity.md, "Device certificates"): its publisher's
/// changes verify with the hub key only, so a replica cannot publish a catalogue version.
@Suite struct CatalogueProvenanceTests {
    let team = Team()

    /// DRIVING for anyone up to 99: the forged catalogue of issue 9.
    static let lenientDriving = EntitlementCatalogue.Item(
        code: "DRIVING", version: 2, name: "Driving lessons", category: "independence", minAge: 16, maxAge: 99, capKind: "count",
        capAmount: nil, capCount: 20, period: "lifetime", requires: nil, from: "2025-01-01", to: nil)

    static let seedCount = UInt64(EntitlementCatalogue.publishedChanges().count)

    func olderPerson(_ replica: CareReplica) throws -> [String: String] {
        let id = try replica.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun", "date_of_birth": "1990-03-14"],
                                 author: "alex")
        return ["yp_id": id, "item_code": "DRIVING", "requested_count": "1", "decision_date": "2025-06-23"]
    }

    @Test("the catalogue's seed is the hub's data: a new replica has nothing pending for the hub")
    func seedIsNotPending() throws {
        let alex = try team.replica("alex")
        #expect(try alex.store.health(hub: nil).pendingChanges == 0)
        _ = try alex.add("young_person", fields: ["legal_given_name": "Ava", "legal_family_name": "Le Brun", "date_of_birth": "2008-03-14"],
                         author: "alex")
        #expect(try alex.store.health(hub: nil).pendingChanges == 1, "its own edit is")
    }

    @Test("a replica-made catalogue version is refused (signed by its device key or claiming the hub's signer); an award the real catalogue refuses on age stays refused")
    func forgedCatalogueRefused() throws {
        let alex = try team.replica("alex")
        let request = try olderPerson(alex)
        #expect(careError { _ = try alex.requestAward(fields: request, author: "alex") }?.code == .ageLimit)
        let forged = EntitlementCatalogue.publication(of: [Self.lenientDriving], held: Self.seedCount, nowMillis: scenarioStart)
        let mallory = ReplicaID(high: 0xBAD, low: 1)
        for (key, signer) in [(TestSigner.key(mallory), HeadSigner.origin), (TestSigner.key(mallory), .hubAttestation),
                              (TestSigner.key(EntitlementCatalogue.publisher), .origin)] {
            var chains = TestSigner()
            _ = chains.heads(EntitlementCatalogue.publishedChanges())
            let chain = try #require(chains.heads(forged).last).chain
            let head = key.head(origin: EntitlementCatalogue.publisher, counter: forged.last?.id.counter ?? 0, chain: chain, signer: signer)
            #expect(throws: (any Error).self, "\(signer)") {
                try alex.store.apply(forged, provenance: Provenance(heads: [head], certificates: []))
            }
            #expect(throws: (any Error).self, "from the hub's stream too") {
                try alex.store.applyFromHub(forged, hub: mallory, nextCursor: 1, provenance: Provenance(heads: [head], certificates: []))
            }
        }
        #expect(try alex.list("entitlement_item", where: ["item_code": "DRIVING"]).count == 1, "only the real version")
        #expect(careError { _ = try alex.requestAward(fields: request, author: "alex") }?.code == .ageLimit)
    }

    @Test("a catalogue version the hub publishes, signed by its key, is adopted by a replica that pinned that key")
    func hubPublishedCatalogueAdopted() throws {
        var random = SeededGenerator(seed: 9)
        let hub = try SQLiteHubStore(path: "\(team.directory)/hub.db", wallClock: team.clock, random: &random,
                                     hubKeyedOrigins: EntitlementCatalogue.hubOrigins)
        #expect(EntitlementCatalogue.publication(of: [], held: Self.seedCount, nowMillis: scenarioStart).isEmpty, "the seed is published once")
        let seed = EntitlementCatalogue.publication(of: [], held: 0, nowMillis: scenarioStart)
        #expect(seed.map(\.canonicalBytes) == EntitlementCatalogue.publishedChanges().map(\.canonicalBytes))
        _ = try hub.publish(seed, receivedAtMillis: scenarioStart)
        let version = EntitlementCatalogue.publication(of: [Self.lenientDriving], held: try hub.ownDurable(EntitlementCatalogue.publisher),
                                                       nowMillis: scenarioStart)
        #expect(version.first?.id.counter == Self.seedCount + 1)
        _ = try hub.publish(version, receivedAtMillis: scenarioStart)
        let page = try hub.changes(ofOrigin: EntitlementCatalogue.publisher, after: Self.seedCount, byteBudget: 1 << 20, maxCount: 1000)
        #expect(page.encoded.count == version.count)

        // Not the team's enrolled replica: this one pins the real hub's key below.
        let alex = try CareReplica.create(at: "\(team.directory)/alex.db", name: "alex", wallClock: team.clock, random: .system)
        let request = try olderPerson(alex)
        #expect(throws: (any Error).self, "the hub's key is not yet pinned") {
            try alex.store.applyFromHub(version, hub: hub.hubID, nextCursor: nil, provenance: page.provenance)
        }
        try alex.store.pinHubKey(hub.hubKey)
        _ = try alex.store.applyFromHub(version, hub: hub.hubID, nextCursor: nil, provenance: page.provenance)
        #expect(try alex.list("entitlement_item", where: ["item_code": "DRIVING"]).count == 2)
        let award = try alex.requestAward(fields: request, author: "alex")
        #expect(try alex.record("award", id: award)["catalogue_version"] == .integer(2))
    }
}
