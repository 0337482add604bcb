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
    /// Training images: `fashion-mnist` or a folder of PNGs (`TrainingData`), resized to `size`.
    public var data = TrainingData.fashionMNIST
    public var size: Int? = nil
    /// Load the shared autoencoder from this directory (`coalesce train autoencoder --out DIR`)
    /// instead of training one.
    public var autoencoderPath: String? = nil
    /// Cap on the optimiser steps of every stage (smoke tests); nil = as configured.
    public var maxSteps: Int? = nil
    /// Residual blocks of the net (0 = the plain MLP of `netDepth` layers), and whether the net
    /// is told the noise level of its start.
    public var netBlocks = 0
    public var levelInput = false
    /// Re-noising levels of steps 2, 3, ... at generation (`CoalescerConfig.renoiseLevels`).
    public var renoiseLevels: [Float] = []
    /// Start the net (and take the latent projection) from this coalescer.safetensors, trained
    /// on the same autoencoder: to continue a run, or to fine-tune a trained net adversarially.
    public var initNet: String? = nil
    /// Teacher coupling: prior starts take their targets from these noise-to-latent pairs of a
    /// latent diffusion model (`TeacherPairs`, `coalesce train teacher-pairs`) instead of the search.
    public var teacherPairs: String? = nil
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
        let loaded = try TrainingData.load(o.data, size: o.size)
        var train = loaded.train
        if let lim = o.trainLimit { train = train.slice(0..<lim) }
        let test = loaded.test
        say("data: \(o.data): \(train.count) training images, \(test.count) test images of \(train.width)x\(train.height)x\(train.channels); seed \(o.seed)")
        let captions = try CaptionPlan(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST)
        say("classes: \(captions.classNames.count) (\(captions.classNames.prefix(10).joined(separator: ", "))\(captions.classNames.count > 10 ? ", ..." : ""))")

        // 1-2. Autoencoder and text encoder (trained, or reused).
        let ae: ImageAutoencoder, textEnc: TextEncoder
        if let reuse = o.reuse {
            let prev = try CoalescerModel.load(path: reuse)
            ae = prev.autoencoder; textEnc = prev.textEncoder
            say("reusing autoencoder and text encoder from \(reuse)")
        } else {
            var rng = RandomGenerator(seed: o.seed)
            if let path = o.autoencoderPath {
                ae = try AutoencoderArtifact.load(path: path)
                say("shared autoencoder from \(path): \(ae.parameterCount) parameters, latent \(ae.config.latentChannels)x\(ae.config.latentSide)x\(ae.config.latentSide)")
            } else {
                var cfg = o.autoencoderConfig
                cfg.imageSize = train.width; cfg.imageChannels = train.channels
                ae = try ImageAutoencoder(config: cfg, rng: &rng)
                var aeOpt = o.autoencoder; aeOpt.seed = o.seed &+ 10; aeOpt.progress = o.progress
                aeOpt.maxSteps = o.maxSteps ?? aeOpt.maxSteps
                let aeReport = try AutoencoderTrainer.train(ae, train: train, test: test.slice(0..<min(test.count, 10000)), options: aeOpt)
                say(aeReport.description + " (\(ae.parameterCount) parameters)")
            }
            guard ae.config.imageSize == train.width, ae.config.imageChannels == train.channels else {
                throw TrainingError.invalidData("the autoencoder takes \(ae.config.imageSize)x\(ae.config.imageSize)x\(ae.config.imageChannels) images "
                    + "but the data is \(train.width)x\(train.height)x\(train.channels) (train it with the same --data and --size)")
            }
            textEnc = try TextEncoder(config: o.textEncoderConfig, rng: &rng)
            var teOpt = o.textEncoder; teOpt.seed = o.seed &+ 20; teOpt.progress = o.progress
            if let m = o.maxSteps { teOpt.steps = min(teOpt.steps, m) }
            let teReport = try TextEncoderTrainer.train(textEnc, classes: captions.classNames.count, pairs: captions.pairs,
                                                        heldOut: captions.heldOut, options: teOpt)
            say(teReport.description)
            // Checkpoint the two encoders at once (net untrained), so `--reuse` can start from here.
            try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
            var stageConfig = CoalescerConfig()
            stageConfig.autoencoder = ae.config; stageConfig.textEncoder = textEnc.config
            stageConfig.net.descDim = textEnc.config.dim; stageConfig.net.latentDim = min(o.pcaDim, ae.config.latentDim)
            var srng = RandomGenerator(seed: 0)
            let stage = try CoalescerModel(config: stageConfig, autoencoder: ae, textEncoder: textEnc,
                                           projection: LatentProjection(dim: stageConfig.net.latentDim, latentDim: ae.config.latentDim),
                                           net: try CoalescerNet(config: stageConfig.net, rng: &srng))
            try stage.save(path: o.outputDirectory + "/encoders.safetensors")
            say("wrote \(o.outputDirectory)/encoders.safetensors (autoencoder + text encoder, for --reuse)")
        }
        let pcaDim = min(o.pcaDim, ae.config.latentDim)

        // 3. Latents, whitened PCA.
        let latents = try AutoencoderTrainer.encodeAll(ae, pixels: floatPixels(train), count: train.count)
        let latentDim = ae.config.latentDim
        let initModel = try o.initNet.map { try CoalescerModel.load(path: $0) }
        let projection: LatentProjection
        if let im = initModel {
            guard im.config.autoencoder == ae.config, im.projection.dim == pcaDim else {
                throw TrainingError.invalidConfig("--init-net \(o.initNet!): trained on another autoencoder or PCA size")
            }
            projection = im.projection
            say("net and projection from \(o.initNet!)")
        } else {
            projection = LatentProjection(dim: pcaDim, latentDim: latentDim)
            let eig = try projection.fit(Tensor(latents, shape: [train.count, latentDim]))
            let totalVar = eig.reduce(0, +)
            let kept = eig.prefix(pcaDim).reduce(0, +)
            say(String(format: "PCA: %d of %d latent dimensions keep %.1f%% of the latent variance", pcaDim, latentDim, 100 * kept / max(totalVar, 1e-12)))
        }
        let (points, testPoints) = try GradMode.withDisabled { () throws -> ([Float], [Float]) in
            let p = projection.project(Tensor(latents, shape: [train.count, latentDim])).array
            let tl = try AutoencoderTrainer.encodeAll(ae, pixels: floatPixels(test), count: test.count)
            return (p, projection.project(Tensor(tl, shape: [test.count, latentDim])).array)
        }
        // PCA-truncated reconstruction quality on the test set (what decoding from this space costs).
        let truncated = try GradMode.withDisabled { () throws -> Double in
            let n = min(2000, test.count)
            let y = Tensor(Array(testPoints[0..<(n * pcaDim)]), shape: [n, pcaDim])
            let img = try ae.decode(projection.unproject(y))
            let px = floatPixels(test.slice(0..<n))
            var se = 0.0
            for i in 0..<px.count { let e = Double(img.data[i] - px[i]); se += e * e }
            return se / Double(px.count)
        }
        say(String(format: "test reconstruction through %d PCA components: MSE %.5f, PSNR %.2f dB", pcaDim, truncated, 10 * log10(1 / truncated)))

        // 4. Descriptions: each item gets its own caption, or a random training phrasing of its class.
        var rng = RandomGenerator(seed: o.seed &+ 30)
        let dd = textEnc.config.dim
        let (descriptions, classDescriptions, uncond) = GradMode.withDisabled { () -> ([Float], [[[Float]]], [Float]) in
            var classCaps: [[[Float]]] = []
            for caps in captions.classCaptions {
                let e = textEnc.embed(caps)
                classCaps.append((0..<caps.count).map { Array(UnsafeBufferPointer(start: e.data + $0 * dd, count: dd)) })
            }
            var desc = [Float](repeating: 0, count: train.count * dd)
            if let own = captions.itemCaptions {
                let e = textEnc.embed(own)
                for i in 0..<(train.count * dd) { desc[i] = e.data[i] }
            } else {
                for i in 0..<train.count {
                    let caps = classCaps[captions.itemClasses[i]]
                    let e = caps[rng.nextInt(below: caps.count)]
                    for j in 0..<dd { desc[i * dd + j] = e[j] }
                }
            }
            return (desc, classCaps, textEnc.embed([""]).array)
        }
        var data = CoalescerData(points: points, labels: captions.itemClasses, descriptions: descriptions,
                                 classDescriptions: classDescriptions, unconditional: uncond,
                                 dim: pcaDim, descDim: dd)
        data.searchDim = min(pcaDim, max(1, o.searchDim ?? pcaDim))
        if let path = o.teacherPairs {
            let pairs = try TeacherPairs.load(path: path)
            guard pairs.latentDim == latentDim, pairs.settings.autoencoderHash == TeacherPairs.hash(ae) else {
                throw TrainingError.invalidData("teacher pairs \(path) were made with another autoencoder (latent \(pairs.latentDim) values, "
                    + "weights hash \(pairs.settings.autoencoderHash)) than this run's (\(latentDim), \(TeacherPairs.hash(ae)))")
            }
            guard pairs.settings.prompts.count == captions.classNames.count else {
                throw TrainingError.invalidData("teacher pairs \(path) have \(pairs.settings.prompts.count) class prompts, the data \(captions.classNames.count) classes")
            }
            GradMode.withDisabled {
                // R = V x_T (the rotation into the principal directions, unwhitened: N(0, I) stays N(0, I)).
                let z = Tensor(pairs.noise, shape: [pairs.count, latentDim])
                data.teacherStarts = Tensor.matmul(z, projection.components, transB: true).array
                data.teacherTargets = projection.project(Tensor(pairs.latents, shape: [pairs.count, latentDim])).array
                let p = pairs.trajectoryLevels
                if p > 0 {
                    // Trajectory points x_t into the variance-preserving path's coordinates:
                    // (V x_t − α V μ) / √(α² s² + σ²), coordinate by coordinate.
                    let vx = Tensor.matmul(Tensor(pairs.trajectory, shape: [pairs.count * p, latentDim]),
                                           projection.components, transB: true)
                    let vmu = Tensor.matmul(Tensor(projection.mean.array, shape: [1, latentDim]), projection.components, transB: true).array
                    let s = projection.scales.array
                    var out = vx.array
                    for level in 0..<p {
                        let a = pairs.trajectoryAlphas[level], sg = pairs.trajectorySigmas[level]
                        let norm = s.map { max((a * a * $0 * $0 + sg * sg).squareRoot(), 1e-12) }
                        for i in 0..<pairs.count {
                            let o = (i * p + level) * pcaDim
                            for j in 0..<pcaDim { out[o + j] = (out[o + j] - a * vmu[j]) / norm[j] }
                        }
                    }
                    data.teacherTrajectory = out
                    data.trajectoryLevels = pairs.trajectorySigmas
                }
            }
            data.scales = projection.scales.array
            data.teacherLabels = pairs.labels
            var sq = 0.0
            for i in 0..<(pairs.count * pcaDim) { let e = Double(data.teacherTargets[i] - data.teacherStarts[i]); sq += e * e }
            say(String(format: "teacher coupling: %d pairs (%d for the empty prompt) from %@ at %d steps, guidance %.2f; mean |target - start|^2 %.1f in %d dims",
                       pairs.count, pairs.labels.filter { $0 < 0 }.count, pairs.settings.teacher, pairs.settings.steps,
                       pairs.settings.guidance, sq / Double(max(1, pairs.count)), pcaDim))
            if pairs.trajectoryLevels > 0 {
                say("trajectory points: \(pairs.trajectoryLevels) per pair at timesteps \(pairs.trajectoryTimesteps), sigma "
                    + pairs.trajectorySigmas.map { String(format: "%.3f", $0) }.joined(separator: " ")
                    + String(format: "; %.0f%% of the teacher-coupled starts take one", o.coalescer.trajectoryFraction * 100))
            }
        }
        say("the net moves in \(pcaDim) whitened PCA coordinates; the search uses the first \(data.searchDim)")

        // 5. desc_scale from the measured spreads, then the net.
        let makeIndex: (Int) throws -> VectorIndex = { try FaissIndex(dimension: $0, description: o.coalescer.index) }
        let spreads = try CoalescerTrainer.measureSpreads(data: data, makeIndex: { try FaissIndex(dimension: $0) })
        say(spreads.description)
        let descScale = o.coalescer.descScale ?? spreads.suggestedDescScale
        var netConfig = CoalescerNetConfig()
        netConfig.latentDim = pcaDim; netConfig.descDim = dd; netConfig.hidden = o.netHidden; netConfig.depth = o.netDepth
        netConfig.blocks = o.netBlocks; netConfig.levelInput = o.levelInput
        var nrng = RandomGenerator(seed: o.seed &+ 40)
        let net = try CoalescerNet(config: netConfig, rng: &nrng)
        if let im = initModel {
            guard im.net.config == netConfig else {
                throw TrainingError.invalidConfig("--init-net: its net is \(im.net.config), this run's is \(netConfig)")
            }
            try net.load(from: im.net.stateDict())
        }
        var copt = o.coalescer; copt.seed = o.seed &+ 50; copt.progress = o.progress
        if let m = o.maxSteps {
            copt.steps = min(copt.steps, m)
            copt.adversarialSteps = min(copt.adversarialSteps, max(0, m - copt.steps))
        }
        copt.batchSize = min(copt.batchSize, max(1, train.count))
        say("net: \(netConfig.blocks > 0 ? "residual MLP, \(netConfig.blocks) blocks" : "MLP, \(netConfig.depth) layers") of \(netConfig.hidden), "
            + "\(net.parameterCount) parameters\(netConfig.levelInput ? ", told the start's noise level" : ""); coupling \(o.teacherPairs == nil ? copt.coupling.rawValue : "teacher pairs (prior starts), " + copt.coupling.rawValue + " (near-data starts)")"
            + (copt.hubCap.map { String(format: " (hub cap %.1f)", $0) } ?? "")
            + (copt.adversarialSteps > 0 ? String(format: "; then %d adversarial steps (weight %.2f, lr %.0e, second-step level %.2f, latent classifier weight %.2f)", copt.adversarialSteps, copt.adversarialWeight, copt.adversarialLearningRate, copt.secondStepLevel, copt.classifierWeight) : ""))
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
        config.renoiseLevels = o.renoiseLevels
        config.renoisePath = o.coalescer.renoisePath
        config.classNames = captions.classNames
        let model = try CoalescerModel(config: config, autoencoder: ae, textEncoder: textEnc, projection: projection, net: net)

        // 6. Probe (latent-space 10-NN class vote, diversity, memorisation) at 1, 2, 4 steps.
        var probe: [CoalescerProbeResult] = []
        if o.probePerClass > 0 && o.data == TrainingData.fashionMNIST {
            probe = try CoalescerProbe.run(model: model, data: data, testPoints: testPoints, perClass: o.probePerClass)
            for p in probe { say("probe " + p.description) }
        }

        // 7. Save.
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        try model.save(path: o.outputDirectory + "/coalescer.safetensors")
        try AutoencoderArtifact.save(ae, directory: o.outputDirectory)
        let modelJSON = "{\"backend\": \"coalescer\", \"weights\": \"coalescer.safetensors\", \"default_steps\": \(config.defaultSteps)}\n"
        try modelJSON.write(toFile: o.outputDirectory + "/config.json", atomically: true, encoding: .utf8)
        say(String(format: "total %.0fs; wrote %@/{config.json,coalescer.safetensors,autoencoder.safetensors,samples.png}", Date().timeIntervalSince(t0), o.outputDirectory))
        try writeSampleGrid(model: model, classNames: captions.classNames, path: o.outputDirectory + "/samples.png")
        try (lines.joined(separator: "\n") + "\n").write(toFile: o.outputDirectory + "/training-report.txt", atomically: true, encoding: .utf8)
        return CoalescerPipelineResult(model: model, lines: lines, coalescer: report, probe: probe)
    }
}

