import Foundation

// 2-D convolution as im2col + sgemm, in chunks of whole images.
//
// Layout of the work (B batch, Cin/Cout channels, K kernel, Ho x Wo output, P = Ho*Wo), for each
// chunk of n images:
//   xh   = x transposed to NHWC                          // xh:   (n, H, W, Cin)
//   cols = im2col(xh): one row per output position,      // cols: (n*P, K*K*Cin)
//          columns ordered (ky, kx, ci) so each kernel row's taps are one contiguous copy
//   wp   = weight permuted to (Cout, K, K, Cin)          // wp:   (Cout, K*K*Cin)
//   rows = cols @ wpᵀ  (one sgemm per chunk)             // rows: (n*P, Cout)
//   out  = rows transposed per image, + bias             // out:  (n, Cout, Ho, Wo)
// Chunks hold about `ConvGeometry.columnChunkFloats` column values (at least one image), so
// the column matrix is still in cache when sgemm reads it. Measured at batch 64 (28x28 and 14x14,
// 32-128 channels, 2 cores, a loaded machine, interleaved runs): one whole-batch column matrix
// (58-230 MB) ran at 65-90% of the raw sgemm rate, chunks of 4 MB at 88-145% (the raw
// whole-batch sgemm itself streams its 100+ MB operand from memory).
// Backward recomputes xh/cols chunk by chunk instead of keeping them (cols is K*K times the
// input's size; a UNet has dozens of convolutions): dW += gRowsᵀ cols per chunk, dX via
// dCols = gRows wp and col2im per chunk.
//
// K = 1, stride 1, padding 0 (pointwise) skips im2col and both transposes: per image,
// out_b (Cout, P) = W (Cout, Cin) @ x_b (Cin, P) straight on NCHW. Measured at batch 64 this is
// 2-3x faster than transposing to NHWC, one sgemm, and transposing back (the transposes cost more
// than the product for 1x1 kernels).

