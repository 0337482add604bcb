import Foundation
import ImageIO
import Models
import Tensor

/// Settings of `coalesce train latent-diffusion` (the many-step teacher).
public struct LatentDiffusionTrainingOptions: Sendable {
    public var data = TrainingData.fashionMNIST
    public var size: Int? = nil
    /// The shared autoencoder (`models/autoencoder`).
    public var autoencoderPath = "models/autoencoder"
    public var outputDirectory = "models/latent-diffusion"
    public var unet: UNetConfig = {
        var u = UNetConfig()
        u.channels = [64, 128]
        u.attentionLevels = [false, true]
        u.layersPerLevel = 2
        u.heads = 4
        u.groups = 8
        return u
    }()
    public var textEncoder = TextEncoderConfig()
    public var textEncoderSteps = 600
    public var steps = 3000
    public var batchSize = 128
    public var learningRate: Float = 1e-3
    public var warmupSteps = 100
    /// Fraction of training rows whose condition is dropped (classifier-free guidance).
    public var conditionDropout: Float = 0.1
    public var emaDecay: Float = 0.999
    /// Min-SNR-γ loss weighting (Hang et al. 2023) when > 0: each row's v-loss is weighted by
    /// min(SNR(t), γ) / (SNR(t) + 1), so that nearly clean timesteps stop dominating; 0 = every
    /// row alike (the bundled teacher's loss).
    public var minSNRGamma: Float = 0
    public var defaultGuidance: Float = 3
    public var checkpointEvery = 250
    /// Also keep a copy of the checkpoint every this many steps, as
    /// `<out>/checkpoints/<step>/checkpoint.safetensors` (0 = none): the points of a quality
    /// against training time curve (`scripts/teacher-curve.sh`).
    public var keepCheckpointsEvery = 0
    public var sampleEvery = 1000
    public var trainLimit: Int? = nil
    public var seed: UInt64 = 1
    public var progress = true
    /// Start from a trained teacher's weights file (its autoencoder, text encoder and UNet, and
    /// its settings) instead of a fresh UNet and a newly trained text encoder: more training
    /// for a bundled teacher, on a new warmup and cosine schedule over `steps`. `unet`,
    /// `textEncoder` and `defaultGuidance` are then the file's.
    public var initFrom: String? = nil

    public init() {}
}

public struct DiffusionTrainingReport: Sendable, CustomStringConvertible {
    public var steps: Int
    public var resumedFrom: Int
    public var seconds: Double
    /// CPU seconds of the denoiser steps (every run's, like `seconds`); 0 where not measured.
    public var cpuSeconds: Double = 0
    public var finalLoss: Float
    public var parameters: Int
    public var description: String {
        String(format: "%d steps (resumed from %d) in %.0fs wall / %.0fs CPU, final loss %.4f, %d network parameters",
               steps, resumedFrom, seconds, cpuSeconds, finalLoss, parameters)
    }
}