extension CoalescerPipeline {
    /// One row of 8 images (2 steps, seeds 1...8) per class (at most 10 classes).
    static func writeSampleGrid(model: CoalescerModel, classNames: [String], path: String) throws {
        model.prepareForInference()
        let sampler = CoalescerSampler(model: model)
        let ae = model.config.autoencoder
        var px: [UInt8] = []
        let rows = min(10, max(1, classNames.count))
        for c in 0..<rows {
            let prompt = classNames.isEmpty ? "" : classNames[c]
            let b = try sampler.generate(prompt: prompt, seed: 1, count: 8, steps: .fixed(2))
            px += CoalescerGenerator.bytes(b.pixels)
        }
        let images = LabeledImages(count: rows * 8, width: ae.imageSize, height: ae.imageSize, channels: ae.imageChannels,
                                   pixels: px, labels: [Int](repeating: 0, count: rows * 8))
        try ImageGrid.write(images, columns: 8, scale: 2, to: path)
    }
}

/// The captions a coalescer trains on: for Fashion-MNIST the template phrasings of `Captions`
/// (each item a random training phrasing of its class); for a folder, each item's own caption,
/// its class from its label, or (without labels) from its caption.
struct CaptionPlan {
    var classNames: [String]
    var classCaptions: [[String]]
    var itemClasses: [Int]
    var itemCaptions: [String]?
    var pairs: [(String, Int)]?
    var heldOut: [(String, Int)]?

