/// Text a peer controls (a hello's app version, an error's message) that ends up in front of a
/// person: the operator's terminal or JSON, or a worker's. A control or format character there
/// could move the cursor, recolour or rewrite the screen (ESC, CSI), or reorder what is shown
/// (bidirectional overrides), so such characters never pass through.
package enum OperatorText {
    /// `text` with every control or format character replaced by U+FFFD and cut to at most
    /// `maxBytes` bytes of UTF-8 on a character boundary. For storing what a peer sent.
    package static func sanitised(_ text: String, maxBytes: Int) -> String {
        var out = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            let safe = isUnsafe(scalar) ? Unicode.Scalar(0xFFFD)! : scalar
            let size = UTF8.width(safe)
            guard bytes + size <= maxBytes else { break }
            bytes += size
            out.append(safe)
        }
        return String(out)
    }

    /// `text` with every control or format character written as `\u{…}`, so it can be printed
    /// as it is (and read: nothing is hidden). For showing what was stored.
    package static func escaped(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if isUnsafe(scalar) || scalar == "\\" {
                let value = scalar.value
                let width = value > 0xFFFF ? 6 : value > 0xFF ? 4 : 2
                out += scalar == "\\" ? "\\\\" : "\\u{" + HexDigits.string(UInt64(value), width: width) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// C0 and C1 controls, DEL, and format characters (bidirectional controls, zero-width
    /// joiners and spaces, the BOM), and line and paragraph separators.
    static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate: true
        default: false
        }
    }
}
