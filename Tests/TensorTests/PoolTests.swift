import Tensor
import XCTest

final class PoolTests: XCTestCase {
    func testValues() {
        let x = Tensor((0..<16).map(Float.init), shape: [1, 1, 4, 4])
        let y = Tensor.avgPool2d(x, kernel: 2)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.array, [2.5, 4.5, 10.5, 12.5])
    }

    func testGradients() {
        let x = TestData.randn([2, 3, 6, 4], seed: 1)
        GradCheck.check("avgPool2d k2", inputs: [x]) { Tensor.avgPool2d(x, kernel: 2) }
        let z = TestData.randn([1, 2, 6, 6], seed: 2)
        GradCheck.check("avgPool2d k3", inputs: [z]) { Tensor.avgPool2d(z, kernel: 3) }
    }
}
