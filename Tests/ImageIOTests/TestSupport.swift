import Foundation
import XCTest

/// A fresh empty directory under the system temporary directory, removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "coalesce-imageio-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Deterministic pseudo-random bytes (xorshift), so tests do not depend on a global RNG.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var s = seed | 1
    return (0..<count).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return UInt8(truncatingIfNeeded: s >> 24)
    }
}

/// A PNG built by hand, independent of libpng: `samples` are the unfiltered rows (each
/// `width * channels * bitDepth / 8` bytes), stored in uncompressed deflate blocks.
/// colorType: 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA.
func handMadePNG(width: Int, height: Int, colorType: UInt8, bitDepth: UInt8 = 8, samples: [UInt8]) -> [UInt8] {
    func be32(_ v: Int) -> [UInt8] {
        [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
    }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be32(data.count) + body + be32(Int(crc32(body)))
    }
    let channels: Int = [0: 1, 2: 3, 4: 2, 6: 4][Int(colorType)] ?? 1
    let rowBytes = width * channels * Int(bitDepth) / 8
    var raw = [UInt8]()
    for y in 0..<height {
        raw.append(0)  // filter type None
        raw += samples[(y * rowBytes)..<min(samples.count, (y + 1) * rowBytes)]
    }
    var z: [UInt8] = [0x78, 0x01]
    var pos = 0
    repeat {
        let n = min(65535, raw.count - pos)
        let final: UInt8 = pos + n == raw.count ? 1 : 0
        z += [final, UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8((~n >> 8) & 0xff)]
        z += raw[pos..<(pos + n)]
        pos += n
    } while pos < raw.count
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
    z += be32(Int(b << 16 | a))
    let ihdr = be32(width) + be32(height) + [bitDepth, colorType, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", z)
        + chunk("IEND", [])
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}
