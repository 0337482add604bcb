import Foundation
import Tensor

/// Whitened PCA of the image latent space: y = diag(1/scale) V (z - mean), z ≈ mean + Vᵀ (scale ⊙ y).
///
/// The coalescer's vector search and network run in y (DESIGN.md: search in the ~24 leading
/// principal components, whitened, works far better than in the full 196-dimensional latent).
/// The discarded components are set to their mean when mapping back.
public final class LatentProjection: Layer {
    /// Mean of the training latents (latentDim).
    public let mean: Tensor
    /// Principal directions, one per row, largest variance first (dim, latentDim).
    public let components: Tensor
    /// Standard deviation along each principal direction (dim).
    public let scales: Tensor

    public var dim: Int { components.shape[0] }
    public var latentDim: Int { components.shape[1] }

    public init(dim: Int, latentDim: Int) {
        mean = Tensor(zeros: [latentDim])
        components = Tensor(zeros: [dim, latentDim])
        scales = Tensor(filled: 1, shape: [dim])
    }

    public var namedParameters: [(String, Tensor)] {
        [("mean", mean), ("components", components), ("scales", scales)]
    }

    /// Fits the projection to latents (N, latentDim) with an eigen-decomposition of the covariance.
    /// Returns all eigenvalues, largest first (for reporting the explained variance).
    @discardableResult
    public func fit(_ latents: Tensor) throws -> [Double] {
        let n = latents.shape[0], d = latents.shape[1]
        guard d == latentDim, n > 1 else {
            throw ModelError.invalidInput("PCA fit: need (N > 1, \(latentDim)) latents, got \(latents.shape)")
        }
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(latents.data[i * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        // Covariance via sgemm on the centred data (float), accumulated in double.
        let centred = Tensor(zeros: [n, d])
        for i in 0..<n { for j in 0..<d { centred.data[i * d + j] = latents.data[i * d + j] - Float(mu[j]) } }
        let cov = Tensor.matmul(centred, centred, transA: true)
        var c = [Double](repeating: 0, count: d * d)
        for i in 0..<(d * d) { c[i] = Double(cov.data[i]) / Double(n - 1) }
        let (values, vectors) = try BLAS.symmetricEigen(c, n: d)
        // Ascending -> take the last `dim` in reverse.
        for j in 0..<d { mean.data[j] = Float(mu[j]) }
        for r in 0..<dim {
            let e = d - 1 - r
            scales.data[r] = Float(max(values[e], 1e-12).squareRoot())
            for j in 0..<d { components.data[r * d + j] = Float(vectors[e * d + j]) }
        }
        return values.reversed()
    }

    /// Whitened coordinates (B, dim) of latents (B, latentDim).
    public func project(_ z: Tensor) -> Tensor {
        let centred = z - mean
        return Tensor.matmul(centred, components, transB: true) / scales
    }

    /// Latents (B, latentDim) of whitened coordinates (B, dim).
    public func unproject(_ y: Tensor) -> Tensor {
        Tensor.matmul(y * scales, components) + mean
    }
}
