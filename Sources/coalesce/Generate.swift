import ArgumentParser
import Engine
import Foundation
import ImageIO
import Logging
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
    @Option(help: "Steps: a number, 'default' (the model's), or 'auto' (coalescer: from the predicted direction and distance).") var steps = "default"
    @Option(help: "Classifier-free guidance scale for models that support it (0 = the model's default).") var guidance: Float = 0
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
        let stepCount = try parsedSteps()
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1...100000") }
        // In process through the same plugin loader as the daemon and the C library.
        var logger = Logger(label: "coalesce.generate")
        logger.logLevel = .warning
        let engine = Engine(configuration: .init(pluginDirectory: GeneratorRegistration.pluginDirectory(),
                                                 modelRepository: modelsDir), logger: logger)
        defer { engine.shutdown() }
        let status = try engine.load(model)
        func fetch(_ prompt: String, _ seed: UInt64) throws -> ImageBatch {
            try engine.generate(GenerateRequest(model: model, prompt: prompt, seed: seed, steps: stepCount, count: Int32(count), guidance: guidance))
        }
        if let classGrid {
            let classes = status.info.classes.isEmpty ? Captions.classPhrases.map { $0[0] } : status.info.classes
            try writeClassGrid(classes: classes, to: classGrid) { try fetch($0, $1) }
            return
        }
        let t0 = Date()
        let batch = try fetch(prompt, seed)
        let seconds = Date().timeIntervalSince(t0)
        try write(batch)
        print(String(format: "wrote %d images of %dx%dx%d to %@ in %.3fs (model %@, backend %@, steps %@)",
                     batch.count, batch.width, batch.height, batch.channels, out, seconds, model, status.backend, steps))
    }

    /// --steps as the wire's number: n, or -1 for auto.
    private func parsedSteps() throws -> Int32 {
        if steps == "auto" { return -1 }
        if steps == "default" { return 0 }
        guard guidance.isFinite, guidance >= 0 else { throw ValidationError("--guidance must be a finite number >= 0, got \(guidance)") }
        guard let n = Int32(steps), n >= 1, n <= 10_000 else {
            throw ValidationError("--steps must be a positive number, 'default' or 'auto', got '\(steps)'")
        }
        return n
    }

    /// One PNG per image (gray or RGB as the model makes them) into --out, and the --grid.
    private func write(_ batch: ImageBatch) throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let n = batch.width * batch.height * batch.channels
        for i in 0..<batch.count {
            let png = try PNG.encode(pixels: batch.pixels[(i * n)..<((i + 1) * n)], width: batch.width,
                                     height: batch.height, channels: batch.channels)
            try Data(png).write(to: URL(fileURLWithPath: String(format: "%@/%05d.png", out, i)), options: .atomic)
        }
        if let grid { try writeGrid([batch], columns: min(batch.count, 8), to: grid) }
    }

    /// A grid of interleaved batches (all the same size and channels), `columns` per row.
    private func writeGrid(_ batches: [ImageBatch], columns: Int, to path: String) throws {
        guard let first = batches.first else { return }
        let (w, h, c) = (first.width, first.height, first.channels)
        var planar: [UInt8] = []
        var total = 0
        for b in batches {
            guard b.width == w, b.height == h, b.channels == c else { throw ValidationError("images of different sizes") }
            let n = w * h * c
            for i in 0..<b.count {
                let img = b.pixels[(i * n)..<((i + 1) * n)]
                for ch in 0..<c { for p in 0..<(w * h) { planar.append(img[img.startIndex + p * c + ch]) } }
            }
            total += b.count
        }
        let set = LabeledImages(count: total, width: w, height: h, channels: c, pixels: planar,
                                labels: [Int](repeating: 0, count: total))
        try ImageGrid.write(set, columns: columns, scale: 2, to: path)
    }

    /// One row of --count images per class prompt (seed + 1000 * class).
    private func writeClassGrid(classes: [String], to path: String, fetch: (String, UInt64) throws -> ImageBatch) throws {
        var rows: [ImageBatch] = []
        for (c, name) in classes.enumerated() { rows.append(try fetch(name, seed &+ UInt64(1000 * c))) }
        try writeGrid(rows, columns: count, to: path)
        print("wrote \(path): \(classes.count) class prompts x \(count) images, model \(model), steps \(steps), seed \(seed)")
    }

    /// `--remote`: the same request over ZeroMQ to a daemon; same model, prompt, seed and steps
    /// give the same pixels as in process (checked by the identity tests).
    private func runRemote(endpoint: String) throws {
        let stepCount = try parsedSteps()
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1...100000") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        let client = try ServiceClient(endpoint: endpoint, timeout: .milliseconds(Int(timeout * 1000)))
        func fetch(_ prompt: String, _ seed: UInt64) throws -> ImageBatch {
            try client.generate(GenerateRequest(model: model, prompt: prompt, seed: seed, steps: stepCount, count: Int32(count), guidance: guidance))
        }
        if let classGrid {
            try writeClassGrid(classes: Captions.classPhrases.map { $0[0] }, to: classGrid) { try fetch($0, $1) }
            return
        }
        let t0 = Date()
        let batch = try fetch(prompt, seed)
        let seconds = Date().timeIntervalSince(t0)
        try write(batch)
        print(String(format: "wrote %d images of %dx%dx%d to %@ in %.3fs (model %@ on %@, steps %@)",
                     batch.count, batch.width, batch.height, batch.channels, out, seconds, model, endpoint, steps))
    }
}
