import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train latent-diffusion`: the many-step teacher (DDIM, v-prediction, CFG) in the
/// shared autoencoder's latent space.
struct TrainLatentDiffusion: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latent-diffusion",
        abstract: "Train the latent diffusion teacher (UNet on the shared autoencoder's latents; resumable).")

    @OptionGroup var data: DataOptions
    @Option(help: "The shared autoencoder (directory or file).") var autoencoder = "models/autoencoder"
    @Option(help: "Output model directory (resumes from its checkpoint.safetensors if present).") var out = "models/latent-diffusion"
    @Option(help: "Seed for initialisation and batches.") var seed: UInt64 = 1
    @Option(help: "Optimiser steps.") var steps = 3000
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Peak learning rate (AdamW, warmup then cosine).") var lr: Float = 1e-3
    @Option(help: "UNet channels per level.") var channels = "64,128"
    @Option(help: "Self-attention (and cross-attention) per level: 0/1 list.") var attention = "0,1"
    @Option(help: "Residual blocks per level.") var layersPerLevel = 2
    @Option(help: "Fraction of rows trained without their condition (classifier-free guidance).") var conditionDropout: Float = 0.1
    @Option(help: "Default guidance scale stored in the model.") var guidance: Float = 3
    @Option(help: "Checkpoint every N steps.") var checkpointEvery = 250
    @Option(help: "Sample grid every N steps (0 = none).") var sampleEvery = 1000
    @Option(help: "Warmup steps before the cosine decay of the learning rate.") var warmupSteps = 100
    @Option(name: .customLong("min-snr-gamma"), help: "Min-SNR-γ loss weighting: each row's loss times min(SNR, γ) / (SNR + 1) (e.g. 5; 0 = off, every row alike).") var minSNRGamma: Float = 0
    @Option(help: "Continue a trained teacher: its weights file (autoencoder, text encoder, UNet and settings are its own; --autoencoder, --channels, --attention, --layers-per-level and --guidance are not used).") var initFrom: String?
    @Option(help: "Keep a copy of the checkpoint every N steps in <out>/checkpoints/<step>/ (0 = none; for scripts/teacher-curve.sh).") var keepCheckpointsEvery = 0

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        noteBLASCore()
        var o = LatentDiffusionTrainingOptions()
        o.data = data.data; o.size = data.size
        if data.trainLimit > 0 { o.trainLimit = data.trainLimit }
        o.autoencoderPath = autoencoder; o.outputDirectory = out; o.seed = seed
        o.steps = steps; o.batchSize = batchSize; o.learningRate = lr
        o.unet.channels = try parseSizes(channels, name: "--channels", count: nil)
        o.unet.attentionLevels = try parseFlags(attention, count: o.unet.channels.count, name: "--attention")
        o.unet.layersPerLevel = layersPerLevel
        o.conditionDropout = conditionDropout; o.defaultGuidance = guidance
        o.checkpointEvery = max(1, checkpointEvery); o.sampleEvery = sampleEvery
        o.keepCheckpointsEvery = max(0, keepCheckpointsEvery)
        o.warmupSteps = max(0, warmupSteps)
        o.initFrom = initFrom
        guard minSNRGamma >= 0, minSNRGamma.isFinite else { throw ValidationError("--min-snr-gamma must be >= 0") }
        o.minSNRGamma = minSNRGamma
        guard steps >= 1, batchSize >= 1, lr > 0, (0...1).contains(conditionDropout) else {
            throw ValidationError("--steps, --batch-size and --lr must be positive, --condition-dropout in 0...1")
        }
        _ = try LatentDiffusionTrainer.train(o)
    }
}

/// "0,1,1" -> [false, true, true] with the expected count.
func parseFlags(_ text: String, count: Int, name: String) throws -> [Bool] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    guard parts.count == count, parts.allSatisfy({ $0 == "0" || $0 == "1" }) else {
        throw ValidationError("\(name) must be \(count) comma-separated 0/1 values, got \"\(text)\"")
    }
    return parts.map { $0 == "1" }
}
