import Foundation
import ImageIO
import Models
import Tensor
import Training
import XCTest

/// Shared data for the evaluation tests: Fashion-MNIST (loaded once) and the domain classifier
/// (the committed models/classifier checkpoint, or a small one trained here when it is absent).
enum EvalFixtures {
    static let repositoryRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: (train: LabeledImages, test: LabeledImages)?
    nonisolated(unsafe) private static var cachedClassifier: Classifier?

    /// Both splits; skips the test when the data set is not installed.
    static func data() throws -> (train: LabeledImages, test: LabeledImages) {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        do {
            let d = (try FashionMNIST.load(split: .train), try FashionMNIST.load(split: .test))
            cached = d
            return d
        } catch {
            throw XCTSkip("Fashion-MNIST not available: \(error)")
        }
    }

    /// The committed classifier, else one trained for one epoch on 12800 images (about 40 s).
    static func classifier() throws -> Classifier {
        let (train, _) = try data()
        lock.lock(); defer { lock.unlock() }
        if let cachedClassifier { return cachedClassifier }
        let path = repositoryRoot + "/models/classifier/model.safetensors"
        let c: Classifier
        if FileManager.default.fileExists(atPath: path) {
            c = try Classifier.load(path: path)
        } else {
            c = try Classifier(config: ClassifierConfig(), seed: 3)
            var cfg = ClassifierTrainingConfig()
            cfg.epochs = 1
            cfg.trainLimit = 12800
            let trainer = ClassifierTrainer(classifier: c, config: cfg)
            trainer.showProgress = false
            try trainer.train(on: train)
        }
        cachedClassifier = c
        return c
    }

    /// Images `range` of a set as pixels plus their labels.
    static func slice(_ set: LabeledImages, _ range: Range<Int>) -> (pixels: [UInt8], labels: [Int]) {
        let s = set.slice(range)
        return (s.pixels, s.labels)
    }

    /// Classifier features of 8-bit images.
    static func features(_ pixels: [UInt8], count: Int) throws -> FeatureMatrix {
        try FeatureExtractor(classifier: classifier()).extract(pixels: pixels, count: count).featureMatrix
    }

    /// Adds Gaussian noise of standard deviation `sigma` (in [0, 1] units), clamped, seeded.
    static func noisy(_ pixels: [UInt8], sigma: Float, seed: UInt64) -> [UInt8] {
        var rng = RandomGenerator(seed: seed)
        return pixels.map { p in
            let v = Float(p) / 255 + sigma * rng.nextNormal()
            return UInt8(max(0, min(255, (v * 255).rounded())))
        }
    }

    /// Box blur of radius r (a (2r+1)^2 window, clipped at the borders) on 28x28 images.
    static func blurred(_ pixels: [UInt8], radius r: Int, side: Int = 28) -> [UInt8] {
        var out = pixels
        let n = side * side
        for img in 0..<(pixels.count / n) {
            let base = img * n
            for y in 0..<side {
                for x in 0..<side {
                    var sum = 0, cnt = 0
                    for yy in max(0, y - r)...min(side - 1, y + r) {
                        for xx in max(0, x - r)...min(side - 1, x + r) { sum += Int(pixels[base + yy * side + xx]); cnt += 1 }
                    }
                    out[base + y * side + x] = UInt8(sum / cnt)
                }
            }
        }
        return out
    }
}
