import Tensor
import XCTest

final class NormalizationTests: XCTestCase {
    func testGroupNormGradients() {
        let x = TestData.randn([2, 6, 3, 2], seed: 8, std: 2)
        let w = TestData.randn([6], seed: 9)
        let b = TestData.randn([6], seed: 10)
        GradCheck.check("groupNorm (B,C,H,W) G=3", inputs: [x, w, b]) { Tensor.groupNorm(x, groups: 3, weight: w, bias: b) }
        let s = TestData.randn([2, 4, 5], seed: 11)
        let ws = TestData.randn([4], seed: 12)
        let bs = TestData.randn([4], seed: 13)
        GradCheck.check("groupNorm (B,C,L) G=1", inputs: [s, ws, bs]) { Tensor.groupNorm(s, groups: 1, weight: ws, bias: bs) }
        GradCheck.check("groupNorm (B,C,L) G=C", inputs: [s, ws, bs]) { Tensor.groupNorm(s, groups: 4, weight: ws, bias: bs) }
        let flat = TestData.randn([3, 8], seed: 34)
        let wf = TestData.randn([8], seed: 35)
        let bf = TestData.randn([8], seed: 36)
        GradCheck.check("groupNorm (B,C) G=2", inputs: [flat, wf, bf]) { Tensor.groupNorm(flat, groups: 2, weight: wf, bias: bf) }
    }

    func testLayerNormGradients() {
        let x = TestData.randn([2, 3, 6], seed: 14, std: 2)
        let w = TestData.randn([6], seed: 15)
        let b = TestData.randn([6], seed: 16)
        GradCheck.check("layerNorm", inputs: [x, w, b]) { Tensor.layerNorm(x, weight: w, bias: b) }
    }

    /// Against NumPy (float64). Tolerance: max abs error < 1e-4.
    func testGroupNormMatchesNumPy() throws {
        for (shape, groups) in [([3, 8, 5, 4], 4), ([2, 6, 7], 2), ([4, 32, 7, 7], 8)] {
            let x = TestData.randn(shape, seed: 17, std: 3)
            for i in 0..<x.count { x[i] += 1.5 }  // nonzero mean
            let w = TestData.randn([shape[1]], seed: 18)
            let b = TestData.randn([shape[1]], seed: 19)
            let y = Tensor.groupNorm(x, groups: groups, weight: w, bias: b)
            let ref = try NumPyReference.run("""
            shape, G = \(shape), \(groups)
            x = load('x', shape); w = load('w', (shape[1],)); b = load('b', (shape[1],))
            g = x.reshape(shape[0], G, -1)
            mean = g.mean(axis=2, keepdims=True); var = g.var(axis=2, keepdims=True)
            xhat = ((g - mean) / np.sqrt(var + 1e-5)).reshape(shape)
            bshape = [1, shape[1]] + [1] * (len(shape) - 2)
            save(xhat * w.reshape(bshape) + b.reshape(bshape))
            """, inputs: ["x": x, "w": w, "b": b])
            let err = NumPyReference.maxAbsDiff(y.array, ref)
            print("groupNorm \(shape) G=\(groups) vs NumPy: max abs error \(err)")
            XCTAssertLessThan(err, 1e-4)
        }
    }

    func testLayerNormNormalises() {
        let x = TestData.randn([4, 16], seed: 20, std: 5)
        let y = Tensor.layerNorm(x, weight: Tensor(filled: 1, shape: [16]), bias: Tensor(zeros: [16]))
        for r in 0..<4 {
            let row = Array(y.array[(r * 16)..<((r + 1) * 16)])
            let mean = row.reduce(0, +) / 16
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 16
            XCTAssertEqual(mean, 0, accuracy: 1e-5)
            XCTAssertEqual(variance, 1, accuracy: 1e-3)
        }
    }
}
