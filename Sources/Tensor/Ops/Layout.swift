// Layout kernels shared by ops that move between channel-major (NCHW) and position-major
// (NHWC / token) layouts: batched 2-D transposes, blocked for cache, parallel over tiles.

/// Raw-buffer layout kernels. Internal: ops call them, users call the ops.
enum Layout {
    /// Tile edge for blocked transposes: 32x32 floats = 4 KiB read + 4 KiB written per tile.
    static let tile = 32

    /// For each of `batch` matrices, dst[b][c][r] (= or +=) src[b][r][c] (+ bias[c]).
    ///
    /// - src: (batch, rows, cols), dst: (batch, cols, rows), both contiguous.
    /// - `bias` (cols), if given, is added to every dst row `c` (used to fuse conv bias).
    /// - `accumulate` adds into dst instead of overwriting it (backward passes).
    /// Parallel over (batch, row-tile) units; each unit writes a disjoint dst block.
    static func transpose(_ src: UnsafePointer<Float>, batch: Int, rows: Int, cols: Int,
                          into dst: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>? = nil,
                          accumulate: Bool = false) {
        if batch == 0 || rows == 0 || cols == 0 { return }
        let t = tile
        let rowTiles = (rows + t - 1) / t
        let plane = rows * cols
        Runtime.parallelFor(batch * rowTiles, cost: t * cols) { lo, hi in
            for unit in lo..<hi {
                let b = unit / rowTiles, r0 = (unit % rowTiles) * t
                let r1 = min(rows, r0 + t)
                let s = src + b * plane, d = dst + b * plane
                var c0 = 0
                while c0 < cols {
                    let c1 = min(cols, c0 + t)
                    for c in c0..<c1 {
                        let drow = d + c * rows
                        let bv: Float = bias?[c] ?? 0
                        if accumulate {
                            for r in r0..<r1 { drow[r] += s[r * cols + c] + bv }
                        } else {
                            for r in r0..<r1 { drow[r] = s[r * cols + c] + bv }
                        }
                    }
                    c0 = c1
                }
            }
        }
    }
}
