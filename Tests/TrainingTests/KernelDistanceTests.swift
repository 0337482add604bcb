import Models
import Tensor
import Training
import XCTest

final class KernelDistanceTests: XCTestCase {
    private func gaussian(rows: Int, cols: Int, mean: Float, std: Float, seed: UInt64) -> FeatureMatrix {
        var rng = RandomGenerator(seed: seed)
        return FeatureMatrix(rows: rows, cols: cols, values: (0..<(rows * cols)).map { _ in mean + std * rng.nextNormal() })
    }

    /// Closed form for the cubic kernel k(x, y) = (x·y/d + 1)^3 on N(mu 1, I) against N(0, I) in d
    /// dimensions: E k(x, x') - 2 E k(x, y) + E k(y, y') with x·x'/d having mean mu^2 and
    /// variance (2 mu^2 + 1)/d; for large d the MMD² tends to (mu^2 + 1)^3 - 2 + 1 + O(1/d),
    /// so a shift of 0.5 gives about 0.95. The estimate must be near it, and same-distribution
    /// sets must give about 0 (unbiased: within 3 standard errors) with a much smaller value.
    func testShiftIsSeenAndSameDistributionIsNearZero() throws {
        let d = 64
        let real = gaussian(rows: 4000, cols: d, mean: 0, std: 1, seed: 1)
        let same = gaussian(rows: 1000, cols: d, mean: 0, std: 1, seed: 2)
        let shifted = gaussian(rows: 1000, cols: d, mean: 0.5, std: 1, seed: 3)
        let a = try KernelDistance.compute(generated: same, real: real)
        let b = try KernelDistance.compute(generated: shifted, real: real)
        XCTAssertEqual(a.blocks, 10)
        XCTAssertGreaterThan(a.standardError, 0)
        XCTAssertLessThan(abs(a.value), 3 * a.standardError + 1e-3)
        XCTAssertGreaterThan(b.value, 0.8)
        XCTAssertLessThan(b.value, 1.2)
        XCTAssertGreaterThan(b.value - a.value, 10 * (a.standardError + b.standardError))
    }

    /// Unbiased in n: the mean over seeds at 100 rows and at 1000 rows agree (FID does not: it
    /// grows as n shrinks).
    func testDoesNotGrowAtSmallCounts() throws {
        let d = 32
        let real = gaussian(rows: 2000, cols: d, mean: 0, std: 1, seed: 10)
        let terms = KernelDistance.realTerms(real)
        func mean(rows: Int) throws -> Double {
            var s = 0.0
            for seed in 0..<8 as Range<UInt64> {
                let g = gaussian(rows: rows, cols: d, mean: 0.2, std: 1, seed: 100 + seed)
                s += try KernelDistance.compute(generated: g, real: real, terms: terms).value
            }
            return s / 8
        }
        let small = try mean(rows: 100), large = try mean(rows: 1000)
        XCTAssertGreaterThan(large, 0)
        XCTAssertEqual(small, large, accuracy: 0.35 * large)
    }

    /// Precomputed real terms give the same value as computing them on the fly; mismatched
    /// dimensions and too few rows are errors.
    func testTermsAndBadInput() throws {
        let real = gaussian(rows: 300, cols: 8, mean: 0, std: 1, seed: 4)
        let gen = gaussian(rows: 50, cols: 8, mean: 0.3, std: 1, seed: 5)
        let x = try KernelDistance.compute(generated: gen, real: real)
        let y = try KernelDistance.compute(generated: gen, real: real, terms: KernelDistance.realTerms(real))
        XCTAssertEqual(x, y)
        XCTAssertThrowsError(try KernelDistance.compute(generated: gaussian(rows: 10, cols: 4, mean: 0, std: 1, seed: 6), real: real))
        XCTAssertThrowsError(try KernelDistance.compute(generated: FeatureMatrix(rows: 1, cols: 8, values: [Float](repeating: 0, count: 8)), real: real))
    }

