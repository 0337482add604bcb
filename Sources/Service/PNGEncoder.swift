// PNGEncoder: a minimal PNG writer (8-bit gray / RGB / RGBA, zlib "stored" blocks, no
// compression) so the daemon can answer format=PNG without another dependency. Images here are
// 28x28, where compression would save little.

enum PNGEncoder {
    /// Encodes `pixels` (height*width*channels bytes, row-major) as a PNG file.
    /// channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    static func encode(pixels: ArraySlice<UInt8>, width: Int, height: Int, channels: Int) -> [UInt8] {
        let colorType: UInt8 = [1: 0, 2: 4, 3: 2, 4: 6][channels] ?? 0
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr: [UInt8] = []
        ihdr += be32(UInt32(width)) + be32(UInt32(height))
        ihdr += [8, colorType, 0, 0, 0]
        chunk(&out, "IHDR", ihdr)
        // Raw scanlines, each prefixed with filter type 0.
        let stride = width * channels
        var raw: [UInt8] = []
        raw.reserveCapacity((stride + 1) * height)
        var i = pixels.startIndex
        for _ in 0..<height {
            raw.append(0)
            raw += pixels[i..<(i + stride)]
            i += stride
        }
        chunk(&out, "IDAT", zlibStored(raw))
        chunk(&out, "IEND", [])
        return out
    }

    private static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    private static func chunk(_ out: inout [UInt8], _ type: String, _ data: [UInt8]) {
        out += be32(UInt32(data.count))
        let typeAndData = Array(type.utf8) + data
        out += typeAndData
        out += be32(crc32(typeAndData))
    }

    /// zlib stream of uncompressed deflate blocks (at most 65535 bytes each).
    private static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var pos = 0
        repeat {
            let n = min(65535, data.count - pos)
            let final: UInt8 = pos + n == data.count ? 1 : 0
            out.append(final)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[pos..<(pos + n)]
            pos += n
        } while pos < data.count
        out += be32(adler32(data))
        return out
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFFFFFF
        for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFFFFFF
    }

    static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data {
            a = (a + UInt32(x)) % 65521
            b = (b + a) % 65521
        }
        return (b << 16) | a
    }
}
