import ArgumentParser
import Foundation
import Models
import Tensor
import Training

/// `coalesce train coalescer`: image autoencoder, text encoder, whitened PCA, then the coalescer
/// net trained against nearest pairs from a FAISS index (DESIGN.md, issue 4).
struct TrainCoalescer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalescer",
        abstract: "Train the coalescer backend from scratch (autoencoder, text encoder, coalescer net).")

    @Option(help: "Output directory.") var out = "models/coalescer"
    @Option(help: "Retrain only the net, reusing the autoencoder and text encoder of this coalescer.safetensors.") var reuse: String?
    @Option(help: "Master seed (each stage derives its own).") var seed: UInt64 = 1
    @Option(help: "Use only the first N training images (0 = all).") var trainLimit = 0
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
    @Option(help: "Net hidden layers.") var depth = 3
    @Option(help: "Samples per class for the latent probe after training (0 = skip).") var probePerClass = 100

    func run() throws {
        setvbuf(stdout, nil, _IOLBF, 0)  // report lines reach a redirected log as they happen
        _ = BLAS.load()
        var o = CoalescerPipelineOptions()
        o.outputDirectory = out
        o.reuse = reuse
        o.seed = seed
        o.trainLimit = trainLimit > 0 ? trainLimit : nil
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
        o.coalescer.hubCap = hubCap > 0 ? hubCap : nil
        o.coalescer.selfStartFraction = selfStartFraction
        o.netHidden = hidden
        o.netDepth = depth
        o.probePerClass = probePerClass
        print("command: " + CommandLine.arguments.joined(separator: " "))
        _ = try CoalescerPipeline.run(o)
    }
}
