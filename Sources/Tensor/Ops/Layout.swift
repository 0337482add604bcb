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
        let wp = w + 2, rowFloats = wp * c, plane = h * w
        Runtime.parallelFor(n * (h + 2), cost: rowFloats) { lo, hi in
            for unit in lo..<hi {
                let b = unit / (h + 2), yp = unit % (h + 2)
                let drow = dst + unit * rowFloats
                if yp == 0 || yp == h + 1 {
                    drow.update(repeating: 0, count: rowFloats)
                    continue
                }
                drow.update(repeating: 0, count: c)
                (drow + (w + 1) * c).update(repeating: 0, count: c)
                let src = x + b * c * plane + (yp - 1) * w   // element (ch, x) at src[ch * plane + x]
                let d = drow + c                              // element (x, ch) at d[x * c + ch]
                var c0 = 0
                while c0 + 8 <= c {
                    var x0 = 0
                    while x0 + 8 <= w {
                        block8(src + c0 * plane + x0, plane, d + x0 * c + c0, c, nil, false)
                        x0 += 8
                    }
                    for xx in x0..<w { for ch in c0..<(c0 + 8) { d[xx * c + ch] = src[ch * plane + xx] } }
                    c0 += 8
                }
                for ch in c0..<c { for xx in 0..<w { d[xx * c + ch] = src[ch * plane + xx] } }
            }
        }
    }

    /// d[j][i] (= or +=) s[i][j] (+ bias[j]) for an 8x8 block; ls/ld are the row strides.
    @inline(__always)
    private static func block8(_ s: UnsafePointer<Float>, _ ls: Int, _ d: UnsafeMutablePointer<Float>, _ ld: Int,
                               _ bias: UnsafePointer<Float>?, _ accumulate: Bool) {
        let raw = UnsafeRawPointer(s), stride = ls * 4
        let r0 = raw.loadUnaligned(fromByteOffset: 0 * stride, as: SIMD8<Float>.self)
        let r1 = raw.loadUnaligned(fromByteOffset: 1 * stride, as: SIMD8<Float>.self)
        let r2 = raw.loadUnaligned(fromByteOffset: 2 * stride, as: SIMD8<Float>.self)
        let r3 = raw.loadUnaligned(fromByteOffset: 3 * stride, as: SIMD8<Float>.self)
        let r4 = raw.loadUnaligned(fromByteOffset: 4 * stride, as: SIMD8<Float>.self)
        let r5 = raw.loadUnaligned(fromByteOffset: 5 * stride, as: SIMD8<Float>.self)
        let r6 = raw.loadUnaligned(fromByteOffset: 6 * stride, as: SIMD8<Float>.self)
        let r7 = raw.loadUnaligned(fromByteOffset: 7 * stride, as: SIMD8<Float>.self)
        let draw = UnsafeMutableRawPointer(d)
        for j in 0..<8 {
            var v = SIMD8<Float>(r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j], r7[j])
            if let bias { v += SIMD8(repeating: bias[j]) }
            if accumulate { v += draw.loadUnaligned(fromByteOffset: j * ld * 4, as: SIMD8<Float>.self) }
            draw.storeBytes(of: v, toByteOffset: j * ld * 4, as: SIMD8<Float>.self)
        }
    }
}