public enum LatentDiffusionTrainer {
    /// Trains the teacher; writes `<out>/latent-diffusion.safetensors` (EMA weights), `config.json`,
    /// `samples-NNNNN.png` grids, `training-report.txt`, and `checkpoint.safetensors` while running.
    public static func train(_ o: LatentDiffusionTrainingOptions, log: (String) -> Void = { print($0) }) throws -> LatentDiffusionModel {
        var lines: [String] = []
        func say(_ s: String) { lines.append(s); log(s) }
        let t0 = Date()
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        let loaded = try TrainingData.load(o.data, size: o.size)
        var train = loaded.train
        if let lim = o.trainLimit { train = train.slice(0..<min(lim, train.count)) }
        say("data: \(o.data): \(train.count) training images of \(train.width)x\(train.height)x\(train.channels); seed \(o.seed)")
        let model: LatentDiffusionModel
        if let from = o.initFrom {
            model = try LatentDiffusionModel.load(path: from)
            guard !model.config.textEncoder.usesMiniLM else {
                throw TrainingError.invalidData("\(from) has the MiniLM text encoder; continue the trigram teacher it was made from")
            }
            let a = model.config.autoencoder
            guard a.imageSize == train.width, a.imageChannels == train.channels else {
                throw TrainingError.invalidData("\(from) takes \(a.imageSize)x\(a.imageSize)x\(a.imageChannels) images but the data is \(train.width)x\(train.height)x\(train.channels)")
            }
            say("continuing \(from): its autoencoder, text encoder and UNet (\(model.unet.parameterCount) parameters); a new schedule over \(o.steps) steps")
        } else {
            model = try newModel(o, train: train, say: say)
        }
        let data = try LatentDiffusionData(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST,
                                           autoencoder: model.autoencoder, textEncoder: model.textEncoder)
        say("latents: \(data.count) x \(data.latentSize); UNet \(model.unet.parameterCount) parameters, channels \(model.config.unet.channels), attention \(model.config.unet.attentionLevels)")

        let prep = Date().timeIntervalSince(t0)
        let report = try runDenoiserTraining(model: model, data: data, options: o, say: say)
        model.config.classNames = data.classNames
        try model.save(path: o.outputDirectory + "/latent-diffusion.safetensors")
        try writeModelConfig(o.outputDirectory, backend: "latent-diffusion", weights: "latent-diffusion.safetensors")
        try writeSampleGrid(model: model, steps: 50, guidance: model.config.defaultGuidance, path: o.outputDirectory + "/samples.png")
        say("teacher: \(report)")
        // Training time: data preparation of this run + every run's denoiser steps (a resumed
        // run counts the time before it from the checkpoint).
        let total = prep + report.seconds
        say("total \(Int(total))s")
        try writeTrainingJSON(o.outputDirectory, seconds: total, steps: report.steps, cpuSeconds: report.cpuSeconds,
                              stepSeconds: report.seconds)
        say("wrote \(o.outputDirectory)/latent-diffusion.safetensors, config.json, samples.png (50 steps, guidance \(model.config.defaultGuidance))")
        try (lines.joined(separator: "\n") + "\n").write(toFile: o.outputDirectory + "/training-report.txt", atomically: true, encoding: .utf8)
        return model
    }

    /// A fresh teacher: the shared autoencoder from `autoencoderPath`, a text encoder trained here
    /// on the data's captions (seconds, frozen afterwards) and a newly initialised UNet.
    static func newModel(_ o: LatentDiffusionTrainingOptions, train: LabeledImages, say: (String) -> Void) throws -> LatentDiffusionModel {
        let ae = try AutoencoderArtifact.load(path: o.autoencoderPath)
        guard ae.config.imageSize == train.width, ae.config.imageChannels == train.channels else {
            throw TrainingError.invalidData("the autoencoder takes \(ae.config.imageSize)x\(ae.config.imageSize)x\(ae.config.imageChannels) images but the data is \(train.width)x\(train.height)x\(train.channels)")
        }
        var config = LatentDiffusionConfig()
        config.autoencoder = ae.config
        config.textEncoder = o.textEncoder
        config.unet = o.unet
        config.unet.inChannels = ae.config.latentChannels
        config.unet.outChannels = ae.config.latentChannels
        config.unet.condDim = o.textEncoder.dim
        config.unet.contextDim = o.textEncoder.dim
        config.defaultGuidance = o.defaultGuidance
        var rng = RandomGenerator(seed: o.seed)
        let model = try LatentDiffusionModel(config: config, rng: &rng)
        try model.autoencoder.load(from: ae.stateDict())
        let captions = try CaptionPlan(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST)
        model.config.classNames = captions.classNames
        var teOpt = TextEncoderTrainingOptions()
        teOpt.seed = o.seed &+ 20; teOpt.progress = o.progress; teOpt.steps = o.textEncoderSteps
        let te = try TextEncoderTrainer.train(model.textEncoder, classes: captions.classNames.count, pairs: captions.pairs,
                                              heldOut: captions.heldOut, options: teOpt)
        say(te.description)
        return model
    }

