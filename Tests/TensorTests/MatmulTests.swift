import Tensor
import XCTest

final class MatmulTests: XCTestCase {
    func testForward() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = Tensor([1, 0, 0, 1, 1, 1], shape: [3, 2])
        XCTAssertEqual(Tensor.matmul(a, b).array, [4, 5, 10, 11])
        XCTAssertEqual(Tensor.matmul(a, a, transB: true).array, [14, 32, 32, 77])
        XCTAssertEqual(Tensor.matmul(a, a, transA: true).shape, [3, 3])
    }

    func testGradientsAllTransposes() {
        let (m, k, n) = (3, 4, 5)
        for transA in [false, true] {
            for transB in [false, true] {
                let a = TestData.randn(transA ? [k, m] : [m, k], seed: 800)
                let b = TestData.randn(transB ? [n, k] : [k, n], seed: 801)
                GradCheck.check("matmul transA=\(transA) transB=\(transB)", inputs: [a, b]) {
                    Tensor.matmul(a, b, transA: transA, transB: transB)
                }
            }
        }
    }

    func testLinear() {
        let x = TestData.randn([2, 3, 4], seed: 802)
        let w = TestData.randn([5, 4], seed: 803)
        let b = TestData.randn([5], seed: 804)
        GradCheck.check("linear 3-D input with bias", inputs: [x, w, b]) { Tensor.linear(x, weight: w, bias: b) }
        let x2 = TestData.randn([3, 4], seed: 805)
        GradCheck.check("linear no bias", inputs: [x2, w]) { Tensor.linear(x2, weight: w, bias: nil) }
        // Forward against matmul.
        let y = Tensor.linear(x2, weight: w, bias: b).array
        let ref = Tensor.matmul(x2, w, transB: true).array
        for i in 0..<y.count { XCTAssertEqual(y[i], ref[i] + b[i % 5], accuracy: 1e-5) }
    }
}
