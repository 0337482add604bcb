import Foundation
import ImageIO
import Models
import Tensor

/// Settings of `coalesce train distilled-unet`: progressive step distillation (Salimans & Ho
/// 2022) with SnapFusion's classifier-free-guidance-aware loss.
public struct DistillationOptions: Sendable {
    public var data = TrainingData.fashionMNIST
    public var size: Int? = nil
    /// The trained teacher (`models/latent-diffusion`, directory or file).
    public var teacherPath = "models/latent-diffusion"
    public var outputDirectory = "models/distilled-unet"
    /// The student's UNet (chosen from the teacher's block table; its weights start from the
    /// teacher's where names and shapes match).
    public var student: UNetConfig? = nil
    /// Step count the teacher samples with in the first phase; each phase halves it.
    public var teacherSteps = 32
    /// The student's final step count.
    public var finalSteps = 8
    /// Optimiser steps per phase.
    public var stepsPerPhase = 1500
    public var batchSize = 128
    public var learningRate: Float = 2e-4
    public var warmupSteps = 50
    public var conditionDropout: Float = 0.1
    /// Fraction of batches whose target is the teacher's guided prediction, with the student's
    /// guided output in the loss (SnapFusion's CFG-aware distillation).
    public var guidedFraction: Float = 0.3
    /// Range of the guidance scale drawn on those batches.
    public var guidanceRange: ClosedRange<Float> = 1...5
    /// Guidance only at noise fractions t / (T − 1) in this band (nil: at every step): on guided
    /// batches each teacher step is guided only inside it, and the student's output only where its
    /// own step starts inside it, so the student learns the sampler it will be served with. The
    /// student stores it in its config (`guidance_interval`).
    public var guidanceInterval: ClosedRange<Double>? = nil
    public var emaDecay: Float = 0.995
    public var defaultGuidance: Float? = nil
    public var checkpointEvery = 250
    public var trainLimit: Int? = nil
    public var seed: UInt64 = 3
    public var progress = true

    public init() {}

    /// The phases as (teacher steps, student steps): 32 -> 16, 16 -> 8, ...
    public var phases: [(teacher: Int, student: Int)] {
        var out: [(Int, Int)] = []
        var t = teacherSteps
        while t / 2 >= finalSteps, t >= 2 { out.append((t, t / 2)); t /= 2 }
        return out
    }
}

