import Foundation
import ImageIO
import Models
import Tensor

/// How `Evaluator` asks a generator for images.
public struct EvaluationSettings: Codable, Equatable, Sendable {
    /// Network evaluations per image (passed to the generator).
    public var steps: Int = 1
    /// Images in all, spread evenly over the 10 class prompts.
    public var count: Int = 1000
    /// Base seed; each (class, chunk) request gets its own seed derived from it.
    public var seed: UInt64 = 2026
    /// Images per generator call.
    public var batch: Int = 50
    /// Neighbourhood size of the precision/recall manifolds (Kynkäänniemi et al.: 3).
    public var k: Int = 3
    /// Percentile of test nearest-training distances below which an image is a near-copy.
    public var percentile: Double = 1
    /// Test images used as memorisation baseline queries (their nearest-training distances).
    public var memorisationTestCount: Int = 2000
    /// The prompts to generate for, each with the class its images should show; nil: the 10
    /// class prompts. `count` images are spread evenly over them.
    public var prompts: [LabeledPrompt]? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case steps, count, seed, batch, k, percentile, prompts
        case memorisationTestCount = "memorisation_test_count"
    }
}

/// A prompt and the class its images should show.
public struct LabeledPrompt: Codable, Equatable, Sendable {
    public var label: Int
    public var prompt: String

    public init(label: Int, prompt: String) {
        self.label = label
        self.prompt = prompt
    }

    /// Reads "class<TAB>prompt" lines (class: 0-9 or a class prompt such as "ankle boot"); blank
    /// lines and lines starting with "#" are skipped.
    public static func read(path: String) throws -> [LabeledPrompt] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TrainingError.invalidData("\(path): cannot read")
        }
        var out: [LabeledPrompt] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.isEmpty || l.hasPrefix("#") { continue }
            let parts = l.split(separator: "\t", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let classes = EvaluationPrompts.classPrompts.count
            guard parts.count == 2, !parts[1].isEmpty,
                  let label = Int(parts[0]).flatMap({ (0..<classes).contains($0) ? $0 : nil })
                    ?? EvaluationPrompts.classIndex(of: parts[0]) else {
                throw TrainingError.invalidData("\(path):\(n + 1): expected \"class<TAB>prompt\" with a class 0-\(classes - 1) or a class name")
            }
            out.append(LabeledPrompt(label: label, prompt: parts[1]))
        }
        guard !out.isEmpty else { throw TrainingError.invalidData("\(path): no prompts") }
        return out
    }
}

/// One generator request of an evaluation run.
public struct EvaluationRequest: Equatable, Sendable {
    public var label: Int
    public var prompt: String
    public var seed: UInt64
    public var count: Int
}

/// Scores of one image set against the test set.
public struct SetScores: Codable, Equatable, Sendable {
    public var count: Int
    /// Fréchet distance of classifier features against all test images.
    public var fid: Double
    /// Fraction of images the classifier assigns to the requested class.
    public var classAccuracy: Double
    /// Kynkäänniemi et al. precision and recall (k-NN manifolds in classifier feature space).
    public var precision: Double
    public var recall: Double
    /// Naeem et al. density and coverage (outlier-robust companions of precision and recall).
    public var density: Double
    public var coverage: Double
    public var memorisation: MemorisationReport
    /// Kernel Inception Distance in the same features, against all test images, with its
    /// standard error (`KernelDistance`); unbiased, so it compares across image counts.
    public var kid: KernelDistance.Estimate?
    /// The same set seen by the second, independently trained feature network, when the
    /// evaluator has one.
    public var second: FeatureScores?

    enum CodingKeys: String, CodingKey {
        case count, fid, classAccuracy = "class_accuracy", precision, recall, density, coverage, memorisation, kid, second
    }
}

/// FID, KID and class accuracy of an image set in one feature network.
public struct FeatureScores: Codable, Equatable, Sendable {
    /// What the network is (its config in short, e.g. "average-pooled, post-activation, 256 features").
    public var network: String
    public var fid: Double
    public var kid: KernelDistance.Estimate
    public var classAccuracy: Double

    enum CodingKeys: String, CodingKey { case network, fid, kid, classAccuracy = "class_accuracy" }
}

/// Everything `coalesce eval` reports.
public struct EvaluationReport: Codable, Equatable, Sendable {
    public var model: String
    public var settings: EvaluationSettings
    /// The generated images' scores.
    public var generated: SetScores
    /// Real training images (same class spread and count) scored the same way, in the same run:
    /// the best FID/precision/recall this harness can give at this count, and a copy detector check.
    public var referenceTrain: SetScores?
    /// Wall-clock seconds spent in the generator, and images per second over the whole run.
    public var generationSeconds: Double
    public var imagesPerSecond: Double
    /// The classifier's accuracy on the whole test set (its own yardstick).
    public var classifierTestAccuracy: Double
    public var testImages: Int

    enum CodingKeys: String, CodingKey {
        case model, settings, generated, referenceTrain = "reference_train"
        case generationSeconds = "generation_seconds", imagesPerSecond = "images_per_second"
        case classifierTestAccuracy = "classifier_test_accuracy", testImages = "test_images"
    }
}

