import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train teacher-pairs`: noise-to-latent pairs of a latent diffusion model, the
/// coalescer's teacher coupling (`coalesce train coalescer --teacher-pairs FILE`).
struct TrainTeacherPairs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teacher-pairs",
        abstract: "Sample noise-to-latent pairs from a latent diffusion model (DDIM, deterministic) for the coalescer's teacher coupling (resumable).")

    @Option(help: "The teacher: a latent-diffusion or distilled-unet model directory, or its .safetensors file.")
    var teacher = "models/distilled-unet"
    @Option(help: "Output file (safetensors; an existing file made with the same settings is continued).") var out: String
    @Option(help: "Pairs to make.") var count = 20000
    @Option(help: "Teacher sampling steps.") var steps = 8
    @Option(help: "Classifier-free guidance of the conditional pairs.") var guidance: Float = 2
    @Option(help: "Fraction of pairs for the empty prompt.") var uncondFraction: Float = 0.1
    @Option(help: "Seed (pair i uses seed + i).") var seed: UInt64 = 11
    @Option(help: "Pairs per teacher call (and per file write).") var chunk = 512
    @Option(help: "Also keep each trajectory's point after every N-th sampling update (0 = none): the coalescer's trajectory starts (`train coalescer --trajectory-fraction`).")
    var trajectoryEvery = 0

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        noteBLASCore()
        guard count > 0, count <= 10_000_000, chunk > 0, chunk <= 65536 else {
            throw ValidationError("--count must be in 1...10000000 and --chunk in 1...65536")
        }
        guard guidance.isFinite, guidance >= 0, guidance <= 100, uncondFraction >= 0, uncondFraction <= 1 else {
            throw ValidationError("--guidance must be in 0...100 and --uncond-fraction in 0...1")
        }
        guard trajectoryEvery >= 0, trajectoryEvery <= 64 else { throw ValidationError("--trajectory-every must be in 0...64") }
        let path = try Self.weightsPath(teacher)
        let model = try LatentDiffusionModel.load(path: path)
        let settings = TeacherPairs.Settings(teacher: path, steps: steps, guidance: guidance, seed: seed,
                                             unconditionalFraction: uncondFraction,
                                             prompts: EvaluationPrompts.classPrompts,
                                             autoencoderHash: TeacherPairs.hash(model.autoencoder),
                                             trajectoryEvery: trajectoryEvery)
        print("command: " + CommandLine.arguments.joined(separator: " "))
        let t0 = Date()
        let pairs = try TeacherPairs.generate(teacher: model, settings: settings, count: count, path: out, chunk: chunk)
        print(String(format: "teacher pairs: %d pairs (%d unconditional) from %@ at %d steps, guidance %.2f, in %.0fs; wrote %@",
                     pairs.count, pairs.labels.filter { $0 < 0 }.count, path, steps, guidance, Date().timeIntervalSince(t0), out))
        if pairs.trajectoryLevels > 0 {
            print("trajectory points at timesteps \(pairs.trajectoryTimesteps), sigma "
                  + pairs.trajectorySigmas.map { String(format: "%.3f", $0) }.joined(separator: " "))
        }
    }

    /// A model directory's weights file (its config.json "weights"), or the path itself.
    static func weightsPath(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ValidationError("teacher \(path) does not exist")
        }
        guard isDir.boolValue else { return path }
        if let data = FileManager.default.contents(atPath: path + "/config.json"),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let w = obj["weights"] as? String {
            return path + "/" + w
        }
        let files = (try FileManager.default.contentsOfDirectory(atPath: path)).filter { $0.hasSuffix(".safetensors") }.sorted()
        guard files.count == 1 else { throw ValidationError("teacher \(path): no config.json \"weights\" and \(files.count) .safetensors files") }
        return path + "/" + files[0]
    }
}
