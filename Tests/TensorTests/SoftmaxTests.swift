import Foundation
import Tensor
import XCTest

final class SoftmaxTests: XCTestCase {
    func testValues() {
        let x = Tensor([1, 2, 3, 1000, 1000, 1000], shape: [2, 3])
        let y = Tensor.softmaxLastDim(x).array
        let e = [Foundation.exp(-2.0), Foundation.exp(-1.0), 1.0]
        let z = e.reduce(0, +)
        for j in 0..<3 { XCTAssertEqual(Double(y[j]), e[j] / z, accuracy: 1e-6) }
        for j in 3..<6 { XCTAssertEqual(y[j], 1.0 / 3.0, accuracy: 1e-6) }  // stable for large inputs
    }

    func testGradients() {
        let x = TestData.randn([3, 2, 5], seed: 6, std: 2)
        GradCheck.check("softmaxLastDim", inputs: [x]) { Tensor.softmaxLastDim(x) }
    }
}
