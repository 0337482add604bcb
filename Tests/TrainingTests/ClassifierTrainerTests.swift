import Foundation
import Models
import Tensor
import Training
import XCTest

final class ClassifierTrainerTests: XCTestCase {
    /// Two short epochs on 1280 images: the loss falls well below its start (ln 10 = 2.30) and the
    /// classifier beats chance on held-out images by a wide margin.
    func testLossFallsOnSmallSlice() throws {
        let (train, test) = try EvalFixtures.data()
        let c = try Classifier(config: ClassifierConfig(), seed: 7)
        var cfg = ClassifierTrainingConfig()
        cfg.epochs = 2
        cfg.trainLimit = 1280
        cfg.warmupSteps = 5
        cfg.seed = 7
        let trainer = ClassifierTrainer(classifier: c, config: cfg)
        trainer.showProgress = false
        let result = try trainer.train(on: train)
        XCTAssertEqual(result.stepLosses.count, 40)
        let first = result.stepLosses.prefix(5).reduce(0, +) / 5
        let last = result.stepLosses.suffix(5).reduce(0, +) / 5
        XCTAssertGreaterThan(first, 1.8, "\(result.stepLosses)")
        XCTAssertLessThan(last, 0.75 * first, "\(result.stepLosses)")
        XCTAssertGreaterThan(try ClassifierTrainer.accuracy(c, on: test.slice(0..<1000)), 0.5)
    }

    /// Save then load gives the same config and the same logits; a checkpoint without config fails.
    /// Photometric jitter off draws nothing, so old runs keep their weights; on, it changes the
    /// run, deterministically; the setting round-trips through JSON.
    func testPhotometricJitter() throws {
        let (train, _) = try EvalFixtures.data()
        func run(_ a: Float) throws -> [[Float]] {
            var config = ClassifierConfig()
            config.convChannels = [4, 4]; config.convStrides = [2, 2]; config.featureDim = 8
            let c = try Classifier(config: config, seed: 3)
            var cfg = ClassifierTrainingConfig()
            cfg.epochs = 1; cfg.trainLimit = 256; cfg.warmupSteps = 2; cfg.photometric = a
            let trainer = ClassifierTrainer(classifier: c, config: cfg)
            trainer.showProgress = false
            try trainer.train(on: train)
            return c.parameters.map(\.array)
        }
        let plain = try run(0), jittered = try run(0.4)
        XCTAssertNotEqual(plain, jittered)
        XCTAssertEqual(jittered, try run(0.4))
        var cfg = ClassifierTrainingConfig()
        cfg.photometric = 0.4
        XCTAssertEqual(try JSONDecoder().decode(ClassifierTrainingConfig.self, from: JSONEncoder().encode(cfg)).photometric, 0.4)
        XCTAssertEqual(try JSONDecoder().decode(ClassifierTrainingConfig.self, from: Data("{}".utf8)).photometric, 0)
    }

    func testCheckpointRoundTrip() throws {
        var config = ClassifierConfig()
        config.convChannels = [8, 8]
        config.convStrides = [2, 2]
        config.featureDim = 16
        let c = try Classifier(config: config, seed: 5)
        let path = NSTemporaryDirectory() + "/coalesce-classifier-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try c.save(path: path)
        let d = try Classifier.load(path: path)
        XCTAssertEqual(d.config, config)
        var rng = RandomGenerator(seed: 2)
        let x = Tensor.uniform([3, 1, 28, 28], lo: 0, hi: 1, rng: &rng)
        XCTAssertEqual(c.logits(x).array, d.logits(x).array)
        XCTAssertEqual(c.features(x).shape, [3, 16])
        XCTAssertTrue(try c.configJSON().contains("\"feature_dim\" : 16"))

        try SafeTensors(tensors: c.stateDict(), metadata: [:]).write(path: path)
        XCTAssertThrowsError(try Classifier.load(path: path))
    }

    /// The committed classifier (when present) reaches the accuracy the issue asks for on the
    /// whole test set.
    func testCommittedClassifierAccuracy() throws {
        let path = EvalFixtures.repositoryRoot + "/models/classifier/model.safetensors"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no committed classifier") }
        let (_, test) = try EvalFixtures.data()
        XCTAssertGreaterThanOrEqual(try ClassifierTrainer.accuracy(Classifier.load(path: path), on: test), 0.91)
    }
}
