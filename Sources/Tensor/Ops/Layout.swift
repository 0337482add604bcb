import CCoalesceKernels

// Layout kernels shared by ops that move between channel-major (NCHW) and position-major
// (NHWC / token) layouts: batched 2-D transposes, blocked for cache, parallel over tiles.

/// Raw-buffer layout kernels. Internal: ops call them, users call the ops.
enum Layout {
    /// Tile edge for blocked transposes: 32x32 floats = 4 KiB read + 4 KiB written per tile,
    /// moved as 8x8 register blocks (eight 8-wide loads, eight 8-wide stores).
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
        // The 8x8 register transposes are in C (CCoalesceKernels, AVX2 when the CPU has it): this
        // Swift code is compiled for baseline x86-64, where building each transposed row from
        // eight lanes took scalar inserts (transposes were 9% of a UNet training step).
        let mode = Int32(accumulate ? CCK_ACCUMULATE : (bias != nil ? CCK_STORE_BIAS : CCK_STORE))
        let isa = Int32(CCK_ISA_BEST)
        let t = tile
        let rowTiles = (rows + t - 1) / t
        let plane = rows * cols
        Runtime.parallelFor(batch * rowTiles, cost: t * cols) { lo, hi in
            for unit in lo..<hi {
                let b = unit / rowTiles, r0 = (unit % rowTiles) * t
                cck_transpose_rows(src + b * plane, Int32(rows), Int32(cols), Int32(r0), Int32(min(rows, r0 + t)),
                                   dst + b * plane, bias, mode, isa)
            }
        }
    }

    /// dst (n, h + 2, w + 2, c) = x (n, c, h, w) moved to channels-last with a one-pixel zero
    /// border: the input of the direct 3x3 kernel in one pass (a transpose and then a padding
    /// copy were two). Parallel over (image, row) units; each writes its own padded row.
    static func toPaddedNHWC(_ x: UnsafePointer<Float>, n: Int, c: Int, h: Int, w: Int,
                             into dst: UnsafeMutablePointer<Float>) {
        let rowFloats = (w + 2) * c
        let isa = Int32(CCK_ISA_BEST)
        Runtime.parallelFor(n * (h + 2), cost: rowFloats) { lo, hi in
            cck_nchw_to_padded_nhwc(x, Int32(n), Int32(c), Int32(h), Int32(w), Int32(lo), Int32(hi), dst, isa)
        }
    }
}
