import Foundation
import Models
import Tensor

/// Settings of `TextEncoderDistiller`.
public struct TextEncoderDistillOptions: Sendable {
    public var steps = 1500
    public var batchSize = 128
    public var learningRate: Float = 2e-3
    public var weightDecay: Float = 1e-3
    /// Hidden width of the MiniLM projection MLP.
    public var hidden = 256
    /// Noisy copies of each caption (a made-up word before or after it), so the projection sees
    /// more than the clean captions.
    public var noisyCopies = 2
    public var seed: UInt64 = 16
    /// Train towards the mean teacher embedding of each caption's class (when classes are given)
    /// instead of the caption's own.
    public var classMeanTargets = false
    public var progress = true
    public init() {}
}

/// What distillation measured: the mean cosine between the student's and the teacher's
/// embeddings on the training captions and on captions of the held-out templates.
public struct TextEncoderDistillReport: Sendable, CustomStringConvertible {
    public var steps: Int
    public var seconds: Double
    public var featureSeconds: Double
    public var captions: Int
    public var trainCosine: Double
    public var heldOutCosine: Double

    public var description: String {
        String(format: "minilm projection: %d captions (MiniLM features in %.1fs), %d steps in %.1fs; "
               + "cosine to the trigram encoder: train %.4f, held-out templates %.4f",
               captions, featureSeconds, steps, seconds, trainCosine, heldOutCosine)
    }
}

