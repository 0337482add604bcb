import ArgumentParser
import Engine
import Foundation
import Models
import Tensor

/// `coalesce bench unet`: the time of one call of a bundled model's denoiser (the `UNet` of
/// `latent-diffusion` and `distilled-unet`, the `NestedUNet` of `nested-unet`; for a coalescer,
/// one jump of its net and the decode of the end point) on fixed seeded
/// inputs, as the samplers call it, or of one training step; with `--dump`, the inputs and the
/// output of one call as float32 files, so that another implementation of the same network
/// (scripts/peers/unet_peer.py: PyTorch and ONNX Runtime) can show it computes the same function
/// before its times are compared with ours.
struct BenchUNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "Time one denoiser call (or training step) of a bundled model: ms, GFLOP/s, parameters.")

    @Option(help: "Model name in the models directory (latent-diffusion, distilled-unet, nested-unet, coalescer: one jump and the decode) or a model directory.")
    var model = "latent-diffusion"
    @Option(help: "Models directory.") var modelsDir = "models"
    @Option(help: "Images per call.") var batch = 2
    @Flag(help: "Time a training step (forward, MSE against a fixed target, backward, gradient clipping, AdamW) instead of inference.")
    var train = false
    @Option(help: "Seconds of timed calls per round (after one warm-up call; at least 2 calls a round).") var seconds = 3.0
    @Option(help: "Rounds.") var rounds = 1
    @Option(help: "Seed of the inputs (and of the training target).") var seed: UInt64 = 1
    @Option(help: "Write the result as a JSON object to this file.") var json: String?
    @Option(help: "Write the inputs and the output of one inference call to this directory (float32 .bin files and meta.json), then time as usual.")
    var dump: String?
    @Flag(help: "Only dump (with --dump): no timing.") var dumpOnly = false
    @Flag(help: "After timing, run one more call (with --train: one training step) op by op and print where its time goes.")
    var profile = false

    func validate() throws {
        guard batch >= 1, rounds >= 1, seconds >= 0 else { throw ValidationError("need --batch >= 1, --rounds >= 1, --seconds >= 0") }
        if dumpOnly && dump == nil { throw ValidationError("--dump-only needs --dump DIR") }
    }

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        let (directory, backend, weights) = try locate()
        let denoiser = try BenchDenoiser(backend: backend, weights: weights, batch: batch, seed: seed)
        if train && denoiser.coalescer != nil {
            throw ValidationError("--train: a coalescer's training step is not timed here (inference only: one jump and the decode)")
        }
        if let dump { try denoiser.dump(to: dump, model: model, weights: weights) }
        if dumpOnly { print("wrote \(dump!)"); return }
        // The optimiser's state (two buffers the size of the weights) only where a step is timed.
        let step = train ? denoiser.trainingStep() : nil
        let call: () -> Void = step.map { step in { _ = step() } } ?? { _ = denoiser.infer() }
        call()  // warm-up: buffers allocated, weights packed
        var times: [Double] = []
        for _ in 0..<rounds {
            var spent = 0.0, n = 0
            while n < 2 || spent < seconds {
                let t0 = DispatchTime.now().uptimeNanoseconds
                call()
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                times.append(dt); spent += dt; n += 1
            }
        }
        let sorted = times.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        let gflop = Double(denoiser.multiplyAddsPerImage * batch) * 2 * (train ? 3 : 1) / 1e9
        let result = BenchUNetResult(
            model: model, batch: batch, mode: train ? "train" : "inference", threads: Runtime.threads,
            msMedian: median * 1e3, msMin: sorted[0] * 1e3, calls: times.count, rounds: rounds,
            gflop: gflop, gflops: gflop / median, params: denoiser.parameterCount,
            timesMs: times.map { $0 * 1e3 }, kernels: Tensor.directKernelISA, directory: directory)
        print(String(format: "%@ %@, batch %d, %d threads: %.3f ms per call (median; min %.3f) over %d calls in %d round%@; %.3f GFLOP per call, %.1f GFLOP/s; %d parameters",
                     model, result.mode, batch, result.threads, result.msMedian, result.msMin, result.calls, rounds, rounds == 1 ? "" : "s",
                     gflop, result.gflops, result.params))
        if profile { printProfile(denoiser, step: step) }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
    }

    /// One more call with `OpProfiler` on: forward, backward and optimiser time, then the ops
    /// by total time (forward time by gaps, so the model's glue lands on the next op).
    func printProfile(_ denoiser: BenchDenoiser, step: (() -> (passes: Double, optimizer: Double))?) {
        OpProfiler.enabled = true
        defer { OpProfiler.enabled = false }
        OpProfiler.reset()
        if let step {
            let phases = step()
            print(String(format: "profiled step: forward and backward of both halves %.1f ms, clip and AdamW %.1f ms",
                         phases.passes * 1e3, phases.optimizer * 1e3))
        } else {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = denoiser.infer()
            print(String(format: "profiled call: %.1f ms", Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6))
        }
        print("op                      calls   forward ms  backward ms")
        for row in OpProfiler.report().prefix(20) {
            let name = row.op.count < 22 ? row.op + String(repeating: " ", count: 22 - row.op.count) : row.op
            print(name + String(format: "  %6d   %10.2f  %11.2f", row.calls, row.forward * 1e3, row.backward * 1e3))
        }
    }

    /// The model directory, its backend and its weights file.
    func locate() throws -> (directory: String, backend: String, weights: String) {
        var isDir: ObjCBool = false
        let directory = model.contains("/") && FileManager.default.fileExists(atPath: model, isDirectory: &isDir) && isDir.boolValue
            ? model : try ModelRepository(root: modelsDir).directory(for: model)
        let repo = ModelRepository(root: (directory as NSString).deletingLastPathComponent)
        let config = try repo.config(for: (directory as NSString).lastPathComponent)
        guard let file = config.weights else { throw ValidationError("\(directory)/config.json names no weights file") }
        return (directory, config.backend, directory + "/" + file)
    }
}

/// What `coalesce bench unet --json` writes (milliseconds; GFLOP per call as `UNetFLOPs` counts).
struct BenchUNetResult: Codable {
    var model: String
    var batch: Int
    var mode: String
    var threads: Int
    var msMedian: Double
    var msMin: Double
    var calls: Int
    var rounds: Int
    var gflop: Double
    var gflops: Double
    var params: Int
    /// Every timed call, in order.
    var timesMs: [Double]
    /// The kernels' instruction set (avx512, avx2, scalar).
    var kernels: String
    var directory: String

    enum CodingKeys: String, CodingKey {
        case model, batch, mode, threads, msMedian = "ms_median", msMin = "ms_min", calls, rounds, gflop, gflops, params
        case timesMs = "times_ms", kernels, directory
    }
}
