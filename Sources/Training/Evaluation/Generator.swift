import Foundation
import ImageIO

/// Something that turns a text prompt into images: a trained backend, or a pseudo-model used to
/// check the evaluation harness. Evaluation and `coalesce bench generate` only see this protocol.
public protocol Generator: AnyObject {
    /// The registry name (`coalesce eval --model NAME`).
    var name: String { get }
    /// Side of the square images it returns (28 for Fashion-MNIST).
    var imageSide: Int { get }
    /// Channels of its images: 1 (gray; the default) or 3 (RGB).
    var imageChannels: Int { get }
    /// `count` images for `prompt`, as `count * imageChannels * imageSide * imageSide` bytes
    /// (0 black, 255 white), image after image, planar (channel after channel), row-major.
    /// The same (prompt, seed, steps, count) gives the same bytes.
    /// `steps` is the number of network evaluations (ignored by models that have no steps).
    func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8]
}

extension Generator {
    public var imageChannels: Int { 1 }
}

/// What a generator factory may use: where models live, and the training data (loaded lazily).
public final class GeneratorContext {
    /// The models directory (`models/` in the repository, or an installed share/coalesce/models).
    public let modelsDirectory: String
    /// Classifier-free guidance of every request, for generators with guidance (0: the model's default).
    public let guidance: Float
    private var train: LabeledImages?
    private let lock = NSLock()

    public init(modelsDirectory: String, train: LabeledImages? = nil, guidance: Float = 0) {
        self.modelsDirectory = modelsDirectory
        self.guidance = guidance
        self.train = train
    }

    /// The Fashion-MNIST training split (loaded on first use, then shared).
    public func trainingData() throws -> LabeledImages {
        lock.lock(); defer { lock.unlock() }
        if let train { return train }
        let t = try FashionMNIST.load(split: .train)
        train = t
        return t
    }
}

/// Name -> generator factory. Backends register themselves here (e.g. from the CLI's start-up);
/// `real-train` and `noise` are always present.
public enum GeneratorRegistry {
    public typealias Factory = @Sendable (GeneratorContext) throws -> Generator

    private static let lock = NSLock()
    nonisolated(unsafe) private static var factories: [String: Factory] = [
        RealTrainGenerator.registryName: { try RealTrainGenerator(train: $0.trainingData()) },
        NoiseGenerator.registryName: { _ in NoiseGenerator() },
    ]

    /// Adds or replaces the factory for `name`.
    public static func register(_ name: String, _ factory: @escaping Factory) {
        lock.lock(); defer { lock.unlock() }
        factories[name] = factory
    }

    /// Registered names, sorted.
    public static var names: [String] {
        lock.lock(); defer { lock.unlock() }
        return factories.keys.sorted()
    }

    /// A new generator for `name`; throws `TrainingError.unknownGenerator` listing the known names.
    public static func make(_ name: String, context: GeneratorContext) throws -> Generator {
        lock.lock()
        let factory = factories[name]
        lock.unlock()
        guard let factory else { throw TrainingError.unknownGenerator(name: name, known: names) }
        return try factory(context)
    }
}

/// The prompts evaluation asks for: one per Fashion-MNIST class.
public enum EvaluationPrompts {
    /// Prompt for class c: the class name in lower case ("t-shirt/top", "trouser", ..., "ankle boot").
    public static let classPrompts: [String] = FashionMNIST.classNames.map { $0.lowercased() }

    /// One prompt per class of a labelled image set: for class c, its most frequent caption among
    /// the images of class c (ties: the first in order), else its class name. Fashion-MNIST (no
    /// captions) gets the class prompts above.
    public static func prompts(for data: LabeledImages) -> [LabeledPrompt] {
        let classes = max(data.classNames.count, (data.labels.max() ?? -1) + 1)
        return (0..<classes).compactMap { c in
            var counts: [String: Int] = [:], order: [String] = []
            if !data.captions.isEmpty {
                for i in 0..<data.count where data.labels[i] == c {
                    if counts[data.captions[i]] == nil { order.append(data.captions[i]) }
                    counts[data.captions[i], default: 0] += 1
                }
            }
            var best: String?, bestCount = 0
            for caption in order where counts[caption, default: 0] > bestCount { best = caption; bestCount = counts[caption, default: 0] }
            if let best { return LabeledPrompt(label: c, prompt: best) }
            let name = c < data.classNames.count ? data.classNames[c] : c < classPrompts.count ? classPrompts[c] : nil
            return name.map { LabeledPrompt(label: c, prompt: $0.lowercased()) }
        }
    }

    /// The class a prompt names: the longest class name it contains (so "t-shirt/top" is not read
    /// as "shirt"), or nil.
    public static func classIndex(of prompt: String) -> Int? {
        let p = prompt.lowercased()
        var best: (index: Int, length: Int)?
        for (i, name) in classPrompts.enumerated() where p.contains(name) {
            if name.count > (best?.length ?? 0) { best = (i, name.count) }
        }
        return best?.index
    }
}