    init(train: LabeledImages, fashionMNIST: Bool) throws {
        if fashionMNIST {
            classNames = Captions.classPhrases.map { $0[0] }
            classCaptions = Captions.classPhrases.map { ps in ps.flatMap { p in Captions.trainTemplates.map { Captions.fill($0, p) } } }
            itemClasses = train.labels
            itemCaptions = nil; pairs = nil; heldOut = nil
            return
        }
        let caps = train.captions.count == train.count ? train.captions : [String](repeating: "", count: train.count)
        if train.labels.allSatisfy({ $0 >= 0 }) && !train.classNames.isEmpty {
            classNames = train.classNames
            itemClasses = train.labels
        } else {
            let distinct = Array(Set(caps)).sorted()
            classNames = distinct
            itemClasses = caps.map { distinct.firstIndex(of: $0)! }
        }
        var perClass = [[String]](repeating: [], count: classNames.count)
        for (i, c) in itemClasses.enumerated() where !perClass[c].contains(caps[i]) { perClass[c].append(caps[i]) }
        for c in 0..<perClass.count where perClass[c].isEmpty { perClass[c] = [classNames[c]] }
        classCaptions = perClass
        itemCaptions = caps
        pairs = perClass.enumerated().flatMap { c, list in list.map { ($0, c) } }
        heldOut = []
    }
}