    /// The denoising loop: v-prediction loss at uniform t, condition dropout, AdamW with warmup
    /// and cosine decay, EMA, checkpoints (resumable) and sample grids. Leaves the EMA weights
    /// in the model.
    static func runDenoiserTraining(model: LatentDiffusionModel, data: LatentDiffusionData,
                                    options o: LatentDiffusionTrainingOptions, say: (String) -> Void) throws -> DiffusionTrainingReport {
        let params = model.unet.parameters
        let opt = AdamW(parameters: params, learningRate: o.learningRate, weightDecay: 0.01)
        let ema = EMA(parameters: params, decay: o.emaDecay)
        let replica = try model.unet.replica()
        let parallel = DataParallelStep(parameters: params, replicas: [replica.parameters])
        let ckpt = o.outputDirectory + "/checkpoint.safetensors"
        var start = 0
        var before = 0.0, cpuBefore = 0.0
        if let (step, _, elapsed, meta) = try DiffusionCheckpoint.load(path: ckpt, net: model.unet, ema: ema, optimizer: opt) {
            start = step
            before = elapsed
            cpuBefore = meta["cpu_seconds"].flatMap(Double.init) ?? 0
            say("resuming from \(ckpt) at step \(step) (\(Int(elapsed))s of training before)")
        }
        let cpu0 = NestedUNetTrainer.processCPUSeconds()
        func cpuSoFar() -> Double { cpuBefore + NestedUNetTrainer.processCPUSeconds() - cpu0 }
        let sched = WarmupCosineSchedule(peak: o.learningRate, warmupSteps: o.warmupSteps, totalSteps: o.steps)
        let schedule = model.schedule
        let (c, s) = model.latentShape
        let per = c * s * s, b = o.batchSize, dim = data.dim
        let progress = ProgressReporter(label: "train latent-diffusion", total: o.steps, itemsPerStep: b, interval: 10, enabled: o.progress)
        let t0 = Date()
        var lossAvg: Float = 0
        var step = start
        while step < o.steps {
            var rng = RandomGenerator(seed: o.seed &+ 1_000_003 &* UInt64(step + 1))
            let idx = (0..<b).map { _ in rng.nextInt(below: data.count) }
            let (x0, cond) = data.batch(idx, dropout: o.conditionDropout, rng: &rng)
            var xt = [Float](repeating: 0, count: b * per), vt = xt
            var ts = [Float](repeating: 0, count: b)
            var weights = [Float](repeating: 1, count: b)
            for r in 0..<b {
                let t = rng.nextInt(below: schedule.trainSteps)
                ts[r] = Float(t)
                let (a, sg) = schedule.scales(t)
                if o.minSNRGamma > 0 { weights[r] = minSNRWeight(alpha: a, sigma: sg, gamma: o.minSNRGamma) }
                for k in 0..<per {
                    let e = rng.nextNormal(), x = x0[r * per + k]
                    xt[r * per + k] = a * x + sg * e
                    vt[r * per + k] = a * e - sg * x
                }
            }
            opt.learningRate = sched.rate(at: step)
            // Forward and backward on the batch's two halves at once (DataParallelStep).
            let (xtT, vtT, condT) = (Tensor(xt, shape: [b, c, s, s]), Tensor(vt, shape: [b, c, s, s]), Tensor(cond, shape: [b, dim]))
            let l = parallel.run(batch: b) { part, rows in
                let pred = model.predictV(xtT.slice(rows), t: Array(ts[rows]), cond: condT.slice(rows), net: part == 0 ? nil : replica)
                let target = vtT.slice(rows)
                return o.minSNRGamma > 0 ? Tensor.mseLoss(pred, target, rowWeights: Array(weights[rows])) : Tensor.mseLoss(pred, target)
            }
            opt.update(clipNorm: 1, ema: ema)  // clipping, AdamW and the EMA in one pass
            lossAvg = step == start ? l : 0.98 * lossAvg + 0.02 * l
            step += 1
            progress.update(step: step, loss: lossAvg)
            let keep = o.keepCheckpointsEvery > 0 && step % o.keepCheckpointsEvery == 0
            if step % o.checkpointEvery == 0 || step == o.steps || keep {
                try DiffusionCheckpoint.save(path: ckpt, net: model.unet, ema: ema, optimizer: opt, step: step, phase: "teacher",
                                             elapsed: before + Date().timeIntervalSince(t0),
                                             extra: ["cpu_seconds": String(format: "%.1f", cpuSoFar())])
                if keep {
                    let dir = o.outputDirectory + "/checkpoints/\(step)"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    _ = try? FileManager.default.removeItem(atPath: dir + "/checkpoint.safetensors")
                    try FileManager.default.copyItem(atPath: ckpt, toPath: dir + "/checkpoint.safetensors")
                }
            }
            if o.sampleEvery > 0, step % o.sampleEvery == 0 {
                try ema.withAveraged(params) {
                    try writeSampleGrid(model: model, steps: 20, guidance: o.defaultGuidance,
                                        path: o.outputDirectory + String(format: "/samples-%05d.png", step))
                }
                say(String(format: "step %d: loss %.4f, %.0fs", step, lossAvg, Date().timeIntervalSince(t0)))
            }
        }
        ema.copy(into: params)
        return DiffusionTrainingReport(steps: step, resumedFrom: start, seconds: before + Date().timeIntervalSince(t0),
                                       cpuSeconds: cpuSoFar(), finalLoss: lossAvg, parameters: model.unet.parameterCount)
    }

