import ArgumentParser
import BackendKit
import Foundation
import ImageIO
import Models
import Tensor
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `coalesce bench generate`: generation speed of one model at one batch size: images/s, latency
/// per call (p50, p99) and the process's peak resident memory.
struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generation speed: images/s, latency p50/p99 per call, peak memory (ru_maxrss).")

    @Option(help: "Generator name (see `coalesce eval --list`).") var model = "noise"
    @Option(help: "Network evaluations per image.") var steps = 1
    @Option(help: "Images per call.") var batch = 64
    @Option(help: "Seconds to keep timing (after one warm-up call).") var seconds = 5.0
    @Option(help: "Minimum number of timed calls.") var minCalls = 10
    @Option(help: "Maximum number of timed calls.") var maxCalls = 1000
    @Option(help: "Prompt (default: cycles through the 10 class prompts).") var prompt: String?
    @Option(help: "Models directory (generator checkpoints).") var modelsDir = "models"
    @Flag(help: "Print the result as JSON.") var json = false
    @Flag(help: "No progress line (it is drawn only on a terminal, after the first second).") var quiet = false
    @Flag(help: "Where the time of an image goes (text encoder, UNet calls, guidance and DDIM arithmetic, decode, 8-bit and PNG), for latent-diffusion and distilled-unet models: the model runs in this process, its directory's config.json applied, with a clock per stage.")
    var profile = false

    func run() throws {
        BLAS.load()
        GeneratorRegistration.registerAll(modelsDirectory: modelsDir)
        guard batch >= 1, steps >= 0, minCalls >= 1, maxCalls >= minCalls else {
            throw ValidationError("need --batch >= 1, --steps >= 0, 1 <= --min-calls <= --max-calls")
        }
        if profile { return try runProfile() }
        let generator = try GeneratorRegistry.make(model, context: GeneratorContext(modelsDirectory: modelsDir))
        let prompts = prompt.map { [$0] } ?? EvaluationPrompts.classPrompts
        let expected = batch * generator.imageChannels * generator.imageSide * generator.imageSide
        func call(_ i: Int) throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = try generator.generate(prompt: prompts[i % prompts.count], seed: UInt64(i), steps: steps, count: batch)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            guard out.count == expected else {
                throw TrainingError.generation("\(model) returned \(out.count) bytes, expected \(expected)")
            }
            return dt
        }
        let progress = TerminalProgress(label: "bench \(model)", quiet: quiet)
        _ = try call(0)  // warm-up: weights paged in, caches and buffers allocated
        var latencies: [Double] = []
        var spent = 0.0
        while latencies.count < maxCalls && (latencies.count < minCalls || spent < seconds) {
            let dt = try call(latencies.count + 1)
            latencies.append(dt)
            spent += dt
            // Done when both the seconds and the minimum calls are (or the maximum calls is).
            let f = max(min(spent / max(seconds, 1e-9), Double(latencies.count) / Double(minCalls)),
                        Double(latencies.count) / Double(maxCalls))
            progress.update(fraction: f, detail: "\(latencies.count) calls")
        }
        progress.finish()
        let result = BenchGenerateResult(
            model: model, steps: steps, batch: batch, calls: latencies.count,
            imagesPerSecond: Double(batch * latencies.count) / spent,
            latencyP50: percentile(latencies, 0.50), latencyP99: percentile(latencies, 0.99),
            latencyMean: spent / Double(latencies.count),
            peakMemoryMiB: peakResidentMiB(), blasCore: BLAS.coreName, threads: Runtime.threads)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print("model \(model), \(steps) steps, batch \(batch), \(latencies.count) timed calls (BLAS \(result.blasCore), \(result.threads) threads)")
            print(String(format: "images/s %.1f   latency p50 %.2f ms  p99 %.2f ms  mean %.2f ms   peak memory %.1f MiB",
                         result.imagesPerSecond, result.latencyP50 * 1e3, result.latencyP99 * 1e3,
                         result.latencyMean * 1e3, result.peakMemoryMiB))
        }
    }

    /// `--profile`: the sampler in process with `StageClock` on; per image, each stage's share of a call.
    func runProfile() throws {
        let directory = modelsDir + "/" + model
        let config = try ModelDirectoryConfig(directory: directory)
        guard let backend = config.backend, backend == "latent-diffusion" || backend == "distilled-unet" else {
            throw ValidationError("--profile takes a latent-diffusion or distilled-unet model; \(model) is \(config.backend ?? "not a model directory")")
        }
        let loaded = try LatentDiffusionBackendModel(backend: backend, directory: directory, config: config,
                                                     defaultWeights: backend + ".safetensors")
        let steps = self.steps > 0 ? self.steps : loaded.description.defaultSteps
        let prompts = prompt.map { [$0] } ?? EvaluationPrompts.classPrompts
        let side = loaded.description.height, channels = loaded.description.channels
        let guidance = loaded.description.defaultGuidance ?? 1
        func call(_ i: Int) throws {
            let px = try loaded.generate([SwiftBackendRequest(prompt: prompts[i % prompts.count], seed: UInt64(i), count: batch,
                                                              steps: steps, guidance: guidance)],
                                         progress: { _, _ in true })
            let bytes = StageClock.measure("8-bit") { EightBit.pixels(px) }
            let n = side * side * channels
            try StageClock.measure("PNG") {
                for j in 0..<batch {
                    let image = PNG.interleave(bytes[(j * n)..<((j + 1) * n)], width: side, height: side, channels: channels)
                    _ = try PNG.encode(pixels: image[...], width: side, height: side, channels: channels)
                }
            }
        }
        try call(0)  // warm-up
        StageClock.reset()
        StageClock.enabled = true
        defer { StageClock.enabled = false }
        var calls = 0
        var spent = 0.0
        while calls < maxCalls && (calls < minCalls || spent < seconds) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try call(calls + 1)
            spent += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            calls += 1
        }
        let images = Double(calls * batch)
        let stages = StageClock.report()
        let other = spent - stages.reduce(0) { $0 + $1.seconds }
        let rows = stages.map { ($0.stage, $0.seconds) } + [("other (sampler set-up, request handling)", other)]
        if json {
            let out: [String: Any] = ["model": model, "steps": steps, "batch": batch, "calls": calls, "threads": Runtime.threads,
                                      "ms_per_image": spent / images * 1e3,
                                      "stages_ms_per_image": Dictionary(uniqueKeysWithValues: rows.map { ($0.0, $0.1 / images * 1e3) })]
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("model \(model) (\(backend), in process), \(steps) steps, guidance \(guidance), batch \(batch), "
              + "\(calls) calls, \(Runtime.threads) threads")
        func pad(_ s: String) -> String { s.padding(toLength: 42, withPad: " ", startingAt: 0) }
        print(pad("stage") + "   ms/image   share")
        for (stage, s) in rows {
            print(pad(stage) + String(format: " %10.3f %6.1f%%", s / images * 1e3, 100 * s / max(spent, 1e-12)))
        }
        print(pad("total") + String(format: " %10.3f", spent / images * 1e3))
    }

    /// Nearest-rank percentile (q in 0...1) of the values.
    func percentile(_ values: [Double], _ q: Double) -> Double {
        let s = values.sorted()
        let rank = Int((q * Double(s.count)).rounded(.up))
        return s[max(0, min(s.count - 1, rank - 1))]
    }

    /// Peak resident set size of this process (getrusage ru_maxrss, kilobytes on Linux).
    func peakResidentMiB() -> Double {
        var usage = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return .nan }
        return Double(usage.ru_maxrss) / 1024
    }
}

/// What `coalesce bench generate --json` prints (seconds for latencies).
struct BenchGenerateResult: Codable {
    var model: String
    var steps: Int
    var batch: Int
    var calls: Int
    var imagesPerSecond: Double
    var latencyP50: Double
    var latencyP99: Double
    var latencyMean: Double
    var peakMemoryMiB: Double
    var blasCore: String
    var threads: Int

    enum CodingKeys: String, CodingKey {
        case model, steps, batch, calls, imagesPerSecond = "images_per_second"
        case latencyP50 = "latency_p50_s", latencyP99 = "latency_p99_s", latencyMean = "latency_mean_s"
        case peakMemoryMiB = "peak_memory_mib", blasCore = "blas_core", threads
    }
}
