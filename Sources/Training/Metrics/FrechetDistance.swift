import Tensor

/// Mean and covariance of a set of feature vectors, in float64.
public struct GaussianStatistics: Sendable {
    public var dim: Int
    public var count: Int
    public var mean: [Double]
    /// (dim, dim) row-major, unbiased (divided by count - 1).
    public var covariance: [Double]

    public init(_ x: FeatureMatrix) {
        precondition(x.rows >= 2, "GaussianStatistics: need at least 2 vectors, got \(x.rows)")
        let d = x.cols, n = x.rows
        var mean = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += Double(x.values[i * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        // Upper triangle of the centred scatter matrix, accumulated row by row in float64.
        var cov = [Double](repeating: 0, count: d * d)
        var centred = [Double](repeating: 0, count: d)
        cov.withUnsafeMutableBufferPointer { c in
            for i in 0..<n {
                for j in 0..<d { centred[j] = Double(x.values[i * d + j]) - mean[j] }
                for a in 0..<d {
                    let ca = centred[a]
                    if ca == 0 { continue }
                    let row = a * d
                    for b in a..<d { c[row + b] += ca * centred[b] }
                }
            }
        }
        for a in 0..<d {
            for b in a..<d {
                let v = cov[a * d + b] / Double(n - 1)
                cov[a * d + b] = v
                cov[b * d + a] = v
            }
        }
        self.dim = d
        self.count = n
        self.mean = mean
        self.covariance = cov
    }
}

/// The Fréchet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, "GANs
/// trained by a two time-scale update rule converge to a local Nash equilibrium"; FID with our
/// domain classifier's features in place of Inception's):
///
///     d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))
///
/// The trace term is computed with symmetric eigen-decompositions only (float64 LAPACK):
/// tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the sum of the square roots of the
/// eigenvalues of a symmetric positive semi-definite matrix (negative round-off clamped to 0).
public enum FrechetDistance {
    public static func compute(_ a: GaussianStatistics, _ b: GaussianStatistics) throws -> Double {
        precondition(a.dim == b.dim, "FrechetDistance: dimensions \(a.dim) vs \(b.dim)")
        let d = a.dim
        var meanTerm = 0.0
        for j in 0..<d { let t = a.mean[j] - b.mean[j]; meanTerm += t * t }
        var traceA = 0.0, traceB = 0.0
        for j in 0..<d { traceA += a.covariance[j * d + j]; traceB += b.covariance[j * d + j] }
        let rootA = try symmetricSquareRoot(a.covariance, n: d)
        let m = multiply(multiply(rootA, b.covariance, n: d), rootA, n: d)
        // Symmetrise against round-off before the eigen-solver.
        var sym = m
        for i in 0..<d { for j in 0..<d { sym[i * d + j] = 0.5 * (m[i * d + j] + m[j * d + i]) } }
        let (values, _) = try BLAS.symmetricEigen(sym, n: d)
        let traceRoot = values.reduce(0) { $0 + max(0, $1).squareRoot() }
        return max(0, meanTerm + traceA + traceB - 2 * traceRoot)
    }

    /// FID between two feature sets.
    public static func compute(_ a: FeatureMatrix, _ b: FeatureMatrix) throws -> Double {
        try compute(GaussianStatistics(a), GaussianStatistics(b))
    }

    /// S^(1/2) of a symmetric positive semi-definite matrix: V diag(sqrt(max(l, 0))) Vᵀ.
    static func symmetricSquareRoot(_ s: [Double], n: Int) throws -> [Double] {
        let (values, vectors) = try BLAS.symmetricEigen(s, n: n)  // vectors: rows are eigenvectors
        var out = [Double](repeating: 0, count: n * n)
        for k in 0..<n {
            let r = max(0, values[k]).squareRoot()
            if r == 0 { continue }
            let v = k * n
            for i in 0..<n {
                let vi = r * vectors[v + i]
                if vi == 0 { continue }
                for j in 0..<n { out[i * n + j] += vi * vectors[v + j] }
            }
        }
        return out
    }

    /// (n, n) @ (n, n) in float64.
    static func multiply(_ a: [Double], _ b: [Double], n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for k in 0..<n {
                let aik = a[i * n + k]
                if aik == 0 { continue }
                for j in 0..<n { c[i * n + j] += aik * b[k * n + j] }
            }
        }
        return c
    }
}
