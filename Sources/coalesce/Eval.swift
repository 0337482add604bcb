import ArgumentParser
import Engine
import Foundation
import ImageIO
import Logging
import Models
import Tensor
import Training

/// `coalesce eval`: generate K images over the 10 class prompts with fixed seeds and score them
/// with the domain classifier (FID, class accuracy, precision/recall, memorisation), beside real
/// training images scored the same way in the same run.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a generator: FID, class accuracy, precision/recall, memorisation (vs. real training images).")

    @Option(help: "Generator name (see --list).") var model = "real-train"
    @Option(help: "Network evaluations per image (sampling steps; 0 = the model's default).") var steps = 1
    @Option(help: "Classifier-free guidance scale for models that support it (0 = the model's default).") var guidance: Float = 0
    @Option(help: "Images to generate, spread over the 10 class prompts.") var count = 1000
    @Option(help: "Generate for these prompts instead of the 10 class prompts: a file of class<TAB>prompt lines (e.g. eval/paraphrases.tsv); --count is spread over them.")
    var prompts: String?
    @Option(help: "Base seed of the generation requests.") var seed: UInt64 = 2026
    @Option(help: "Images per generator call.") var batch = 50
    @Option(help: "Classifier checkpoint.") var classifier = "models/classifier/model.safetensors"
    @Option(help: "Models directory (generator checkpoints).") var modelsDir = "models"
    @Option(help: "Write a PNG grid of the first 100 generated images here.") var grid: String?
    @Option(help: "Write every scored image as DIR/NNNNN.png and DIR/labels.txt (file<TAB>requested class).") var saveImages: String?
    @Flag(help: "Skip scoring real training images as reference.") var noReference = false
    @Flag(help: "Print the report as JSON (progress still goes to stderr).") var json = false
    @Flag(help: "List the registered generators and exit.") var list = false

    func run() throws {
        BLAS.load()
        GeneratorRegistration.registerAll(modelsDirectory: modelsDir)
        guard guidance.isFinite, guidance >= 0 else { throw ValidationError("--guidance must be a finite number >= 0") }
        EngineGenerator.guidance = guidance
        if list { print(GeneratorRegistry.names.joined(separator: "\n")); return }
        let train = try FashionMNIST.load(split: .train)
        let test = try FashionMNIST.load(split: .test)
        let clf = try Classifier.load(path: classifier)
        var settings = EvaluationSettings()
        settings.steps = steps
        settings.count = count
        settings.seed = seed
        settings.batch = batch
        settings.prompts = try prompts.map { try LabeledPrompt.read(path: $0) }
        let evaluator = try Evaluator(classifier: clf, train: train, test: test, settings: settings)
        let generator = try GeneratorRegistry.make(model, context: GeneratorContext(modelsDirectory: modelsDir, train: train))
        let report = try evaluator.evaluate(generator, withReference: !noReference)
        if let grid, let gen = evaluator.lastGenerated {
            let n = generator.imageSide * generator.imageSide
            // First 10 images of each class, one row per class.
            var images: [GrayImage] = []
            for c in 0..<10 {
                let idx = gen.labels.indices.filter { gen.labels[$0] == c }.prefix(10)
                images += idx.map { GrayImage(width: generator.imageSide, height: generator.imageSide,
                                              pixels: Array(gen.pixels[$0 * n ..< ($0 + 1) * n])) }
            }
            try PNG.write(ImageGrid.make(images, columns: 10, scale: 2), to: grid)
        }
        if let dir = saveImages, let gen = evaluator.lastGenerated {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let side = generator.imageSide, n = side * side
            var labels = ""
            for i in 0..<gen.labels.count {
                let file = String(format: "%05d.png", i)
                try PNG.write(GrayImage(width: side, height: side, pixels: Array(gen.pixels[(i * n)..<((i + 1) * n)])),
                              to: dir + "/" + file)
                labels += "\(file)\t\(gen.labels[i])\n"
            }
            try labels.write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
            FileHandle.standardError.write(Data("wrote \(gen.labels.count) images and labels.txt to \(dir)\n".utf8))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(EvalText.render(report))
        }
    }
}

