import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train nested-unet`: Matryoshka Diffusion in pixel space, trained progressively
/// (phase 1: the inner UNet alone at the low resolution; phase 2: the nested network).
struct TrainNestedUNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nested-unet",
        abstract: "Train the nested-UNet pixel diffusion model (phase 1 inner UNet at low resolution, phase 2 nested; resumable).")

    @OptionGroup var data: DataOptions
    @Option(help: "Output model directory (resumes from its checkpoints if present).") var out = "models/nested-unet"
    @Option(help: "Seed for initialisation and batches.") var seed: UInt64 = 1
    @Option(help: "Phase 1 optimiser steps (inner UNet alone; 0 = skip).") var phase1Steps = 1500
    @Option(help: "Phase 2 optimiser steps (nested; with --plain: the plain UNet's steps).") var phase2Steps = 1500
    @Option(help: "Phase 1 limit in CPU seconds of training steps (0 = steps only).") var phase1Seconds: Double = 0
    @Option(help: "Phase 2 limit in CPU seconds of training steps (0 = steps only).") var phase2Seconds: Double = 0
    @Option(help: "Batch size.") var batchSize = 32
    @Option(help: "Peak learning rate (AdamW, warmup then cosine).") var lr: Float = 1e-3
    @Option(help: "Outer (high-resolution) UNet channels per level; its last level is the low resolution.") var outerChannels = "32,64"
    @Option(help: "Outer self/cross-attention per level: 0/1 list.") var outerAttention = "0,0"
    @Option(help: "Outer residual blocks per level.") var outerLayers = 1
    @Option(help: "Inner (low-resolution) UNet channels per level.") var innerChannels = "64,128"
    @Option(help: "Inner self/cross-attention per level: 0/1 list.") var innerAttention = "0,1"
    @Option(help: "Inner residual blocks per level.") var innerLayers = 1
    @Flag(help: "Train a plain single-resolution UNet (the outer settings, with a middle block) instead: the baseline.") var plain = false
    @Option(help: "Schedule shift exponent p: SNR / (r / r_lowest)^p.") var shiftPower: Double = 1
    @Option(help: "Loss weights, highest resolution first.") var lossWeights = "1,1"
    @Option(help: "Fraction of rows trained without their condition (classifier-free guidance).") var conditionDropout: Float = 0.1
    @Option(help: "Default guidance scale stored in the model.") var guidance: Float = 3
    @Option(help: "Checkpoint every N steps.") var checkpointEvery = 100
    @Option(help: "Sample grid every N steps (0 = only at the end of each phase).") var sampleEvery = 0
    @Option(help: "Save the EMA weights as a servable model every N CPU seconds of a phase (0 = none).") var snapshotEvery: Double = 0

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        noteBLASCore()
        var o = NestedUNetTrainingOptions()
        o.data = data.data; o.size = data.size
        if data.trainLimit > 0 { o.trainLimit = data.trainLimit }
        o.outputDirectory = out; o.seed = seed
        o.phase1Steps = plain ? 0 : phase1Steps; o.phase2Steps = phase2Steps
        o.phase1Seconds = phase1Seconds > 0 ? phase1Seconds : nil
        o.phase2Seconds = phase2Seconds > 0 ? phase2Seconds : nil
        o.batchSize = batchSize; o.learningRate = lr
        o.outer.channels = try parseSizes(outerChannels, name: "--outer-channels", count: nil)
        o.outer.attentionLevels = try parseFlags(outerAttention, count: o.outer.channels.count, name: "--outer-attention")
        o.outer.layersPerLevel = outerLayers
        o.inner.channels = try parseSizes(innerChannels, name: "--inner-channels", count: nil)
        o.inner.attentionLevels = try parseFlags(innerAttention, count: o.inner.channels.count, name: "--inner-attention")
        o.inner.layersPerLevel = innerLayers
        o.plain = plain
        o.shiftPower = shiftPower
        let w = lossWeights.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !w.isEmpty, w.allSatisfy({ $0 != nil && $0! >= 0 }) else {
            throw ValidationError("--loss-weights must be comma-separated non-negative numbers")
        }
        o.lossWeights = w.map { $0! }
        o.conditionDropout = conditionDropout; o.defaultGuidance = guidance
        o.checkpointEvery = max(1, checkpointEvery); o.sampleEvery = max(0, sampleEvery); o.snapshotEvery = max(0, snapshotEvery)
        guard phase2Steps >= 1, phase1Steps >= 0, batchSize >= 1, lr > 0, (0...1).contains(conditionDropout) else {
            throw ValidationError("--phase2-steps, --batch-size and --lr must be positive, --phase1-steps >= 0, --condition-dropout in 0...1")
        }
        _ = try NestedUNetTrainer.train(o)
    }
}
