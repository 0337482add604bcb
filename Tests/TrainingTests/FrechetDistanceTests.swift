import Tensor
import Training
import XCTest

final class FrechetDistanceTests: XCTestCase {
    /// Closed forms: N(0, I) vs N(mu, I) is |mu|^2; N(0, I) vs N(0, 4I) is d (1 + 4 - 2*2) = d.
    /// Checked on 20000 samples in 8 dimensions (sampling error a few percent).
    func testMatchesClosedFormForGaussians() throws {
        let d = 8, n = 20000
        var rng = RandomGenerator(seed: 11)
        func sample(mean: Float, std: Float) -> FeatureMatrix {
            FeatureMatrix(rows: n, cols: d, values: (0..<(n * d)).map { _ in mean + std * rng.nextNormal() })
        }
        let a = sample(mean: 0, std: 1)
        let shifted = sample(mean: 0.5, std: 1)   // |mu|^2 = 8 * 0.25 = 2
        let wide = sample(mean: 0, std: 2)        // d = 8
        XCTAssertEqual(try FrechetDistance.compute(a, shifted), 2, accuracy: 0.15)
        XCTAssertEqual(try FrechetDistance.compute(a, wide), 8, accuracy: 0.4)
    }

    /// A non-diagonal case with commuting covariances: S2 = 4 S1 gives
    /// tr(S1) + tr(4 S1) - 2 tr(2 S1) = tr(S1).
    func testScaledCorrelatedCovariance() throws {
        let d = 4, n = 40000
        var rng = RandomGenerator(seed: 12)
        let mix: [Float] = [1, 0.5, 0, 0.2, 0, 1, 0.3, 0, 0.4, 0, 1, 0.1, 0, 0.2, 0, 1]
        func sample(scale: Float) -> FeatureMatrix {
            var v = [Float](repeating: 0, count: n * d)
            for i in 0..<n {
                let z = (0..<d).map { _ in rng.nextNormal() }
                for r in 0..<d { v[i * d + r] = scale * (0..<d).reduce(0) { $0 + mix[r * d + $1] * z[$1] } }
            }
            return FeatureMatrix(rows: n, cols: d, values: v)
        }
        let a = sample(scale: 1), b = sample(scale: 2)
        let sa = GaussianStatistics(a)
        let trace = (0..<d).reduce(0.0) { $0 + sa.covariance[$1 * d + $1] }
        XCTAssertEqual(try FrechetDistance.compute(a, b), trace, accuracy: 0.06 * trace)
    }

    /// A set against itself: about 0 (only round-off in the matrix square root).
    func testSetAgainstItselfIsZero() throws {
        let (_, test) = try EvalFixtures.data()
        let s = EvalFixtures.slice(test, 0..<1000)
        let f = try EvalFixtures.features(s.pixels, count: 1000)
        let fid = try FrechetDistance.compute(f, f)
        XCTAssertLessThan(fid, 1e-3)
        // Two disjoint parts of the test set are close but not identical.
        let other = EvalFixtures.slice(test, 1000..<3000)
        let g = try EvalFixtures.features(other.pixels, count: 2000)
        let between = try FrechetDistance.compute(f, g)
        XCTAssertGreaterThan(between, fid)
    }

    /// FID against clean test images grows with the noise level and with the blur radius.
    func testGrowsWithNoiseAndBlur() throws {
        let (_, test) = try EvalFixtures.data()
        let reference = try EvalFixtures.features(EvalFixtures.slice(test, 1000..<3000).pixels, count: 2000)
        let base = EvalFixtures.slice(test, 0..<1000).pixels
        func fid(_ pixels: [UInt8]) throws -> Double {
            try FrechetDistance.compute(EvalFixtures.features(pixels, count: 1000), reference)
        }
        let clean = try fid(base)
        let noise = try [0.05, 0.15, 0.4].map { try fid(EvalFixtures.noisy(base, sigma: Float($0), seed: 5)) }
        let blur = try [1, 2, 3].map { try fid(EvalFixtures.blurred(base, radius: $0)) }
        XCTAssertLessThan(clean, noise[0], "noise \(noise), clean \(clean)")
        XCTAssertLessThan(noise[0], noise[1], "noise \(noise)")
        XCTAssertLessThan(noise[1], noise[2], "noise \(noise)")
        XCTAssertLessThan(clean, blur[0], "blur \(blur), clean \(clean)")
        XCTAssertLessThan(blur[0], blur[1], "blur \(blur)")
        XCTAssertLessThan(blur[1], blur[2], "blur \(blur)")
    }
}
