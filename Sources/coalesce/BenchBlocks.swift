import ArgumentParser
import Foundation
import ImageIO
import Models
import Tensor
import Training

/// `coalesce bench unet-blocks`: SnapFusion's architecture measurement for a trained latent
/// diffusion UNet: for each block, the time it takes (UNet forward at batch 64 with and without
/// it) and the quality lost when it is bypassed (FID and class accuracy of a small sample).
struct BenchBlocks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet-blocks",
        abstract: "Per-block latency and quality loss of a latent diffusion UNet (which blocks a student can drop).")

    @Option(help: "Model weights (a latent-diffusion .safetensors or its directory).") var model = "models/latent-diffusion"
    @Option(help: "Sampling steps for the quality measurement.") var steps = 16
    @Option(help: "Images per measurement (spread over the 10 classes).") var count = 200
    @Option(help: "Guidance scale (0 = the model's default).") var guidance: Float = 0
    @Option(help: "Batch of the latency measurement.") var batch = 64
    @Option(help: "Timed forwards per latency measurement (median taken).") var repeats = 15
    @Option(help: "Classifier checkpoint.") var classifier = "models/classifier/model.safetensors"
    @Option(help: "Only these blocks (comma-separated names; default all).") var only: String?
    @Flag(help: "Measure time only (no images, no scores).") var timeOnly = false

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        let file = model.hasSuffix(".safetensors") ? model : model + "/latent-diffusion.safetensors"
        let m = try LatentDiffusionModel.load(path: file)
        let g = guidance == 0 ? m.config.defaultGuidance : guidance
        let gen = LatentDiffusionGenerator(name: "unet-blocks", model: m, guidance: g)
        let train = try FashionMNIST.load(split: .train), test = try FashionMNIST.load(split: .test)
        var settings = EvaluationSettings()
        settings.steps = steps; settings.count = count; settings.batch = min(count, 100)
        let evaluator = try Evaluator(classifier: try Classifier.load(path: classifier), train: train, test: test, settings: settings)
        let (c, s) = m.latentShape
        var rng = RandomGenerator(seed: 5)
        let x = Tensor.randn([batch, c, s, s], rng: &rng)
        let cond = m.conditions([String](repeating: "ankle boot", count: batch))
        let ts = [Float](repeating: 500, count: batch)
        func forwardMs() -> Double {
            let t0 = DispatchTime.now()
            _ = GradMode.withDisabled { m.predictV(x, t: ts, cond: cond) }
            return Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e6
        }
        /// Time saved by bypassing `name`: forwards with and without it alternate, so a machine
        /// whose load drifts affects both alike; the median of the paired differences.
        func savedMs(_ name: String) -> (full: Double, saved: Double) {
            var diffs: [Double] = [], fulls: [Double] = []
            _ = forwardMs()
            for _ in 0..<repeats {
                m.unet.disabledBlocks = []
                let a = forwardMs()
                m.unet.disabledBlocks = [name]
                let b = forwardMs()
                m.unet.disabledBlocks = []
                diffs.append(a - b); fulls.append(a)
            }
            return (fulls.sorted()[fulls.count / 2], diffs.sorted()[diffs.count / 2])
        }
        func score() throws -> (Double, Double) {
            let r = try evaluator.evaluate(gen, withReference: false)
            return (r.generated.fid, r.generated.classAccuracy)
        }
        let names = only.map { $0.split(separator: ",").map(String.init) } ?? m.unet.blockNames
        let params = Dictionary(uniqueKeysWithValues: m.unet.namedParameters.map { ($0.0, $0.1.count) })
        func blockParams(_ name: String) -> Int {
            params.filter { $0.key.hasPrefix(name + ".") }.reduce(0) { $0 + $1.value }
        }
        var fullMs = 0.0
        for _ in 0..<repeats { fullMs += forwardMs() / Double(repeats) }
        let (fid0, acc0) = timeOnly ? (Double.nan, Double.nan) : try score()
        print(String(format: "model %@: %d UNet parameters; %d steps, guidance %g, %d images per row; UNet forward at batch %d: %.2f ms (mean of %d)",
                     file, m.unet.parameterCount, steps, g, count, batch, fullMs, repeats))
        print("| block | parameters | time saved (ms, batch \(batch), median of \(repeats) paired runs) | share of forward | FID without | class acc without |")
        print("|---|---:|---:|---:|---:|---:|")
        print(String(format: "| (none removed) | %d | 0 | 0%% | %.1f | %.1f%% |", m.unet.parameterCount, fid0, acc0 * 100))
        for name in names {
            let (full, saved) = savedMs(name)
            var fid = Double.nan, acc = Double.nan
            if !timeOnly {
                m.unet.disabledBlocks = [name]
                (fid, acc) = try score()
                m.unet.disabledBlocks = []
            }
            print(String(format: "| %@ | %d | %.2f | %.0f%% | %.1f | %.1f%% |", name, blockParams(name), saved,
                         saved / full * 100, fid, acc * 100))
        }
    }
}
