import Foundation
import ImageIO
import Models
import Tensor

/// Settings of `coalesce train nested-unet`.
public struct NestedUNetTrainingOptions: Sendable {
    public var data = TrainingData.fashionMNIST
    public var size: Int? = nil
    public var outputDirectory = "models/nested-unet"
    /// The high-resolution network: the outer one of the nested model (its middle is the inner
    /// network), or the whole network with `plain`.
    public var outer: UNetConfig = {
        var u = UNetConfig()
        u.channels = [32, 64]
        u.attentionLevels = [false, false]
        u.layersPerLevel = 1
        u.heads = 4
        u.groups = 8
        return u
    }()
    /// The low-resolution network (trained alone in phase 1, then nested).
    public var inner: UNetConfig = {
        var u = UNetConfig()
        u.channels = [64, 128]
        u.attentionLevels = [false, true]
        u.layersPerLevel = 1
        u.heads = 4
        u.groups = 8
        return u
    }()
    /// Train a plain single-resolution UNet (`outer` with its middle block) instead: the
    /// baseline of the nesting comparison; no phase 1.
    public var plain = false
    public var textEncoder = TextEncoderConfig()
    public var textEncoderSteps = 600
    /// Phase 1 (inner network alone at the low resolution) and phase 2 (nested) step limits.
    public var phase1Steps = 1500
    public var phase2Steps = 1500
    /// Optional limits in CPU seconds of the training steps of each phase (process CPU time,
    /// which equals wall-clock time on a dedicated core with COALESCE_THREADS=1, and does not
    /// count time lost to other processes). A phase ends at its step or time limit, whichever
    /// comes first; the learning-rate schedule follows whichever is further along.
    public var phase1Seconds: Double? = nil
    public var phase2Seconds: Double? = nil
    public var batchSize = 32
    public var learningRate: Float = 1e-3
    public var warmupSteps = 100
    public var conditionDropout: Float = 0.1
    public var emaDecay: Float = 0.999
    public var defaultGuidance: Float = 3
    public var shiftPower: Double = 1
    /// Loss weights, highest resolution first (nested: two; plain: one).
    public var lossWeights: [Float] = [1, 1]
    public var checkpointEvery = 100
    /// Sample grid every N steps of each phase (0 = none; a grid ends every phase regardless).
    public var sampleEvery = 0
    /// Every this many CPU seconds of a phase, the EMA weights are written as a servable model
    /// to `<out>/snapshots/<phase>-<seconds>s/` (quality over time); 0 = none.
    public var snapshotEvery: Double = 0
    public var trainLimit: Int? = nil
    public var seed: UInt64 = 1
    public var progress = true

    public init() {}
}

public enum NestedUNetTrainer {
    public static let weightsFile = "nested-unet.safetensors"

