import CZlib

/// zlib (RFC 1950) compression of batch payloads. A compressed payload is
/// `varint uncompressed_size | zlib stream`; inflation stops at the declared size, the size
/// limit and the ratio limit, whichever comes first, so a small bomb cannot allocate much.
public enum PayloadCompression {
    /// Largest accepted uncompressed/compressed ratio.
    public static let maxRatio = 100
    /// Payloads smaller than this are sent uncompressed: zlib would not pay for itself.
    public static let threshold = 1024

    /// The zlib stream of `input` (without the size prefix, which the codec writes).
    /// - Parameter input: an uncompressed payload.
    /// - Returns: the compressed stream, or nil if zlib failed (the caller then sends it uncompressed).
    public static func compress(_ input: [UInt8]) -> [UInt8]? {
        var stream = z_stream()
        guard deflateInit_(&stream, Z_DEFAULT_COMPRESSION, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))))
        let status = run(&stream, input, into: &output) { deflate($0, Z_FINISH) }
        guard status == Z_STREAM_END else { return nil }
        output.removeLast(output.count - Int(stream.total_out))
        return output
    }

    /// Inflates exactly `expectedSize` bytes, refusing a size above `maxSize`, a ratio above
    /// `maxRatio`, a stream that ends early or runs long, and trailing bytes.
    /// - Parameters:
    ///   - input: the zlib stream.
    ///   - expectedSize: the declared uncompressed size.
    ///   - maxSize: the largest uncompressed payload accepted.
    /// - Returns: exactly `expectedSize` bytes.
    /// - Throws: ``WireError`` `DECOMPRESSION_LIMIT`, `BAD_COMPRESSION` or `TRAILING_BYTES`.
    public static func decompress(_ input: [UInt8], expectedSize: Int, maxSize: Int) throws(WireError) -> [UInt8] {
        guard expectedSize <= maxSize else {
            throw WireError(.decompressionLimit, "declared size \(expectedSize) exceeds the \(maxSize)-byte limit")
        }
        guard expectedSize <= max(input.count, 1) * maxRatio else {
            throw WireError(.decompressionLimit, "declared ratio exceeds \(maxRatio):1")
        }
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw WireError(.badCompression, "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        // One spare byte detects a stream longer than declared.
        var output = [UInt8](repeating: 0, count: expectedSize + 1)
        let status = run(&stream, input, into: &output) { inflate($0, Z_FINISH) }
        guard status == Z_STREAM_END else { throw WireError(.badCompression, "zlib stream is invalid or does not match its declared size") }
        guard Int(stream.total_out) == expectedSize else {
            throw WireError(.badCompression, "inflated \(stream.total_out) bytes, declared \(expectedSize)")
        }
        guard stream.avail_in == 0 else { throw WireError(.trailingBytes, "bytes after the end of the zlib stream") }
        output.removeLast()
        return output
    }

    /// Points `stream` at all of `input` and all of `output` and runs one zlib call (deflate or
    /// inflate with `Z_FINISH`) over them: the pointer set-up both directions share. zlib's
    /// `next_in` is not `const`, but neither call writes through it.
    private static func run(_ stream: inout z_stream, _ input: [UInt8], into output: inout [UInt8],
                            _ call: (UnsafeMutablePointer<z_stream>) -> Int32) -> Int32 {
        var input = input
        return input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = UInt32(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = UInt32(outBuffer.count)
                return call(&stream)
            }
        }
    }
}
