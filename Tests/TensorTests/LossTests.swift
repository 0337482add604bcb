import Foundation
import Tensor
import XCTest

final class LossTests: XCTestCase {
    func testForward() {
        let p = Tensor([1, 2, 3], shape: [3]), t = Tensor([1, 0, 5], shape: [3])
        XCTAssertEqual(Tensor.mseLoss(p, t).item, 8.0 / 3.0, accuracy: 1e-6)
        let logits = Tensor([0, 0, Float(Foundation.log(2.0))], shape: [1, 3])
        XCTAssertEqual(Tensor.crossEntropyLoss(logits, labels: [2]).item, Float(Foundation.log(2.0)), accuracy: 1e-6)
    }

    func testGradients() {
        let pred = TestData.randn([3, 4], seed: 900)
        let target = TestData.randn([3, 4], seed: 901)
        GradCheck.check("mseLoss", inputs: [pred]) { Tensor.mseLoss(pred, target) }
        let logits = TestData.randn([4, 5], seed: 902, std: 2)
        GradCheck.check("crossEntropyLoss", inputs: [logits]) { Tensor.crossEntropyLoss(logits, labels: [0, 4, 2, 2]) }
        GradCheck.check("mseLoss rowWeights", inputs: [pred]) { Tensor.mseLoss(pred, target, rowWeights: [0.5, 2, 0]) }
    }

    func testRowWeightedMSE() {
        let p = Tensor([1, 2, 3, 4], shape: [2, 2]), t = Tensor([1, 0, 5, 4], shape: [2, 2])
        XCTAssertEqual(Tensor.mseLoss(p, t, rowWeights: [1, 1]).item, Tensor.mseLoss(p, t).item)
        // Row 0 has squared error 4, row 1 has 4: weights 3 and 0.5 give (12 + 2) / 4.
        XCTAssertEqual(Tensor.mseLoss(p, t, rowWeights: [3, 0.5]).item, 14.0 / 4.0, accuracy: 1e-6)
    }
}
