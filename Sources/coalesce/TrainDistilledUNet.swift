import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train distilled-unet`: SnapFusion-style student from the latent-diffusion teacher.
struct TrainDistilledUNet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distilled-unet",
        abstract: "Distil the latent-diffusion teacher into a smaller few-step UNet (progressive distillation, CFG-aware; resumable).")

    @OptionGroup var data: DataOptions
    @Option(help: "The trained teacher (model directory or file).") var teacher = "models/latent-diffusion"
    @Option(help: "Output model directory.") var out = "models/distilled-unet"
    @Option(help: "Seed for initialisation and batches.") var seed: UInt64 = 3
    @Option(help: "Steps the teacher samples with in the first phase (each phase halves them).") var teacherSteps = 32
    @Option(help: "The student's final step count.") var finalSteps = 8
    @Option(help: "Optimiser steps per phase.") var stepsPerPhase = 1500
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Peak learning rate per phase.") var lr: Float = 2e-4
    @Option(help: "Student UNet channels per level (default: the teacher's).") var channels: String?
    @Option(help: "Student residual blocks per level (default: the teacher's).") var layersPerLevel: Int?
    @Option(help: "Student self/cross-attention per level, 0/1 list (default: the teacher's).") var attention: String?
    @Option(help: "Student middle self-attention: 0/1 (default: the teacher's).") var midAttention: Int?
    @Option(help: "Fraction of batches with a guided teacher target (CFG-aware loss).") var guidedFraction: Float = 0.3
    @Option(help: "Guidance range of those batches, lo,hi.") var guidanceRange = "1,5"
    @Option(help: "Default guidance stored in the student (default: the teacher's).") var guidance: Float?
    @Option(help: "Guide only at noise fractions t/(T-1) in lo,hi (e.g. 0,0.7), in the guided targets and in the student's config (default: every step).")
    var guidanceInterval: String?

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        BLAS.load()
        noteBLASCore()
        var o = DistillationOptions()
        o.data = data.data; o.size = data.size
        if data.trainLimit > 0 { o.trainLimit = data.trainLimit }
        o.teacherPath = teacher; o.outputDirectory = out; o.seed = seed
        o.teacherSteps = teacherSteps; o.finalSteps = finalSteps; o.stepsPerPhase = stepsPerPhase
        o.batchSize = batchSize; o.learningRate = lr; o.guidedFraction = guidedFraction; o.defaultGuidance = guidance
        let range = guidanceRange.split(separator: ",").compactMap { Float($0) }
        guard range.count == 2, range[0] >= 0, range[0] <= range[1] else { throw ValidationError("--guidance-range must be lo,hi with 0 <= lo <= hi") }
        o.guidanceRange = range[0]...range[1]
        if let guidanceInterval {
            let i = guidanceInterval.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard i.count == 2, (try? ClassifierFreeGuidance.validate(interval: i)) != nil else {
                throw ValidationError("--guidance-interval must be lo,hi with 0 <= lo < hi <= 1, got \(guidanceInterval)")
            }
            o.guidanceInterval = i[0]...i[1]
        }
        guard stepsPerPhase >= 1, batchSize >= 1, lr > 0, finalSteps >= 1, (0...1).contains(guidedFraction) else {
            throw ValidationError("--steps-per-phase, --batch-size, --lr, --final-steps must be positive; --guided-fraction in 0...1")
        }
        if channels != nil || layersPerLevel != nil || attention != nil || midAttention != nil {
            let file = teacher.hasSuffix(".safetensors") ? teacher : teacher + "/latent-diffusion.safetensors"
            var u = try LatentDiffusionModel.load(path: file).config.unet
            if let channels { u.channels = try parseSizes(channels, name: "--channels", count: nil) }
            if let layersPerLevel { u.layersPerLevel = layersPerLevel }
            if let attention { u.attentionLevels = try parseFlags(attention, count: u.channels.count, name: "--attention") }
            if let midAttention { u.midAttention = midAttention != 0 }
            o.student = u
        }
        _ = try DistillationTrainer.train(o)
    }
}