extension Tensor {
    /// 2-D cross-correlation (PyTorch `conv2d`): x (B, Cin, H, W), weight (Cout, Cin, K, K),
    /// bias (Cout) or nil; zero padding `padding` on every side; output
    /// (B, Cout, (H + 2p - K) / stride + 1, (W + 2p - K) / stride + 1). `packed`: the weight
    /// packed beforehand for inference (used only when no gradient is recorded; same bits).
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1,
                              padding: Int = 0, packed: PackedConvWeight? = nil) -> Tensor {
        precondition(x.rank == 4, "conv2d: input must be (B, Cin, H, W), got \(x.shape)")
        precondition(weight.rank == 4 && weight.shape[2] == weight.shape[3],
                     "conv2d: weight must be (Cout, Cin, K, K), got \(weight.shape)")
        precondition(weight.shape[1] == x.shape[1],
                     "conv2d: weight \(weight.shape) expects \(weight.shape[1]) input channels, input \(x.shape) has \(x.shape[1])")
        precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride) must be >= 1, padding \(padding) >= 0")
        let g = ConvGeometry(batch: x.shape[0], cin: x.shape[1], h: x.shape[2], w: x.shape[3],
                             cout: weight.shape[0], k: weight.shape[2], stride: stride, padding: padding)
        precondition(g.ho >= 1 && g.wo >= 1,
                     "conv2d: kernel \(g.k) with padding \(padding) does not fit input \(x.shape)")
        if let bias { precondition(bias.count == g.cout, "conv2d: bias \(bias.shape) for \(g.cout) output channels") }
        if g.isPointwise { return pointwiseConv2d(x, weight: weight, bias: bias, g) }
        let inference = !recordsGradient(bias.map { [x, weight, $0] } ?? [x, weight])
        let prepacked = inference ? packed.flatMap { $0.fits(g) ? $0 : nil } : nil
        if g.isDirect3x3 { return directConv2d(x, weight: weight, bias: bias, g, packed: prepacked?.direct) }

        let out = Tensor(uninitialized: [g.batch, g.cout, g.ho, g.wo])  // out: (B, Cout, Ho, Wo)
        let wp = prepacked == nil ? g.permutedWeight(weight.data) : nil   // wp: (Cout, K*K*Cin)
        let biasPointer = bias.map { UnsafePointer($0.data) }
        // Inference: the row-stable kernel on the weight packed (K*K*Cin, Cout rounded up),
        // beforehand or here once per call, so a pixel depends on its image alone and the same
        // bits come on every machine.
        var packedNow: (buffer: Scratch.Buffer, ldw: Int)? = nil
        var rowWeight: (pointer: UnsafePointer<Float>, ldw: Int)? = nil
        if let prepacked, let rows = prepacked.rows {
            rowWeight = (UnsafePointer(rows), prepacked.ldw)
        } else if inference, let wp {
            let p = RowGEMM.packTransposed(wp.pointer, n: g.cout, k: g.kc, ldb: g.kc)
            packedNow = p
            rowWeight = (UnsafePointer(p.buffer.pointer), p.ldw)
        }
        g.forEachChunk { b0, cg in
            let cols = cg.columns(x.data + b0 * g.inputImage)              // cols: (n*P, K*K*Cin)
            let rows = Scratch.take(cg.rows * g.cout)                       // rows: (n*P, Cout)
            if let rowWeight {
                RowGEMM.multiplyPacked(m: cg.rows, n: g.cout, k: g.kc, a: cols.pointer, lda: g.kc,
                                       w: rowWeight.pointer, ldw: rowWeight.ldw, accumulate: false,
                                       c: rows.pointer, ldc: g.cout)
            } else if let wp {
                BLAS.sgemm(transA: false, transB: true, m: cg.rows, n: g.cout, k: g.kc, a: cols.pointer, lda: g.kc,
                           b: wp.pointer, ldb: g.kc, beta: 0, c: rows.pointer, ldc: g.cout)
            }
            Scratch.give(cols)
            Layout.transpose(rows.pointer, batch: cg.batch, rows: g.p, cols: g.cout,
                             into: out.data + b0 * g.outputImage, bias: biasPointer)
            Scratch.give(rows)
        }
        wp?.release()
        if let packedNow { Scratch.give(packedNow.buffer) }

        return out.recordingConv(x, weight, bias, g) { go in                // go: (B, Cout, P)
            // dwp: (Cout, K*K*Cin), summed over chunks; for K = 1 it is weight.grad itself.
            let dwp: UnsafeMutablePointer<Float>? = !weight.requiresGrad ? nil
                : (g.k == 1 ? weight.gradBuffer() : Tensor.allocate(g.cout * g.kc))
            let wp: ConvGeometry.Permuted? = x.requiresGrad ? g.permutedWeight(weight.data) : nil
            let gx: UnsafeMutablePointer<Float>? = x.requiresGrad ? x.gradBuffer() : nil
            var first = true
            g.forEachChunk { b0, cg in
                let gRows = Scratch.take(cg.rows * g.cout)                  // gRows: (n*P, Cout)
                defer { Scratch.give(gRows) }
                Layout.transpose(go + b0 * g.outputImage, batch: cg.batch, rows: g.cout, cols: g.p,
                                 into: gRows.pointer)
                if let dwp {
                    let cols = cg.columns(x.data + b0 * g.inputImage)      // cols: (n*P, K*K*Cin)
                    // dwp (+)= gRowsᵀ cols
                    BLAS.sgemm(transA: true, transB: false, m: g.cout, n: g.kc, k: cg.rows, a: gRows.pointer,
                               lda: g.cout, b: cols.pointer, ldb: g.kc, beta: first && g.k != 1 ? 0 : 1,
                               c: dwp, ldc: g.kc)
                    Scratch.give(cols)
                }
                if let wp, let gx {
                    let dCols = Scratch.take(cg.rows * g.kc)                // dCols: (n*P, K*K*Cin)
                    BLAS.sgemm(transA: false, transB: false, m: cg.rows, n: g.kc, k: g.cout, a: gRows.pointer,
                               lda: g.cout, b: wp.pointer, ldb: g.kc, beta: 0, c: dCols.pointer, ldc: g.kc)
                    let dxh = Scratch.take(cg.batch * g.h * g.w * g.cin)  // dxh: (n, H, W, Cin)
                    cg.col2im(dCols.pointer, into: dxh.pointer)
                    Scratch.give(dCols)
                    Layout.transpose(dxh.pointer, batch: cg.batch, rows: g.h * g.w, cols: g.cin,
                                     into: gx + b0 * g.inputImage, accumulate: true)
                    Scratch.give(dxh)
                }
                first = false
            }
            wp?.release()
            if let dwp, g.k != 1 {
                g.addUnpermutedWeight(dwp, into: weight.gradBuffer())
                dwp.deallocate()
            }
        }
    }
}

