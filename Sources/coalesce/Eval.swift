import ArgumentParser
import Engine
import Foundation
import ImageIO
import Logging
import Models
import Tensor
import Training

/// `coalesce eval`: generate K images over the 10 class prompts with fixed seeds and score them
/// with the domain classifier (FID, KID, class accuracy, precision/recall, memorisation), beside
/// real training images scored the same way in the same run. With `--data DIR` and a classifier
/// trained on that folder (`coalesce train classifier --data DIR`), the same for a model trained
/// on the folder: one prompt per class of the folder.
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
    @Option(help: "Classifier checkpoint (a file, or a directory holding model.safetensors as `coalesce train classifier --out` writes it).") var classifier = "models/classifier/model.safetensors"
    @Option(help: "The images the model was trained on and is scored against: fashion-mnist, or a labelled folder of PNGs (the classifier must be trained on it; every 10th image is the held-out set).")
    var data = TrainingData.fashionMNIST
    @Option(help: "Second feature network, trained independently, scored beside the first (FID, KID, class accuracy); 'none' to skip. Default: models/classifier-b/model.safetensors when it exists.")
    var secondClassifier: String?
    @Option(help: "Models directory (generator checkpoints).") var modelsDir = "models"
    @Option(help: "The autoencoder that --model reconstruction scores (a directory as `coalesce train autoencoder --out` writes it; default: <models-dir>/autoencoder).")
    var autoencoder: String?
    @Option(help: "Write a PNG grid of the first 100 generated images here.") var grid: String?
    @Option(help: "Write every scored image as DIR/NNNNN.png and DIR/labels.txt (file<TAB>requested class).") var saveImages: String?
    @Option(help: "Score the images in this folder (as --save-images writes them: NNNNN.png and labels.txt of file<TAB>class) instead of generating (the row is named images:DIR).")
    var images: String?
    @Flag(help: "Skip scoring real training images as reference.") var noReference = false
    @Flag(help: "Print the report as JSON (progress still goes to stderr).") var json = false
    @Flag(help: "List the registered generators and exit.") var list = false
    @Flag(help: "No progress lines (they are printed only when stderr is a terminal).") var quiet = false

    func run() throws {
        BLAS.load()
        GeneratorRegistration.registerAll(modelsDirectory: modelsDir, autoencoder: autoencoder)
        guard guidance.isFinite, guidance >= 0 else { throw ValidationError("--guidance must be a finite number >= 0") }
        if list { print(GeneratorRegistry.names.joined(separator: "\n")); return }
        let clf = try Classifier.load(path: Eval.checkpoint(classifier))
        let side = clf.config.imageSize
        var loaded = try TrainingData.load(data)
        if loaded.train.width != side { loaded = try TrainingData.load(data, size: side) }
        let (train, test) = (loaded.train, loaded.test)
        guard train.channels == clf.config.imageChannels else {
            throw ValidationError("the classifier takes \(clf.config.imageChannels)-channel images, \(data) has \(train.channels)")
        }
        let fashion = data == TrainingData.fashionMNIST
        guard fashion || train.labels.allSatisfy({ $0 >= 0 }) else {
            throw ValidationError("\(data): every image needs a class (a \"label\" field in captions.jsonl or a subfolder) to be scored")
        }
        let defaultSecond = "models/classifier-b/model.safetensors"
        let secondPath = secondClassifier ?? (fashion && FileManager.default.fileExists(atPath: defaultSecond) ? defaultSecond : "none")
        let second = secondPath == "none" ? nil : try Classifier.load(path: Eval.checkpoint(secondPath))
        var settings = EvaluationSettings()
        settings.steps = steps
        settings.count = count
        settings.seed = seed
        settings.batch = batch
        settings.prompts = try prompts.map { try LabeledPrompt.read(path: $0) } ?? (fashion ? nil : EvaluationPrompts.prompts(for: train))
        if let p = settings.prompts, !fashion, !json {
            print("prompts: " + p.map { "\($0.label): \"\($0.prompt)\"" }.joined(separator: ", "))
        }
        let evaluator = try Evaluator(classifier: clf, secondClassifier: second, train: train, test: test, settings: settings)
        evaluator.showProgress = !quiet && isatty(STDERR_FILENO) == 1
        let generator: Generator = try images.map { try SavedImagesGenerator(directory: $0, prompts: settings.prompts ?? []) }
            ?? GeneratorRegistry.make(model, context: GeneratorContext(modelsDirectory: modelsDir, train: train, guidance: guidance))
        let report = try evaluator.evaluate(generator, withReference: !noReference)
        let channels = generator.imageChannels
        if let grid, let gen = evaluator.lastGenerated {
            let n = channels * generator.imageSide * generator.imageSide
            // First 10 images of each class, one row per class.
            var picked: [Int] = []
            for c in 0..<(gen.labels.max() ?? -1) + 1 { picked += gen.labels.indices.filter { gen.labels[$0] == c }.prefix(10) }
            let images = LabeledImages(count: picked.count, width: generator.imageSide, height: generator.imageSide, channels: channels,
                                       pixels: picked.flatMap { gen.pixels[$0 * n ..< ($0 + 1) * n] }, labels: picked.map { gen.labels[$0] })
            try ImageGrid.write(images, columns: 10, scale: 2, to: grid)
        }
        if let dir = saveImages, let gen = evaluator.lastGenerated {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let side = generator.imageSide, n = channels * side * side
            var labels = ""
            for i in 0..<gen.labels.count {
                let file = String(format: "%05d.png", i)
                let image = PNG.interleave(gen.pixels[(i * n)..<((i + 1) * n)], width: side, height: side, channels: channels)
                try Data(try PNG.encode(pixels: image[...], width: side, height: side, channels: channels))
                    .write(to: URL(fileURLWithPath: dir + "/" + file), options: .atomic)
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
            print(EvalText.render(report, guidance: guidance))
        }
    }
}

