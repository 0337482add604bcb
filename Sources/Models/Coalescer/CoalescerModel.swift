import Foundation
import Tensor

/// A trained coalescer with everything needed to turn a prompt and a seed into images: image
/// autoencoder, text encoder, latent projection (whitened PCA) and the coalescer net.
///
/// Checkpoint: one safetensors file with keys `autoencoder.*`, `text_encoder.*`, `projection.*`,
/// `net.*` and the `CoalescerConfig` JSON in the metadata under "config".
public final class CoalescerModel: Layer {
    public var config: CoalescerConfig
    public let autoencoder: ImageAutoencoder
    public let textEncoder: TextEncoder
    public let projection: LatentProjection
    public let net: CoalescerNet

    /// A freshly initialised model (for training).
    public init(config: CoalescerConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        autoencoder = try ImageAutoencoder(config: config.autoencoder, rng: &rng)
        textEncoder = try TextEncoder(config: config.textEncoder, rng: &rng)
        projection = LatentProjection(dim: config.net.latentDim, latentDim: config.autoencoder.latentDim)
        net = try CoalescerNet(config: config.net, rng: &rng)
    }

    /// Builds a model from its parts (training assembles them one by one).
    public init(config: CoalescerConfig, autoencoder: ImageAutoencoder, textEncoder: TextEncoder,
                projection: LatentProjection, net: CoalescerNet) throws {
        try config.validate()
        self.config = config
        self.autoencoder = autoencoder
        self.textEncoder = textEncoder
        self.projection = projection
        self.net = net
    }

    public var namedParameters: [(String, Tensor)] {
        nest("autoencoder", autoencoder) + nest("text_encoder", textEncoder)
            + nest("projection", projection) + nest("net", net)
    }

    /// Loads `coalescer.safetensors` (or any file written by `save`). A model whose text encoder is
    /// `minilm` also loads the MiniLM sentence encoder from `minilmDirectory`, by default
    /// `models/minilm` beside the model's directory (`MiniLM.directory(besideModelFile:)`).
    public static func load(path: String, minilmDirectory: String? = nil) throws -> CoalescerModel {
        let st = try SafeTensors.read(path: path)
        guard let json = st.config else {
            throw ModelError.invalidConfig("\(path) has no \"config\" metadata")
        }
        let config = try CoalescerConfig.from(json: json)
        var rng = RandomGenerator(seed: 0)
        let model = try CoalescerModel(config: config, rng: &rng)
        let tensors = try st.allTensors()
        try model.load(from: tensors)
        if config.textEncoder.usesMiniLM {
            try model.textEncoder.attach(try MiniLM.shared(directory: minilmDirectory ?? MiniLM.directory(besideModelFile: path)))
        }
        return model
    }

    public func save(path: String) throws {
        try SafeTensors(tensors: stateDict(), metadata: [SafeTensors.configKey: try config.json()])
            .write(path: path)
    }

    /// The whitened latent coordinates of images (B, S*S) in [0, 1].
    public func latentCoordinates(_ pixels: Tensor) throws -> Tensor {
        projection.project(try autoencoder.encode(pixels))
    }

    /// Packs weights for the fast inference paths (`ImageAutoencoder.prepareForInference`).
    /// Servers and generators call it after loading; weights must not change afterwards.
    public func prepareForInference() {
        autoencoder.prepareForInference()
        net.prepareForInference()
    }

    /// Images (B, S*S) in [0, 1] from whitened latent coordinates (B, dim).
    /// With gradients off, one chunk of the batch per thread (`BatchChunks`; the same bits).
    public func decode(_ y: Tensor) throws -> Tensor {
        let b = y.rank == 2 ? y.shape[0] : 1
        return try BatchChunks.map(batch: b) { rows in
            [try autoencoder.decode(projection.unproject(rows.count == b ? y : y.slice(rows)))]
        }[0]
    }
}
