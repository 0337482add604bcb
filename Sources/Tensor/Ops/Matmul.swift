// Matrix products on OpenBLAS sgemm.

extension Tensor {
    /// (M, K) @ (K, N) -> (M, N). `transA`/`transB` treat the stored matrices as transposed.
    public static func matmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
        precondition(a.rank == 2 && b.rank == 2, "matmul needs 2-D tensors, got \(a.shape) and \(b.shape)")
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let k2 = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
        precondition(k == k2, "matmul: inner sizes differ, \(a.shape)\(transA ? "ᵀ" : "") @ \(b.shape)\(transB ? "ᵀ" : "")")
        let out = Tensor(uninitialized: [m, n])
        if transA || recordsGradient([a, b]) {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.data, lda: a.shape[1],
                       b: b.data, ldb: b.shape[1], beta: 0, c: out.data, ldc: n)
        } else {
            // Inference: rows of A are samples, each computed the same whatever m (RowGEMM).
            RowGEMM.multiply(transB: transB, m: m, n: n, k: k, a: a.data, lda: a.shape[1], b: b.data,
                             ldb: b.shape[1], accumulate: false, c: out.data, ldc: n)
        }
        return out.recording([a, b]) { out in
            let g = out.grad!  // g: (M, N)
            if a.requiresGrad {
                // dA = g @ op(B)^T  (or its transpose when A was transposed)
                if !transA {
                    BLAS.sgemm(transA: false, transB: !transB, m: m, n: k, k: n, a: g, lda: n,
                               b: b.data, ldb: b.shape[1], beta: 1, c: a.gradBuffer(), ldc: a.shape[1])
                } else {
                    BLAS.sgemm(transA: transB, transB: true, m: k, n: m, k: n, a: b.data, lda: b.shape[1],
                               b: g, ldb: n, beta: 1, c: a.gradBuffer(), ldc: a.shape[1])
                }
            }
            if b.requiresGrad {
                // dB = op(A)^T @ g  (or its transpose when B was transposed)
                if !transB {
                    BLAS.sgemm(transA: !transA, transB: false, m: k, n: n, k: m, a: a.data, lda: a.shape[1],
                               b: g, ldb: n, beta: 1, c: b.gradBuffer(), ldc: b.shape[1])
                } else {
                    BLAS.sgemm(transA: true, transB: transA, m: n, n: k, k: m, a: g, lda: n,
                               b: a.data, ldb: a.shape[1], beta: 1, c: b.gradBuffer(), ldc: b.shape[1])
                }
            }
        }
    }

    /// Fully connected layer: x (..., In) @ weight(Out, In)ᵀ + bias(Out) -> (..., Out).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, packed: PackedLinearWeight? = nil) -> Tensor {
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(x.shape.last == inF, "linear: input \(x.shape) does not end in \(inF)")
        if let bias { precondition(bias.count == outF, "linear: bias \(bias.shape) vs \(outF) outputs") }
        let rows = x.count / inF
        var s = x.shape
        s[s.count - 1] = outF
        let out = Tensor(uninitialized: s)
        if let bias {
            for r in 0..<rows { (out.data + r * outF).update(from: bias.data, count: outF) }
        }
        var inputs = [x, weight]
        if let bias { inputs.append(bias) }
        if recordsGradient(inputs) {
            BLAS.sgemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF,
                       b: weight.data, ldb: inF, beta: bias == nil ? 0 : 1, c: out.data, ldc: outF)
        } else {
            // Inference: every row computed the same whatever the number of rows (RowGEMM); a
            // weight packed beforehand skips the per-call packing (same kernel, same bits).
            if let packed, packed.n == outF, packed.k == inF {
                packed.multiply(m: rows, a: x.data, lda: inF, accumulate: bias != nil, c: out.data, ldc: outF)
            } else {
                RowGEMM.multiply(transB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
                                 accumulate: bias != nil, c: out.data, ldc: outF)
            }
        }
        return out.recording(inputs) { out in
            let g = out.grad!  // g: (rows, Out)
            if x.requiresGrad {
                BLAS.sgemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: g, lda: outF,
                           b: weight.data, ldb: inF, beta: 1, c: x.gradBuffer(), ldc: inF)
            }
            if weight.requiresGrad {
                BLAS.sgemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: g, lda: outF,
                           b: x.data, ldb: inF, beta: 1, c: weight.gradBuffer(), ldc: inF)
            }
            if let bias, bias.requiresGrad {
                let gb = bias.gradBuffer()
                for r in 0..<rows { for j in 0..<outF { gb[j] += g[r * outF + j] } }
            }
        }
    }
}
