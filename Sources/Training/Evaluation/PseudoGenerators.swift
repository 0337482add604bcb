import ImageIO
import Tensor

/// A "generator" that returns training images of the requested class, chosen at random by the
/// seed: perfect image statistics and no novelty at all. It validates the harness: FID and class
/// accuracy look excellent, and memorisation must flag every image as a near-copy.
public final class RealTrainGenerator: Generator {
    public static let registryName = "real-train"
    public var name: String { RealTrainGenerator.registryName }
    public let imageSide: Int
    public var imageChannels: Int { train.channels }
    private let train: LabeledImages
    private let byClass: [Int: [Int]]
    private let labelOf: [String: Int]

    /// `prompts`: the class each prompt asks for (else the Fashion-MNIST class a prompt names).
    public init(train: LabeledImages, prompts: [LabeledPrompt] = []) {
        self.train = train
        self.imageSide = train.width
        byClass = Dictionary(grouping: 0..<train.count, by: { train.labels[$0] })
        labelOf = Dictionary(prompts.map { ($0.prompt, $0.label) }, uniquingKeysWith: { a, _ in a })
    }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let pool: [Int]
        if let c = labelOf[prompt] ?? EvaluationPrompts.classIndex(of: prompt) {
            guard let items = byClass[c], !items.isEmpty else {
                throw TrainingError.generation("no training images of class \(c)")
            }
            pool = items
        } else {
            pool = Array(0..<train.count)  // unconditional
        }
        var rng = RandomGenerator(seed: seed)
        let n = train.valuesPerImage
        var out = [UInt8]()
        out.reserveCapacity(count * n)
        for _ in 0..<count {
            let i = pool[rng.nextInt(below: pool.count)]
            out.append(contentsOf: train.pixels[i * n ..< (i + 1) * n])
        }
        return out
    }
}

/// A "generator" of uniform random pixels: the worst case every metric must recognise.
public final class NoiseGenerator: Generator {
    public static let registryName = "noise"
    public var name: String { NoiseGenerator.registryName }
    public let imageSide: Int

    public init(imageSide: Int = 28) { self.imageSide = imageSide }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        var rng = RandomGenerator(seed: seed)
        return (0..<(count * imageSide * imageSide)).map { _ in UInt8(truncatingIfNeeded: rng.nextUInt64() >> 56) }
    }
}
