import Foundation

/// Seeded narrative text for care-records workloads (benchmarks, load tests): case notes, plan
/// summaries and goal statements of realistic length and variety, built from a word list with
/// sentence structure rather than one repeated string, so that byte counts and compression ratios
/// measured on it resemble real records. Nothing here is a real person's record: the names are
/// drawn from a short list of common given names.
///
/// The same seed gives the same text, byte for byte.
public struct CareNarrative: Sendable {
    private var random: SeededGenerator

    /// A narrative stream: the same seed, the same text.
    public init(seed: UInt64) { random = SeededGenerator(seed: seed) }

    static let givenNames = ["Ava", "Noah", "Maya", "Leo", "Zara", "Kai", "Ruby", "Jayden", "Amara", "Finn", "Isla", "Tyler",
                             "Priya", "Callum", "Esme", "Kofi", "Lily", "Mason", "Niamh", "Reece", "Sofia", "Theo", "Yusuf", "Erin"]
    static let subjects = ["{name}", "{name}", "{name}", "the young person", "the foster carer", "the key worker", "the IRO",
                           "the personal adviser", "school", "the designated teacher", "mum", "dad", "the residential team",
                           "the CAMHS worker", "the placement provider", "grandmother", "the youth offending worker",
                           "the virtual school", "the housing officer", "the GP", "I"]
    static let verbs = ["said", "reported", "explained", "agreed", "told me", "confirmed", "raised concerns", "asked",
                        "shared", "was worried", "was pleased", "did not want to talk", "became upset", "disclosed",
                        "telephoned", "emailed", "visited", "attended", "missed", "arranged", "requested", "declined"]
    static let objects = ["that attendance has improved this term", "about contact with her brother", "about the move to semi-independent accommodation",
                          "the pathway plan meeting", "the dentist appointment", "a review of the placement", "the PEP targets",
                          "that {name} had been missing overnight on Friday", "about money for college travel",
                          "that the new bedroom is ready", "the referral to CAMHS", "about the court hearing next month",
                          "that the family time went well", "a setting-up-home allowance", "the bus pass application",
                          "that {name} wants to study childcare", "about friendships at the youth club", "a return home interview",
                          "the Section 20 agreement", "that the bond for the flat has been paid", "the Staying Put arrangement",
                          "about sleeping better since the medication changed", "a support plan for exams", "the GP registration"]
    static let times = ["this morning", "on Monday", "during the home visit", "at the review", "by phone", "after school",
                        "last week", "at the weekend", "during the car journey", "at the team meeting", "yesterday evening",
                        "on 3 June", "in supervision", "before the hearing"]
    static let connectives = ["", "", "", "Later, ", "However, ", "As agreed, ", "In addition, ", "Following this, ",
                              "When asked, ", "Overall, "]
    static let actions = ["I will follow this up with the school", "the manager has been informed",
                          "a strategy discussion is not needed at this stage", "the plan will be updated by Friday",
                          "I will chase the housing application", "the carer will keep a diary for two weeks",
                          "next visit booked within 20 working days", "no safeguarding concerns were identified",
                          "referral made to the leaving care team", "{name} will bring the documents to the next meeting"]

    /// One sentence: a connective, a subject, a verb, an object and sometimes a time, or an action line.
    public mutating func sentence(name: String) -> String {
        if random.index(below: 6) == 0 { return fill(capitalised(random.element(of: Self.actions)), name) + "." }
        let connective = random.element(of: Self.connectives)
        var subject = random.element(of: Self.subjects)
        if connective.isEmpty { subject = capitalised(subject) }
        var text = connective + subject + " " + random.element(of: Self.verbs) + " " + random.element(of: Self.objects)
        if random.coin() { text += " " + random.element(of: Self.times) }
        return fill(text, name) + "."
    }

    /// `sentences` sentences about `name`.
    public mutating func paragraph(sentences: Int, name: String) -> String {
        (0..<sentences).map { _ in sentence(name: name) }.joined(separator: " ")
    }

    /// A case note body: 2–12 sentences (about 150–1,200 characters), as written after a visit or call.
    public mutating func caseNote(name: String) -> String { paragraph(sentences: 2 + random.index(below: 11), name: name) }

    /// A plan summary or goal statement: 1–4 sentences.
    public mutating func statement(name: String) -> String { paragraph(sentences: 1 + random.index(below: 4), name: name) }

    /// A given name from the list.
    public mutating func givenName() -> String { random.element(of: Self.givenNames) }

    /// A number in `0..<count`, for the caller's own choices from the same stream.
    public mutating func index(below count: Int) -> Int { random.index(below: count) }

    private func fill(_ text: String, _ name: String) -> String {
        text.replacingOccurrences(of: "{name}", with: name)
    }

    private func capitalised(_ text: String) -> String {
        guard let first = text.first else { return text }
        return first.uppercased() + text.dropFirst()
    }
}
