import Foundation
import Tensor

/// A Matryoshka Diffusion model in pixel space: the text encoder (frozen, trained with the
/// model) and a `NestedUNet` that predicts v at every resolution, conditioned on the
/// description embedding through the time embedding and cross-attention. Pixels are in
/// [−1, 1]; resolution r of an image is its average pooling D^r(x). The zero embedding is "no
/// condition" (empty prompt, and the unconditional half of classifier-free guidance).
///
/// Checkpoint: one safetensors file with keys `text_encoder.*`, `net.*` and the
/// `NestedUNetConfig` JSON in the metadata under "config".
public final class NestedUNetModel: Layer {
    public var config: NestedUNetConfig
    public let textEncoder: TextEncoder
    public let net: NestedUNet
    /// One schedule per resolution, highest first (`config.schedules`).
    public let schedules: [DiffusionSchedule]

    public init(config: NestedUNetConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        textEncoder = try TextEncoder(config: config.textEncoder, rng: &rng)
        net = try NestedUNet(outer: config.outer, inner: config.inner, rng: &rng)
        schedules = config.schedules
    }

    public var namedParameters: [(String, Tensor)] {
        nest("text_encoder", textEncoder) + nest("net", net)
    }

    public static func load(path: String) throws -> NestedUNetModel {
        let st = try SafeTensors.read(path: path)
        guard let json = st.config else { throw ModelError.invalidConfig("\(path) has no \"config\" metadata") }
        let config = try NestedUNetConfig.from(json: json)
        var rng = RandomGenerator(seed: 0)
        let model = try NestedUNetModel(config: config, rng: &rng)
        let tensors = try st.allTensors()
        try model.load(from: tensors)
        return model
    }

    public func save(path: String) throws {
        try SafeTensors(tensors: stateDict(), metadata: [SafeTensors.configKey: try config.json()]).write(path: path)
    }

    /// Values per image at each resolution, highest first (C * r * r).
    public var sizes: [Int] { config.resolutions.map { config.imageChannels * $0 * $0 } }

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

    /// v at every resolution: xs highest first, (B, C, r, r) each; t per row; cond (B, dim). With
    /// gradients off, the batch is cut into one chunk of images per thread (`BatchChunks`; the same bits).
    /// `net`: a replica of `self.net` to run instead (data-parallel training, `DataParallelStep`).
    public func predictV(_ xs: [Tensor], t: [Float], cond: Tensor, net: NestedUNet? = nil) -> [Tensor] {
        let net = net ?? self.net
        let b = cond.shape[0]
        return BatchChunks.map(batch: b) { rows in
            let (xr, cr) = rows.count == b ? (xs, cond) : (xs.map { $0.slice(rows) }, cond.slice(rows))
            let context = config.outer.contextDim > 0 ? cr.reshaped([rows.count, 1, cr.shape[1]]) : nil
            return net(xr, t: Array(t[rows]), cond: cr, context: context)
        }
    }

    /// Average pooling by `factor` of `count` planar images (C, side, side): D^r(x).
    public static func pool(_ x: [Float], count: Int, channels: Int, side: Int, factor: Int) -> [Float] {
        precondition(side % factor == 0, "pool: side \(side) not divisible by \(factor)")
        if factor == 1 { return x }
        let o = side / factor
        let inv = 1 / Float(factor * factor)
        var out = [Float](repeating: 0, count: count * channels * o * o)
        for p in 0..<(count * channels) {
            let src = p * side * side, dst = p * o * o
            for i in 0..<o {
                for j in 0..<o {
                    var acc: Float = 0
                    for di in 0..<factor { for dj in 0..<factor { acc += x[src + (i * factor + di) * side + j * factor + dj] } }
                    out[dst + i * o + j] = acc * inv
                }
            }
        }
        return out
    }
}
