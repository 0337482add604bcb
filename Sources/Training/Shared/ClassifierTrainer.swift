import Foundation
import ImageIO
import Models
import Tensor

/// Settings of one classifier training run. JSON keys are snake_case (recorded beside the weights).
public struct ClassifierTrainingConfig: Codable, Equatable, Sendable {
    public var epochs: Int = 8
    public var batchSize: Int = 64
    public var learningRate: Float = 2e-3
    public var weightDecay: Float = 0.05
    /// Linear warmup steps before the cosine decay.
    public var warmupSteps: Int = 200
    /// Seeds initialisation, shuffling and augmentation.
    public var seed: UInt64 = 1
    /// Random horizontal flips (probability 1/2).
    public var flip: Bool = true
    /// Random translation by up to this many pixels in x and y (zero fill).
    public var maxShift: Int = 2
    /// Photometric jitter: each image's pixels v in [0, 1] become min(1, c * v^g) with
    /// log g and 2 log c drawn uniformly from [-a, a], a this value (0 = off). Features learnt this
    /// way depend less on a garment's overall brightness and contrast.
    public var photometric: Float = 0
    /// Gradient clipping by global norm (0 = off).
    public var clipNorm: Float = 5
    /// Use only the first N training images (0 = all), for tests and quick runs.
    public var trainLimit: Int = 0
    /// Stop after this many optimiser steps (0 = all epochs), for smoke tests.
    public var maxSteps: Int = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case epochs, batchSize = "batch_size", learningRate = "learning_rate", weightDecay = "weight_decay"
        case warmupSteps = "warmup_steps", seed, flip, maxShift = "max_shift", photometric, clipNorm = "clip_norm"
        case trainLimit = "train_limit", maxSteps = "max_steps"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ClassifierTrainingConfig()
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? d.epochs
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? d.weightDecay
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        flip = try c.decodeIfPresent(Bool.self, forKey: .flip) ?? d.flip
        maxShift = try c.decodeIfPresent(Int.self, forKey: .maxShift) ?? d.maxShift
        photometric = try c.decodeIfPresent(Float.self, forKey: .photometric) ?? d.photometric
        clipNorm = try c.decodeIfPresent(Float.self, forKey: .clipNorm) ?? d.clipNorm
        trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit) ?? d.trainLimit
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? d.maxSteps
    }
}

/// What a training run produced.
public struct ClassifierTrainingResult: Sendable {
    /// Mean training loss of each epoch.
    public var epochLosses: [Float]
    /// Loss of every step, in order.
    public var stepLosses: [Float]
    /// Test accuracy after each epoch (empty when no test set was given).
    public var epochTestAccuracy: [Double]
    public var seconds: Double
}

/// Trains a `Classifier` on labelled 8-bit images with AdamW, a warmup+cosine schedule, light
/// augmentation (flips, small shifts) and cross-entropy. Deterministic for a given seed and
/// thread count.
public final class ClassifierTrainer {
    public let classifier: Classifier
    public let config: ClassifierTrainingConfig
    /// Progress lines on stderr (set false in tests).
    public var showProgress = true

    public init(classifier: Classifier, config: ClassifierTrainingConfig) {
        self.classifier = classifier
        self.config = config
    }

