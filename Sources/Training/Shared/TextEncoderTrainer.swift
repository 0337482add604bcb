import Foundation
import Models
import Tensor

/// Settings of `TextEncoderTrainer`.
public struct TextEncoderTrainingOptions: Sendable {
    public var steps = 600
    public var batchSize = 128
    public var learningRate: Float = 3e-3
    /// Temperature of the cosine-similarity logits against the class prototypes.
    public var temperature: Float = 0.1
    /// Probability of inserting a random made-up word into a training caption (robustness to
    /// unknown words).
    public var noiseWordProbability: Float = 0.3
    public var seed: UInt64 = 2
    public var progress = true
    public init() {}
}

/// What text-encoder training measured.
public struct TextEncoderReport: Sendable, CustomStringConvertible {
    public var steps: Int
    public var seconds: Double
    public var finalLoss: Float
    /// Nearest-prototype accuracy on the training phrasings and on the held-out templates.
    public var trainAccuracy: Double
    public var heldOutAccuracy: Double
    public var heldOutCount: Int

    public var description: String {
        String(format: "text encoder: %d steps in %.1fs, loss %.4f, nearest-class accuracy train %.1f%%, held-out phrasings %.1f%% (%d captions)",
               steps, seconds, finalLoss, trainAccuracy * 100, heldOutAccuracy * 100, heldOutCount)
    }
}

/// Trains the text encoder contrastively against learned class prototypes: softmax over
/// cos(embedding, prototype_c) / temperature, cross-entropy with the caption's class.
/// (The prototypes are a training device only; the coalescer keys use the caption embeddings.)
public enum TextEncoderTrainer {
    /// `pairs` (caption, class) to train on and `heldOut` to report on; nil = the Fashion-MNIST
    /// phrasings (`Captions` training and held-out templates).
    public static func train(_ enc: TextEncoder, classes: Int = 10, pairs: [(String, Int)]? = nil,
                             heldOut: [(String, Int)]? = nil,
                             options: TextEncoderTrainingOptions) throws -> TextEncoderReport {
        guard classes >= 1 else { throw TrainingError.invalidData("text encoder: no classes to train on") }
        var rng = RandomGenerator(seed: options.seed)
        let dim = enc.config.dim
        let protos = Tensor.randn([classes, dim], rng: &rng, requiresGrad: true)
        let params = enc.parameters + [protos]
        let opt = AdamW(parameters: params, learningRate: options.learningRate, weightDecay: 1e-4)
        let train = pairs ?? Captions.all(templates: Captions.trainTemplates)
        guard !train.isEmpty, train.allSatisfy({ $0.1 >= 0 && $0.1 < classes }) else {
            throw TrainingError.invalidData("text encoder: captions must have classes in 0..<\(classes)")
        }
        let progress = ProgressReporter(label: "train text encoder", total: options.steps,
                                        itemsPerStep: options.batchSize, interval: 5, enabled: options.progress)
        var lossAvg: Float = 0
        for step in 1...max(1, options.steps) {
            var prompts: [String] = [], labels: [Int] = []
            for _ in 0..<options.batchSize {
                let (cap, c) = train[rng.nextInt(below: train.count)]
                var text = cap
                if rng.nextFloat() < options.noiseWordProbability {
                    let len = 3 + rng.nextInt(below: 6)
                    let word = String((0..<len).map { _ in Character(UnicodeScalar(UInt8(97 + rng.nextInt(below: 26)))) })
                    text = rng.nextFloat() < 0.5 ? word + " " + text : text + " " + word
                }
                prompts.append(text); labels.append(c)
            }
            let e = enc.embed(prompts)                                   // e: (B, dim), unit rows
            let pn = protos / protos.square().sumLast().sqrt(eps: 1e-8)  // pn: (C, dim)
            let logits = Tensor.matmul(e, pn, transB: true).scaled(1 / options.temperature)
            let loss = Tensor.crossEntropyLoss(logits, labels: labels)
            opt.zeroGrad()
            loss.backward()
            opt.update()
            lossAvg = step == 1 ? loss.item : 0.95 * lossAvg + 0.05 * loss.item
            progress.update(step: step, loss: lossAvg)
        }
        let pn = GradMode.withDisabled { (protos / protos.square().sumLast().sqrt(eps: 1e-8)).detached() }
        let trainAcc = accuracy(enc, pairs: train, prototypes: pn)
        let held = heldOut ?? Captions.all(templates: Captions.heldOutTemplates)
        let heldAcc = accuracy(enc, pairs: held, prototypes: pn)
        return TextEncoderReport(steps: options.steps, seconds: progress.elapsed, finalLoss: lossAvg,
                                 trainAccuracy: trainAcc, heldOutAccuracy: heldAcc, heldOutCount: held.count)
    }

    /// Fraction of captions whose embedding is nearest (cosine) to their class prototype.
    public static func accuracy(_ enc: TextEncoder, pairs: [(String, Int)], prototypes: Tensor) -> Double {
        GradMode.withDisabled {
            let e = enc.embed(pairs.map(\.0))
            let sim = Tensor.matmul(e, prototypes, transB: true)
            let c = prototypes.shape[0]
            var ok = 0
            for (i, p) in pairs.enumerated() {
                var best = 0
                for j in 1..<c where sim.data[i * c + j] > sim.data[i * c + best] { best = j }
                if best == p.1 { ok += 1 }
            }
            return Double(ok) / Double(max(1, pairs.count))
        }
    }
}