    /// Trains the model (phase 1, then phase 2; or the plain UNet) and writes
    /// `<out>/nested-unet.safetensors` (EMA weights), `config.json`, `samples.png` (and
    /// `samples-phase1.png`), `loss.tsv` (phase, step, CPU and wall seconds, smoothed loss and
    /// mse per resolution),
    /// `training.json`, `training-report.txt`; while running `checkpoint-<phase>.safetensors`,
    /// `text-encoder.safetensors` and, after phase 1, `phase1/` (the inner network alone as a
    /// servable low-resolution model). Started again with the same options it resumes.
    public static func train(_ o: NestedUNetTrainingOptions, log: (String) -> Void = { print($0) }) throws -> NestedUNetModel {
        var lines: [String] = []
        func say(_ s: String) { lines.append(s); log(s) }
        let t0 = Date()
        let out = o.outputDirectory
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let reportPath = out + "/training-report.txt"
        if let old = try? String(contentsOfFile: reportPath, encoding: .utf8), FileManager.default.fileExists(atPath: out + "/checkpoint-phase2.safetensors")
            || FileManager.default.fileExists(atPath: out + "/checkpoint-phase1.safetensors") || FileManager.default.fileExists(atPath: out + "/checkpoint-plain.safetensors") {
            lines = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
            lines.append("-- resumed --")
        }
        let loaded = try TrainingData.load(o.data, size: o.size)
        var train = loaded.train
        if let lim = o.trainLimit { train = train.slice(0..<min(lim, train.count)) }
        say("data: \(o.data): \(train.count) training images of \(train.width)x\(train.height)x\(train.channels); seed \(o.seed)")

        // The full model's config (nested or plain).
        var config = NestedUNetConfig()
        config.imageSize = train.width
        config.imageChannels = train.channels
        config.textEncoder = o.textEncoder
        config.defaultGuidance = o.defaultGuidance
        config.shiftPower = o.shiftPower
        // Sampling setting stored with the model: with x̂0 clipped, ε̂ recomputed from it (keeping
        // the network's ε̂ broke guided samples at many steps; BENCHMARKS.md, "Nested UNet").
        config.clipRecomputeNoise = true
        func io(_ u: UNetConfig) -> UNetConfig {
            var u = u
            u.inChannels = train.channels; u.outChannels = train.channels
            u.condDim = o.textEncoder.dim; u.contextDim = o.textEncoder.dim
            return u
        }
        config.outer = io(o.outer)
        if o.plain {
            config.outer.midBlock = true
            config.inner = nil
            config.lossWeights = [o.lossWeights.first ?? 1]
        } else {
            config.outer.midBlock = false
            config.inner = io(o.inner)
            config.lossWeights = o.lossWeights
        }
        try config.validate()
        var rng = RandomGenerator(seed: o.seed)
        let model = try NestedUNetModel(config: config, rng: &rng)

        // Text encoder: trained here on the data's captions (seconds), frozen, kept for resuming.
        let captions = try CaptionPlan(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST)
        model.config.classNames = captions.classNames
        let tePath = out + "/text-encoder.safetensors"
        if FileManager.default.fileExists(atPath: tePath) {
            let st = try SafeTensors.read(path: tePath)
            var t: [String: Tensor] = [:]
            for n in st.names { t[n] = try st.tensor(n) }
            try model.textEncoder.load(from: t)
            say("text encoder: loaded \(tePath)")
        } else {
            var teOpt = TextEncoderTrainingOptions()
            teOpt.seed = o.seed &+ 20; teOpt.progress = o.progress; teOpt.steps = o.textEncoderSteps
            let te = try TextEncoderTrainer.train(model.textEncoder, classes: captions.classNames.count, pairs: captions.pairs,
                                                  heldOut: captions.heldOut, options: teOpt)
            say(te.description)
            try SafeTensors(tensors: model.textEncoder.stateDict(), metadata: [:]).write(path: tePath)
        }
        let data = try NestedUNetData(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST,
                                      sides: config.resolutions, textEncoder: model.textEncoder)
        say("resolutions \(config.resolutions), schedule shift p = \(config.shiftPower); network \(model.net.parameterCount) parameters"
            + (o.plain ? " (plain UNet, channels \(config.outer.channels))"
               : " (outer \(config.outer.channels), inner \(config.inner!.channels), adapters)"))
        let prep = Date().timeIntervalSince(t0)
        var phases: [PhaseReport] = []

        if let innerConfig = config.inner, o.phase1Steps > 0 {
            // Phase 1: the inner network alone, a plain model at the low resolution.
            let low = config.resolutions[1]
            var c1 = config
            c1.imageSize = low
            c1.outer = innerConfig
            c1.outer.midBlock = true
            c1.inner = nil
            c1.lossWeights = [1]
            c1.classNames = captions.classNames
            var rng1 = RandomGenerator(seed: o.seed &+ 7)
            let m1 = try NestedUNetModel(config: c1, rng: &rng1)
            try m1.textEncoder.load(from: model.textEncoder.stateDict())
            let dir1 = out + "/phase1"
            let w1 = dir1 + "/" + weightsFile
            if FileManager.default.fileExists(atPath: w1) {
                let done = try NestedUNetModel.load(path: w1)
                try m1.load(from: done.stateDict())
                let r = try PhaseReport.read(dir1)
                phases.append(r)
                say("phase 1: done before (\(w1)): \(r)")
            } else {
                let r = try runPhase(model: m1, data: data, phase: "phase1", steps: o.phase1Steps, seconds: o.phase1Seconds,
                                     options: o, say: say)
                try FileManager.default.createDirectory(atPath: dir1, withIntermediateDirectories: true)
                try m1.save(path: w1)
                try writeModelConfig(dir1)
                try r.write(dir1)
                try writeSampleGrid(model: m1, steps: 50, guidance: o.defaultGuidance, path: out + "/samples-phase1.png")
                phases.append(r)
                say("phase 1 (inner network alone at \(low)x\(low), \(m1.net.parameterCount) parameters): \(r); wrote \(dir1), samples-phase1.png")
            }
            // Phase 2 starts with the inner network from phase 1 (plain UNet "outer.*" -> "inner.*").
            var inner: [String: Tensor] = [:]
            for (k, p) in m1.net.namedParameters { inner["inner." + k.dropFirst("outer.".count)] = p }
            try model.net.inner!.load(from: inner, prefix: "inner.")
        }
        let last = o.plain ? "plain" : "phase2"
        let r = try runPhase(model: model, data: data, phase: last, steps: o.phase2Steps, seconds: o.phase2Seconds, options: o, say: say)
        phases.append(r)
        say("\(last): \(r)")
        model.config.classNames = data.classNames
        try model.save(path: out + "/" + weightsFile)
        try writeModelConfig(out)
        try writeSampleGrid(model: model, steps: 50, guidance: o.defaultGuidance, path: out + "/samples.png")
        let cpu = phases.map(\.cpuSeconds).reduce(0, +), wall = phases.map(\.wallSeconds).reduce(0, +)
        let steps = phases.map(\.steps).reduce(0, +)
        say(String(format: "total: data and text encoder %.0fs (this run) + training steps %.0fs wall / %.0fs CPU (%@)",
                   prep, wall, cpu, phases.map { String(format: "%@ %.0fs CPU", $0.phase, $0.cpuSeconds) }.joined(separator: ", ")))
        try String(format: "{\"seconds\": %.0f, \"cpu_seconds\": %.0f, \"steps\": %d, \"threads\": %d, \"phases\": [%@]}\n",
                   prep + wall, cpu, steps, Runtime.threads,
                   phases.map { String(format: "{\"phase\": \"%@\", \"steps\": %d, \"seconds\": %.0f, \"cpu_seconds\": %.0f, \"steps_per_second\": %.3f}",
                                       $0.phase, $0.steps, $0.wallSeconds, $0.cpuSeconds,
                                       $0.wallSeconds > 0 ? Double($0.steps) / $0.wallSeconds : 0) }.joined(separator: ", "))
            .write(toFile: out + "/training.json", atomically: true, encoding: .utf8)
        say("wrote \(out)/\(weightsFile), config.json, samples.png (50 steps, guidance \(o.defaultGuidance))")
        try (lines.joined(separator: "\n") + "\n").write(toFile: reportPath, atomically: true, encoding: .utf8)
        return model
    }