extension Eval {
    /// A classifier checkpoint path: the file itself, or DIR/model.safetensors for a directory.
    static func checkpoint(_ path: String) -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return path + "/model.safetensors" }
        return path
    }
}

/// Human-readable rendering of an `EvaluationReport`.
enum EvalText {
    static func render(_ r: EvaluationReport, guidance: Float = 0) -> String {
        var lines = [String(format: "model %@, %d steps, %d images (seed %llu); classifier test accuracy %.2f%% on %d images",
                            r.model, r.settings.steps, r.settings.count, r.settings.seed,
                            r.classifierTestAccuracy * 100, r.testImages)]
        if guidance != 0 { lines.append(String(format: "guidance %g", guidance)) }
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
        // KID x 1000 with its standard error, in each feature network.
        func kid(_ k: KernelDistance.Estimate?) -> String {
            guard let k else { return "-" }
            return String(format: "%.2f ± %.2f", k.value * 1000, k.standardError * 1000)
        }
        lines.append("KID x 1000 (± standard error over \(r.generated.kid?.blocks ?? 0) blocks):")
        func kidRow(_ name: String, _ s: SetScores) -> String {
            var line = "  " + name.padding(toLength: max(16, name.count), withPad: " ", startingAt: 0) + "  net A " + kid(s.kid)
            if let b = s.second {
                line += String(format: "    net B: FID %.2f, KID %@, class acc %.1f%%", b.fid, kid(b.kid), b.classAccuracy * 100)
            }
            return line
        }
        lines.append(kidRow(r.model, r.generated))
        if let ref = r.referenceTrain { lines.append(kidRow("real train (ref)", ref)) }
        if let b = r.generated.second { lines.append("net B: \(b.network)") }
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
    static func registerAll(modelsDirectory: String, autoencoder: String? = nil) {
        CoalescerGenerator.register()
        ReconstructionGenerator.register(autoencoder: autoencoder)
        let known = Set(GeneratorRegistry.names)
        let repository = ModelRepository(root: modelsDirectory)
        for name in repository.modelNames() where !known.contains(name) && (try? repository.config(for: name)) != nil {
            GeneratorRegistry.register(name) { context in
                try EngineGenerator(model: name, modelsDirectory: context.modelsDirectory, guidance: context.guidance)
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
    let guidance: Float
    let name: String
    let imageSide: Int
    private let engine: Engine

    init(model: String, modelsDirectory: String, guidance: Float = 0) throws {
        name = model
        self.guidance = guidance
        var logger = Logger(label: "coalesce.eval")
        logger.logLevel = .warning  // keep stdout clean for --json
        engine = Engine(configuration: .init(pluginDirectory: GeneratorRegistration.pluginDirectory(),
                                             modelRepository: modelsDirectory), logger: logger)
        let status = try engine.load(model)
        guard status.info.channels == 1 || status.info.channels == 3, status.info.height == status.info.width else {
            throw TrainingError.generation("\(model) makes \(status.info.width)x\(status.info.height)x\(status.info.channels) images; "
                                           + "the evaluation classifier scores square gray or RGB images")
        }
        imageSide = status.info.height
        imageChannels = status.info.channels
    }

    let imageChannels: Int

    deinit { engine.shutdown() }

    func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let batch = try engine.generate(GenerateRequest(model: name, prompt: prompt, seed: seed,
                                                        steps: Int32(clamping: steps), count: Int32(clamping: count),
                                                        guidance: guidance))
        guard batch.width == imageSide, batch.height == imageSide, batch.channels == imageChannels, batch.count == count else {
            throw TrainingError.generation("\(name) returned \(batch.count) images of \(batch.width)x\(batch.height)x\(batch.channels), expected \(count) of \(imageSide)x\(imageSide)x\(imageChannels)")
        }
        guard imageChannels > 1 else { return batch.pixels }
        // The engine's images are interleaved (RGBRGB...); the evaluation's are planar.
        return (0..<count).flatMap { PNG.planar(batch.image($0), width: imageSide, height: imageSide, channels: imageChannels) }
    }
}
