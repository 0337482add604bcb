import ArgumentParser
import Foundation
import ImageIO
import Models
import Tensor
import Training

/// `coalesce train classifier`: the Fashion-MNIST CNN whose features define our FID.
struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classifier",
        abstract: "Train the Fashion-MNIST domain classifier used by `coalesce eval` (FID features, class accuracy).")

    @OptionGroup var data: DataOptions
    @Option(help: "Output directory (model.safetensors, classifier.json, training.json).") var out = "models/classifier"
    @Option(help: "Stop after N optimiser steps (smoke tests; 0 = all epochs).") var maxSteps = 0
    @Option(help: "Epochs over the training set.") var epochs = 8
    @Option(help: "Batch size.") var batchSize = 64
    @Option(help: "Peak learning rate (AdamW, warmup then cosine decay).") var lr: Float = 2e-3
    @Option(help: "AdamW weight decay.") var weightDecay: Float = 0.05
    @Option(help: "Seed for initialisation, shuffling and augmentation.") var seed: UInt64 = 1
    @Option(help: "Random shift of up to this many pixels (0 = none).") var maxShift = 2
    @Flag(help: "Disable random horizontal flips.") var noFlip = false
    @Option(help: "Photometric jitter amplitude a: pixels v become min(1, c v^g), log g and 2 log c uniform in [-a, a] (0 = none).")
    var photometric: Float = 0
    @Option(help: "Score on only the first N test images each epoch (0 = all).") var testLimit = 0
    @Option(help: "Output channels of the 3x3 convolutions, comma-separated.") var channels = "32,32,64,32"
    @Option(help: "Stride (1 or 2) of each convolution, comma-separated.") var strides = "1,2,1,2"
    @Option(help: "Width of the penultimate (feature) layer.") var featureDim = 128
    @Option(help: "How the last feature map reaches the feature layer: flatten or average (global average pooling).") var pool = "flatten"
    @Option(help: "Where `coalesce eval` reads the features: pre_activation or post_activation (after the ReLU).") var featureLayer = "pre_activation"

    func run() throws {
        BLAS.load()
        noteBLASCore()
        let loaded = try TrainingData.load(data.data, size: data.size)
        let train = loaded.train
        var test = loaded.test
        if testLimit > 0 { test = test.slice(0..<testLimit) }
        var config = ClassifierTrainingConfig()
        config.epochs = epochs
        config.batchSize = batchSize
        config.learningRate = lr
        config.weightDecay = weightDecay
        config.seed = seed
        config.maxShift = maxShift
        config.flip = !noFlip
        guard photometric.isFinite, photometric >= 0, photometric <= 2 else { throw ValidationError("--photometric must be in 0...2") }
        config.photometric = photometric
        config.trainLimit = data.trainLimit
        config.maxSteps = maxSteps
        var ccfg = ClassifierConfig()
        ccfg.convChannels = try parseSizes(channels, name: "--channels", count: nil)
        ccfg.convStrides = try parseSizes(strides, name: "--strides", count: ccfg.convChannels.count)
        ccfg.featureDim = featureDim
        guard let p = ClassifierConfig.Pool(rawValue: pool) else { throw ValidationError("--pool must be flatten or average, got \(pool)") }
        guard let f = ClassifierConfig.FeatureLayer(rawValue: featureLayer) else {
            throw ValidationError("--feature-layer must be pre_activation or post_activation, got \(featureLayer)")
        }
        ccfg.pool = p
        ccfg.featureLayer = f
        ccfg.imageSize = train.width
        ccfg.imageChannels = train.channels
        if data.data != TrainingData.fashionMNIST {
            // The input normalisation from the folder's own pixels (Fashion-MNIST keeps its constants).
            let n = Double(max(1, train.pixels.count))
            let mean = train.pixels.reduce(0.0) { $0 + Double($1) } / n / 255
            let variance = train.pixels.reduce(0.0) { $0 + (Double($1) / 255 - mean) * (Double($1) / 255 - mean) } / n
            ccfg.inputMean = Float(mean)
            ccfg.inputStd = Float(max(1e-3, variance.squareRoot()))
            guard train.labels.allSatisfy({ $0 >= 0 }) else {
                throw ValidationError("\(data.data): every image needs a class (a \"label\" field in captions.jsonl or a subfolder)")
            }
        }
        ccfg.classes = max(2, (train.labels.max() ?? 0) + 1)
        let classifier = try Classifier(config: ccfg, seed: seed)
        print("classifier: \(classifier.parameterCount) parameters; training on \(data.trainLimit > 0 ? min(data.trainLimit, train.count) : train.count) images, \(epochs) epochs, seed \(seed)")
        let trainer = ClassifierTrainer(classifier: classifier, config: config)
        let result = try trainer.train(on: train, test: test)
        let accuracy = result.epochTestAccuracy.last ?? 0

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try classifier.save(path: out + "/model.safetensors")
        // Not "config.json": that name marks an Engine-served model in the models directory.
        try (classifier.configJSON() + "\n").write(toFile: out + "/classifier.json", atomically: true, encoding: .utf8)
        let record = TrainingRecord(command: (["coalesce"] + CommandLine.arguments.dropFirst()).joined(separator: " "), training: config,
                                    testAccuracy: accuracy, testImages: test.count,
                                    epochTestAccuracy: result.epochTestAccuracy, epochLoss: result.epochLosses,
                                    seconds: result.seconds, blasCore: BLAS.coreName, threads: Runtime.threads)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try (String(decoding: try encoder.encode(record), as: UTF8.self) + "\n")
            .write(toFile: out + "/training.json", atomically: true, encoding: .utf8)
        print(String(format: "test accuracy %.2f%% on %d images; %.0f s; wrote %@/model.safetensors",
                     accuracy * 100, test.count, result.seconds, out))
    }
}

/// What `training.json` records beside the classifier weights.
struct TrainingRecord: Codable {
    var command: String
    var training: ClassifierTrainingConfig
    var testAccuracy: Double
    var testImages: Int
    var epochTestAccuracy: [Double]
    var epochLoss: [Float]
    var seconds: Double
    var blasCore: String
    var threads: Int

    enum CodingKeys: String, CodingKey {
        case command, training, testAccuracy = "test_accuracy", testImages = "test_images"
        case epochTestAccuracy = "epoch_test_accuracy", epochLoss = "epoch_loss", seconds
        case blasCore = "blas_core", threads
    }
}
