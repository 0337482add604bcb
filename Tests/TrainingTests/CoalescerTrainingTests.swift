import Foundation
import ImageIO
import Models
import Tensor
import Training
import XCTest

/// Short training runs on small slices: the losses must go down.
final class CoalescerTrainingTests: XCTestCase {
    /// 10 Gaussian clusters in `dim` dimensions; each class has 3 caption embeddings near a class
    /// direction, every item gets one of them.
    static func syntheticData(items: Int = 2000, dim: Int = 8, descDim: Int = 6, seed: UInt64 = 1) -> CoalescerData {
        var rng = RandomGenerator(seed: seed)
        let classes = 10
        let centres = (0..<classes).map { _ in (0..<dim).map { _ in rng.nextNormal() * 1.5 } }
        let dirs = (0..<classes).map { _ in (0..<descDim).map { _ in rng.nextNormal() } }
        func unit(_ v: [Float]) -> [Float] { let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); return v.map { $0 / n } }
        let classDesc: [[[Float]]] = dirs.map { d in (0..<3).map { _ in unit(d.map { $0 + 0.1 * rng.nextNormal() }) } }
        var points: [Float] = [], labels: [Int] = [], desc: [Float] = []
        for i in 0..<items {
            let c = i % classes
            points += centres[c].map { $0 + 0.5 * rng.nextNormal() }
            labels.append(c)
            desc += classDesc[c][rng.nextInt(below: 3)]
        }
        return CoalescerData(points: points, labels: labels, descriptions: desc, classDescriptions: classDesc,
                             unconditional: unit((0..<descDim).map { _ in rng.nextNormal() }), dim: dim, descDim: descDim)
    }

    func testShortRunLowersBothLosses() throws {
        let data = Self.syntheticData()
        var o = CoalescerTrainingOptions()
        o.steps = 400
        o.batchSize = 64
        o.learningRate = 2e-3
        o.progress = false
        let spreads = try CoalescerTrainer.measureSpreads(data: data, samples: 128) { try FaissIndex(dimension: $0) }
        let trainer = try CoalescerTrainer(data: data, options: o, descScale: spreads.suggestedDescScale) {
            try FaissIndex(dimension: $0)
        }
        var cfg = CoalescerNetConfig()
        cfg.latentDim = data.dim; cfg.descDim = data.descDim; cfg.hidden = 64; cfg.depth = 2
        var rng = RandomGenerator(seed: 5)
        let net = try CoalescerNet(config: cfg, rng: &rng)
        let r = try trainer.train(net)
        XCTAssertLessThan(r.lastDistanceLoss, 0.5 * r.firstDistanceLoss, "\(r)")
        XCTAssertLessThan(r.lastDirectionLoss, 0.95 * r.firstDirectionLoss, "\(r)")
        XCTAssertGreaterThan(r.classMatchPrior, 0.9, "the suggested desc_scale (\(spreads)) should keep retrieval in the requested class")
        XCTAssertGreaterThan(r.distinctFirstEpoch, 0)
        XCTAssertLessThanOrEqual(r.distinctFirstEpoch, data.count)
    }

    func testSpreadsSuggestAScaleThatSeparatesClasses() throws {
        let data = Self.syntheticData()
        let s = try CoalescerTrainer.measureSpreads(data: data, samples: 128) { try FaissIndex(dimension: $0) }
        XCTAssertGreaterThan(s.nearestSqMean, 0)
        XCTAssertGreaterThan(s.betweenClassDescSqMin, s.withinClassDescSq)
        XCTAssertGreaterThanOrEqual(s.suggestedDescScale, 1.5)
    }

    func testAutoencoderAndTextEncoderLearnOnASlice() throws {
        let train = try FashionMNIST.load(split: .train).slice(0..<512)
        var rng = RandomGenerator(seed: 3)
        var cfg = AutoencoderConfig()
        cfg.channels = [8, 16, 16]
        let ae = try ImageAutoencoder(config: cfg, rng: &rng)
        let before = try AutoencoderTrainer.reconstructionError(ae, images: train.slice(0..<128)).0
        var o = AutoencoderTrainingOptions()
        o.epochs = 4; o.batchSize = 32; o.progress = false
        let r = try AutoencoderTrainer.train(ae, train: train, test: train.slice(0..<128), options: o)
        XCTAssertLessThan(r.testMSE, 0.7 * before, "\(r)")
        XCTAssertGreaterThan(r.latentScale, 0)

        // The decoder alone with a perceptual term: the encoder and the perceptual network keep their
        // bytes, the decoder moves; a perceptual weight without a network is refused.
        var pcfg = ClassifierConfig()
        pcfg.convChannels = [4, 8]; pcfg.convStrides = [2, 2]; pcfg.featureDim = 8
        let percNet = try Classifier(config: pcfg, seed: 5)
        let encoderBefore = ae.namedParameters.filter { !$0.0.hasPrefix("decoder.") }.map { $0.1.array }
        let decoderBefore = ae.namedParameters.filter { $0.0.hasPrefix("decoder.") }.map { $0.1.array }
        let percBefore = percNet.parameters.map(\.array)
        var d = AutoencoderTrainingOptions()
        d.maxSteps = 5; d.batchSize = 32; d.progress = false; d.decoderOnly = true; d.perceptualWeight = 0.1
        let dr = try AutoencoderTrainer.train(ae, train: train, test: train.slice(0..<128), options: d, perceptual: percNet)
        XCTAssertTrue(dr.finalLoss.isFinite)
        XCTAssertEqual(ae.namedParameters.filter { !$0.0.hasPrefix("decoder.") }.map { $0.1.array }, encoderBefore)
        XCTAssertNotEqual(ae.namedParameters.filter { $0.0.hasPrefix("decoder.") }.map { $0.1.array }, decoderBefore)
        XCTAssertEqual(percNet.parameters.map(\.array), percBefore)
        XCTAssertThrowsError(try AutoencoderTrainer.train(ae, train: train, test: train.slice(0..<128), options: d))

        var tcfg = TextEncoderConfig()
        tcfg.hidden = 32
        let te = try TextEncoder(config: tcfg, rng: &rng)
        var to = TextEncoderTrainingOptions()
        to.steps = 150; to.progress = false
        let tr = try TextEncoderTrainer.train(te, options: to)
        XCTAssertGreaterThan(tr.trainAccuracy, 0.9, "\(tr)")
        XCTAssertGreaterThan(tr.heldOutAccuracy, 0.5, "\(tr)")
    }
}