public enum DistillationTrainer {
    /// Runs every phase; writes `<out>/distilled-unet.safetensors`, `config.json`, a sample grid per
    /// phase, `training-report.txt`, and `checkpoint.safetensors` (resumable, per phase).
    public static func train(_ o: DistillationOptions, log: (String) -> Void = { print($0) }) throws -> LatentDiffusionModel {
        var lines: [String] = []
        func say(_ s: String) { lines.append(s); log(s) }
        let t0 = Date()
        try FileManager.default.createDirectory(atPath: o.outputDirectory, withIntermediateDirectories: true)
        var isDir: ObjCBool = false
        let teacherFile = FileManager.default.fileExists(atPath: o.teacherPath, isDirectory: &isDir) && isDir.boolValue
            ? o.teacherPath + "/latent-diffusion.safetensors" : o.teacherPath
        let original = try LatentDiffusionModel.load(path: teacherFile)
        let phases = o.phases
        guard !phases.isEmpty, phases.last!.student == o.finalSteps else {
            throw TrainingError.invalidData("--teacher-steps \(o.teacherSteps) must be --final-steps \(o.finalSteps) times a power of two (>= 2x)")
        }
        let loaded = try TrainingData.load(o.data, size: o.size)
        var train = loaded.train
        if let lim = o.trainLimit { train = train.slice(0..<min(lim, train.count)) }
        say("data: \(o.data): \(train.count) training images; teacher \(teacherFile) (\(original.unet.parameterCount) UNet parameters); seed \(o.seed)")
        let data = try LatentDiffusionData(train: train, fashionMNIST: o.data == TrainingData.fashionMNIST,
                                           autoencoder: original.autoencoder, textEncoder: original.textEncoder)

        var config = original.config
        config.backend = "distilled-unet"
        config.unet = o.student ?? original.config.unet
        config.defaultSteps = o.finalSteps
        config.distilledSteps = o.finalSteps
        config.defaultGuidance = o.defaultGuidance ?? original.config.defaultGuidance
        if let i = o.guidanceInterval { config.guidanceInterval = [i.lowerBound, i.upperBound] }
        var rng = RandomGenerator(seed: o.seed)
        let student = try LatentDiffusionModel(config: config, rng: &rng)
        try student.autoencoder.load(from: original.autoencoder.stateDict())
        try student.textEncoder.load(from: original.textEncoder.stateDict())
        // Start from the teacher where the names and shapes match (SnapFusion prunes blocks of
        // a trained UNet rather than training the small one from scratch).
        let teacherWeights = original.unet.stateDict()
        var copied = 0
        for (k, p) in student.unet.namedParameters {
            if let t = teacherWeights[k], t.shape == p.shape { p.copyValues(from: t); copied += 1 }
        }
        say("student UNet: \(student.unet.parameterCount) parameters (teacher \(original.unet.parameterCount)), channels \(config.unet.channels), "
            + "layers/level \(config.unet.layersPerLevel), attention \(config.unet.attentionLevels), mid attention \(config.unet.midAttention); "
            + "\(copied) of \(student.unet.namedParameters.count) tensors from the teacher")
        say(String(format: "phases %@; %d optimiser steps each, batch %d, lr %g; guided-target fraction %.2f, guidance U[%g, %g]%@",
                   phases.map { "\($0.teacher)->\($0.student)" }.joined(separator: ", "), o.stepsPerPhase, o.batchSize,
                   o.learningRate, o.guidedFraction, o.guidanceRange.lowerBound, o.guidanceRange.upperBound,
                   o.guidanceInterval.map { String(format: " at noise fractions [%g, %g]", $0.lowerBound, $0.upperBound) } ?? ""))

        let prep = Date().timeIntervalSince(t0)
        // Resume: a finished phase leaves its student in phase-N.safetensors.
        func phaseFile(_ i: Int) -> String { o.outputDirectory + "/phase-\(i).safetensors" }
        var firstPhase = 0
        for pi in phases.indices.reversed() where FileManager.default.fileExists(atPath: phaseFile(pi)) {
            let st = try SafeTensors.read(path: phaseFile(pi))
            let tensors = try st.allTensors()
            try student.unet.load(from: tensors)
            firstPhase = pi + 1
            say("resuming after phase \(pi + 1) (\(phaseFile(pi)))")
            break
        }
        func frozenCopy() throws -> LatentDiffusionModel {
            let copy = try LatentDiffusionModel(config: config, rng: &rng)
            try copy.load(from: student.stateDict())
            return copy
        }
        // The teacher is frozen: its weights are packed once for its gradient-free calls.
        var teacher = firstPhase == 0 ? original : try frozenCopy()
        teacher.prepareForInference()
        let previous = firstPhase == 0 ? [:] : try SafeTensors.read(path: phaseFile(firstPhase - 1)).metadata
        var phaseSeconds = previous["seconds"].flatMap(Double.init) ?? 0
        var phaseCPU = previous["cpu_seconds"].flatMap(Double.init) ?? 0
        for pi in firstPhase..<phases.count {
            let phase = phases[pi]
            let report = try runPhase(teacher: teacher, student: student, data: data, phase: phase, index: pi, options: o, say: say)
            say("phase \(pi + 1) (\(phase.teacher) -> \(phase.student) steps): \(report)")
            phaseSeconds += report.seconds
            phaseCPU += report.cpuSeconds
            try SafeTensors(tensors: student.unet.stateDict(),
                            metadata: ["seconds": String(format: "%.1f", phaseSeconds), "cpu_seconds": String(format: "%.1f", phaseCPU)])
                .write(path: phaseFile(pi))
            try LatentDiffusionTrainer.writeSampleGrid(model: student, steps: phase.student, guidance: config.defaultGuidance,
                                                       path: o.outputDirectory + "/samples-\(phase.student)-steps.png")
            // The next phase's teacher is a frozen copy of this student.
            teacher = try frozenCopy()
            teacher.prepareForInference()
        }
        try student.save(path: o.outputDirectory + "/distilled-unet.safetensors")
        try LatentDiffusionTrainer.writeModelConfig(o.outputDirectory, backend: "distilled-unet", weights: "distilled-unet.safetensors")
        try? FileManager.default.removeItem(atPath: o.outputDirectory + "/checkpoint.safetensors")
        for pi in phases.indices { try? FileManager.default.removeItem(atPath: phaseFile(pi)) }
        // Training time: this run's data preparation and every phase's steps (resumed phases
        // count the time before them).
        let total = prep + phaseSeconds
        try LatentDiffusionTrainer.writeTrainingJSON(o.outputDirectory, seconds: total, steps: phases.count * o.stepsPerPhase,
                                                     cpuSeconds: phaseCPU, stepSeconds: phaseSeconds)
        say("distilled-unet: wrote \(o.outputDirectory)/distilled-unet.safetensors, config.json")
        say("total \(Int(total))s")
        try (lines.joined(separator: "\n") + "\n").write(toFile: o.outputDirectory + "/training-report.txt", atomically: true, encoding: .utf8)
        return student
    }

