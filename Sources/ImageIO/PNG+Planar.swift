import CPNG

extension PNG {
    /// Decodes PNG bytes keeping colour: returns planar 8-bit pixels (`channels` planes, each
    /// row-major) with `channels` 3 for a PNG with colour (RGB, RGBA, colour palette) and 1 for a
    /// gray one. Alpha is composited onto black, as `decode` does.
    public static func decodePlanar(_ bytes: [UInt8]) throws -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
        guard !bytes.isEmpty else { throw ImageIOError.png("no data (0 bytes)") }
        return try bytes.withUnsafeBytes { buf in
            var png = png_image()
            png.version = png_uint_32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&png, buf.baseAddress, buf.count) != 0 else {
                throw ImageIOError.png(pngMessage(&png, call: "png_image_begin_read_from_memory"))
            }
            let width = Int(png.width), height = Int(png.height)
            guard width >= 1, height >= 1, width <= GrayImage.maxSide, height <= GrayImage.maxSide else {
                png_image_free(&png)
                throw ImageIOError.invalidImage("PNG size \(width)x\(height) is outside 1...\(GrayImage.maxSide) on a side")
            }
            let color = (png.format & UInt32(PNG_FORMAT_FLAG_COLOR)) != 0
            let c = color ? 3 : 1
            png.format = color ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0  // RGB or GRAY
            var inter = [UInt8](repeating: 0, count: width * height * c)
            var black = png_color(red: 0, green: 0, blue: 0)
            let ok = inter.withUnsafeMutableBytes { out in
                png_image_finish_read(&png, &black, out.baseAddress, Int32(width * c), nil)
            }
            guard ok != 0 else { throw ImageIOError.png(pngMessage(&png, call: "png_image_finish_read")) }
            if c == 1 { return (inter, width, height, 1) }
            var planar = [UInt8](repeating: 0, count: inter.count)
            let n = width * height
            for i in 0..<n { for ch in 0..<3 { planar[ch * n + i] = inter[i * 3 + ch] } }
            return (planar, width, height, 3)
        }
    }

    /// Interleaved pixels (row-major, `channels` per pixel) from planar ones.
    public static func interleave(_ planar: ArraySlice<UInt8>, width: Int, height: Int, channels: Int) -> [UInt8] {
        if channels == 1 { return Array(planar) }
        let n = width * height, base = planar.startIndex
        var out = [UInt8](repeating: 0, count: n * channels)
        for i in 0..<n { for ch in 0..<channels { out[i * channels + ch] = planar[base + ch * n + i] } }
        return out
    }

    fileprivate static func pngMessage(_ png: inout png_image, call: String) -> String {
        let text = withUnsafeBytes(of: &png.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return text.isEmpty ? "\(call) failed" : "\(call): \(text)"
    }
}
