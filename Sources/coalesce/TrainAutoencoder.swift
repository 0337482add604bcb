import ArgumentParser
import Foundation
import ImageIO
import Models
import Tensor
import Training

/// `coalesce train autoencoder`: the shared image autoencoder every latent backend generates in.
struct TrainAutoencoder: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoencoder",
        abstract: "Train the shared image autoencoder (VAE) that latent backends load with --autoencoder DIR.")

    @OptionGroup var data: DataOptions
    @Option(help: "Output directory (autoencoder.safetensors, autoencoder.json, training-report.txt, reconstructions.png).")
    var out = "models/autoencoder"
    @Option(help: "Seed for initialisation and shuffling.") var seed: UInt64 = 11
    @Option(help: "Epochs over the training set.") var epochs: Double = 8
    @Option(help: "Stop after N optimiser steps (smoke tests; 0 = all epochs).") var maxSteps = 0
    @Option(help: "Batch size.") var batchSize = 64
    @Option(help: "Peak learning rate (AdamW, warmup then cosine).") var lr: Float = 2e-3
    @Option(help: "Encoder channels at full, half and quarter size.") var channels = "32,64,128"
    @Option(help: "Decoder channels at full, half and quarter size (the decoder runs at generation time).") var decoderChannels = "16,32,64"
    @Option(help: "Latent channels at size/4 x size/4.") var latentChannels = 8
    @Option(help: "Weight of the KL term (per image, beside the summed squared error).") var klWeight: Float = 0.005
    @Option(help: "Weight of the patch discriminator's loss (0 = none).") var adversarialWeight: Float = 0
    @Option(help: "Fraction of training after which the discriminator is switched on.") var adversarialStart: Double = 0.5
    @Option(help: "Start from this trained autoencoder (directory or file) instead of a new one (its sizes are kept).") var initFrom: String?
    @Flag(help: "Train only the decoder: the encoder, the latent space and latent_scale stay as they are.") var decoderOnly = false
    @Option(help: "Classifier (directory or model.safetensors) whose convolution activations the perceptual term compares; not one the evaluation scores with.")
    var perceptual: String?
    @Option(help: "Weight of the perceptual term (0 = none).") var perceptualWeight: Float = 0

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        noteBLASCore()
        let t0 = Date()
        let (train, test) = try data.load()
        var cfg = AutoencoderConfig()
        cfg.imageSize = train.width
        cfg.imageChannels = train.channels
        cfg.channels = try parseSizes(channels, name: "--channels")
        cfg.decoderChannels = try parseSizes(decoderChannels, name: "--decoder-channels")
        cfg.latentChannels = latentChannels
        cfg.klWeight = klWeight
        var rng = RandomGenerator(seed: seed)
        let ae = try initFrom.map { try AutoencoderArtifact.load(path: $0) } ?? ImageAutoencoder(config: cfg, rng: &rng)
        cfg = ae.config
        if decoderOnly && initFrom == nil { throw ValidationError("--decoder-only needs --init-from (a trained encoder)") }
        var o = AutoencoderTrainingOptions()
        o.epochs = epochs
        o.maxSteps = maxSteps > 0 ? maxSteps : nil
        o.batchSize = batchSize
        o.learningRate = lr
        o.adversarialWeight = adversarialWeight
        o.adversarialStart = adversarialStart
        o.decoderOnly = decoderOnly
        guard perceptualWeight.isFinite, perceptualWeight >= 0 else { throw ValidationError("--perceptual-weight must be a finite number >= 0") }
        guard (perceptualWeight > 0) == (perceptual != nil) else {
            throw ValidationError("--perceptual and --perceptual-weight go together")
        }
        o.perceptualWeight = perceptualWeight
        if let p = perceptual {
            let resolved = URL(fileURLWithPath: Eval.checkpoint(p)).standardizedFileURL.resolvingSymlinksInPath().path
            for scored in ["models/classifier", "models/classifier-b"]
            where URL(fileURLWithPath: Eval.checkpoint(scored)).standardizedFileURL.resolvingSymlinksInPath().path == resolved {
                throw ValidationError("\(p) is a feature network `coalesce eval` scores with; a perceptual loss in it would train towards the yardstick")
            }
        }
        let perceptualNet = try perceptual.map { try Classifier.load(path: Eval.checkpoint($0)) }
        o.seed = seed &+ 1
        var lines = ["command: coalesce " + CommandLine.arguments.dropFirst().joined(separator: " "),
                     "data: \(data.data), \(train.count) training and \(test.count) test images of "
                        + "\(train.width)x\(train.height)x\(train.channels); seed \(seed)",
                     "autoencoder: \(ae.parameterCount) parameters, latent \(cfg.latentChannels)x\(cfg.latentSide)x\(cfg.latentSide) "
                        + "(\(cfg.latentDim) values); encoder \(cfg.channels), decoder \(cfg.decoderWidths); "
                        + "BLAS \(BLAS.coreName), \(Runtime.threads) threads"]
        lines.forEach { print($0) }
        let report = try AutoencoderTrainer.train(ae, train: train, test: test, options: o, perceptual: perceptualNet)
        lines.append(report.description)
        try AutoencoderArtifact.save(ae, directory: out)
        // Reconstructions: first row test images, second row their reconstructions (x3).
        let n = min(16, test.count)
        if n > 0 {
            let grid = try GradMode.withDisabled { () throws -> [UInt8] in
                let x = Tensor(Array(floatPixels(test.slice(0..<n))), shape: [n, cfg.pixelCount])
                let r = try ae.decode(try ae.encode(x))
                return (0..<(n * cfg.pixelCount)).map { i in test.pixels[i] } + EightBit.pixels(r.array)
            }
            let images = LabeledImages(count: 2 * n, width: cfg.imageSize, height: cfg.imageSize, channels: cfg.imageChannels,
                                       pixels: grid, labels: [Int](repeating: 0, count: 2 * n))
            try ImageGrid.write(images, columns: n, scale: 3, to: out + "/reconstructions.png")
        }
        lines.append(String(format: "total %.0fs; wrote %@/{%@,%@,reconstructions.png}", Date().timeIntervalSince(t0), out,
                            AutoencoderArtifact.weightsFile, AutoencoderArtifact.configFile))
        print(lines.last!)
        try (lines.joined(separator: "\n") + "\n").write(toFile: out + "/training-report.txt", atomically: true, encoding: .utf8)
    }
}

/// "a,b,c" -> [a, b, c]: `count` positive sizes (nil: one or more).
func parseSizes(_ s: String, name: String, count: Int? = 3) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false)
    let v = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard v.count == parts.count, !v.isEmpty, count == nil || v.count == count, v.allSatisfy({ $0 > 0 }) else {
        throw ValidationError("\(name) needs \(count.map { "\($0)" } ?? "one or more") positive sizes, got '\(s)'")
    }
    return v
}