    /// On real features: disjoint test images score near 0, noisy ones clearly above. The clean set
    /// is stored class after class, as the evaluation generates images, and scored as the
    /// evaluation does, with the classes as strata; without strata, a set with exactly 100 images
    /// per class scores below 0 (fewer same-class pairs than independent draws give).
    func testRealImages() throws {
        let (_, test) = try EvalFixtures.data()
        let reference = try EvalFixtures.features(EvalFixtures.slice(test, 2000..<6000).pixels, count: 4000)
        let first = EvalFixtures.slice(test, 0..<1000)
        let byClass = first.labels.indices.sorted { (first.labels[$0], $0) < (first.labels[$1], $1) }
        let clean = byClass.flatMap { first.pixels[$0 * 784 ..< ($0 + 1) * 784] }
        let labels = byClass.map { first.labels[$0] }
        let counts = Dictionary(grouping: labels, by: { $0 }).mapValues(\.count)
        // Keep exactly the same number per class (as the evaluation asks for).
        let per = counts.values.min()!
        var kept: [Int] = [], seen: [Int: Int] = [:]
        for (i, l) in labels.enumerated() where seen[l, default: 0] < per { seen[l, default: 0] += 1; kept.append(i) }
        let balanced = kept.flatMap { clean[$0 * 784 ..< ($0 + 1) * 784] }
        let strata = kept.map { labels[$0] }
        let features = try EvalFixtures.features(balanced, count: kept.count)
        let stratified = try KernelDistance.compute(generated: features, strata: strata, real: reference)
        let plain = try KernelDistance.compute(generated: features, real: reference)
        XCTAssertLessThan(abs(stratified.value), 3 * stratified.standardError + 1e-3)
        XCTAssertLessThan(plain.value, stratified.value)
        let noisy = try KernelDistance.compute(generated: try EvalFixtures.features(EvalFixtures.noisy(balanced, sigma: 0.2, seed: 3), count: kept.count),
                                               strata: strata, real: reference)
        XCTAssertGreaterThan(noisy.value, stratified.value + 5 * (stratified.standardError + noisy.standardError))
    }
}

final class ClassifierConfigTests: XCTestCase {
    /// A config written before `pool` and `feature_layer` existed loads as flatten, pre-activation.
    func testOldConfigDecodesWithDefaults() throws {
        let json = #"{"classes":10,"conv_channels":[8,8],"conv_strides":[1,2],"feature_dim":16,"image_size":28,"input_mean":0.3,"input_std":0.3}"#
        let c = try JSONDecoder().decode(ClassifierConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.pool, .flatten)
        XCTAssertEqual(c.featureLayer, .preActivation)
        XCTAssertEqual(c.convChannels, [8, 8])
        XCTAssertThrowsError(try JSONDecoder().decode(ClassifierConfig.self, from: Data(#"{"pool":"max"}"#.utf8)))
    }

    /// Average pooling takes the last map's channels; post-activation features are non-negative
    /// and equal the ReLU of the pre-activation ones; the config survives save and load.
    func testAveragePoolAndPostActivation() throws {
        var cfg = ClassifierConfig()
        cfg.convChannels = [8, 12]
        cfg.convStrides = [2, 2]
        cfg.featureDim = 20
        cfg.pool = .average
        cfg.featureLayer = .postActivation
        XCTAssertEqual(cfg.flatDim, 12)
        let c = try Classifier(config: cfg, seed: 3)
        var rng = RandomGenerator(seed: 4)
        let x = Tensor((0..<(3 * 28 * 28)).map { _ in rng.nextFloat() }, shape: [3, 1, 28, 28])
        let pre = c.features(x), post = c.evaluationFeatures(x)
        XCTAssertEqual(post.shape, [3, 20])
        XCTAssertEqual(post.array, pre.array.map { max(0, $0) })
        XCTAssertTrue(pre.array.contains { $0 < 0 })
        let path = NSTemporaryDirectory() + "/classifier-config-test-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try c.save(path: path)
        let back = try Classifier.load(path: path)
        XCTAssertEqual(back.config, cfg)
        XCTAssertEqual(back.evaluationFeatures(x).array, post.array)
    }
}