    /// The teacher's DDIM steps from x_t (B rows of the latent shape) along `steps` [(from, to)]:
    /// each step guided with `guidance` where `interval` allows it (nil, or outside the interval:
    /// the conditional prediction alone). Returns the end point.
    public static func teacherSteps(_ teacher: LatentDiffusionModel, xt: [Float], cond: Tensor, steps: [(Int, Int)],
                                    guidance: Float?, interval: ClosedRange<Double>?) -> [Float] {
        let (c, s) = teacher.latentShape
        let b = cond.shape[0]
        let schedule = teacher.schedule
        let zero = Tensor(zeros: cond.shape)
        var x = xt
        GradMode.withDisabled {
            for (from, to) in steps {
                let xin = Tensor(x, shape: [b, c, s, s])
                let ts = [Float](repeating: Float(from), count: b)
                var v = teacher.predictV(xin, t: ts, cond: cond).array
                if let w = guidance, ClassifierFreeGuidance.guides(at: from, interval: interval, trainSteps: schedule.trainSteps) {
                    let vu = teacher.predictV(xin, t: ts, cond: zero).array
                    for i in v.indices { v[i] = vu[i] + w * (v[i] - vu[i]) }
                }
                schedule.ddimStep(&x, v: v, t: from, prev: to)
            }
        }
        return x
    }

