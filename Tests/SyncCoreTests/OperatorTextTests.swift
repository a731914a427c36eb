import SyncCore
import Testing

@Suite("Operator text")
struct OperatorTextTests {
    static let hostile = "app\u{1B}[2J\u{07}\u{9B}31m\u{202E}\u{200B}\u{2028}\u{0}end"

    static func hasUnsafe(_ text: String) -> Bool {
        text.unicodeScalars.contains { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator: true
            default: false
            }
        }
    }

    @Test("sanitised replaces every control and format character and cuts on a character boundary")
    func sanitised() {
        let clean = OperatorText.sanitised(Self.hostile, maxBytes: 64)
        #expect(!Self.hasUnsafe(clean))
        #expect(clean.hasPrefix("app\u{FFFD}[2J") && clean.hasSuffix("end"))
        #expect(OperatorText.sanitised("caresync/0.2", maxBytes: 64) == "caresync/0.2")
        let cut = OperatorText.sanitised(String(repeating: "é", count: 40), maxBytes: 63)
        #expect(cut.utf8.count == 62 && cut == String(repeating: "é", count: 31))
    }

    @Test("escaped shows every control and format character as \\u{…} and keeps the rest")
    func escaped() {
        let shown = OperatorText.escaped(Self.hostile)
        #expect(!Self.hasUnsafe(shown))
        #expect(shown == "app\\u{1b}[2J\\u{07}\\u{9b}31m\\u{202e}\\u{200b}\\u{2028}\\u{00}end")
        #expect(OperatorText.escaped("a\\u{1b}") == "a\\\\u{1b}", "a literal backslash cannot forge an escape")
        #expect(OperatorText.escaped("Équipe PERM-THROUGHCARE") == "Équipe PERM-THROUGHCARE")
    }
}