/// Scores generated images with the domain classifier: FID against the test set, class accuracy,
/// precision/recall and memorisation. The test-side statistics are computed once per evaluator.
public final class Evaluator {
    public let classifier: Classifier
    /// A second feature network, trained independently of `classifier` (another architecture and
    /// seed), whose FID, KID and class accuracy are reported beside the first's: a ranking both agree
    /// on does not hang on one network's features.
    public let secondClassifier: Classifier?
    public let train: LabeledImages
    public let test: LabeledImages
    public let settings: EvaluationSettings
    /// Progress lines on stderr.
    public var showProgress = true
    /// The images and requested labels of the last `evaluate` call's generator (for sample sheets).
    public private(set) var lastGenerated: (pixels: [UInt8], labels: [Int])?

    private let extractor: FeatureExtractor
    private let secondExtractor: FeatureExtractor?
    private var cache: Reference?

    /// What is computed once: test statistics and the memorisation baseline.
    private struct Reference {
        var testOutputs: ClassifierOutputs
        var testStatistics: GaussianStatistics
        var testAccuracy: Double
        /// Test rows in a fixed random order (precision/recall take the first `count`).
        var testOrder: [Int]
        var memorisation: MemorisationBaseline
        var kidTerms: KernelDistance.RealTerms
        /// The second network's test features, statistics and KID terms.
        var second: (features: FeatureMatrix, statistics: GaussianStatistics, kidTerms: KernelDistance.RealTerms)?
    }

    public init(classifier: Classifier, secondClassifier: Classifier? = nil, train: LabeledImages, test: LabeledImages,
                settings: EvaluationSettings) throws {
        guard settings.count >= max(10, settings.k + 1) else {
            throw TrainingError.invalidConfig("count \(settings.count) must be at least \(max(10, settings.k + 1))")
        }
        guard settings.batch >= 1, settings.steps >= 0, settings.k >= 1 else {
            throw TrainingError.invalidConfig("batch >= 1, steps >= 0 and k >= 1 required")
        }
        let side = classifier.config.imageSize, channels = classifier.config.imageChannels
        for (name, set) in [("train", train), ("test", test)] where set.width != side || set.height != side || set.channels != channels {
            throw TrainingError.invalidData("\(name) images are \(set.width)x\(set.height)x\(set.channels), classifier expects \(side)x\(side)x\(channels)")
        }
        if let second = secondClassifier {
            guard second.config.imageSize == side, second.config.classes == classifier.config.classes else {
                throw TrainingError.invalidConfig("the second classifier takes \(second.config.imageSize)x\(second.config.imageSize) images and \(second.config.classes) classes; the first \(side)x\(side) and \(classifier.config.classes)")
            }
        }
        self.classifier = classifier
        self.secondClassifier = secondClassifier
        self.secondExtractor = secondClassifier.map { FeatureExtractor(classifier: $0) }
        self.train = train
        self.test = test
        self.settings = settings
        self.extractor = FeatureExtractor(classifier: classifier)
    }

    /// The requests of a run: `count` images over the class prompts (class c gets count/10, the
    /// first count%10 classes one more), in chunks of `batch`, each chunk with its own seed.
    /// With `settings.prompts`, the same over those prompts (prompt i in the place of class c).
    public func requests() -> [EvaluationRequest] {
        let prompts = settings.prompts ?? EvaluationPrompts.classPrompts.enumerated().map { LabeledPrompt(label: $0, prompt: $1) }
        var out: [EvaluationRequest] = []
        for (c, p) in prompts.enumerated() {
            var left = settings.count / prompts.count + (c < settings.count % prompts.count ? 1 : 0)
            var chunk: UInt64 = 0
            while left > 0 {
                let n = min(left, settings.batch)
                out.append(EvaluationRequest(label: p.label, prompt: p.prompt,
                                             seed: settings.seed &+ (UInt64(c) << 32) &+ chunk, count: n))
                left -= n
                chunk += 1
            }
        }
        return out
    }

