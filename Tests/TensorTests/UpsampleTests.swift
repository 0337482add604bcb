import Tensor
import XCTest

final class UpsampleTests: XCTestCase {
    func testValues() {
        let x = Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        let y = Tensor.upsampleNearest2d(x, scale: 2)
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        XCTAssertEqual(y.array, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    func testGradients() {
        let x = TestData.randn([2, 3, 3, 2], seed: 3)
        GradCheck.check("upsampleNearest2d x2", inputs: [x]) { Tensor.upsampleNearest2d(x, scale: 2) }
        let z = TestData.randn([1, 2, 2, 3], seed: 4)
        GradCheck.check("upsampleNearest2d x3", inputs: [z]) { Tensor.upsampleNearest2d(z, scale: 3) }
    }

    /// Average pooling undoes nearest upsampling exactly.
    func testPoolInvertsUpsample() {
        let x = TestData.randn([2, 3, 4, 5], seed: 5)
        let y = Tensor.avgPool2d(Tensor.upsampleNearest2d(x, scale: 2), kernel: 2)
        XCTAssertEqual(NumPyReference.maxAbsDiff(y.array, x.array), 0, accuracy: 1e-6)
    }
}
