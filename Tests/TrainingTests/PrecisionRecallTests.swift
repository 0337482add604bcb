import Tensor
import Training
import XCTest

final class PrecisionRecallTests: XCTestCase {
    /// Points in two separate clusters as "real": a generator covering one cluster has full
    /// precision and half recall; one covering both has both near 1; far points score 0.
    func testClustersByHand() {
        var rng = RandomGenerator(seed: 3)
        func cluster(_ centre: Float, _ n: Int) -> [Float] { (0..<(n * 2)).map { _ in centre + 0.1 * rng.nextNormal() } }
        let real = FeatureMatrix(rows: 400, cols: 2, values: cluster(0, 200) + cluster(10, 200))
        let both = FeatureMatrix(rows: 400, cols: 2, values: cluster(0, 200) + cluster(10, 200))
        let one = FeatureMatrix(rows: 400, cols: 2, values: cluster(0, 400))
        let far = FeatureMatrix(rows: 400, cols: 2, values: cluster(50, 400))
        let pBoth = PrecisionRecall.compute(real: real, generated: both)
        let pOne = PrecisionRecall.compute(real: real, generated: one)
        let pFar = PrecisionRecall.compute(real: real, generated: far)
        XCTAssertGreaterThan(pBoth.precision, 0.9); XCTAssertGreaterThan(pBoth.recall, 0.9)
        XCTAssertGreaterThan(pOne.precision, 0.9)
        XCTAssertEqual(pOne.recall, 0.5, accuracy: 0.05)
        XCTAssertEqual(pFar.precision, 0); XCTAssertEqual(pFar.recall, 0)
    }

    /// Real images: a class-balanced set of training images scores high on both; a collapsed set
    /// (all of one class) keeps its precision (its images are real) but loses most of its recall;
    /// copies of a single image collapse further; noisy images lose precision and density.
    func testCollapsedSetLosesRecall() throws {
        let (train, test) = try EvalFixtures.data()
        let n = 500
        let real = try EvalFixtures.features(EvalFixtures.slice(test, 0..<n).pixels, count: n)
        let balanced = try EvalFixtures.features(EvalFixtures.slice(train, 0..<n).pixels, count: n)
        let sneakers = (0..<train.count).filter { train.labels[$0] == 7 }.prefix(n)
        var collapsedPixels: [UInt8] = []
        for i in sneakers { collapsedPixels += train.slice(i..<(i + 1)).pixels }
        let collapsed = try EvalFixtures.features(collapsedPixels, count: n)
        let single = FeatureMatrix(rows: n, cols: collapsed.cols,
                                   values: (0..<n).flatMap { _ in Array(collapsed.values[0..<collapsed.cols]) })
        let noisy = try EvalFixtures.features(EvalFixtures.noisy(EvalFixtures.slice(train, 0..<n).pixels, sigma: 0.4, seed: 9), count: n)

        let pBalanced = PrecisionRecall.compute(real: real, generated: balanced)
        let pCollapsed = PrecisionRecall.compute(real: real, generated: collapsed)
        let pSingle = PrecisionRecall.compute(real: real, generated: single)
        let pNoisy = PrecisionRecall.compute(real: real, generated: noisy)
        XCTAssertGreaterThan(pBalanced.precision, 0.6, "\(pBalanced)")
        XCTAssertGreaterThan(pBalanced.recall, 0.6, "\(pBalanced)")
        XCTAssertLessThan(pCollapsed.recall, 0.25, "\(pCollapsed)")
        XCTAssertLessThan(pCollapsed.recall, pBalanced.recall / 3, "\(pCollapsed) vs \(pBalanced)")
        XCTAssertLessThan(pSingle.recall, 0.02, "\(pSingle)")
        XCTAssertLessThan(pNoisy.precision, pBalanced.precision - 0.2, "\(pNoisy) vs \(pBalanced)")
        XCTAssertLessThan(pNoisy.density, pBalanced.density / 2, "\(pNoisy) vs \(pBalanced)")
        XCTAssertLessThan(pCollapsed.coverage, pBalanced.coverage / 3, "\(pCollapsed) vs \(pBalanced)")
    }
}
