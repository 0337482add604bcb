import ArgumentParser
import Engine
import Foundation
import ImageIO
import Models
import Service
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
    @Option(help: "Generate on a running coalesced at this endpoint (e.g. tcp://127.0.0.1:5555) instead of in process; any model it serves.") var remote: String?
    @Option(help: "With --remote: seconds to wait for the daemon's reply.") var timeout = 60.0

    func run() throws {
        for path in [grid, classGrid].compactMap({ $0 }) {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        }
        if let remote { return try runRemote(endpoint: remote) }
        _ = BLAS.load()
        guard model == CoalescerGenerator.registryName else {
            throw ValidationError("unknown model '\(model)'; in process this command knows: coalescer "
                                  + "(other backends: run coalesced and pass --remote ENDPOINT)")
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
        let norms = batch.firstDirectionNorms.sorted()
        print(String(format: "wrote %d images to %@ in %.3fs (steps: %@, mean %.2f; redraws %d, still unsure after max redraws %d; first-step |u| min %.3f median %.3f max %.3f)",
                     count, out, seconds, steps, meanSteps, batch.redraws, batch.exhausted,
                     norms.first ?? 0, norms.isEmpty ? 0 : norms[norms.count / 2], norms.last ?? 0))
    }

    /// `--remote`: the same request over ZeroMQ to a daemon; same model, prompt, seed and steps
    /// give the same pixels as in process (checked by the identity tests).
    private func runRemote(endpoint: String) throws {
        let stepCount: Int32
        if steps == "auto" { stepCount = -1 } else if let n = Int32(steps), n >= 1 { stepCount = n } else {
            throw ValidationError("--steps must be a positive number or 'auto', got '\(steps)'")
        }
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1...100000") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        let client = try ServiceClient(endpoint: endpoint, timeout: .milliseconds(Int(timeout * 1000)))
        func fetch(_ prompt: String, _ seed: UInt64) throws -> [GrayImage] {
            let batch = try client.generate(GenerateRequest(model: model, prompt: prompt, seed: seed,
                                                            steps: stepCount, count: Int32(count)))
            guard batch.channels == 1 else {
                throw ValidationError("model '\(model)' returns \(batch.channels)-channel images; this command writes gray PNGs")
            }
            let n = batch.width * batch.height
            return (0..<batch.count).map {
                GrayImage(width: batch.width, height: batch.height, pixels: Array(batch.pixels[($0 * n)..<(($0 + 1) * n)]))
            }
        }
        if let classGrid {
            var rows: [GrayImage] = []
            for c in 0..<Captions.classPhrases.count {
                rows += try fetch(Captions.prompt(forClass: c), seed &+ UInt64(1000 * c))
            }
            try PNG.write(ImageGrid.make(rows, columns: count, scale: 2), to: classGrid)
            print("wrote \(classGrid): \(Captions.classPhrases.count) class prompts x \(count) images from \(endpoint)")
            return
        }
        let t0 = Date()
        let images = try fetch(prompt, seed)
        let seconds = Date().timeIntervalSince(t0)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for (i, img) in images.enumerated() { try PNG.write(img, to: String(format: "%@/%05d.png", out, i)) }
        if let grid { try PNG.write(ImageGrid.make(images, columns: min(count, 8), scale: 2), to: grid) }
        print(String(format: "wrote %d images to %@ in %.3fs (model %@ on %@, steps %@)",
                     images.count, out, seconds, model, endpoint, steps))
    }
}
