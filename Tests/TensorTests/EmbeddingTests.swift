import Foundation
import Tensor
import XCTest

final class EmbeddingTests: XCTestCase {
    func testLookup() {
        let table = Tensor((0..<12).map(Float.init), shape: [4, 3])
        let e = Tensor.embedding(table, indices: [3, 0, 3])
        XCTAssertEqual(e.shape, [3, 3])
        XCTAssertEqual(e.array, [9, 10, 11, 0, 1, 2, 9, 10, 11])
    }

    func testGradients() {
        let table = TestData.randn([5, 4], seed: 7)
        GradCheck.check("embedding (repeated indices)", inputs: [table]) {
            Tensor.embedding(table, indices: [1, 4, 1, 0])
        }
    }

    /// Against the formula of diffusers get_timestep_embedding(flip_sin_to_cos=True,
    /// downscale_freq_shift=1), evaluated in float64 here.
    func testTimestepEmbedding() {
        let t: [Float] = [0, 1, 37.5, 999]
        for dim in [8, 9, 32] {
            let e = Tensor.timestepEmbedding(t, dim: dim)
            XCTAssertEqual(e.shape, [t.count, dim])
            XCTAssertFalse(e.requiresGrad)
            let half = dim / 2
            for (r, tv) in t.enumerated() {
                for j in 0..<half {
                    let f = Foundation.exp(-Foundation.log(10000.0) * Double(j) / Double(half - 1))
                    let arg = Double(tv) * f
                    // float32 argument rounding at t = 999 limits agreement to ~1e-4.
                    XCTAssertEqual(Double(e[r * dim + j]), Foundation.cos(arg), accuracy: 2e-4, "cos t=\(tv) j=\(j)")
                    XCTAssertEqual(Double(e[r * dim + half + j]), Foundation.sin(arg), accuracy: 2e-4, "sin t=\(tv) j=\(j)")
                }
                if dim % 2 == 1 { XCTAssertEqual(e[r * dim + dim - 1], 0) }
            }
        }
    }

    /// Against diffusers' get_timestep_embedding(flip_sin_to_cos=True) transcribed to NumPy in
    /// float32 (torch's arithmetic). Tolerance: max abs error < 2e-4 (float32 rounding of
    /// t * frequency at t ~ 1000).
    func testTimestepEmbeddingMatchesDiffusersFormula() throws {
        let t: [Float] = [0, 1, 5, 37.5, 250, 999]
        for dim in [32, 33] {
            let e = Tensor.timestepEmbedding(t, dim: dim)
            let ref = try NumPyReference.run("""
            import math
            t = load('t', (\(t.count),)).astype(np.float32)
            dim, max_period, shift = \(dim), 10000, 1
            half = dim // 2
            exponent = -math.log(max_period) * np.arange(0, half, dtype=np.float32)
            exponent = (exponent / (half - shift)).astype(np.float32)
            emb = np.exp(exponent).astype(np.float32)
            emb = (t[:, None] * emb[None, :]).astype(np.float32)
            emb = np.concatenate([np.sin(emb), np.cos(emb)], axis=-1)
            emb = np.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
            if dim % 2 == 1:
                emb = np.pad(emb, ((0, 0), (0, 1)))
            save(emb)
            """, inputs: ["t": Tensor(t, shape: [t.count])])
            let err = NumPyReference.maxAbsDiff(e.array, ref)
            print("timestepEmbedding dim \(dim) vs diffusers formula (NumPy float32): max abs error \(err)")
            XCTAssertLessThan(err, 2e-4)
        }
    }
}