    /// What one phase did.
    public struct PhaseReport: CustomStringConvertible, Sendable {
        public var phase: String
        public var steps: Int
        public var wallSeconds: Double
        public var cpuSeconds: Double
        public var finalLoss: Float
        public var description: String {
            String(format: "%d steps in %.0fs wall / %.0fs CPU, final loss %.4f", steps, wallSeconds, cpuSeconds, finalLoss)
        }

        func write(_ dir: String) throws {
            try String(format: "{\"phase\": \"%@\", \"steps\": %d, \"seconds\": %.1f, \"cpu_seconds\": %.1f, \"final_loss\": %.5f}\n",
                       phase, steps, wallSeconds, cpuSeconds, finalLoss)
                .write(toFile: dir + "/training.json", atomically: true, encoding: .utf8)
        }

        static func read(_ dir: String) throws -> PhaseReport {
            let d = try Data(contentsOf: URL(fileURLWithPath: dir + "/training.json"))
            guard let o = try JSONSerialization.jsonObject(with: d) as? [String: Any] else {
                throw TrainingError.invalidData("\(dir)/training.json is not a JSON object")
            }
            return PhaseReport(phase: o["phase"] as? String ?? "", steps: o["steps"] as? Int ?? 0,
                               wallSeconds: o["seconds"] as? Double ?? 0, cpuSeconds: o["cpu_seconds"] as? Double ?? 0,
                               finalLoss: Float(o["final_loss"] as? Double ?? 0))
        }
    }