/// Human-readable rendering of an `EvaluationReport`.
enum EvalText {
    static func render(_ r: EvaluationReport) -> String {
        var lines = [String(format: "model %@, %d steps, %d images (seed %llu); classifier test accuracy %.2f%% on %d images",
                            r.model, r.settings.steps, r.settings.count, r.settings.seed,
                            r.classifierTestAccuracy * 100, r.testImages)]
        if EngineGenerator.guidance != 0 { lines.append(String(format: "guidance %g", EngineGenerator.guidance)) }
        lines.append(String(format: "generation: %.2f s in the generator, %.1f images/s", r.generationSeconds, r.imagesPerSecond))
        lines.append("                    FID     class acc  precision  recall  density  coverage  near-copies px / feat (test)  NN dist px / feat (test)")
        func row(_ name: String, _ s: SetScores) -> String {
            let m = s.memorisation
            let label = name.count >= 16 ? name : name + String(repeating: " ", count: 16 - name.count)
            return label + String(format: " %8.2f  %8.1f%%  %8.3f  %7.3f  %7.3f  %8.3f  %5.1f%% / %5.1f%% (%.1f%%/%.1f%%)      %.2f / %.2f (%.2f / %.2f)",
                          s.fid, s.classAccuracy * 100, s.precision, s.recall, s.density, s.coverage,
                          m.pixels.nearCopyFraction * 100, m.features.nearCopyFraction * 100,
                          m.pixels.testNearCopyFraction * 100, m.features.testNearCopyFraction * 100,
                          m.pixels.generatedMedian, m.features.generatedMedian,
                          m.pixels.testMedian, m.features.testMedian)
        }
        lines.append(row(r.model, r.generated))
        if let ref = r.referenceTrain { lines.append(row("real train (ref)", ref)) }
        lines.append(String(format: "distinct training images nearest to the %d generated: %d in pixels, %d in features",
                            r.settings.count, r.generated.memorisation.pixels.distinctNearest,
                            r.generated.memorisation.features.distinctNearest))
        lines.append(String(format: "near-copy: nearest-training distance below percentile %g of the test images' (px %.3f, feat %.3f)",
                            r.generated.memorisation.percentile, r.generated.memorisation.pixels.threshold,
                            r.generated.memorisation.features.threshold))
        return lines.joined(separator: "\n")
    }
}

/// Registers generators that live outside the Training module with `GeneratorRegistry`: the
/// in-process ones (backends add theirs here), then every model of the models directory that an
/// Engine backend serves (its config.json names the backend), under its directory name, unless a
/// generator of that name is already registered.
enum GeneratorRegistration {
    static func registerAll(modelsDirectory: String) {
        CoalescerGenerator.register()
        ReconstructionGenerator.register()
        let known = Set(GeneratorRegistry.names)
        let repository = ModelRepository(root: modelsDirectory)
        for name in repository.modelNames() where !known.contains(name) && (try? repository.config(for: name)) != nil {
            GeneratorRegistry.register(name) { context in
                try EngineGenerator(model: name, modelsDirectory: context.modelsDirectory)
            }
        }
    }

    /// Where backend plugins are: `<prefix>/lib/coalesce/backends` beside an installed binary,
    /// else the binary's own directory (the SwiftPM build directory).
    static func pluginDirectory() -> String {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let installed = exe.deletingLastPathComponent().appendingPathComponent("lib/coalesce/backends").path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: installed, isDirectory: &isDir), isDir.boolValue { return installed }
        return exe.path
    }
}

/// A model served by an Engine backend plugin, seen through the evaluation `Generator` protocol.
final class EngineGenerator: Generator {
    /// Guidance scale of every request (`--guidance`; 0 = the model's default).
    nonisolated(unsafe) static var guidance: Float = 0
    let name: String
    let imageSide: Int
    private let engine: Engine

    init(model: String, modelsDirectory: String) throws {
        name = model
        var logger = Logger(label: "coalesce.eval")
        logger.logLevel = .warning  // keep stdout clean for --json
        engine = Engine(configuration: .init(pluginDirectory: GeneratorRegistration.pluginDirectory(),
                                             modelRepository: modelsDirectory), logger: logger)
        let status = try engine.load(model)
        guard status.info.channels == 1, status.info.height == status.info.width else {
            throw TrainingError.generation("\(model) makes \(status.info.width)x\(status.info.height)x\(status.info.channels) images; "
                                           + "the evaluation classifier scores square gray images")
        }
        imageSide = status.info.height
    }

    deinit { engine.shutdown() }

    func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let batch = try engine.generate(GenerateRequest(model: name, prompt: prompt, seed: seed,
                                                        steps: Int32(clamping: steps), count: Int32(clamping: count),
                                                        guidance: Self.guidance))
        guard batch.width == imageSide, batch.height == imageSide, batch.channels == 1, batch.count == count else {
            throw TrainingError.generation("\(name) returned \(batch.count) images of \(batch.width)x\(batch.height)x\(batch.channels), expected \(count) of \(imageSide)x\(imageSide)x1")
        }
        return batch.pixels
    }
}
