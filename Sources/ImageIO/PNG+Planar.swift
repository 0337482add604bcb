extension PNG {
    /// Decodes PNG bytes keeping colour: returns planar 8-bit pixels (`channels` planes, each
    /// row-major) with `channels` 3 for a PNG with colour (RGB, RGBA, colour palette) and 1 for a
    /// gray one. Alpha is composited onto black, as `decode` does.
    public static func decodePlanar(_ bytes: [UInt8]) throws -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
        let d = try decodeInterleaved(bytes, keepColour: true)
        if d.channels == 1 { return d }
        return (planar(d.pixels[...], width: d.width, height: d.height, channels: 3), d.width, d.height, 3)
    }

    /// `decodePlanar` of the file at `path` (errors name the file).
    public static func readPlanar(path: String) throws -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
        try withFile(path, decodePlanar)
    }

    /// Planar pixels (`channels` planes, each row-major) from interleaved ones: `interleave` undone.
    public static func planar(_ interleaved: ArraySlice<UInt8>, width: Int, height: Int, channels: Int) -> [UInt8] {
        if channels == 1 { return Array(interleaved) }
        let n = width * height, base = interleaved.startIndex
        var out = [UInt8](repeating: 0, count: n * channels)
        for i in 0..<n { for ch in 0..<channels { out[ch * n + i] = interleaved[base + i * channels + ch] } }
        return out
    }

    /// Interleaved pixels (row-major, `channels` per pixel) from planar ones.
    public static func interleave(_ planar: ArraySlice<UInt8>, width: Int, height: Int, channels: Int) -> [UInt8] {
        if channels == 1 { return Array(planar) }
        let n = width * height, base = planar.startIndex
        var out = [UInt8](repeating: 0, count: n * channels)
        for i in 0..<n { for ch in 0..<channels { out[i * channels + ch] = planar[base + ch * n + i] } }
        return out
    }
}