extension Tensor {
    /// 3x3, stride 1, padding 1 (most of a UNet's convolutions) with the direct channels-last
    /// kernel (`Tensor.directConv3x3`, DirectConv.swift) for the forward pass and the input
    /// gradient, and im2col + sgemm for the weight gradient:
    ///   xp  = x in NHWC, zero border        // xp: (B, H+2, W+2, Cin), kept for the backward pass
    ///   yh  = direct3x3(xp, W)              // yh: (B, H, W, Cout); out = yh in NCHW + bias
    ///   gh  = dy in NHWC                    // gh: (B, H, W, Cout)
    ///   dW += ghᵀ im2col(xp)                // per chunk, as in the general path
    ///   dx += direct3x3(gh, W flipped, Cin <-> Cout) in NCHW
    /// Measured at batch 64, forward alone: 28x28 32->32 167-196 GFLOP/s vs 93-105 for im2col +
    /// sgemm, 14x14 64->64 204-208 vs 130-135, 7x7 128->128 158 vs 158-164; UNet training step
    /// 63-68 vs 48-56 images/s (`coalesce bench ops` with and without COALESCE_CONV=im2col).
    fileprivate static func directConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, _ g: ConvGeometry,
                                         packed: PackedConv3x3?) -> Tensor {
        let (bn, cin, cout, p) = (g.batch, g.cin, g.cout, g.p)
        let xp = Tensor(uninitialized: [bn, g.h + 2, g.w + 2, cin])       // xp: x padded, NHWC
        Layout.toPaddedNHWC(x.data, n: bn, c: cin, h: g.h, w: g.w, into: xp.data)
        let yh = Scratch.take(bn * p * cout)                               // yh: (B, H, W, Cout)
        directConv3x3(padded: xp.data, batch: bn, h: g.h, w: g.w, packed ?? PackedConv3x3(weight: weight, bias: nil),
                      into: yh.pointer)
        let out = Tensor(uninitialized: [bn, cout, g.ho, g.wo])            // out: (B, Cout, H, W)
        Layout.transpose(yh.pointer, batch: bn, rows: p, cols: cout, into: out.data,
                         bias: bias.map { UnsafePointer($0.data) })
        Scratch.give(yh)

        return out.recordingConv(x, weight, bias, g) { go in                // go: (B, Cout, P)
            let gh = Scratch.take(bn * p * cout)                           // gh: (B, H, W, Cout)
            defer { Scratch.give(gh) }
            Layout.transpose(go, batch: bn, rows: cout, cols: p, into: gh.pointer)
            if weight.requiresGrad {
                let dwp = Tensor.allocate(cout * g.kc)                     // dwp: (Cout, K*K*Cin)
                var first = true
                g.forEachChunk { b0, cg in
                    let cols = Scratch.take(cg.rows * g.kc)                 // cols: (n*P, K*K*Cin)
                    cg.im2colPadded(xp.data + b0 * (g.h + 2) * (g.w + 2) * cin, into: cols.pointer)
                    BLAS.sgemm(transA: true, transB: false, m: cout, n: g.kc, k: cg.rows, a: gh.pointer + b0 * p * cout,
                               lda: cout, b: cols.pointer, ldb: g.kc, beta: first ? 0 : 1, c: dwp, ldc: g.kc)
                    Scratch.give(cols)
                    first = false
                }
                g.addUnpermutedWeight(dwp, into: weight.gradBuffer())
                dwp.deallocate()
            }
            if x.requiresGrad {
                let dxh = Scratch.take(bn * p * cin)                       // dxh: (B, H, W, Cin)
                directConv3x3(gh.pointer, batch: bn, h: g.h, w: g.w, PackedConv3x3.transposedForInputGradient(weight),
                              into: dxh.pointer)
                Layout.transpose(dxh.pointer, batch: bn, rows: p, cols: cin, into: x.gradBuffer(), accumulate: true)
                Scratch.give(dxh)
            }
        }
    }

    /// 1x1 stride-1 convolution straight on NCHW, one sgemm per image:
    /// out_b (Cout, P) = W (Cout, Cin) @ x_b (Cin, P) + bias.
    fileprivate static func pointwiseConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, _ g: ConvGeometry) -> Tensor {
        let (bn, cin, cout, p) = (g.batch, g.cin, g.cout, g.p)
        let out = Tensor(uninitialized: [bn, cout, g.ho, g.wo])           // out: (B, Cout, H, W)
        let (px, pw, po) = (x.data, weight.data, out.data)
        if let bias {
            let pb = bias.data
            Runtime.parallelFor(bn * cout, cost: p) { lo, hi in
                for r in lo..<hi { (po + r * p).update(repeating: pb[r % cout], count: p) }
            }
        }
        if recordsGradient(bias.map { [x, weight, $0] } ?? [x, weight]) {
            for b in 0..<bn {
                BLAS.sgemm(transA: false, transB: false, m: cout, n: p, k: cin, a: pw, lda: cin,
                           b: px + b * cin * p, ldb: p, beta: bias == nil ? 0 : 1, c: po + b * cout * p, ldc: p)
            }
        } else {
            // Inference: the row-stable kernel per image (rows: output channels, lanes: positions),
            // images split over the threads.
            Runtime.parallelFor(bn, cost: max(1, cout * p * cin / 16)) { lo, hi in
                for b in lo..<hi {
                    RowGEMM.multiply(transB: false, m: cout, n: p, k: cin, a: pw, lda: cin, b: px + b * cin * p, ldb: p,
                                     accumulate: bias != nil, c: po + b * cout * p, ldc: p)
                }
            }
        }
        return out.recordingConv(x, weight, bias, g) { go in                // go: (B, Cout, P)
            if weight.requiresGrad {
                let gw = weight.gradBuffer()                              // gw: (Cout, Cin)
                for b in 0..<bn {
                    // dW += g_b x_bᵀ
                    BLAS.sgemm(transA: false, transB: true, m: cout, n: cin, k: p, a: go + b * cout * p, lda: p,
                               b: px + b * cin * p, ldb: p, beta: 1, c: gw, ldc: cin)
                }
            }
            if x.requiresGrad {
                let gx = x.gradBuffer()                                   // gx: (B, Cin, P)
                for b in 0..<bn {
                    // dx_b += Wᵀ g_b
                    BLAS.sgemm(transA: true, transB: false, m: cin, n: p, k: cout, a: pw, lda: cin,
                               b: go + b * cout * p, ldb: p, beta: 1, c: gx + b * cin * p, ldc: p)
                }
            }
        }
    }
}

