import Foundation
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

/// A "generator" that replays images written earlier by `coalesce eval --save-images DIR` (or any
/// folder with a `labels.txt` of `file<TAB>class` lines and those PNGs): each request for a class
/// gets that class's next unused images, in the file's order. It lets one set of generated images be
/// scored in other feature networks, or after a transform, without generating them again.
public final class SavedImagesGenerator: Generator {
    public var name: String { "images:" + directory }
    public let imageSide: Int
    public let imageChannels: Int
    public let directory: String
    private var byClass: [Int: [[UInt8]]] = [:]
    private var next: [Int: Int] = [:]
    private let labelOf: [String: Int]

    /// `prompts`: the class each prompt asks for (else the Fashion-MNIST class a prompt names).
    public init(directory: String, prompts: [LabeledPrompt] = []) throws {
        self.directory = directory
        let listPath = directory + "/labels.txt"
        guard let list = try? String(contentsOfFile: listPath, encoding: .utf8) else {
            throw TrainingError.invalidData("\(listPath) is missing or not UTF-8 (write one with `coalesce eval --save-images DIR`)")
        }
        var side = 0, channels = 0
        for (number, line) in list.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let fields = line.split(separator: "\t")
            guard fields.count == 2, let label = Int(fields[1]), label >= 0 else {
                throw TrainingError.invalidData("\(listPath) line \(number + 1): expected file<TAB>class, got \"\(line)\"")
            }
            let image = try PNG.readPlanar(path: directory + "/" + fields[0])
            guard image.width == image.height else {
                throw TrainingError.invalidData("\(fields[0]) is \(image.width)x\(image.height); square images only")
            }
            if side == 0 { (side, channels) = (image.width, image.channels) }
            guard image.width == side, image.channels == channels else {
                throw TrainingError.invalidData("\(fields[0]) is \(image.width)x\(image.height)x\(image.channels), the first image \(side)x\(side)x\(channels)")
            }
            byClass[label, default: []].append(image.pixels)
        }
        guard side > 0 else { throw TrainingError.invalidData("\(listPath) lists no images") }
        imageSide = side
        imageChannels = channels
        labelOf = Dictionary(prompts.map { ($0.prompt, $0.label) }, uniquingKeysWith: { a, _ in a })
    }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        guard let c = labelOf[prompt] ?? EvaluationPrompts.classIndex(of: prompt) else {
            throw TrainingError.generation("saved images are by class; \"\(prompt)\" names none")
        }
        let images = byClass[c] ?? [], start = next[c, default: 0]
        guard start + count <= images.count else {
            throw TrainingError.generation("\(directory) holds \(images.count) images of class \(c); \(start + count) were asked for")
        }
        next[c] = start + count
        return images[start ..< start + count].flatMap { $0 }
    }
}
