import Foundation
import Models
import Tensor

/// A bundled model's denoiser with fixed seeded inputs: x ~ N(0, I) at each resolution, one
/// noise level per row spread over the schedule, and a condition vector per row ~ N(0, 1/dim)
/// (the size of a text embedding), from which `predictV` builds the one-token context.
///
/// For a coalescer the call is one sampler step and the decode of its result: the net's jump
/// from x ~ N(0, I) in the whitened latent coordinates (level 1, a prior start) and
/// `CoalescerModel.decode` of the end point (unprojection and the autoencoder's decoder) to
/// pixels. Inference only.
final class BenchDenoiser {
    let latent: LatentDiffusionModel?
    let nested: NestedUNetModel?
    let coalescer: CoalescerModel?
    /// Inputs, highest resolution first: (B, C, r, r) each.
    let xs: [Tensor]
    let t: [Float]
    let cond: Tensor                  // cond: (B, dim)
    /// Fixed training targets, like `xs`.
    let targets: [Tensor]

    init(backend: String, weights: String, batch b: Int, seed: UInt64) throws {
        var rng = RandomGenerator(seed: seed)
        let dim: Int, sides: [Int], channels: Int, trainSteps: Int
        switch backend {
        case "latent-diffusion", "distilled-unet":
            let m = try LatentDiffusionModel.load(path: weights)
            m.prepareForInference()
            latent = m; nested = nil; coalescer = nil
            dim = m.config.textEncoder.dim; sides = [m.latentShape.side]; channels = m.latentShape.channels
            trainSteps = m.config.trainSteps
        case "nested-unet":
            let m = try NestedUNetModel.load(path: weights)
            m.prepareForInference()
            latent = nil; nested = m; coalescer = nil
            dim = m.config.textEncoder.dim; sides = m.config.resolutions; channels = m.config.imageChannels
            trainSteps = m.config.trainSteps
        case "coalescer":
            let m = try CoalescerModel.load(path: weights)
            m.prepareForInference()
            latent = nil; nested = nil; coalescer = m
            xs = [Tensor.randn([b, m.config.net.latentDim], rng: &rng)]
            t = [Float](repeating: 1, count: b)
            cond = Tensor.randn([b, m.config.net.descDim], std: 1 / Float(m.config.net.descDim).squareRoot(), rng: &rng)
            targets = []
            return
        default:
            throw ModelError.invalidConfig("backend \"\(backend)\" has no denoiser to time (latent-diffusion, distilled-unet, nested-unet, coalescer)")
        }
        xs = sides.map { Tensor.randn([b, channels, $0, $0], rng: &rng) }
        // Noise levels spread over the schedule, one per row (as in training; a sampler's call
        // gives every row the same level, which costs the same).
        t = (0..<b).map { Float((trainSteps - 1 - ($0 * 379) % trainSteps)) }
        cond = Tensor.randn([b, dim], std: 1 / Float(dim).squareRoot(), rng: &rng)
        targets = sides.map { Tensor.randn([b, channels, $0, $0], rng: &rng) }
    }

    /// The denoiser's parameters (the text encoder and autoencoder are not part of a call; a
    /// coalescer's call is its net, the projection and the autoencoder's decoder).
    var parameters: [Tensor] {
        if let coalescer {
            return coalescer.net.parameters + coalescer.projection.parameters
                + coalescer.autoencoder.namedParameters.filter { $0.0.hasPrefix("decoder.") }.map(\.1)
        }
        return latent?.unet.parameters ?? nested!.net.parameters
    }
    var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    var multiplyAddsPerImage: Int {
        var f = UNetFLOPs()
        if let latent {
            f.unet(latent.config.unet, side: latent.latentShape.side)
        } else if let nested {
            f.nested(outer: nested.config.outer, inner: nested.config.inner, side: nested.config.imageSize)
        } else if let coalescer {
            f.coalescer(coalescer.config)
        }
        return f.multiplyAdds
    }

