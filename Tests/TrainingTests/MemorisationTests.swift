import Tensor
import Training
import XCTest

final class MemorisationTests: XCTestCase {
    /// Copies of training images are all near-copies (pixel distance 0); held-out test images are
    /// near-copies about as often as the percentile says; noise never is.
    func testFlagsCopiesOfTrainingImages() throws {
        let (train, test) = try EvalFixtures.data()
        let trainSet = EvalFixtures.slice(train, 0..<6000)
        let trainPixels = FeatureMatrix(pixels: trainSet.pixels, count: 6000)
        let trainFeatures = try EvalFixtures.features(trainSet.pixels, count: 6000)
        let testSet = EvalFixtures.slice(test, 0..<1000)
        let baseline = MemorisationBaseline(
            testPixels: FeatureMatrix(pixels: testSet.pixels, count: 1000),
            testFeatures: try EvalFixtures.features(testSet.pixels, count: 1000),
            trainPixels: trainPixels, trainFeatures: trainFeatures)

        func report(_ pixels: [UInt8]) throws -> MemorisationReport {
            let n = pixels.count / 784
            return baseline.report(generatedPixels: FeatureMatrix(pixels: pixels, count: n),
                                   generatedFeatures: try EvalFixtures.features(pixels, count: n), percentile: 1)
        }
        let copies = try report(EvalFixtures.slice(train, 1000..<1300).pixels)
        XCTAssertEqual(copies.pixels.nearCopyFraction, 1, "\(copies)")
        XCTAssertEqual(copies.features.nearCopyFraction, 1, "\(copies)")
        XCTAssertLessThan(copies.pixels.generatedMedian, 0.05)
        XCTAssertEqual(copies.pixels.distinctNearest, 300)

        // Slightly perturbed copies (noise of 2% per pixel) are still caught in pixel space.
        let perturbed = try report(EvalFixtures.noisy(EvalFixtures.slice(train, 1000..<1300).pixels, sigma: 0.02, seed: 4))
        XCTAssertGreaterThan(perturbed.pixels.nearCopyFraction, 0.9, "\(perturbed.pixels)")

        // Fresh real images (other test images) are near-copies rarely, like the baseline.
        let fresh = try report(EvalFixtures.slice(test, 5000..<5500).pixels)
        XCTAssertLessThan(fresh.pixels.nearCopyFraction, 0.05, "\(fresh.pixels)")
        XCTAssertEqual(fresh.pixels.testNearCopyFraction, 0.01, accuracy: 0.011)
        XCTAssertGreaterThan(fresh.pixels.generatedMedian, 10 * copies.pixels.generatedMedian + 0.5)

        var rng = RandomGenerator(seed: 1)
        let noise = (0..<(200 * 784)).map { _ in UInt8(truncatingIfNeeded: rng.nextUInt64() >> 56) }
        XCTAssertEqual(try report(noise).nearCopyFraction, 0)
    }

    func testQuantile() {
        XCTAssertEqual(MemorisationReport.quantile([3, 1, 2, 4, 5], 0.5), 3)
        XCTAssertEqual(MemorisationReport.quantile([0, 10], 0.25), 2.5)
        XCTAssertEqual(MemorisationReport.quantile([7], 0.01), 7)
    }

    /// Nearest neighbours by brute force agree with the blocked sgemm version.
    func testNearestMatchesBruteForce() {
        var rng = RandomGenerator(seed: 8)
        let q = FeatureMatrix(rows: 300, cols: 5, values: (0..<1500).map { _ in rng.nextNormal() })
        let x = FeatureMatrix(rows: 700, cols: 5, values: (0..<3500).map { _ in rng.nextNormal() })
        let (d, idx) = PairwiseDistances.nearest(queries: q, reference: x)
        for i in stride(from: 0, to: 300, by: 7) {
            var best = Float.infinity, bi = -1
            for j in 0..<700 {
                var s: Float = 0
                for c in 0..<5 { let t = q.values[i * 5 + c] - x.values[j * 5 + c]; s += t * t }
                if s < best { best = s; bi = j }
            }
            XCTAssertEqual(idx[i], bi)
            XCTAssertEqual(d[i], best.squareRoot(), accuracy: 1e-4)
        }
    }
}
