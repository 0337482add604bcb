import Foundation
import Tensor

/// A latent diffusion model: the shared image autoencoder (frozen), the text encoder (frozen,
/// taken from a trained coalescer), and a UNet denoiser on the autoencoder's latent grid that
/// predicts v, conditioned on the description embedding through the time embedding and
/// cross-attention. The zero embedding is "no condition" (empty prompt, and the unconditional
/// half of classifier-free guidance).
///
/// Checkpoint: one safetensors file with keys `autoencoder.*`, `text_encoder.*`, `unet.*` and
/// the `LatentDiffusionConfig` JSON in the metadata under "config".
public final class LatentDiffusionModel: Layer {
    public var config: LatentDiffusionConfig
    public let autoencoder: ImageAutoencoder
    public let textEncoder: TextEncoder
    public let unet: UNet
    public let schedule: DiffusionSchedule

    public init(config: LatentDiffusionConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        autoencoder = try ImageAutoencoder(config: config.autoencoder, rng: &rng)
        textEncoder = try TextEncoder(config: config.textEncoder, rng: &rng)
        unet = try UNet(config.unet, rng: &rng)
        schedule = config.schedule
    }

    public var namedParameters: [(String, Tensor)] {
        nest("autoencoder", autoencoder) + nest("text_encoder", textEncoder) + nest("unet", unet)
    }

    /// Loads a file written by `save`. A model whose text encoder is `minilm` also loads the MiniLM
    /// sentence encoder from `minilmDirectory`, by default `models/minilm` beside the model's
    /// directory (`MiniLM.directory(besideModelFile:)`).
    public static func load(path: String) throws -> LatentDiffusionModel { try load(path: path, minilmDirectory: nil) }

    public static func load(path: String, minilmDirectory: String?) throws -> LatentDiffusionModel {
        let st = try SafeTensors.read(path: path)
        guard let json = st.config else { throw ModelError.invalidConfig("\(path) has no \"config\" metadata") }
        let config = try LatentDiffusionConfig.from(json: json)
        var rng = RandomGenerator(seed: 0)
        let model = try LatentDiffusionModel(config: config, rng: &rng)
        let tensors = try st.allTensors()
        try model.load(from: tensors)
        if config.textEncoder.usesMiniLM {
            try model.textEncoder.attach(try MiniLM.shared(directory: minilmDirectory ?? MiniLM.directory(besideModelFile: path)))
        }
        return model
    }

    /// The same autoencoder and UNet (copies of their weights) with another text encoder of the
    /// same output width, e.g. a MiniLM projection trained to reproduce this model's trigram
    /// embeddings (`coalesce train text-encoder`).
    public func replacingTextEncoder(with encoder: TextEncoder) throws -> LatentDiffusionModel {
        guard encoder.config.dim == config.textEncoder.dim else {
            throw ModelError.invalidConfig("text encoder width \(encoder.config.dim) != the model's \(config.textEncoder.dim)")
        }
        var c = config
        c.textEncoder = encoder.config
        var rng = RandomGenerator(seed: 0)
        let model = try LatentDiffusionModel(config: c, rng: &rng)
        var tensors = [String: Tensor]()
        for (name, t) in nest("autoencoder", autoencoder) + nest("unet", unet) { tensors[name] = t }
        for (name, t) in nest("text_encoder", encoder) { tensors[name] = t }
        try model.load(from: tensors)
        if let m = encoder.minilm { try model.textEncoder.attach(m) }
        return model
    }

    public func save(path: String) throws {
        try SafeTensors(tensors: stateDict(), metadata: [SafeTensors.configKey: try config.json()]).write(path: path)
    }

    /// Packs the autoencoder's and the UNet's weights for inference (same bits); call it again
    /// after the weights change.
    public func prepareForInference() {
        autoencoder.prepareForInference()
        unet.prepareForInference()
    }

    /// Latent grid shape (C, S, S).
    public var latentShape: (channels: Int, side: Int) { (config.autoencoder.latentChannels, config.autoencoder.latentSide) }

    /// Description embeddings (B, dim); the empty prompt (after trimming whitespace) is the zero vector.
    public func conditions(_ prompts: [String]) -> Tensor {
        let dim = config.textEncoder.dim
        let out = Tensor(zeros: [prompts.count, dim])
        let nonEmpty = prompts.indices.filter { !prompts[$0].trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        if nonEmpty.isEmpty { return out }
        let e = GradMode.withDisabled { textEncoder.embed(nonEmpty.map { prompts[$0] }) }
        for (r, i) in nonEmpty.enumerated() { (out.data + i * dim).update(from: e.data + r * dim, count: dim) }
        return out
    }

    /// v = unet(x_t, t, cond): x (B, C, S, S), t per row, cond (B, dim). With gradients off, the
    /// batch is cut into one chunk of images per thread (`BatchChunks`; the same bits). `net`: a
    /// replica of `unet` to run instead (data-parallel training, `DataParallelStep`).
    public func predictV(_ x: Tensor, t: [Float], cond: Tensor, net: UNet? = nil) -> Tensor {
        let unet = net ?? self.unet
        let b = cond.shape[0]
        return BatchChunks.map(batch: b) { rows in
            let (xr, cr) = rows.count == b ? (x, cond) : (x.slice(rows), cond.slice(rows))
            let context = config.unet.contextDim > 0 ? cr.reshaped([rows.count, 1, cr.shape[1]]) : nil
            return [unet(xr, t: Array(t[rows]), cond: cr, context: context)]
        }[0]
    }
}
