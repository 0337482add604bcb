import Tensor
import XCTest

/// Data-parallel training steps: the parts' gradients, summed, are the whole batch's, and the
/// same bits come whether the parts run one after the other or at once.
final class DataParallelStepTests: XCTestCase {
    /// A two-layer net on the given parameters (w1 (8, 5), b1 (8), w2 (3, 8)).
    private func net(_ x: Tensor, _ p: [Tensor]) -> Tensor {
        Tensor.linear(Tensor.linear(x, weight: p[0], bias: p[1]).silu(), weight: p[2], bias: nil)
    }

    private func parameters(seed: UInt64) -> [Tensor] {
        var rng = RandomGenerator(seed: seed)
        return [[8, 5], [8], [3, 8]].map { Tensor(Tensor.randn($0, rng: &rng).array, shape: $0, requiresGrad: true) }
    }

    private func data(batch b: Int) -> (x: [Float], y: [Float]) {
        var rng = RandomGenerator(seed: 3)
        return ((0..<(b * 5)).map { _ in rng.nextNormal() }, (0..<(b * 3)).map { _ in rng.nextNormal() })
    }

    /// One step with `DataParallelStep` (a replica initialised with other weights, which it must
    /// not use); returns the loss and the trained parameters' gradients.
    private func parallelStep(batch b: Int, threads: Int) -> (Float, [[Float]]) {
        let main = parameters(seed: 1), replica = parameters(seed: 99)
        let step = DataParallelStep(parameters: main, replicas: [replica])
        let (x, y) = data(batch: b)
        let loss = Runtime.withThreadCap(threads) {
            step.run(batch: b) { part, rows in
                let n = rows.count, lo = rows.lowerBound
                let out = net(Tensor(Array(x[(lo * 5)..<((lo + n) * 5)]), shape: [n, 5]), part == 0 ? main : replica)
                return Tensor.mseLoss(out, Tensor(Array(y[(lo * 3)..<((lo + n) * 3)]), shape: [n, 3]))
            }
        }
        return (loss, main.map { $0.gradArray! })
    }

    func testPartsSumToTheWholeBatchsGradient() {
        for b in [2, 7, 16] {
            let p = parameters(seed: 1)
            let (x, y) = data(batch: b)
            let loss = Tensor.mseLoss(net(Tensor(x, shape: [b, 5]), p), Tensor(y, shape: [b, 3]))
            loss.backward()
            let (parallelLoss, grads) = parallelStep(batch: b, threads: 2)
            XCTAssertEqual(parallelLoss, loss.item, accuracy: 1e-5 * (1 + abs(loss.item)), "batch \(b): loss")
            for (i, t) in p.enumerated() {
                let whole = t.gradArray!
                for j in whole.indices {
                    XCTAssertEqual(grads[i][j], whole[j], accuracy: 1e-5 * (1 + abs(whole[j])), "batch \(b): parameter \(i)[\(j)]")
                }
            }
        }
    }

    func testSameBitsWhetherPartsRunAtOnceOrInTurn() {
        let (l1, g1) = parallelStep(batch: 33, threads: 1)
        let (l2, g2) = parallelStep(batch: 33, threads: 2)
        XCTAssertEqual(l1, l2)
        XCTAssertEqual(g1, g2)
    }

    func testRowsCoverTheBatchOnce() {
        for b in [1, 2, 5, 128] {
            for parts in [1, 2, 3] {
                let r = (0..<parts).map { DataParallelStep.rows(part: $0, of: parts, batch: b) }
                XCTAssertEqual(r.first!.lowerBound, 0)
                XCTAssertEqual(r.last!.upperBound, b)
                for i in 1..<parts { XCTAssertEqual(r[i].lowerBound, r[i - 1].upperBound) }
                XCTAssertLessThanOrEqual(r.map(\.count).max()! - r.map(\.count).min()!, 1)
            }
        }
    }
}
