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

    /// Long rows (vector loops plus ragged tails) against a float64 softmax; inputs span
    /// [-60, 60] so the exponent reduction is exercised over a wide range. Tolerance: 2e-6
    /// relative per element (float32 rounding plus the polynomial exp's 1.2e-7).
    func testMatchesFloat64() {
        for cols in [1, 7, 8, 37, 200] {
            let x = TestData.uniform([5, cols], -60, 60, seed: UInt64(cols))
            let y = Tensor.softmaxLastDim(x).array
            for r in 0..<5 {
                let row = (0..<cols).map { Double(x[r * cols + $0]) }
                let m = row.max()!
                let e = row.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                for j in 0..<cols {
                    let ref = e[j] / z
                    XCTAssertEqual(Double(y[r * cols + j]), ref, accuracy: 2e-6 * ref + 1e-30, "cols \(cols) row \(r) col \(j)")
                }
            }
        }
    }

    func testGradients() {
        let x = TestData.randn([3, 2, 5], seed: 6, std: 2)
        GradCheck.check("softmaxLastDim", inputs: [x]) { Tensor.softmaxLastDim(x) }
    }
}