extension Tensor {
    /// Records a convolution's backward pass (self is its output): adds the bias gradient, then
    /// runs `body(go)` with the output gradient go (B, Cout, P) unless neither x nor the weight
    /// needs a gradient.
    fileprivate func recordingConv(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: ConvGeometry,
                                   function: StaticString = #function,
                                   _ body: @escaping (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        return recording(inputs, function: function) { out in
            let go = out.grad!
            if let bias, bias.requiresGrad { g.addBiasGradient(go, into: bias.gradBuffer()) }
            guard x.requiresGrad || weight.requiresGrad else { return }
            body(go)
        }
    }
}

/// Sizes of one conv2d call and the raw-buffer kernels that depend on them.
struct ConvGeometry {
    let batch: Int, cin: Int, h: Int, w: Int, cout: Int, k: Int, stride: Int, padding: Int
    let ho: Int, wo: Int

    init(batch: Int, cin: Int, h: Int, w: Int, cout: Int, k: Int, stride: Int, padding: Int) {
        self.batch = batch; self.cin = cin; self.h = h; self.w = w
        self.cout = cout; self.k = k; self.stride = stride; self.padding = padding
        ho = (h + 2 * padding - k) / stride + 1
        wo = (w + 2 * padding - k) / stride + 1
    }

    /// Target size of one chunk's column matrix, in floats (4 MiB): small enough to stay in
    /// cache between im2col writing it and sgemm reading it (see the measurements above).
    static let columnChunkFloats = 1 << 20