/// The whole pipeline on a real slice (autoencoder, text encoder, PCA, index, net, probe, files).
final class CoalescerPipelineTests: XCTestCase {
    func testPipelineOnASliceWritesALoadableModel() throws {
        let dir = NSTemporaryDirectory() + "coalescer-pipeline-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = CoalescerPipelineOptions()
        o.outputDirectory = dir
        o.trainLimit = 640
        o.autoencoder.epochs = 1
        o.autoencoderConfig.channels = [8, 16, 16]
        o.textEncoder.steps = 100
        o.pcaDim = 12
        o.coalescer.steps = 150
        o.coalescer.batchSize = 64
        o.coalescer.hubCap = 2
        o.netHidden = 64
        o.netDepth = 2
        o.probePerClass = 5
        o.progress = false
        let r = try CoalescerPipeline.run(o, log: { _ in })
        XCTAssertLessThan(r.coalescer.lastDistanceLoss, r.coalescer.firstDistanceLoss)
        XCTAssertLessThan(r.coalescer.lastDirectionLoss, r.coalescer.firstDirectionLoss)
        XCTAssertEqual(r.probe.map(\.steps), [1, 2, 4])
        for f in ["config.json", "coalescer.safetensors", "autoencoder.safetensors", "encoders.safetensors", "training-report.txt"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f)
        }
        let loaded = try CoalescerModel.load(path: dir + "/coalescer.safetensors")
        loaded.prepareForInference()  // as the pipeline's model after writing its sample grid
        XCTAssertNotNil(r.model.autoencoder.inferenceDecoder)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples.png"))
        XCTAssertEqual(loaded.config.net.latentDim, 12)
        let a = try CoalescerSampler(model: loaded).generate(prompt: "ankle boot", seed: 3, count: 2, steps: .fixed(2))
        let b = try CoalescerSampler(model: r.model).generate(prompt: "ankle boot", seed: 3, count: 2, steps: .fixed(2))
        XCTAssertEqual(a.pixels, b.pixels)
    }

    func testBalancedAssignmentSpreadsRetrievals() throws {
        let data = CoalescerTrainingTests.syntheticData()
        func distinct(_ cap: Float?) throws -> (Int, Double) {
            var o = CoalescerTrainingOptions()
            o.steps = 60; o.batchSize = 64; o.progress = false; o.hubCap = cap
            let t = try CoalescerTrainer(data: data, options: o, descScale: 3) { try FaissIndex(dimension: $0) }
            var cfg = CoalescerNetConfig()
            cfg.latentDim = data.dim; cfg.descDim = data.descDim; cfg.hidden = 32; cfg.depth = 1
            var rng = RandomGenerator(seed: 1)
            let r = try t.train(try CoalescerNet(config: cfg, rng: &rng))
            return (r.distinctTotal, r.top1PercentShare)
        }
        let plain = try distinct(nil), capped = try distinct(1.5)
        XCTAssertGreaterThan(capped.0, plain.0)
        XCTAssertLessThan(capped.1, plain.1)
    }
}
