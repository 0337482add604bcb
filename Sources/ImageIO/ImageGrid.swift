/// Lays images out in a grid, for sample sheets and README pictures.
public enum ImageGrid {
    /// Places `images` row by row, `columns` per row, into one image.
    ///
    /// Every cell is as large as the largest input (width and height taken separately); an image
    /// smaller than its cell sits at the cell's top-left corner. `padding` pixels of `background`
    /// surround every cell, the outer border included, so the result is
    /// `columns * cellWidth + (columns + 1) * padding` wide and
    /// `rows * cellHeight + (rows + 1) * padding` high, with `rows = ceil(count / columns)`.
    /// Finally the whole grid is enlarged `scale` times by pixel repetition (nearest neighbour).
    ///
    /// `columns` and `scale` below 1 count as 1 and a negative padding as 0. Images whose pixel
    /// buffer does not match their size are drawn as far as their buffer reaches. An empty list
    /// gives one background-coloured cell of padding (at least 1x1).
    public static func make(_ images: [GrayImage], columns: Int, padding: Int = 2,
                            background: UInt8 = 0, scale: Int = 1) -> GrayImage {
        let cols = max(1, columns)
        let pad = max(0, padding)
        let cellW = images.map(\.width).max().map { max(0, $0) } ?? 0
        let cellH = images.map(\.height).max().map { max(0, $0) } ?? 0
        let rows = max(1, (images.count + cols - 1) / cols)
        let width = max(1, cols * cellW + (cols + 1) * pad)
        let height = max(1, rows * cellH + (rows + 1) * pad)
        var grid = GrayImage(width: width, height: height, fill: background)
        for (i, image) in images.enumerated() {
            let x0 = pad + (i % cols) * (cellW + pad)
            let y0 = pad + (i / cols) * (cellH + pad)
            let w = max(0, image.width)
            guard w > 0 else { continue }
            let rowsAvailable = min(max(0, image.height), image.pixels.count / w)
            for y in 0..<rowsAvailable {
                let src = y * w
                let dst = (y0 + y) * width + x0
                grid.pixels.replaceSubrange(dst..<(dst + w), with: image.pixels[src..<(src + w)])
            }
        }
        return grid.scaled(by: scale)
    }
}