    /// The same convolution over `n` images.
    func with(batch n: Int) -> ConvGeometry {
        ConvGeometry(batch: n, cin: cin, h: h, w: w, cout: cout, k: k, stride: stride, padding: padding)
    }

    /// Runs `body(firstImage, geometry of the chunk)` over consecutive chunks of whole images.
    func forEachChunk(_ body: (Int, ConvGeometry) -> Void) {
        let per = Swift.max(1, Swift.min(batch, ConvGeometry.columnChunkFloats / Swift.max(1, p * kc)))
        var b0 = 0
        while b0 < batch {
            let n = Swift.min(per, batch - b0)
            body(b0, with(batch: n))
            b0 += n
        }
    }

    /// Floats per input image (Cin*H*W) and per output image (Cout*P).
    var inputImage: Int { cin * h * w }
    var outputImage: Int { cout * p }

    /// Output positions per image.
    var p: Int { ho * wo }
    /// Rows of the column matrix (all output positions of the batch).
    var rows: Int { batch * p }
    /// Columns of the column matrix (one kernel window).
    var kc: Int { k * k * cin }
    /// 1x1, stride 1, no padding: a per-pixel linear map over channels (no im2col needed).
    var isPointwise: Bool { k == 1 && stride == 1 && padding == 0 }
    /// 3x3, stride 1, padding 1: the direct channels-last kernel's case.
    var isDirect3x3: Bool { k == 3 && stride == 1 && padding == 1 && !Self.directDisabled }

    /// `COALESCE_CONV=im2col` turns the direct 3x3 path off (for comparisons).
    static let directDisabled = ProcessInfo.processInfo.environment["COALESCE_CONV"] == "im2col"

    /// bias grad (Cout) += Σ over batch and positions of go (B, Cout, P).
    func addBiasGradient(_ go: UnsafeMutablePointer<Float>, into gb: UnsafeMutablePointer<Float>) {
        let (p, cout, batch) = (p, cout, batch)
        Runtime.parallelFor(cout, cost: batch * p) { lo, hi in
            for c in lo..<hi {
                var acc: Float = 0
                for b in 0..<batch { acc += Kernels.sum(go + (b * cout + c) * p, p) }
                gb[c] += acc
            }
        }
    }

    /// A weight buffer in (Cout, K, K, Cin) order: borrowed when K = 1 (same order), else a copy.
    struct Permuted {
        let pointer: UnsafeMutablePointer<Float>
        let owned: Bool
        func release() { if owned { pointer.deallocate() } }
    }

    func permutedWeight(_ wt: UnsafeMutablePointer<Float>) -> Permuted {
        if k == 1 { return Permuted(pointer: wt, owned: false) }
        let kk = k * k
        let dst = Tensor.allocate(cout * kc)
        for o in 0..<cout {
            let s = wt + o * kc, d = dst + o * kc   // s: (Cin, K*K), d: (K*K, Cin)
            for c in 0..<cin { for t in 0..<kk { d[t * cin + c] = s[c * kk + t] } }
        }
        return Permuted(pointer: dst, owned: true)
    }

    /// grad (Cout, Cin, K, K) += dwp (Cout, K, K, Cin) permuted back.
    func addUnpermutedWeight(_ dwp: UnsafeMutablePointer<Float>, into grad: UnsafeMutablePointer<Float>) {
        let kk = k * k
        for o in 0..<cout {
            let s = dwp + o * kc, d = grad + o * kc
            for c in 0..<cin { for t in 0..<kk { d[c * kk + t] += s[t * cin + c] } }
        }
    }

    /// The column matrix for input x (B, Cin, H, W): a scratch buffer (B*P, K*K*Cin) the caller
    /// gives back.
    func columns(_ x: UnsafeMutablePointer<Float>) -> Scratch.Buffer {
        let xh = Scratch.take(batch * h * w * cin)               // xh: (B, H, W, Cin)
        Layout.transpose(x, batch: batch, rows: cin, cols: h * w, into: xh.pointer)
        let cols = Scratch.take(rows * kc)
        im2col(xh.pointer, into: cols.pointer)
        Scratch.give(xh)
        return cols
    }

