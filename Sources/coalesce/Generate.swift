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
    @Option(help: "Number of images (any number: asked for in requests of the engine's per-request limit, image i still with seed + i).") var count = 16
    @Option(help: "Output directory for one PNG per image.") var out = "generated"
    @Option(help: "Also write all images as one grid PNG here.") var grid: String?
    @Option(help: "Models directory.") var modelsDir = "models"
    @Option(help: "Instead of --prompt: write one grid PNG here with a row of --count images per class prompt (seed + 1000 * class).") var classGrid: String?
    @Option(help: "Generate on a running coalesced at this endpoint (e.g. tcp://127.0.0.1:5555) instead of in process; any model it serves.") var remote: String?
    @Option(help: "With --remote: seconds to wait for the daemon's reply (per request of at most 64 images).") var timeout = 60.0
    @Flag(help: "No progress line (it is drawn only on a terminal, after the first second).") var quiet = false

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
        let limit = max(1, min(Int(engine.configuration.limits.maxCount), status.info.maxBatch))
        let fetch: ChunkFetch = { prompt, seed, n, progress in
            try engine.generate(GenerateRequest(model: model, prompt: prompt, seed: seed, steps: stepCount, count: Int32(n), guidance: guidance),
                                progress: { progress($0); return true })
        }
        if let classGrid {
            let classes = status.info.classes.isEmpty ? Captions.classPhrases.map { $0[0] } : status.info.classes
            try writeClassGrid(classes: classes, limit: limit, to: classGrid, fetch: fetch)
            return
        }
        let t0 = Date()
        let shape = try generateAll(prompt: prompt, limit: limit, fetch: fetch)
        let seconds = Date().timeIntervalSince(t0)
        print(String(format: "wrote %d images of %dx%dx%d to %@ in %.3fs (model %@, backend %@, steps %@)",
                     count, shape.width, shape.height, shape.channels, out, seconds, model, status.backend, steps))
    }

    /// Asks for one chunk of images: (prompt, seed of its first image, count, per-step progress).
    typealias ChunkFetch = (String, UInt64, Int, @escaping (GenerateProgress) -> Void) throws -> ImageBatch

    /// The first image and count of each request when `count` images are asked for in requests of
    /// at most `limit`: image i of the whole run is image i - start of its request, whose seed is
    /// seed + start, so image i keeps seed + i and the bytes are those of asking chunk by chunk.
    static func chunks(count: Int, limit: Int) -> [(start: Int, count: Int)] {
        stride(from: 0, to: count, by: max(1, limit)).map { ($0, min(max(1, limit), count - $0)) }
    }

    /// Generates --count images for `prompt` in chunks, writing each chunk's PNGs as it arrives
    /// (and the --grid at the end), with a progress line on a terminal. Returns the image shape.
    private func generateAll(prompt: String, limit: Int, fetch: ChunkFetch) throws -> (width: Int, height: Int, channels: Int) {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let parts = Generate.chunks(count: count, limit: limit)
        let progress = TerminalProgress(label: "generate \(model)", quiet: quiet)
        defer { progress.finish() }
        var kept: [ImageBatch] = []
        var shape = (width: 0, height: 0, channels: 0)
        for (k, part) in parts.enumerated() {
            let done = part.start
            let batch = try fetch(prompt, seed &+ UInt64(part.start), part.count) { p in
                let f = (Double(done) + Double(part.count) * Double(p.step) / Double(max(1, p.total))) / Double(count)
                progress.update(fraction: f, detail: "request \(k + 1)/\(parts.count), step \(p.step)/\(p.total)")
            }
            guard batch.count == part.count else {
                throw ValidationError("the model returned \(batch.count) images for a request of \(part.count)")
            }
            shape = (batch.width, batch.height, batch.channels)
            try writePNGs(batch, firstIndex: part.start)
            if grid != nil { kept.append(batch) }
            progress.update(fraction: Double(part.start + part.count) / Double(count), detail: "\(part.start + part.count)/\(count) images")
        }
        if let grid { try writeGrid(kept, columns: min(count, 8), to: grid) }
        return shape
    }

    /// --steps as the wire's number: n, or -1 for auto.
    private func parsedSteps() throws -> Int32 {
        // Ranges (steps, guidance) are the engine's to check (EngineLimits), as in every face.
        if steps == "auto" { return -1 }
        if steps == "default" { return 0 }
        guard let n = Int32(steps), n >= 1 else {
            throw ValidationError("--steps must be a positive number, 'default' or 'auto', got '\(steps)'")
        }
        return n
    }

    /// One PNG per image (gray or RGB as the model makes them) into --out: image i of the batch
    /// is file firstIndex + i.
    private func writePNGs(_ batch: ImageBatch, firstIndex: Int) throws {
        for i in 0..<batch.count {
            let png = try PNG.encode(pixels: batch.image(i), width: batch.width,
                                     height: batch.height, channels: batch.channels)
            try Data(png).write(to: URL(fileURLWithPath: String(format: "%@/%05d.png", out, firstIndex + i)), options: .atomic)
        }
    }

    /// A grid of interleaved batches (all the same size and channels), `columns` per row.
    private func writeGrid(_ batches: [ImageBatch], columns: Int, to path: String) throws {
        guard let first = batches.first else { return }
        let (w, h, c) = (first.width, first.height, first.channels)
        var planar: [UInt8] = []
        var total = 0
        for b in batches {
            guard b.width == w, b.height == h, b.channels == c else { throw ValidationError("images of different sizes") }
            for i in 0..<b.count {
                planar += PNG.planar(b.image(i), width: w, height: h, channels: c)
            }
            total += b.count
        }
        let set = LabeledImages(count: total, width: w, height: h, channels: c, pixels: planar,
                                labels: [Int](repeating: 0, count: total))
        try ImageGrid.write(set, columns: columns, scale: 2, to: path)
    }

    /// One row of --count images per class prompt (seed + 1000 * class).
    private func writeClassGrid(classes: [String], limit: Int, to path: String, fetch: ChunkFetch) throws {
        var rows: [ImageBatch] = []
        let progress = TerminalProgress(label: "generate \(model)", quiet: quiet)
        defer { progress.finish() }
        for (c, name) in classes.enumerated() {
            for part in Generate.chunks(count: count, limit: limit) {
                rows.append(try fetch(name, seed &+ UInt64(1000 * c) &+ UInt64(part.start), part.count) { p in
                    let f = (Double(c) + (Double(part.start) + Double(part.count) * Double(p.step) / Double(max(1, p.total))) / Double(count)) / Double(classes.count)
                    progress.update(fraction: f, detail: "class \(c + 1)/\(classes.count)")
                })
            }
        }
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
        // The daemon's default per-request limit (EngineLimits.maxCount); a daemon started with a
        // lower one answers INVALID_ARGUMENT naming it.
        let limit = Int(EngineLimits().maxCount)
        let fetch: ChunkFetch = { prompt, seed, n, progress in
            try client.generate(GenerateRequest(model: model, prompt: prompt, seed: seed, steps: stepCount, count: Int32(n), guidance: guidance),
                                progress: progress)
        }
        if let classGrid {
            try writeClassGrid(classes: Captions.classPhrases.map { $0[0] }, limit: limit, to: classGrid, fetch: fetch)
            return
        }
        let t0 = Date()
        let shape = try generateAll(prompt: prompt, limit: limit, fetch: fetch)
        let seconds = Date().timeIntervalSince(t0)
        print(String(format: "wrote %d images of %dx%dx%d to %@ in %.3fs (model %@ on %@, steps %@)",
                     count, shape.width, shape.height, shape.channels, out, seconds, model, endpoint, steps))
    }
}
