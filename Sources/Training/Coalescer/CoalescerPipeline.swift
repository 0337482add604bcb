import Foundation
import ImageIO
import Models
import Tensor

/// Settings for training a coalescer from scratch (autoencoder, text encoder, PCA, net).
public struct CoalescerPipelineOptions: Sendable {
    /// Output directory (models/coalescer): config.json, coalescer.safetensors,
    /// autoencoder.safetensors, training-report.txt.
    public var outputDirectory = "models/coalescer"
    /// Reuse the autoencoder and text encoder of this coalescer.safetensors (retrain the net only).
    public var reuse: String? = nil
    /// Use only the first this-many training images (tests); nil = all.
    public var trainLimit: Int? = nil
    public var seed: UInt64 = 1
    public var pcaDim = 48
    /// Search in the first this-many whitened coordinates (nil = all pcaDim).
    public var searchDim: Int? = nil
    public var autoencoder = AutoencoderTrainingOptions()
    public var autoencoderConfig = AutoencoderConfig()
    public var textEncoder = TextEncoderTrainingOptions()
    public var textEncoderConfig = TextEncoderConfig()
    public var coalescer = CoalescerTrainingOptions()
    public var netHidden = 512
    public var netDepth = 3
    /// Samples per class for the latent probe after training (0 = skip).
    public var probePerClass = 100
    public var progress = true
    public init() {}
}

/// Everything measured by one pipeline run (also written to training-report.txt).
public struct CoalescerPipelineResult {
    public var model: CoalescerModel
    public var lines: [String]
    public var coalescer: CoalescerReport
    public var probe: [CoalescerProbeResult]
}