    /// cols[(b, oy, ox), (ky, kx, ci)] = xh[b, oy*s + ky - p, ox*s + kx - p, ci] (0 outside).
    /// Parallel over (b, oy) output rows; each writes its own block of cols.
    func im2col(_ xh: UnsafeMutablePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        let (h, w, cin, k, s, pad, ho, wo, kc) = (h, w, cin, k, stride, padding, ho, wo, kc)
        Runtime.parallelFor(batch * ho, cost: wo * kc) { lo, hi in
            for unit in lo..<hi {
                let b = unit / ho, oy = unit % ho
                let img = xh + b * h * w * cin
                var dst = cols + unit * wo * kc
                for ox in 0..<wo {
                    for ky in 0..<k {
                        let iy = oy * s + ky - pad
                        if iy < 0 || iy >= h {
                            dst.update(repeating: 0, count: k * cin)
                            dst += k * cin
                            continue
                        }
                        // Taps kx in [kx0, kx1) read inside the row: consecutive pixels, so one
                        // contiguous copy of (kx1 - kx0) * Cin floats; zeros either side.
                        let x0 = ox * s - pad
                        let kx0 = Swift.max(0, -x0), kx1 = Swift.min(k, w - x0)
                        if kx1 <= kx0 {
                            dst.update(repeating: 0, count: k * cin)
                        } else {
                            if kx0 > 0 { dst.update(repeating: 0, count: kx0 * cin) }
                            (dst + kx0 * cin).update(from: img + (iy * w + x0 + kx0) * cin, count: (kx1 - kx0) * cin)
                            if kx1 < k { (dst + kx1 * cin).update(repeating: 0, count: (k - kx1) * cin) }
                        }
                        dst += k * cin
                    }
                }
            }
        }
    }

    /// im2col from an input already padded by `padding` = 1 (xp: (B, H+2, W+2, Cin)) for the
    /// 3x3 stride-1 case: no bounds checks, one copy of 3*Cin values per (pixel, kernel row).
    func im2colPadded(_ xp: UnsafeMutablePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        let (h, w, cin, ho, wo, kc) = (h, w, cin, ho, wo, kc)
        let wp = w + 2, run = 3 * cin
        Runtime.parallelFor(batch * ho, cost: wo * kc) { lo, hi in
            for unit in lo..<hi {
                let b = unit / ho, oy = unit % ho
                let img = xp + b * (h + 2) * wp * cin
                var dst = cols + unit * wo * kc
                for ox in 0..<wo {
                    for ky in 0..<3 {
                        let src = img + ((oy + ky) * wp + ox) * cin
                        for i in 0..<run { dst[i] = src[i] }
                        dst += run
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: dxh (B, H, W, Cin) = sum of dCols entries over the windows that
    /// read each input element. Gathers per input row (b, iy), so units write disjoint rows and
    /// run in parallel even for a single image.
    func col2im(_ dCols: UnsafeMutablePointer<Float>, into dxh: UnsafeMutablePointer<Float>) {
        let (h, w, cin, k, s, pad, ho, wo, kc) = (h, w, cin, k, stride, padding, ho, wo, kc)
        Runtime.parallelFor(batch * h, cost: w * cin * k) { lo, hi in
            for unit in lo..<hi {
                let b = unit / h, iy = unit % h
                let row = dxh + unit * w * cin                     // row: (W, Cin)
                row.update(repeating: 0, count: w * cin)
                // Output rows oy whose kernel row ky reads iy: oy * s + ky - pad == iy.
                for ky in 0..<k {
                    let t = iy + pad - ky
                    if t < 0 || t % s != 0 || t / s >= ho { continue }
                    let src = dCols + (b * ho + t / s) * wo * kc + ky * k * cin
                    for ox in 0..<wo {
                        let x0 = ox * s - pad
                        let kx0 = Swift.max(0, -x0), kx1 = Swift.min(k, w - x0)
                        if kx1 <= kx0 { continue }
                        let d = row + (x0 + kx0) * cin, sp = src + ox * kc + kx0 * cin
                        for c in 0..<((kx1 - kx0) * cin) { d[c] += sp[c] }
                    }
                }
            }
        }
    }
}
