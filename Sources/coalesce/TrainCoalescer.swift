import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train coalescer`: image autoencoder, text encoder, whitened PCA, then the coalescer
/// net trained against nearest pairs from a FAISS index (DESIGN.md).
struct TrainCoalescer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalescer",
        abstract: "Train the coalescer backend from scratch (autoencoder, text encoder, coalescer net).")

    @OptionGroup var data: DataOptions
    @Option(help: "Output directory (its name is the model's name).") var out = "models/coalescer"
    @Option(help: "Load the shared image autoencoder from this directory (`coalesce train autoencoder --out DIR`) instead of training one.")
    var autoencoder: String?
    @Option(help: "Stop every stage after N optimiser steps (smoke tests; 0 = as configured).") var maxSteps = 0
    @Option(help: "Start the net (and its latent projection) from this coalescer.safetensors (same autoencoder), e.g. to fine-tune it adversarially with --steps 0.")
    var initNet: String?
    @Option(help: "Retrain only the net, reusing the autoencoder and text encoder of this coalescer.safetensors.") var reuse: String?
    @Option(help: "Master seed (each stage derives its own).") var seed: UInt64 = 1
    @Option(help: "Autoencoder epochs.") var aeEpochs: Double = 2
    @Option(help: "Autoencoder channels (three, comma-separated).") var aeChannels = "16,32,48"
    @Option(help: "Autoencoder batch size.") var aeBatchSize = 64
    @Option(help: "Text encoder steps.") var textSteps = 600
    @Option(help: "Dimension of the whitened PCA space the search and the net run in (the latent has 196).") var pcaDim = 48
    @Option(help: "Search in only the first N of the PCA coordinates (default: all); the net still moves in all.") var searchDim: Int?
    @Option(help: "Coalescer net training steps.") var steps = 6000
    @Option(help: "Coalescer batch size.") var batchSize = 256
    @Option(help: "Peak learning rate of the coalescer net.") var lr: Float = 1e-3
    @Option(help: "desc_scale (weight of the description embedding in the index key); default: from measured spreads.") var descScale: Float?
    @Option(name: .customLong("p"), help: "Direction-loss exponent p in |u - normalize(x - R)|^p.") var p: Float = 0.5
    @Option(help: "Weight of the distance loss.") var distanceWeight: Float = 0.1
    @Option(help: "Fraction of starts drawn from the prior (the rest start near data).") var priorFraction: Float = 0.5
    @Option(help: "Fraction of unconditional (empty-prompt) steps.") var uncondFraction: Float = 0.1
    @Option(help: "Of the near-data starts, the fraction taken from the net's own first step (sampler-aware).") var selfStartFraction: Float = 0
    @Option(help: "FAISS index: Flat (exact), HNSW32, IVF256,Flat, ...") var index = "Flat"
    @Option(help: "Balanced-assignment variant: cap each item at this multiple of the mean number of returns, taking the next of 8 neighbours instead (0 = plain nearest neighbour, as the method states; 2 measured best).") var hubCap: Float = 2
    @Option(help: "Net hidden width.") var hidden = 512
    @Option(help: "Net hidden layers (plain MLP, --blocks 0).") var depth = 3
    @Option(help: "Residual blocks of the net (0 = plain MLP of --depth layers).") var blocks = 0
    @Flag(help: "Tell the net the noise level of its start (1 = prior draw).") var levelInput = false
    @Option(help: "Re-noising levels before steps 2, 3, ... at generation, comma-separated (empty = none).") var renoise = ""
    @Option(help: "Coupling of starts and targets: nearest (with --hub-cap) or matched (one-to-one within the minibatch).") var coupling = "nearest"
    @Option(help: "Candidates per query for the hub cap and the matched coupling.") var candidates = 8
    @Option(help: "Adversarial fine-tuning steps after the regression steps (0 = none).") var adversarialSteps = 0
    @Option(help: "Weight of the adversarial loss beside the coalescer losses.") var adversarialWeight: Float = 0.1
    @Option(help: "Learning rate of the adversarial phase (generator and discriminator).") var adversarialLr: Float = 2e-4
    @Option(help: "Also train the 2-step output adversarially, re-noising the first step to this level (0 = 1-step only).") var secondStepLevel: Float = 0
    @Option(help: "Weight of an auxiliary latent classifier's cross-entropy on the adversarial outputs (0 = none).") var classifierWeight: Float = 0
    @Option(help: "Samples per class for the latent probe after training (0 = skip).") var probePerClass = 100
    @Option(help: "Teacher coupling: prior starts take their targets from these noise-to-latent pairs (`coalesce train teacher-pairs`) instead of the search.")
    var teacherPairs: String?
    @Option(help: "With --teacher-pairs: of the near-data starts, the fraction that start near a pair's target (re-noised) and learn to return to it.")
    var teacherNearFraction: Float = 0
    @Option(help: "With --teacher-pairs made with --trajectory-every: of the teacher-coupled starts, the fraction that start at a trajectory point (needs --renoise-path variance_preserving).")
    var trajectoryFraction: Float = 0
    @Option(help: "How points are re-noised to a level (generation's second step, near-data starts): linear ((1 - t) y + t eps) or variance_preserving (the teacher's path; the level is its sigma).")
    var renoisePath = "linear"

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)  // report lines reach a redirected log as they happen
        _ = BLAS.load()
        noteBLASCore()
        var o = CoalescerPipelineOptions()
        o.outputDirectory = out
        o.reuse = reuse
        o.seed = seed
        o.trainLimit = data.trainLimit > 0 ? data.trainLimit : nil
        o.data = data.data
        o.size = data.size
        o.autoencoderPath = autoencoder
        o.maxSteps = maxSteps > 0 ? maxSteps : nil
        o.netBlocks = blocks
        o.initNet = initNet
        o.teacherPairs = teacherPairs
        guard teacherNearFraction >= 0, teacherNearFraction <= 1 else { throw ValidationError("--teacher-near-fraction must be in 0...1") }
        o.coalescer.teacherNearFraction = teacherNearFraction
        guard let path = CoalescerConfig.RenoisePath(rawValue: renoisePath) else {
            throw ValidationError("--renoise-path must be linear or variance_preserving, got '\(renoisePath)'")
        }
        guard trajectoryFraction >= 0, trajectoryFraction <= 1, trajectoryFraction == 0 || path == .variancePreserving else {
            throw ValidationError("--trajectory-fraction must be in 0...1 and needs --renoise-path variance_preserving")
        }
        o.coalescer.renoisePath = path
        o.coalescer.trajectoryFraction = trajectoryFraction
        o.levelInput = levelInput
        o.renoiseLevels = try renoise.split(separator: ",").map {
            guard let v = Float($0.trimmingCharacters(in: .whitespaces)), v >= 0, v < 1 else {
                throw ValidationError("--renoise takes levels in [0, 1), got '\(renoise)'")
            }
            return v
        }
        guard let cp = CoalescerTrainingOptions.Coupling(rawValue: coupling) else {
            throw ValidationError("--coupling must be nearest or matched, got '\(coupling)'")
        }
        o.coalescer.coupling = cp
        o.coalescer.candidates = candidates
        o.coalescer.adversarialSteps = adversarialSteps
        o.coalescer.adversarialWeight = adversarialWeight
        o.coalescer.adversarialLearningRate = adversarialLr
        o.coalescer.secondStepLevel = secondStepLevel
        o.coalescer.classifierWeight = classifierWeight
        o.autoencoder.epochs = aeEpochs
        o.autoencoder.batchSize = aeBatchSize
        let ch = aeChannels.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ch.count == 3, ch.allSatisfy({ $0 > 0 }) else { throw ValidationError("--ae-channels needs three positive sizes, got '\(aeChannels)'") }
        o.autoencoderConfig.channels = ch
        o.textEncoder.steps = textSteps
        o.pcaDim = pcaDim
        o.searchDim = searchDim
        o.coalescer.steps = steps
        o.coalescer.batchSize = batchSize
        o.coalescer.learningRate = lr
        o.coalescer.descScale = descScale
        o.coalescer.directionExponent = p
        o.coalescer.distanceWeight = distanceWeight
        o.coalescer.priorFraction = priorFraction
        o.coalescer.unconditionalFraction = uncondFraction
        o.coalescer.index = index
        o.coalescer.hubCap = hubCap > 0 && o.coalescer.coupling == .nearest ? hubCap : nil
        o.coalescer.selfStartFraction = selfStartFraction
        o.netHidden = hidden
        o.netDepth = depth
        o.probePerClass = probePerClass
        print("command: " + CommandLine.arguments.joined(separator: " "))
        _ = try CoalescerPipeline.run(o)
    }
}