    /// The forward pass (with gradients recorded when they are on): one output per resolution.
    func forward() -> [Tensor] {
        if let latent { return [latent.predictV(xs[0], t: t, cond: cond)] }
        if let coalescer {
            let y = coalescer.net.jump(xs[0], cond, level: Tensor(t, shape: [t.count, 1]))
            return [try! coalescer.decode(y)]   // shapes fixed by the model's own config
        }
        return nested!.predictV(xs, t: t, cond: cond)
    }

    /// One call as the samplers make it: gradients off.
    func infer() -> [Tensor] { GradMode.withDisabled { forward() } }

    /// A closure running one training step as the trainers write it: the batch's two halves at
    /// once, the second on a replica of the network (`DataParallelStep`), MSE against the fixed
    /// targets (summed over resolutions with the config's loss weights), backward, gradient norm
    /// clipped to 1, AdamW (lr 1e-4, weight decay 0.01 on weights). Not for a coalescer.
    /// The closure returns the seconds of the step's two phases (for `--profile`): both halves'
    /// forward and backward passes, then clipping and AdamW.
    func trainingStep() -> () -> (passes: Double, optimizer: Double) {
        let params = parameters
        let opt = AdamW(parameters: params, learningRate: 1e-4, weightDecay: 0.01)
        let weights = nested?.config.lossWeights ?? [1]
        let latentReplica = latent.map { try! $0.unet.replica() }   // the models' own configs
        let nestedReplica = nested.map { try! $0.net.replica() }
        let parallel = DataParallelStep(parameters: params,
                                        replicas: [latentReplica?.parameters ?? nestedReplica!.parameters])
        let b = cond.shape[0]
        return { [self] in
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = parallel.run(batch: b) { part, rows in
                let preds: [Tensor]
                if let latent {
                    preds = [latent.predictV(xs[0].slice(rows), t: Array(t[rows]), cond: cond.slice(rows),
                                             net: part == 0 ? nil : latentReplica)]
                } else {
                    preds = nested!.predictV(xs.map { $0.slice(rows) }, t: Array(t[rows]), cond: cond.slice(rows),
                                             net: part == 0 ? nil : nestedReplica)
                }
                var loss: Tensor? = nil
                for l in preds.indices where weights[l] > 0 {
                    let term = Tensor.mseLoss(preds[l], targets[l].slice(rows)).scaled(weights[l])
                    loss = loss.map { $0 + term } ?? term
                }
                return loss!
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            opt.update(clipNorm: 1)
            let t2 = DispatchTime.now().uptimeNanoseconds
            return (Double(t1 - t0) / 1e9, Double(t2 - t1) / 1e9)
        }
    }

    /// Writes x*.bin, cond.bin and out*.bin (little-endian float32, row-major) and meta.json
    /// (shapes, the noise levels, the weights file) to `directory`.
    func dump(to directory: String, model: String, weights: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let outs = infer()
        func write(_ name: String, _ x: Tensor) throws -> [String: Any] {
            let data = Data(bytes: x.data, count: x.count * MemoryLayout<Float>.size)
            try data.write(to: URL(fileURLWithPath: directory + "/" + name + ".bin"))
            return ["name": name, "file": name + ".bin", "shape": x.shape]
        }
        var inputs: [[String: Any]] = []
        for (i, x) in xs.enumerated() { inputs.append(try write("x\(i)", x)) }
        inputs.append(try write("cond", cond))
        var outputs: [[String: Any]] = []
        for (i, y) in outs.enumerated() { outputs.append(try write("out\(i)", y)) }
        let meta: [String: Any] = [
            "model": model, "weights": URL(fileURLWithPath: weights).standardized.path, "batch": cond.shape[0],
            "kind": latent != nil ? "unet" : coalescer != nil ? "coalescer" : "nested-unet", "t": t.map(Double.init),
            "inputs": inputs, "outputs": outputs, "params": parameterCount,
            "multiply_adds_per_image": multiplyAddsPerImage, "kernels": Tensor.directKernelISA,
        ]
        let json = try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try json.write(to: URL(fileURLWithPath: directory + "/meta.json"))
    }
}
