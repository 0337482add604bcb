import Foundation

// Embeddings: learned lookup tables and the fixed sinusoidal timestep embedding.

extension Tensor {
    /// Rows of `table` (V, D) picked by `indices`: (N, D) with N = indices.count.
    /// Every index must be in 0..<V. The gradient scatter-adds into the table (repeated indices
    /// accumulate).
    public static func embedding(_ table: Tensor, indices: [Int]) -> Tensor {
        precondition(table.rank == 2, "embedding: table must be (V, D), got \(table.shape)")
        let v = table.shape[0]
        for i in indices {
            precondition(i >= 0 && i < v, "embedding: index \(i) out of range 0..<\(v) for table \(table.shape)")
        }
        return table.gatherRows(indices)
    }

    /// Sinusoidal timestep embedding, (B, dim) for B = t.count, as diffusers
    /// `get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=1, scale=1,
    /// max_period=maxPeriod)`: with half = dim / 2 and frequencies
    /// f_j = exp(-ln(maxPeriod) * j / (half - 1)), j in 0..<half, a row is
    /// [cos(t f_0) ... cos(t f_{half-1}) | sin(t f_0) ... sin(t f_{half-1})], zero-padded by one
    /// column when dim is odd. (With half = 1 the single frequency is 1.)
    ///
    /// No gradient: the input is a list of constants, so the result is a constant tensor with
    /// no graph (`requiresGrad == false`); gradients flow from the layers applied to it.
    public static func timestepEmbedding(_ t: [Float], dim: Int, maxPeriod: Float = 10000) -> Tensor {
        precondition(dim >= 2, "timestepEmbedding: dim must be >= 2, got \(dim)")
        precondition(maxPeriod > 0, "timestepEmbedding: maxPeriod must be > 0, got \(maxPeriod)")
        let half = dim / 2
        let out = Tensor(zeros: [t.count, dim])
        let logPeriod = Foundation.log(Double(maxPeriod))
        let freqs: [Double] = (0..<half).map { j in
            half > 1 ? Foundation.exp(-logPeriod * Double(j) / Double(half - 1)) : 1
        }
        for (r, tv) in t.enumerated() {
            let row = out.data + r * dim
            for j in 0..<half {
                // Frequencies and products in float32 as diffusers computes them, sin/cos in float64.
                let arg = Double(Float(Double(tv) * Double(Float(freqs[j]))))
                row[j] = Float(Foundation.cos(arg))
                row[half + j] = Float(Foundation.sin(arg))
            }
        }
        return out
    }
}