    /// One phase: the student learns to do in one DDIM step what the teacher does in two.
    ///
    /// Per batch: a student step k of the n-step trailing grid (t -> t''), x_t from data; the
    /// teacher takes the two steps t -> t' -> t'' of the 2n grid (guided with w on a fraction of
    /// batches, its conditional prediction otherwise). The target x̃ is the x̂0 that brings x_t
    /// to the teacher's x_t'' in one DDIM step: x̃ = (x_t'' − (σ_t''/σ_t) x_t) / (α_t'' − (σ_t''/σ_t) α_t),
    /// and the loss is the squared error of v with target v̂ = (α_t x_t − x̃)/σ_t (x-space error
    /// weighted by 1 + SNR, as v-prediction training). On guided batches the student's output
    /// is itself guided, v_u + w (v_c − v_u), so that the student is right where it is used.
    static func runPhase(teacher: LatentDiffusionModel, student: LatentDiffusionModel, data: LatentDiffusionData,
                         phase: (teacher: Int, student: Int), index: Int, options o: DistillationOptions,
                         say: (String) -> Void) throws -> DiffusionTrainingReport {
        let params = student.unet.parameters
        let opt = AdamW(parameters: params, learningRate: o.learningRate, weightDecay: 0)
        let ema = EMA(parameters: params, decay: o.emaDecay)
        let replica = try student.unet.replica()
        let parallel = DataParallelStep(parameters: params, replicas: [replica.parameters])
        let ckpt = o.outputDirectory + "/checkpoint.safetensors"
        let phaseName = "phase-\(index)"
        var start = 0
        var before = 0.0, cpuBefore = 0.0
        if FileManager.default.fileExists(atPath: ckpt) {
            let meta = try SafeTensors.read(path: ckpt).metadata
            if meta["phase"] == phaseName, let (step, _, elapsed, m) = try DiffusionCheckpoint.load(path: ckpt, net: student.unet, ema: ema, optimizer: opt) {
                start = step
                before = elapsed
                cpuBefore = m["cpu_seconds"].flatMap(Double.init) ?? 0
                say("resuming \(phaseName) from \(ckpt) at step \(step)")
            }
        }
        let cpu0 = NestedUNetTrainer.processCPUSeconds()
        func cpuSoFar() -> Double { cpuBefore + NestedUNetTrainer.processCPUSeconds() - cpu0 }
        let schedule = student.schedule
        let spacing = student.config.spacing
        let studentGrid = schedule.updates(phase.student, spacing: spacing)
        let teacherGrid = schedule.updates(phase.teacher, spacing: spacing)
        let lr = WarmupCosineSchedule(peak: o.learningRate, warmupSteps: o.warmupSteps, totalSteps: o.stepsPerPhase)
        let (c, s) = student.latentShape
        let per = c * s * s, b = o.batchSize, dim = data.dim
        let progress = ProgressReporter(label: "distil \(phase.teacher)->\(phase.student)", total: o.stepsPerPhase,
                                        itemsPerStep: b, interval: 10, enabled: o.progress)
        let t0 = Date()
        var lossAvg: Float = 0
        var step = start
        while step < o.stepsPerPhase {
            var rng = RandomGenerator(seed: o.seed &+ UInt64(index + 1) &* 7_919 &+ 1_000_003 &* UInt64(step + 1))
            let idx = (0..<b).map { _ in rng.nextInt(below: data.count) }
            let (x0, condRows) = data.batch(idx, dropout: o.conditionDropout, rng: &rng)
            let guided = rng.nextFloat() < o.guidedFraction
            let w = guided ? o.guidanceRange.lowerBound + rng.nextFloat() * (o.guidanceRange.upperBound - o.guidanceRange.lowerBound) : 1
            let k = rng.nextInt(below: phase.student)
            let (t, t2) = studentGrid[k]
            let (tStart, tMid) = teacherGrid[2 * k]
            precondition(tStart == t && teacherGrid[2 * k + 1].t == tMid && teacherGrid[2 * k + 1].prev == t2, "grids do not nest")
            let (a, sg) = schedule.scales(t)
            var xt = [Float](repeating: 0, count: b * per)
            for i in 0..<(b * per) { xt[i] = a * x0[i] + sg * rng.nextNormal() }
            let cond = Tensor(condRows, shape: [b, dim])
            // Teacher: two DDIM steps t -> t' -> t''.
            let x = teacherSteps(teacher, xt: xt, cond: cond, steps: [(t, tMid), (tMid, t2)], guidance: guided ? w : nil,
                                 interval: o.guidanceInterval)
            // Target v̂ for the student's single step t -> t''.
            let (a2, s2) = schedule.scales(t2)
            let ratio = s2 / sg
            var vTarget = [Float](repeating: 0, count: b * per)
            for i in 0..<(b * per) {
                let xTilde = (x[i] - ratio * xt[i]) / (a2 - ratio * a)
                vTarget[i] = (a * xt[i] - xTilde) / sg
            }
            opt.learningRate = lr.rate(at: step)
            let guidedStep = guided && ClassifierFreeGuidance.guides(at: t, interval: o.guidanceInterval, trainSteps: schedule.trainSteps)
            // The student's forward and backward on the batch's two halves at once (DataParallelStep).
            let (xtT, targetT) = (Tensor(xt, shape: [b, c, s, s]), Tensor(vTarget, shape: [b, c, s, s]))
            let l = parallel.run(batch: b) { part, rows in
                let net = part == 0 ? nil : replica
                let xin = xtT.slice(rows)
                let ts = [Float](repeating: Float(t), count: rows.count)
                var pred = student.predictV(xin, t: ts, cond: cond.slice(rows), net: net)
                if guidedStep {
                    let vu = student.predictV(xin, t: ts, cond: Tensor(zeros: [rows.count, dim]), net: net)
                    pred = vu.scaled(1 - w) + pred.scaled(w)
                }
                return Tensor.mseLoss(pred, targetT.slice(rows))
            }
            opt.update(clipNorm: 1, ema: ema)  // clipping, AdamW and the EMA in one pass
            lossAvg = step == start ? l : 0.98 * lossAvg + 0.02 * l
            step += 1
            progress.update(step: step, loss: lossAvg)
            if step % o.checkpointEvery == 0 && step < o.stepsPerPhase {
                try DiffusionCheckpoint.save(path: ckpt, net: student.unet, ema: ema, optimizer: opt, step: step, phase: phaseName,
                                             elapsed: before + Date().timeIntervalSince(t0),
                                             extra: ["cpu_seconds": String(format: "%.1f", cpuSoFar())])
            }
        }
        ema.copy(into: params)
        return DiffusionTrainingReport(steps: step, resumedFrom: start, seconds: before + Date().timeIntervalSince(t0),
                                       cpuSeconds: cpuSoFar(), finalLoss: lossAvg, parameters: student.unet.parameterCount)
    }
}
