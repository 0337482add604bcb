import Foundation
import Tensor

/// Configuration of `CoalescerNet`. JSON keys are snake_case.
public struct CoalescerNetConfig: Codable, Equatable, Sendable {
    /// Dimension of the space the net moves in (whitened PCA coordinates of the image latent).
    public var latentDim: Int = 24
    /// Description-embedding dimension (the text encoder's `dim`).
    public var descDim: Int = 16
    /// Hidden width and number of hidden layers of the MLP.
    public var hidden: Int = 512
    public var depth: Int = 3

    public init() {}

    enum CodingKeys: String, CodingKey {
        case latentDim = "latent_dim", descDim = "desc_dim", hidden, depth
    }

    public func validate() throws {
        guard latentDim > 0, descDim > 0, hidden > 0, depth >= 1 else {
            throw ModelError.invalidConfig("coalescer net: latent_dim, desc_dim, hidden > 0 and depth >= 1 (got \(self))")
        }
    }
}

/// The coalescer network: (R, DE) -> (distance, direction).
///
/// An MLP over concat(R, DE) with SiLU; the last layer gives 1 + latentDim values: the predicted
/// distance from R to the target and an unnormalised direction whose length says how sure the
/// net is (it shrinks where the target direction changes quickly).
public final class CoalescerNet: Layer {
    public let config: CoalescerNetConfig
    let layers: [Linear]
    let out: Linear

    public init(config: CoalescerNetConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        var ls: [Linear] = []
        var width = config.latentDim + config.descDim
        for _ in 0..<config.depth {
            ls.append(Linear(width, config.hidden, rng: &rng))
            width = config.hidden
        }
        layers = ls
        out = Linear(width, 1 + config.latentDim, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] { nest("layers", layers) + nest("out", out) }

    /// r (B, latentDim), desc (B, descDim) -> (distance (B, 1), direction (B, latentDim)).
    public func callAsFunction(_ r: Tensor, _ desc: Tensor) -> (distance: Tensor, direction: Tensor) {
        var h = Tensor.concat([r, desc], axis: 1)
        for l in layers { h = l(h).silu() }
        let parts = out(h).splitChannels([1, config.latentDim])  // (B, 1), (B, latentDim)
        return (parts[0], parts[1])
    }
}
