import Foundation
import Tensor
import XCTest

final class ElementwiseTests: XCTestCase {
    /// Shapes of b broadcast against a (2, 3, 4): same shape, trailing, middle, leading, scalar-like.
    static let broadcastShapes: [[Int]] = [[2, 3, 4], [4], [3, 1], [2, 1, 1], [1, 3, 4], [1]]

    func testBinaryForwardBroadcast() {
        let a = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        let b = Tensor([10, 20, 30], shape: [3, 1])
        let y = (a + b).array
        for i in 0..<24 { XCTAssertEqual(y[i], Float(i) + [10, 20, 30][(i / 4) % 3]) }
        let c = Tensor([1, 2, 3, 4], shape: [4])
        let z = (a * c).array
        for i in 0..<24 { XCTAssertEqual(z[i], Float(i) * Float(i % 4 + 1)) }
    }

    func testBinaryGradients() {
        for (i, bs) in Self.broadcastShapes.enumerated() {
            let a = TestData.randn([2, 3, 4], seed: 100 + UInt64(i))
            let b = TestData.randn(bs, seed: 200 + UInt64(i))
            let bPositive = TestData.uniform(bs, 0.5, 2, seed: 300 + UInt64(i))
            GradCheck.check("add b\(bs)", inputs: [a, b]) { a + b }
            GradCheck.check("sub b\(bs)", inputs: [a, b]) { a - b }
            GradCheck.check("mul b\(bs)", inputs: [a, b]) { a * b }
            GradCheck.check("div b\(bs)", inputs: [a, bPositive]) { a / bPositive }
        }
        let x = TestData.randn([3, 4], seed: 400)
        GradCheck.check("mul x*x (same tensor twice)", inputs: [x]) { x * x }
    }

    func testUnaryGradients() {
        let x = TestData.randn([3, 5], seed: 500, std: 1.5)
        let away = TestData.awayFromZero([3, 5], seed: 501)
        let positive = TestData.uniform([3, 5], 0.2, 2, seed: 502)
        GradCheck.check("scaled", inputs: [x]) { x.scaled(-1.7) }
        GradCheck.check("adding", inputs: [x]) { x.adding(0.3) }
        GradCheck.check("negate", inputs: [x]) { -x }
        GradCheck.check("silu", inputs: [x]) { x.silu() }
        GradCheck.check("gelu", inputs: [x]) { x.gelu() }
        GradCheck.check("geluErf", inputs: [x]) { x.geluErf() }
        GradCheck.check("relu", inputs: [away]) { away.relu() }
        GradCheck.check("sigmoid", inputs: [x]) { x.sigmoid() }
        GradCheck.check("tanh", inputs: [x]) { x.tanh() }
        GradCheck.check("exp", inputs: [x]) { x.exp() }
        GradCheck.check("square", inputs: [x]) { x.square() }
        GradCheck.check("sqrt", inputs: [positive]) { positive.sqrt() }
        GradCheck.check("sqrt eps", inputs: [positive]) { positive.sqrt(eps: 0.1) }
        GradCheck.check("pow 0.5 eps", inputs: [positive]) { positive.pow(0.5, eps: 1e-3) }
        GradCheck.check("pow 2.5", inputs: [positive]) { positive.pow(2.5) }
        // Negative inputs are clamped to 0, where the function is flat: gradient 0.
        GradCheck.check("pow clamped negatives", inputs: [away]) { away.pow(1.5, eps: 0.01) }
    }

    func testUnaryValues() {
        let x = Tensor([-2, -0.5, 0, 0.5, 2], shape: [5])
        let gelu = x.gelu().array, silu = x.silu().array
        for (i, v) in [-2.0, -0.5, 0, 0.5, 2].enumerated() {
            let g = 0.5 * v * (1 + Foundation.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
            XCTAssertEqual(Double(gelu[i]), g, accuracy: 1e-6)
            XCTAssertEqual(Double(silu[i]), v / (1 + Foundation.exp(-v)), accuracy: 1e-6)
        }
        // Exact GELU against float64 x Φ(x) (PyTorch gelu(-2, -0.5, 0.5, 2) = -0.0455, -0.1543, 0.3457, 1.9545).
        let exact = x.geluErf().array
        for (i, v) in [-2.0, -0.5, 0, 0.5, 2].enumerated() {
            XCTAssertEqual(Double(exact[i]), 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot())), accuracy: 1e-6)
        }
        XCTAssertEqual(x.relu().array, [0, 0, 0, 0.5, 2])
        XCTAssertEqual(x.pow(2).array, [0, 0, 0, 0.25, 4])  // negatives clamp to 0
    }
}