    /// The min-SNR-γ weight of a v-prediction loss at a timestep with signal and noise scales
    /// `alpha`, `sigma`: min(SNR, γ) / (SNR + 1), SNR = alpha² / sigma².
    public static func minSNRWeight(alpha: Float, sigma: Float, gamma: Float) -> Float {
        let snr = alpha * alpha / max(sigma * sigma, 1e-12)
        return min(snr, gamma) / (snr + 1)
    }

    /// `training.json`: {"seconds": wall-clock training time, "steps": optimiser steps}, and where
    /// measured "cpu_seconds" (the steps' CPU time) and "steps_per_second" (steps over the steps'
    /// wall time `stepSeconds`).
    static func writeTrainingJSON(_ dir: String, seconds: Double, steps: Int, cpuSeconds: Double = 0, stepSeconds: Double = 0) throws {
        var text = String(format: "{\"seconds\": %.0f, \"steps\": %d", seconds, steps)
        if cpuSeconds > 0 { text += String(format: ", \"cpu_seconds\": %.0f", cpuSeconds) }
        if stepSeconds > 0 { text += String(format: ", \"steps_per_second\": %.3f", Double(steps) / stepSeconds) }
        try (text + "}\n").write(toFile: dir + "/training.json", atomically: true, encoding: .utf8)
    }

    /// `config.json` of a servable model directory.
    static func writeModelConfig(_ dir: String, backend: String, weights: String) throws {
        try "{\"backend\": \"\(backend)\", \"weights\": \"\(weights)\"}\n".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    }

    /// One row of 8 images (seeds 1...8) per class (at most 10 classes).
    /// Packs only the frozen autoencoder: the UNet is still training, and packed weights would
    /// go stale (its unpacked forward pass gives the same images).
    public static func writeSampleGrid(model: LatentDiffusionModel, steps: Int, guidance: Float, path: String) throws {
        model.autoencoder.prepareForInference()
        let sampler = LatentDiffusionSampler(model: model)
        let ae = model.config.autoencoder
        let names = model.config.classNames
        let rows = min(10, max(1, names.count))
        let reqs = (0..<rows).map { LatentDiffusionSampler.Request(prompt: names.isEmpty ? "" : names[$0], seed: 1, count: 8, guidance: guidance) }
        let px = try sampler.generate(reqs, steps: min(steps, model.config.maxSteps))
        let images = LabeledImages(count: rows * 8, width: ae.imageSize, height: ae.imageSize, channels: ae.imageChannels,
                                   pixels: EightBit.pixels(px),
                                   labels: [Int](repeating: 0, count: rows * 8))
        try ImageGrid.write(images, columns: 8, scale: 2, to: path)
    }
}
