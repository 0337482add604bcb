import ArgumentParser
import Foundation
import ImageIO
import Models
import Tensor
import Training

/// `coalesce generate`: prompt + seed -> PNG files (image i uses seed + i).
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a text prompt with a trained model.")

    @Option(help: "Model (backend) name.") var model = "coalescer"
    @Option(help: "Text prompt (empty = unconditional).") var prompt = ""
    @Option(help: "Steps: a number, or 'auto' (from the predicted direction and distance).") var steps = "2"
    @Option(help: "Seed; image i uses seed + i.") var seed: UInt64 = 1
    @Option(help: "Number of images.") var count = 16
    @Option(help: "Output directory for one PNG per image.") var out = "generated"
    @Option(help: "Also write all images as one grid PNG here.") var grid: String?
    @Option(help: "Models directory.") var modelsDir = "models"
    @Option(help: "Instead of --prompt: write one grid PNG here with a row of --count images per class prompt (seed + 1000 * class).") var classGrid: String?

    func run() throws {
        _ = BLAS.load()
        guard model == CoalescerGenerator.registryName else {
            throw ValidationError("unknown model '\(model)'; this command knows: coalescer")
        }
        guard let stepMode = CoalescerSteps(steps) else {
            throw ValidationError("--steps must be a number from 1 to 64 or 'auto', got '\(steps)'")
        }
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1...100000") }
        let gen = try CoalescerGenerator(modelsDirectory: modelsDir)
        let side = gen.imageSide
        if let classGrid {
            var rows: [GrayImage] = []
            for c in 0..<Captions.classPhrases.count {
                let b = try CoalescerSampler(model: gen.model).generate(prompt: Captions.prompt(forClass: c),
                                                                        seed: seed &+ UInt64(1000 * c), count: count, steps: stepMode)
                let px = CoalescerGenerator.bytes(b.pixels)
                rows += (0..<count).map { GrayImage(width: side, height: side, pixels: Array(px[($0 * side * side)..<(($0 + 1) * side * side)])) }
            }
            try PNG.write(ImageGrid.make(rows, columns: count, scale: 2), to: classGrid)
            print("wrote \(classGrid): \(Captions.classPhrases.count) class prompts x \(count) images, steps \(steps), seed \(seed)")
            return
        }
        let t0 = Date()
        let batch = try CoalescerSampler(model: gen.model).generate(prompt: prompt, seed: seed, count: count, steps: stepMode)
        let seconds = Date().timeIntervalSince(t0)
        let bytes = CoalescerGenerator.bytes(batch.pixels)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var images: [GrayImage] = []
        for i in 0..<count {
            let img = GrayImage(width: side, height: side, pixels: Array(bytes[(i * side * side)..<((i + 1) * side * side)]))
            images.append(img)
            try PNG.write(img, to: String(format: "%@/%05d.png", out, i))
        }
        if let grid {
            try PNG.write(ImageGrid.make(images, columns: min(count, 8), scale: 2), to: grid)
        }
        let meanSteps = Double(batch.steps.reduce(0, +)) / Double(max(1, count))
        print(String(format: "wrote %d images to %@ in %.3fs (steps: %@, mean %.2f; redraws %d, still unsure after max redraws %d)",
                     count, out, seconds, steps, meanSteps, batch.redraws, batch.exhausted))
    }
}
