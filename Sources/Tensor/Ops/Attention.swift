import Foundation

// Multi-head scaled dot-product attention and the (B, C, H, W) <-> token layouts it runs on.

extension Tensor {
    /// Multi-head attention without projections: q (B, Tq, D), k and v (B, Tk, D), D divisible by
    /// `heads`. For each batch item and head h (columns h*dh ..< (h+1)*dh, dh = D / heads):
    /// out_h = softmax(Q_h K_hᵀ / sqrt(dh)) V_h; output (B, Tq, D) with heads side by side.
    ///
    /// Runs one product per (batch, head) on strided views (lda = D), so the head split copies
    /// nothing (sgemm when training; the row-stable kernels of `RowGEMM` in inference). When a gradient will be recorded it keeps the probabilities P
    /// (B, heads, Tq, Tk) for backward; otherwise (inference) it holds one (Tq, Tk) plane at a time.
    /// With Tk = 0 the output is zeros.
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3,
                     "attention: q, k, v must be (B, T, D), got \(q.shape), \(k.shape), \(v.shape)")
        let (bn, tq, d) = (q.shape[0], q.shape[1], q.shape[2])
        let tk = k.shape[1]
        precondition(k.shape[0] == bn && k.shape[2] == d && v.shape == k.shape,
                     "attention: k \(k.shape) and v \(v.shape) must be (\(bn), Tk, \(d)) like q \(q.shape)")
        precondition(heads >= 1 && d % heads == 0, "attention: width \(d) is not divisible by \(heads) heads")
        let dh = d / heads
        let scale = 1 / Float(dh).squareRoot()
        let out = Tensor(uninitialized: [bn, tq, d])                  // out: (B, Tq, D)
        let plane = tq * tk
        if tk == 0 { out.data.update(repeating: 0, count: out.count); return out }
        let (pq, pk, pv, po) = (q.data, k.data, v.data, out.data)
        let needsBackward = GradMode.isEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
        if !needsBackward {
            // Inference: per (batch item, head), both products on the row-stable kernels (RowGEMM:
            // the same bits on every machine, no BLAS), one (Tq, Tk) probability plane per worker;
            // the pairs split over the threads.
            Runtime.parallelFor(bn * heads, cost: max(1, 2 * tq * tk * dh / 16)) { lo, hi in
                let p = Scratch.take(plane)
                defer { Scratch.give(p) }
                for bh in lo..<hi {
                    let (b, h) = (bh / heads, bh % heads)
                    RowGEMM.multiply(transB: true, m: tq, n: tk, k: dh, a: pq + b * tq * d + h * dh, lda: d,
                                     b: pk + b * tk * d + h * dh, ldb: d, accumulate: false, c: p.pointer, ldc: tk)
                    for i in 0..<plane { p.pointer[i] *= scale }
                    Kernels.softmaxRows(p.pointer, into: p.pointer, rows: tq, cols: tk)
                    RowGEMM.multiply(transB: false, m: tq, n: dh, k: tk, a: p.pointer, lda: tk,
                                     b: pv + b * tk * d + h * dh, ldb: d, accumulate: false,
                                     c: po + b * tq * d + h * dh, ldc: d)
                }
            }
            return out
        }
        let probs = Tensor(uninitialized: [bn, heads, tq, tk])        // probs: (B, heads, Tq, Tk)
        let pp = probs.data
        for b in 0..<bn {
            for h in 0..<heads {
                // S = Q_h K_hᵀ * scale                                 // S: (Tq, Tk)
                BLAS.sgemm(transA: false, transB: true, m: tq, n: tk, k: dh, alpha: scale,
                           a: pq + b * tq * d + h * dh, lda: d, b: pk + b * tk * d + h * dh, ldb: d,
                           beta: 0, c: pp + (b * heads + h) * plane, ldc: tk)
            }
        }
        Kernels.softmaxRows(pp, into: pp, rows: bn * heads * tq, cols: tk)
        for b in 0..<bn {
            for h in 0..<heads {
                // O_h = P V_h                                          // O_h: (Tq, dh), ld D
                BLAS.sgemm(transA: false, transB: false, m: tq, n: dh, k: tk,
                           a: pp + (b * heads + h) * plane, lda: tk, b: pv + b * tk * d + h * dh, ldb: d,
                           beta: 0, c: po + b * tq * d + h * dh, ldc: d)
            }
        }
        return out.recording([q, k, v]) { out in
            let go = out.grad!                                        // go: (B, Tq, D)
            let dS = Tensor.allocate(plane)                           // dS: (Tq, Tk), one head at a time
            defer { dS.deallocate(); withExtendedLifetime(probs) {} }  // pp points into probs
            let gq = q.requiresGrad ? q.gradBuffer() : nil
            let gk = k.requiresGrad ? k.gradBuffer() : nil
            let gv = v.requiresGrad ? v.gradBuffer() : nil
            for b in 0..<bn {
                for h in 0..<heads {
                    let p = pp + (b * heads + h) * plane
                    let gOut = go + b * tq * d + h * dh, qh = pq + b * tq * d + h * dh
                    let kh = pk + b * tk * d + h * dh, vh = pv + b * tk * d + h * dh
                    if let gv {
                        // dV_h += Pᵀ dO_h
                        BLAS.sgemm(transA: true, transB: false, m: tk, n: dh, k: tq, a: p, lda: tk,
                                   b: gOut, ldb: d, beta: 1, c: gv + b * tk * d + h * dh, ldc: d)
                    }
                    guard gq != nil || gk != nil else { continue }
                    // dP = dO_h V_hᵀ, then dS = scale * P * (dP - Σ dP*P)
                    BLAS.sgemm(transA: false, transB: true, m: tq, n: tk, k: dh, a: gOut, lda: d,
                               b: vh, ldb: d, beta: 0, c: dS, ldc: tk)
                    Kernels.softmaxBackwardRows(y: p, dy: dS, into: dS, rows: tq, cols: tk,
                                                scale: scale, accumulate: false)
                    if let gq {
                        // dQ_h += dS K_h
                        BLAS.sgemm(transA: false, transB: false, m: tq, n: dh, k: tk, a: dS, lda: tk,
                                   b: kh, ldb: d, beta: 1, c: gq + b * tq * d + h * dh, ldc: d)
                    }
                    if let gk {
                        // dK_h += dSᵀ Q_h
                        BLAS.sgemm(transA: true, transB: false, m: tk, n: dh, k: tq, a: dS, lda: tk,
                                   b: qh, ldb: d, beta: 1, c: gk + b * tk * d + h * dh, ldc: d)
                    }
                }
            }
        }
    }

    /// (B, C, H, W) -> (B, H*W, C): one token per position, channels as features.
    public static func channelsToTokens(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "channelsToTokens: input must be (B, C, H, W), got \(x.shape)")
        let (bn, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let out = Tensor(uninitialized: [bn, hw, c])
        Layout.transpose(x.data, batch: bn, rows: c, cols: hw, into: out.data)
        return out.recording([x]) { out in
            Layout.transpose(out.grad!, batch: bn, rows: hw, cols: c, into: x.gradBuffer(), accumulate: true)
        }
    }

    /// (B, H*W, C) -> (B, C, H, W): the inverse of `channelsToTokens`.
    public static func tokensToChannels(_ x: Tensor, height: Int, width: Int) -> Tensor {
        precondition(x.rank == 3 && x.shape[1] == height * width,
                     "tokensToChannels: input must be (B, \(height)*\(width), C), got \(x.shape)")
        let (bn, hw, c) = (x.shape[0], x.shape[1], x.shape[2])
        let out = Tensor(uninitialized: [bn, c, height, width])
        Layout.transpose(x.data, batch: bn, rows: hw, cols: c, into: out.data)
        return out.recording([x]) { out in
            Layout.transpose(out.grad!, batch: bn, rows: c, cols: hw, into: x.gradBuffer(), accumulate: true)
        }
    }
}