    /// Runs every request through `generator`. Returns the images, their requested labels and the
    /// seconds spent inside the generator.
    public func generate(with generator: Generator) throws -> (pixels: [UInt8], labels: [Int], seconds: Double) {
        let side = classifier.config.imageSize, channels = classifier.config.imageChannels
        guard generator.imageSide == side, generator.imageChannels == channels else {
            throw TrainingError.generation("\(generator.name) makes \(generator.imageSide)x\(generator.imageSide)x\(generator.imageChannels) images, the classifier expects \(side)x\(side)x\(channels)")
        }
        let reqs = requests()
        let progress = ProgressReporter(label: "generate \(generator.name)", total: reqs.count,
                                        itemsPerStep: settings.batch, enabled: showProgress)
        var pixels: [UInt8] = []
        pixels.reserveCapacity(settings.count * channels * side * side)
        var labels: [Int] = []
        var seconds = 0.0
        for (i, r) in reqs.enumerated() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let images = try generator.generate(prompt: r.prompt, seed: r.seed, steps: settings.steps, count: r.count)
            seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            guard images.count == r.count * channels * side * side else {
                throw TrainingError.generation("\(generator.name) returned \(images.count) bytes for \(r.count) images of \(side)x\(side)x\(channels)")
            }
            pixels += images
            labels += Array(repeating: r.label, count: r.count)
            progress.update(step: i + 1)
        }
        return (pixels, labels, seconds)
    }

    private func reference() throws -> Reference {
        if let cache { return cache }
        let status = ProgressReporter(label: "eval", total: 1, enabled: showProgress)
        note("features of \(test.count) test and \(train.count) training images")
        let testOutputs = try extractor.extractCached(pixels: test.pixels, count: test.count)
        let trainOutputs = try extractor.extractCached(pixels: train.pixels, count: train.count)
        var rng = RandomGenerator(seed: 0x7e57)
        let order = rng.permutation(test.count)
        let memo = Array(order.prefix(min(test.count, max(settings.memorisationTestCount, 1))))
        note(String(format: "memorisation baseline: %d test images vs %d training images (%.0f s so far)",
                    memo.count, train.count, status.elapsed))
        let baseline = MemorisationBaseline(
            testPixels: FeatureMatrix(pixels: test.pixels, count: test.count).selecting(memo),
            testFeatures: testOutputs.featureMatrix.selecting(memo),
            trainPixels: FeatureMatrix(pixels: train.pixels, count: train.count),
            trainFeatures: trainOutputs.featureMatrix)
        var second: (FeatureMatrix, GaussianStatistics, KernelDistance.RealTerms)?
        if let secondExtractor {
            let f = try secondExtractor.extractCached(pixels: test.pixels, count: test.count).featureMatrix
            second = (f, GaussianStatistics(f), KernelDistance.realTerms(f))
        }
        let r = Reference(testOutputs: testOutputs, testStatistics: GaussianStatistics(testOutputs.featureMatrix),
                          testAccuracy: testOutputs.accuracy(labels: test.labels), testOrder: order,
                          memorisation: baseline, kidTerms: KernelDistance.realTerms(testOutputs.featureMatrix),
                          second: second)
        cache = r
        return r
    }

    /// Scores `count` images (side x side bytes each) generated for `labels`.
    public func score(pixels: [UInt8], labels: [Int]) throws -> SetScores {
        let ref = try reference()
        let count = labels.count
        let outputs = try extractor.extract(pixels: pixels, count: count)
        let features = outputs.featureMatrix
        let fid = try FrechetDistance.compute(GaussianStatistics(features), ref.testStatistics)
        let real = ref.testOutputs.featureMatrix.selecting(Array(ref.testOrder.prefix(min(count, test.count))))
        let pr = PrecisionRecall.compute(real: real, generated: features, k: settings.k)
        let memo = ref.memorisation.report(generatedPixels: FeatureMatrix(pixels: pixels, count: count),
                                           generatedFeatures: features, percentile: settings.percentile)
        let kid = try KernelDistance.compute(generated: features, strata: labels, real: ref.testOutputs.featureMatrix, terms: ref.kidTerms)
        var second: FeatureScores?
        if let secondExtractor, let secondClassifier, let sref = ref.second {
            let out = try secondExtractor.extract(pixels: pixels, count: count)
            second = FeatureScores(network: secondClassifier.config.summary,
                                   fid: try FrechetDistance.compute(GaussianStatistics(out.featureMatrix), sref.statistics),
                                   kid: try KernelDistance.compute(generated: out.featureMatrix, strata: labels, real: sref.features, terms: sref.kidTerms),
                                   classAccuracy: out.accuracy(labels: labels))
        }
        return SetScores(count: count, fid: fid, classAccuracy: outputs.accuracy(labels: labels),
                         precision: pr.precision, recall: pr.recall, density: pr.density, coverage: pr.coverage,
                         memorisation: memo, kid: kid, second: second)
    }

    /// Generates with `generator` and scores the images; with `withReference`, also scores real
    /// training images chosen the same way (`RealTrainGenerator`, same prompts and seeds).
    public func evaluate(_ generator: Generator, withReference: Bool = true) throws -> EvaluationReport {
        let gen = try generate(with: generator)
        lastGenerated = (gen.pixels, gen.labels)
        note("scoring \(generator.name)")
        let scores = try score(pixels: gen.pixels, labels: gen.labels)
        var referenceScores: SetScores?
        if withReference {
            let real = try generate(with: RealTrainGenerator(train: train, prompts: settings.prompts ?? []))
            note("scoring real training images")
            referenceScores = try score(pixels: real.pixels, labels: real.labels)
        }
        let ref = try reference()
        return EvaluationReport(model: generator.name, settings: settings, generated: scores,
                                referenceTrain: referenceScores, generationSeconds: gen.seconds,
                                imagesPerSecond: gen.seconds > 0 ? Double(gen.labels.count) / gen.seconds : 0,
                                classifierTestAccuracy: ref.testAccuracy, testImages: test.count)
    }

    private func note(_ s: String) {
        if showProgress { FileHandle.standardError.write(Data(("eval: " + s + "\n").utf8)) }
    }
}