/// Gives a trained coalescer a MiniLM text encoder without retraining the coalescer: a small MLP
/// on the frozen MiniLM sentence embedding is trained to reproduce the model's own (trigram)
/// description embeddings of its training captions (squared error between unit vectors). The
/// coalescer net then reads the description space it was trained on, while prompts it never saw
/// reach it through a pretrained sentence encoder.
public enum TextEncoderDistiller {
    /// `classes[i]`: the class of `captions[i]` (for `classMeanTargets`).
    public static func distill(teacher: TextEncoder, minilm: MiniLM, captions: [String], classes: [Int]? = nil,
                               heldOut: [String],
                               options: TextEncoderDistillOptions) throws -> (TextEncoder, TextEncoderDistillReport) {
        guard !captions.isEmpty else { throw TrainingError.invalidData("minilm projection: no captions") }
        var rng = RandomGenerator(seed: options.seed)
        var cfg = TextEncoderConfig()
        cfg.kind = .minilm
        cfg.minilmWidth = minilm.config.hidden
        cfg.hidden = options.hidden
        cfg.dim = teacher.config.dim
        let student = try TextEncoder(config: cfg, rng: &rng, minilm: minilm)

        // The prompts: every caption, noisy copies, and the empty prompt (unconditional).
        var prompts = captions + [""]
        var promptClass = (classes ?? []) + [-1]
        for (k, c) in captions.enumerated() {
            for _ in 0..<options.noisyCopies {
                promptClass.append(classes?[k] ?? -1)
                let len = 3 + rng.nextInt(below: 6)
                let word = String((0..<len).map { _ in Character(UnicodeScalar(UInt8(97 + rng.nextInt(below: 26)))) })
                prompts.append(rng.nextFloat() < 0.5 ? word + " " + c : c + " " + word)
            }
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (features, targets) = GradMode.withDisabled {
            (student.featureMatrix(prompts), teacher.embed(prompts).detached())   // (N, 384), (N, dim)
        }
        let featureSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let (n, w, d) = (prompts.count, cfg.minilmWidth, cfg.dim)
        if options.classMeanTargets, let classes, classes.count == captions.count {
            // Each prompt of class c aims at the unit mean of the teacher's class-c caption embeddings.
            var means: [Int: [Float]] = [:]
            for (k, c) in classes.enumerated() {
                var m = means[c] ?? [Float](repeating: 0, count: d)
                for j in 0..<d { m[j] += targets.data[k * d + j] }
                means[c] = m
            }
            for i in 0..<n where promptClass[i] >= 0 {
                let m = means[promptClass[i]]!
                let norm = max(m.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                for j in 0..<d { targets.data[i * d + j] = m[j] / norm }
            }
        }

        let opt = AdamW(parameters: student.parameters, learningRate: options.learningRate, weightDecay: options.weightDecay)
        let progress = ProgressReporter(label: "train minilm projection", total: options.steps,
                                        itemsPerStep: options.batchSize, interval: 5, enabled: options.progress)
        var lossAvg: Float = 0
        for step in 1...max(1, options.steps) {
            let rows = (0..<options.batchSize).map { _ in rng.nextInt(below: n) }
            let x = Tensor(zeros: [rows.count, w]), y = Tensor(zeros: [rows.count, d])      // x: (B, 384), y: (B, dim)
            withExtendedLifetime((features, targets)) {
                for (i, r) in rows.enumerated() {
                    (x.data + i * w).update(from: features.data + r * w, count: w)
                    (y.data + i * d).update(from: targets.data + r * d, count: d)
                }
            }
            let loss = Tensor.mseLoss(student.forward(x), y)
            opt.zeroGrad()
            loss.backward()
            opt.update()
            lossAvg = step == 1 ? loss.item : 0.95 * lossAvg + 0.05 * loss.item
            progress.update(step: step, loss: lossAvg)
        }
        let report = TextEncoderDistillReport(
            steps: options.steps, seconds: progress.elapsed, featureSeconds: featureSeconds, captions: captions.count,
            trainCosine: meanCosine(student, teacher, captions), heldOutCosine: meanCosine(student, teacher, heldOut))
        return (student, report)
    }

    /// Mean cosine between two encoders' embeddings of `prompts` (both are unit length).
    public static func meanCosine(_ a: TextEncoder, _ b: TextEncoder, _ prompts: [String]) -> Double {
        guard !prompts.isEmpty else { return .nan }
        return GradMode.withDisabled {
            let (x, y) = (a.embed(prompts).array, b.embed(prompts).array)
            let d = a.config.dim
            var total = 0.0
            for i in 0..<prompts.count {
                var dot: Float = 0
                for j in 0..<d { dot += x[i * d + j] * y[i * d + j] }
                total += Double(dot)
            }
            return total / Double(prompts.count)
        }
    }
}

/// What building a `minilm_retrieval` encoder measured: for each temperature tried, the mean
/// cosine to the source model's own embedding and the nearest-class accuracy of every training
/// caption when all captions of its phrase (every template of "flip-flop", say) are left out of
/// the stored captions, so each caption is reached the way a paraphrase is, through other words.
public struct TextEncoderRetrievalReport: Sendable, CustomStringConvertible {
    public struct Point: Sendable { public var temperature: Float; public var cosine: Double; public var classAccuracy: Double }
    public var captions: Int
    public var featureSeconds: Double
    public var sweep: [Point]
    public var temperature: Float
    public var trainCosine: Double
    public var heldOutCosine: Double

    public var description: String {
        var lines = [String(format: "minilm retrieval: %d captions (MiniLM features in %.1fs); each phrase left out in turn:",
                            captions, featureSeconds)]
        for p in sweep {
            lines.append(String(format: "  temperature %-6g cosine to the source embedding %.4f, nearest class right %.1f%%%@",
                                Double(p.temperature), p.cosine, 100 * p.classAccuracy, p.temperature == temperature ? "  <- chosen" : ""))
        }
        lines.append(String(format: "cosine to the trigram encoder with every caption stored: train %.4f, held-out templates %.4f",
                            trainCosine, heldOutCosine))
        return lines.joined(separator: "\n")
    }
}

extension TextEncoderDistiller {
    /// Temperatures `retrieval` tries when none is given.
    public static let retrievalTemperatures: [Float] = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2]

    /// A `minilm_retrieval` encoder over `captions`: keys are their MiniLM embeddings, values the
    /// teacher's embeddings of them (and of the empty prompt). The temperature is the one of
    /// `temperatures` whose phrase-left-out embeddings are closest (mean cosine) to the teacher's;
    /// `groups[i]` names the phrase of `captions[i]`, `classes[i]` its class.
    public static func retrieval(teacher: TextEncoder, minilm: MiniLM, captions: [String], classes: [Int], groups: [Int],
                                 heldOut: [String], temperatures: [Float] = retrievalTemperatures) throws
        -> (TextEncoder, TextEncoderRetrievalReport) {
        let n = captions.count
        guard n > 0, classes.count == n, groups.count == n, !temperatures.isEmpty else {
            throw TrainingError.invalidData("minilm retrieval: no captions, or classes / groups not one per caption")
        }
        var cfg = TextEncoderConfig()
        cfg.kind = .minilmRetrieval
        cfg.minilmWidth = minilm.config.hidden
        cfg.dim = teacher.config.dim
        cfg.captions = n
        var rng = RandomGenerator(seed: 0)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let probe = try TextEncoder(config: cfg, rng: &rng, minilm: minilm)
        let (features, targets, empty) = GradMode.withDisabled {
            (probe.featureMatrix(captions).array, teacher.embed(captions).array, teacher.embed([""]).array)
        }
        let featureSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let (w, d) = (cfg.minilmWidth, cfg.dim)
        guard (0..<n).allSatisfy({ i in (0..<w).contains { features[i * w + $0] != 0 } }) else {
            throw TrainingError.invalidData("minilm retrieval: a caption has no word pieces")
        }
        // Cosines between captions (MiniLM embeddings are unit length) and the unit class means.
        var sim = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                var s: Float = 0
                for k in 0..<w { s += features[i * w + k] * features[j * w + k] }
                sim[i * n + j] = s
            }
        }
        let classCount = (classes.max() ?? 0) + 1
        var means = [Float](repeating: 0, count: classCount * d)
        for i in 0..<n where classes[i] >= 0 { for j in 0..<d { means[classes[i] * d + j] += targets[i * d + j] } }
        for c in 0..<classCount {
            let norm = max((0..<d).reduce(Float(0)) { $0 + means[c * d + $1] * means[c * d + $1] }.squareRoot(), 1e-12)
            for j in 0..<d { means[c * d + j] /= norm }
        }
        var sweep: [TextEncoderRetrievalReport.Point] = []
        for t in temperatures {
            var cosine = 0.0, right = 0
            for i in 0..<n {
                let others = (0..<n).filter { groups[$0] != groups[i] }
                guard let top = others.map({ sim[i * n + $0] }).max() else { continue }
                var e = [Float](repeating: 0, count: d)
                for j in others {
                    let a = Float(Foundation.exp(Double((sim[i * n + j] - top) / t)))
                    for k in 0..<d { e[k] += a * targets[j * d + k] }
                }
                let norm = max(e.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                var dot: Float = 0
                for k in 0..<d { dot += e[k] / norm * targets[i * d + k] }
                cosine += Double(dot)
                let predicted = (0..<classCount).max { a, b in
                    (0..<d).reduce(Float(0)) { $0 + e[$1] * means[a * d + $1] } < (0..<d).reduce(Float(0)) { $0 + e[$1] * means[b * d + $1] }
                }
                if predicted == classes[i] { right += 1 }
            }
            sweep.append(.init(temperature: t, cosine: cosine / Double(n), classAccuracy: Double(right) / Double(n)))
        }
        let best = sweep.max { $0.cosine < $1.cosine }!
        cfg.temperature = best.temperature
        let encoder = try TextEncoder(config: cfg, rng: &rng, minilm: minilm)
        features.withUnsafeBufferPointer { encoder.keys!.data.update(from: $0.baseAddress!, count: n * w) }
        (targets + empty).withUnsafeBufferPointer { encoder.values!.data.update(from: $0.baseAddress!, count: (n + 1) * d) }
        let report = TextEncoderRetrievalReport(
            captions: n, featureSeconds: featureSeconds, sweep: sweep, temperature: best.temperature,
            trainCosine: meanCosine(encoder, teacher, captions), heldOutCosine: meanCosine(encoder, teacher, heldOut))
        return (encoder, report)
    }
}