    /// CPU seconds used by this process so far.
    static func processCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// One phase of denoising training at every resolution of `model`: per row a uniform
    /// timestep shared by the resolutions, independent noise per resolution on its own
    /// schedule, v targets, loss Σ_r w_r · mse_r; condition dropout; AdamW with warmup and
    /// cosine decay; EMA; checkpoints (resumable); loss.tsv; sample grids and snapshots.
    /// Leaves the EMA weights in the model.
    static func runPhase(model: NestedUNetModel, data: NestedUNetData, phase: String, steps: Int, seconds: Double?,
                         options o: NestedUNetTrainingOptions, say: (String) -> Void) throws -> PhaseReport {
        let out = o.outputDirectory
        let params = model.net.parameters
        let opt = AdamW(parameters: params, learningRate: o.learningRate, weightDecay: 0.01)
        let ema = EMA(parameters: params, decay: o.emaDecay)
        let replica = try model.net.replica()
        let parallel = DataParallelStep(parameters: params, replicas: [replica.parameters])
        let partTerms = UnsafeMutablePointer<Float>.allocate(capacity: parallel.parts * model.config.resolutions.count)
        partTerms.initialize(repeating: 0, count: parallel.parts * model.config.resolutions.count)
        defer { partTerms.deallocate() }
        let ckpt = out + "/checkpoint-\(phase).safetensors"
        var start = 0, wallBefore = 0.0, cpuBefore = 0.0
        var resumedLoss: Float = 0
        if let (step, _, elapsed, meta) = try DiffusionCheckpoint.load(path: ckpt, net: model.net, ema: ema, optimizer: opt) {
            start = step
            wallBefore = elapsed
            cpuBefore = Double(meta["cpu_seconds"] ?? "") ?? elapsed
            resumedLoss = Float(meta["loss"] ?? "") ?? 0
            say(String(format: "%@: resuming from %@ at step %d (%.0fs CPU before)", phase, ckpt, step, cpuBefore))
        }
        let sched = WarmupCosineSchedule(peak: o.learningRate, warmupSteps: o.warmupSteps, totalSteps: steps)
        let res = model.config.resolutions, sizes = model.sizes, ch = model.config.imageChannels
        let weights = model.config.lossWeights
        let schedules = model.schedules
        let b = o.batchSize, dim = data.dim
        let progress = ProgressReporter(label: "train nested-unet \(phase)", total: steps, itemsPerStep: b, interval: 10, enabled: o.progress)
        let lossLog = try LossLog(path: out + "/loss.tsv")
        let t0 = Date()
        var cpu = cpuBefore
        var nextSnapshot = o.snapshotEvery > 0 ? (floor(cpuBefore / o.snapshotEvery) + 1) * o.snapshotEvery : .infinity
        var lossAvg: Float = resumedLoss
        var termAvg: [Float] = []
        var step = start
        func wall() -> Double { wallBefore + Date().timeIntervalSince(t0) }
        func save() throws {
            try DiffusionCheckpoint.save(path: ckpt, net: model.net, ema: ema, optimizer: opt, step: step, phase: phase,
                                         elapsed: wall(), extra: ["cpu_seconds": String(format: "%.1f", cpu),
                                                                         "loss": String(format: "%.6f", lossAvg)])
        }
        while step < steps, cpu < (seconds ?? .infinity) {
            let c0 = processCPUSeconds()
            var rng = RandomGenerator(seed: o.seed &+ 1_000_003 &* UInt64(step + 1) &+ (phase == "phase1" ? 77 : 0))
            let idx = (0..<b).map { _ in rng.nextInt(below: data.count) }
            let cond = data.conditions(idx, dropout: o.conditionDropout, rng: &rng)
            var ts = [Float](repeating: 0, count: b), tInt = [Int](repeating: 0, count: b)
            for r in 0..<b { tInt[r] = rng.nextInt(below: schedules[0].trainSteps); ts[r] = Float(tInt[r]) }
            var inputs: [Tensor] = [], targets: [Tensor] = []
            for l in res.indices {
                let x0 = data.images(idx, side: res[l]), per = sizes[l]
                var xt = [Float](repeating: 0, count: b * per), vt = xt
                for r in 0..<b {
                    let (a, sg) = schedules[l].scales(tInt[r])
                    for k in 0..<per {
                        let e = rng.nextNormal(), x = x0[r * per + k]
                        xt[r * per + k] = a * x + sg * e
                        vt[r * per + k] = a * e - sg * x
                    }
                }
                inputs.append(Tensor(xt, shape: [b, ch, res[l], res[l]]))
                targets.append(Tensor(vt, shape: [b, ch, res[l], res[l]]))
            }
            let fraction = seconds.map { cpu / $0 } ?? 0
            opt.learningRate = sched.rate(at: max(step, Int(fraction * Double(steps))))
            // Forward and backward on the batch's two halves at once (DataParallelStep); each half
            // writes its per-resolution terms into its own row of partTerms.
            let condTensor = Tensor(cond, shape: [b, dim])
            let l = parallel.run(batch: b) { part, rows in
                let preds = model.predictV(inputs.map { $0.slice(rows) }, t: Array(ts[rows]), cond: condTensor.slice(rows),
                                           net: part == 0 ? nil : replica)
                var loss: Tensor? = nil
                for l in res.indices {
                    let mse = Tensor.mseLoss(preds[l], targets[l].slice(rows))
                    partTerms[part * res.count + l] = mse.item
                    guard weights[l] > 0 else { continue }
                    let term = mse.scaled(weights[l])
                    loss = loss.map { $0 + term } ?? term
                }
                return loss!
            }
            let terms = res.indices.map { l in
                (0..<parallel.parts).reduce(Float(0)) { sum, p in
                    sum + partTerms[p * res.count + l] * DataParallelStep.share(part: p, of: parallel.parts, batch: b)
                }
            }
            opt.update(clipNorm: 1, ema: ema)  // clipping, AdamW and the EMA in one pass
            lossAvg = step == start && start == 0 ? l : 0.98 * lossAvg + 0.02 * l
            termAvg = termAvg.count != terms.count ? terms : zip(termAvg, terms).map { 0.98 * $0 + 0.02 * $1 }
            step += 1
            cpu += processCPUSeconds() - c0
            progress.update(step: step, loss: lossAvg)
            if step % 10 == 0 { lossLog.append(phase: phase, step: step, cpu: cpu, wall: wall(), loss: lossAvg, terms: termAvg, sides: res) }
            let last = step == steps || cpu >= (seconds ?? .infinity)
            if step % o.checkpointEvery == 0 || last { try save() }
            if o.sampleEvery > 0, step % o.sampleEvery == 0, !last {
                try ema.withAveraged(params) {
                    try writeSampleGrid(model: model, steps: 20, guidance: o.defaultGuidance,
                                        path: out + String(format: "/samples-%@-%05d.png", phase, step))
                }
                say(String(format: "%@ step %d: loss %.4f, %.0fs CPU", phase, step, lossAvg, cpu))
            }
            if cpu >= nextSnapshot {
                let dir = out + String(format: "/snapshots/%@-%05.0fs", phase, nextSnapshot)
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try ema.withAveraged(params) { try model.save(path: dir + "/" + weightsFile) }
                try writeModelConfig(dir)
                try String(format: "{\"phase\": \"%@\", \"step\": %d, \"cpu_seconds\": %.1f, \"seconds\": %.1f, \"loss\": %.5f}\n",
                           phase, step, cpu, wall(), lossAvg).write(toFile: dir + "/training.json", atomically: true, encoding: .utf8)
                say(String(format: "%@: snapshot at %.0fs CPU (step %d, loss %.4f) -> %@", phase, cpu, step, lossAvg, dir))
                while nextSnapshot <= cpu { nextSnapshot += o.snapshotEvery }
            }
        }
        ema.copy(into: params)
        return PhaseReport(phase: phase, steps: step, wallSeconds: wall(), cpuSeconds: cpu, finalLoss: lossAvg)
    }