public enum CoalescerPipeline {
    public static func run(_ o: CoalescerPipelineOptions, log: (String) -> Void = { print($0) }) throws -> CoalescerPipelineResult {
        var lines: [String] = []
        func say(_ s: String) { lines.append(s); log(s) }
        let t0 = Date()
        var train = try FashionMNIST.load(split: .train)
        if let lim = o.trainLimit { train = train.slice(0..<lim) }
        let test = try FashionMNIST.load(split: .test)
        say("data: \(train.count) training images, \(test.count) test images; seed \(o.seed)")

        // 1-2. Autoencoder and text encoder (trained, or reused).
        let ae: ImageAutoencoder, textEnc: TextEncoder
        if let reuse = o.reuse {
            let prev = try CoalescerModel.load(path: reuse)
            ae = prev.autoencoder; textEnc = prev.textEncoder
            say("reusing autoencoder and text encoder from \(reuse)")
        } else {
            var rng = RandomGenerator(seed: o.seed)
            ae = try ImageAutoencoder(config: o.autoencoderConfig, rng: &rng)
            var aeOpt = o.autoencoder; aeOpt.seed = o.seed &+ 10; aeOpt.progress = o.progress
            let aeReport = try AutoencoderTrainer.train(ae, train: train, test: test.slice(0..<min(test.count, 10000)), options: aeOpt)
            say(aeReport.description + " (\(ae.parameterCount) parameters)")
            textEnc = try TextEncoder(config: o.textEncoderConfig, rng: &rng)
            var teOpt = o.textEncoder; teOpt.seed = o.seed &+ 20; teOpt.progress = o.progress
            let teReport = try TextEncoderTrainer.train(textEnc, options: teOpt)
            say(teReport.description)
            // Checkpoint the two encoders at once (net untrained), so `--reuse` can start from here.
            try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
            var stageConfig = CoalescerConfig()
            stageConfig.autoencoder = ae.config; stageConfig.textEncoder = textEnc.config
            stageConfig.net.descDim = textEnc.config.dim; stageConfig.net.latentDim = o.pcaDim
            var srng = RandomGenerator(seed: 0)
            let stage = try CoalescerModel(config: stageConfig, autoencoder: ae, textEncoder: textEnc,
                                           projection: LatentProjection(dim: o.pcaDim, latentDim: ae.config.latentDim),
                                           net: try CoalescerNet(config: stageConfig.net, rng: &srng))
            try stage.save(path: o.outputDirectory + "/encoders.safetensors")
            say("wrote \(o.outputDirectory)/encoders.safetensors (autoencoder + text encoder, for --reuse)")
        }

        // 3. Latents, whitened PCA.
        let latents = try AutoencoderTrainer.encodeAll(ae, pixels: floatPixels(train), count: train.count)
        let latentDim = ae.config.latentDim
        let projection = LatentProjection(dim: o.pcaDim, latentDim: latentDim)
        let eig = try projection.fit(Tensor(latents, shape: [train.count, latentDim]))
        let totalVar = eig.reduce(0, +)
        let kept = eig.prefix(o.pcaDim).reduce(0, +)
        say(String(format: "PCA: %d of %d latent dimensions keep %.1f%% of the latent variance", o.pcaDim, latentDim, 100 * kept / max(totalVar, 1e-12)))
        let (points, testPoints) = try GradMode.withDisabled { () throws -> ([Float], [Float]) in
            let p = projection.project(Tensor(latents, shape: [train.count, latentDim])).array
            let tl = try AutoencoderTrainer.encodeAll(ae, pixels: floatPixels(test), count: test.count)
            return (p, projection.project(Tensor(tl, shape: [test.count, latentDim])).array)
        }
        // PCA-truncated reconstruction quality on the test set (what decoding from this space costs).
        let truncated = try GradMode.withDisabled { () throws -> Double in
            let n = min(2000, test.count)
            let y = Tensor(Array(testPoints[0..<(n * o.pcaDim)]), shape: [n, o.pcaDim])
            let img = try ae.decode(projection.unproject(y))
            let px = floatPixels(test.slice(0..<n))
            var se = 0.0
            for i in 0..<px.count { let e = Double(img.data[i] - px[i]); se += e * e }
            return se / Double(px.count)
        }
        say(String(format: "test reconstruction through %d PCA components: MSE %.5f, PSNR %.2f dB", o.pcaDim, truncated, 10 * log10(1 / truncated)))

        // 4. Descriptions: each item gets a random training phrasing of its class.
        var rng = RandomGenerator(seed: o.seed &+ 30)
        let dd = textEnc.config.dim
        let (descriptions, classDescriptions, uncond) = GradMode.withDisabled { () -> ([Float], [[[Float]]], [Float]) in
            var classCaps: [[[Float]]] = []
            var perClassCaptions: [[String]] = []
            for c in 0..<Captions.classPhrases.count {
                let caps = Captions.classPhrases[c].flatMap { p in Captions.trainTemplates.map { Captions.fill($0, p) } }
                perClassCaptions.append(caps)
                let e = textEnc.embed(caps)
                classCaps.append((0..<caps.count).map { Array(UnsafeBufferPointer(start: e.data + $0 * dd, count: dd)) })
            }
            var desc = [Float](repeating: 0, count: train.count * dd)
            for i in 0..<train.count {
                let caps = classCaps[train.labels[i]]
                let e = caps[rng.nextInt(below: caps.count)]
                for j in 0..<dd { desc[i * dd + j] = e[j] }
            }
            return (desc, classCaps, textEnc.embed([""]).array)
        }
        var data = CoalescerData(points: points, labels: train.labels, descriptions: descriptions,
                                 classDescriptions: classDescriptions, unconditional: uncond,
                                 dim: o.pcaDim, descDim: dd)
        data.searchDim = min(o.pcaDim, max(1, o.searchDim ?? o.pcaDim))
        say("the net moves in \(o.pcaDim) whitened PCA coordinates; the search uses the first \(data.searchDim)")

        // 5. desc_scale from the measured spreads, then the net.
        let makeIndex: (Int) throws -> VectorIndex = { try FaissIndex(dimension: $0, description: o.coalescer.index) }
        let spreads = try CoalescerTrainer.measureSpreads(data: data, makeIndex: { try FaissIndex(dimension: $0) })
        say(spreads.description)
        let descScale = o.coalescer.descScale ?? spreads.suggestedDescScale
        var netConfig = CoalescerNetConfig()
        netConfig.latentDim = o.pcaDim; netConfig.descDim = dd; netConfig.hidden = o.netHidden; netConfig.depth = o.netDepth
        var nrng = RandomGenerator(seed: o.seed &+ 40)
        let net = try CoalescerNet(config: netConfig, rng: &nrng)
        var copt = o.coalescer; copt.seed = o.seed &+ 50; copt.progress = o.progress
        let trainer = try CoalescerTrainer(data: data, options: copt, descScale: descScale, makeIndex: makeIndex)
        say(String(format: "index '%@' over %d keys of dimension %d built in %.3fs", o.coalescer.index, data.count, dd + data.searchDim, trainer.indexBuildSeconds))
        let report = try trainer.train(net)
        say(report.description)

        var config = CoalescerConfig()
        config.autoencoder = ae.config
        config.textEncoder = textEnc.config
        config.net = netConfig
        config.descScale = descScale
        config.directionExponent = o.coalescer.directionExponent
        let model = try CoalescerModel(config: config, autoencoder: ae, textEncoder: textEnc, projection: projection, net: net)

        // 6. Probe (latent-space 10-NN class vote, diversity, memorisation) at 1, 2, 4 steps.
        var probe: [CoalescerProbeResult] = []
        if o.probePerClass > 0 {
            probe = try CoalescerProbe.run(model: model, data: data, testPoints: testPoints, perClass: o.probePerClass)
            for p in probe { say("probe " + p.description) }
        }

        // 7. Save.
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        try model.save(path: o.outputDirectory + "/coalescer.safetensors")
        try SafeTensors(tensors: ae.stateDict(), metadata: [SafeTensors.configKey: String(decoding: try JSONEncoder().encode(ae.config), as: UTF8.self)])
            .write(path: o.outputDirectory + "/autoencoder.safetensors")
        let modelJSON = "{\"backend\": \"coalescer\", \"weights\": \"coalescer.safetensors\", \"default_steps\": \(config.defaultSteps)}\n"
        try modelJSON.write(toFile: o.outputDirectory + "/config.json", atomically: true, encoding: .utf8)
        say(String(format: "total %.0fs; wrote %@/{config.json,coalescer.safetensors,autoencoder.safetensors}", Date().timeIntervalSince(t0), o.outputDirectory))
        try (lines.joined(separator: "\n") + "\n").write(toFile: o.outputDirectory + "/training-report.txt", atomically: true, encoding: .utf8)
        return CoalescerPipelineResult(model: model, lines: lines, coalescer: report, probe: probe)
    }
}
