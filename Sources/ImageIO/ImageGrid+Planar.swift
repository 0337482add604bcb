extension ImageGrid {
    /// A grid of planar images (`channels` planes per image, as `LabeledImages` stores them),
    /// returned as interleaved 8-bit pixels ready for `PNG.encode(pixels:width:height:channels:)`.
    /// Layout as `make`: `columns` per row, `padding` pixels of black around every cell, then the
    /// whole grid enlarged `scale` times.
    public static func makeInterleaved(_ images: LabeledImages, columns: Int, padding: Int = 2,
                                       scale: Int = 1) -> (pixels: [UInt8], width: Int, height: Int) {
        let cols = max(1, columns), pad = max(0, padding), f = max(1, scale)
        let w = images.width, h = images.height, c = images.channels
        let rows = max(1, (images.count + cols - 1) / cols)
        let gw = cols * w + (cols + 1) * pad, gh = rows * h + (rows + 1) * pad
        var grid = [UInt8](repeating: 0, count: gw * gh * c)
        let n = images.valuesPerImage
        for i in 0..<images.count {
            let x0 = pad + (i % cols) * (w + pad), y0 = pad + (i / cols) * (h + pad)
            for ch in 0..<c {
                for y in 0..<h {
                    for x in 0..<w {
                        grid[((y0 + y) * gw + x0 + x) * c + ch] = images.pixels[i * n + (ch * h + y) * w + x]
                    }
                }
            }
        }
        if f == 1 { return (grid, gw, gh) }
        let sw = gw * f, sh = gh * f
        var out = [UInt8](repeating: 0, count: sw * sh * c)
        for y in 0..<sh {
            for x in 0..<sw {
                for ch in 0..<c { out[(y * sw + x) * c + ch] = grid[((y / f) * gw + x / f) * c + ch] }
            }
        }
        return (out, sw, sh)
    }

    /// `makeInterleaved`, encoded as a gray or RGB PNG and written to `path` atomically.
    public static func write(_ images: LabeledImages, columns: Int, padding: Int = 2, scale: Int = 1,
                             to path: String) throws {
        let g = makeInterleaved(images, columns: columns, padding: padding, scale: scale)
        try FileIO.writeAtomically(try PNG.encode(pixels: g.pixels[...], width: g.width, height: g.height,
                                                  channels: images.channels), to: path)
    }
}