    /// `config.json` of a servable model directory.
    static func writeModelConfig(_ dir: String) throws {
        try "{\"backend\": \"nested-unet\", \"weights\": \"\(weightsFile)\"}\n".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    }

    /// One row of 8 images (seeds 1...8) per class (at most 10 classes).
    public static func writeSampleGrid(model: NestedUNetModel, steps: Int, guidance: Float, path: String) throws {
        let names = model.config.classNames
        let rows = min(10, max(1, names.count))
        let reqs = (0..<rows).map { NestedUNetSampler.Request(prompt: names.isEmpty ? "" : names[$0], seed: 1, count: 8, guidance: guidance) }
        let px = try NestedUNetSampler(model: model).generate(reqs, steps: min(steps, model.config.maxSteps))
        let s = model.config.imageSize
        let images = LabeledImages(count: rows * 8, width: s, height: s, channels: model.config.imageChannels,
                                   pixels: EightBit.pixels(px),
                                   labels: [Int](repeating: 0, count: rows * 8))
        try ImageGrid.write(images, columns: 8, scale: 2, to: path)
    }
}

/// `loss.tsv`: phase, step, CPU seconds, wall seconds, smoothed loss, and the smoothed mse of
/// each resolution as "side:mse" (highest first); appended as training runs.
final class LossLog {
    let handle: FileHandle
    init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            try "phase\tstep\tcpu_seconds\twall_seconds\tloss\tmse_per_side\n".write(toFile: path, atomically: true, encoding: .utf8)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw TrainingError.invalidData("cannot open \(path)") }
        h.seekToEndOfFile()
        handle = h
    }
    deinit { try? handle.close() }
    func append(phase: String, step: Int, cpu: Double, wall: Double, loss: Float, terms: [Float], sides: [Int]) {
        let per = zip(sides, terms).map { String(format: "%d:%.5f", $0, $1) }.joined(separator: " ")
        handle.write(Data(String(format: "%@\t%d\t%.1f\t%.1f\t%.5f\t%@\n", phase, step, cpu, wall, loss, per).utf8))
    }
}