    /// Trains in place. `test`, when given, is scored after every epoch.
    @discardableResult
    public func train(on data: LabeledImages, test: LabeledImages? = nil) throws -> ClassifierTrainingResult {
        let side = classifier.config.imageSize, channels = classifier.config.imageChannels
        guard data.width == side, data.height == side, data.channels == channels else {
            throw TrainingError.invalidData("training images are \(data.width)x\(data.height)x\(data.channels), classifier expects \(side)x\(side)x\(channels)")
        }
        guard data.labels.allSatisfy({ $0 >= 0 && $0 < classifier.config.classes }) else {
            throw TrainingError.invalidData("every training image needs a class in 0..<\(classifier.config.classes)")
        }
        let n = config.trainLimit > 0 ? min(config.trainLimit, data.count) : data.count
        guard n >= config.batchSize, config.batchSize > 0, config.epochs > 0 else {
            throw TrainingError.invalidConfig("need batch_size > 0, epochs > 0 and at least batch_size (\(config.batchSize)) images, got \(n)")
        }
        let stepsPerEpoch = n / config.batchSize
        let totalSteps = config.maxSteps > 0 ? min(config.maxSteps, stepsPerEpoch * config.epochs) : stepsPerEpoch * config.epochs
        let schedule = WarmupCosineSchedule(peak: config.learningRate, warmupSteps: min(config.warmupSteps, totalSteps / 4),
                                            totalSteps: totalSteps)
        let params = classifier.parameters
        let optimizer = AdamW(parameters: params, learningRate: config.learningRate, weightDecay: config.weightDecay)
        var rng = RandomGenerator(seed: config.seed &+ 0x5eed)
        let progress = ProgressReporter(label: "classifier", total: totalSteps, itemsPerStep: config.batchSize,
                                        enabled: showProgress)
        var result = ClassifierTrainingResult(epochLosses: [], stepLosses: [], epochTestAccuracy: [], seconds: 0)
        let plane = side * side, pixelsPerImage = channels * plane
        var step = 0
        for epoch in 0..<config.epochs {
            let order = rng.permutation(n)
            var epochLoss: Double = 0
            for s in 0..<stepsPerEpoch where step < totalSteps {
                let idx = Array(order[s * config.batchSize ..< (s + 1) * config.batchSize])
                let x = Tensor(zeros: [idx.count, channels, side, side])  // x: (B, C, S, S)
                for (b, i) in idx.enumerated() {
                    augment(data.pixels, from: i * pixelsPerImage, side: side, channels: channels,
                            into: x.data + b * pixelsPerImage, rng: &rng)
                }
                let labels = idx.map { data.labels[$0] }
                optimizer.learningRate = schedule.rate(at: step)
                optimizer.zeroGrad()
                let loss = Tensor.crossEntropyLoss(classifier.logits(x), labels: labels)
                loss.backward()
                if config.clipNorm > 0 { clipGradNorm(params, maxNorm: config.clipNorm) }
                optimizer.update()
                step += 1
                result.stepLosses.append(loss.item)
                epochLoss += Double(loss.item)
                progress.update(step: step, loss: loss.item, extra: "epoch \(epoch + 1)/\(config.epochs)")
            }
            result.epochLosses.append(Float(epochLoss / Double(stepsPerEpoch)))
            if let test {
                let acc = try ClassifierTrainer.accuracy(classifier, on: test)
                result.epochTestAccuracy.append(acc)
                if showProgress {
                    FileHandle.standardError.write(Data(String(format: "classifier epoch %d/%d  train loss %.4f  test accuracy %.2f%%\n",
                                                                 epoch + 1, config.epochs, epochLoss / Double(stepsPerEpoch), acc * 100).utf8))
                }
            }
        }
        result.seconds = progress.elapsed
        return result
    }

    /// Writes the image at `offset` (8-bit, `channels` planes of side x side) into `dst` as floats
    /// in [0, 1], every plane flipped and shifted alike at random when the config asks for it.
    private func augment(_ pixels: [UInt8], from offset: Int, side: Int, channels: Int, into dst: UnsafeMutablePointer<Float>,
                         rng: inout RandomGenerator) {
        let flip = config.flip && rng.nextFloat() < 0.5
        let m = config.maxShift
        let dx = m > 0 ? rng.nextInt(below: 2 * m + 1) - m : 0
        let dy = m > 0 ? rng.nextInt(below: 2 * m + 1) - m : 0
        // Drawn only when on, so runs without it keep their random stream.
        let a = config.photometric
        let gamma = a > 0 ? expf(a * (2 * rng.nextFloat() - 1)) : 1
        let gain = a > 0 ? expf(0.5 * a * (2 * rng.nextFloat() - 1)) : 1
        let plane = side * side
        pixels.withUnsafeBufferPointer { p in
            for c in 0..<channels {
                let src = offset + c * plane, out = dst + c * plane
                for y in 0..<side {
                    let sy = y - dy
                    for x in 0..<side {
                        var sx = x - dx
                        if flip { sx = side - 1 - sx }
                        out[y * side + x] = (sy >= 0 && sy < side && sx >= 0 && sx < side) ? Float(p[src + sy * side + sx]) / 255 : 0
                    }
                }
                if a > 0 {
                    for i in 0..<plane where out[i] > 0 { out[i] = min(1, gain * powf(out[i], gamma)) }
                }
            }
        }
    }

    /// Fraction of `data` the classifier labels correctly (argmax of the logits).
    public static func accuracy(_ classifier: Classifier, on data: LabeledImages, batch: Int = 500) throws -> Double {
        let out = try FeatureExtractor(classifier: classifier).extract(pixels: data.pixels, count: data.count, batch: batch)
        return out.accuracy(labels: data.labels)
    }
}
