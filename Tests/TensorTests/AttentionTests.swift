import Tensor
import XCTest

final class AttentionTests: XCTestCase {
    func testGradientsSelfAttention() {
        let q = TestData.randn([2, 5, 4], seed: 21)
        let k = TestData.randn([2, 5, 4], seed: 22)
        let v = TestData.randn([2, 5, 4], seed: 23)
        GradCheck.check("attention self heads=2", inputs: [q, k, v]) { Tensor.attention(q: q, k: k, v: v, heads: 2) }
    }

    func testGradientsCrossAttention() {
        let q = TestData.randn([2, 4, 6], seed: 24)
        let k = TestData.randn([2, 3, 6], seed: 25)
        let v = TestData.randn([2, 3, 6], seed: 26)
        GradCheck.check("attention cross heads=3", inputs: [q, k, v]) { Tensor.attention(q: q, k: k, v: v, heads: 3) }
        GradCheck.check("attention cross heads=1", inputs: [q, k, v]) { Tensor.attention(q: q, k: k, v: v, heads: 1) }
    }

    /// The same tensor as q, k and v: gradients from the three roles add up.
    func testGradientsSharedInput() {
        let x = TestData.randn([1, 4, 4], seed: 27)
        GradCheck.check("attention q=k=v", inputs: [x]) { Tensor.attention(q: x, k: x, v: x, heads: 2) }
    }

    /// Against an einsum NumPy implementation (float64). Tolerance: max abs error < 1e-4.
    func testMatchesNumPy() throws {
        for (bn, tq, tk, d, heads) in [(2, 49, 49, 32, 4), (3, 16, 7, 24, 2)] {
            let q = TestData.randn([bn, tq, d], seed: 28)
            let k = TestData.randn([bn, tk, d], seed: 29)
            let v = TestData.randn([bn, tk, d], seed: 30)
            q.requiresGrad = true  // the training path keeps all probabilities
            let out = Tensor.attention(q: q, k: k, v: v, heads: heads)
            XCTAssertTrue(out.hasGraph)
            // The inference path (no gradient recorded) holds one probability plane at a time.
            let inference = GradMode.withDisabled { Tensor.attention(q: q, k: k, v: v, heads: heads) }
            let ref = try NumPyReference.run("""
            B, Tq, Tk, D, H = \(bn), \(tq), \(tk), \(d), \(heads)
            dh = D // H
            q = load('q', (B, Tq, H, dh)); k = load('k', (B, Tk, H, dh)); v = load('v', (B, Tk, H, dh))
            s = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(dh)
            p = np.exp(s - s.max(axis=-1, keepdims=True)); p /= p.sum(axis=-1, keepdims=True)
            save(np.einsum('bhqk,bkhd->bqhd', p, v).reshape(B, Tq, D))
            """, inputs: ["q": q, "k": k, "v": v])
            let err = NumPyReference.maxAbsDiff(out.array, ref)
            let errInference = NumPyReference.maxAbsDiff(inference.array, ref)
            print("attention B\(bn) Tq\(tq) Tk\(tk) D\(d) heads\(heads) vs NumPy: max abs error \(err) (inference path \(errInference))")
            XCTAssertLessThan(err, 1e-4)
            XCTAssertLessThan(errInference, 1e-4)
        }
    }

    func testTokensRoundTrip() {
        // 19 channels and 42 positions: not multiples of the transpose's 8x8 blocks.
        let (bn, c, h, w) = (2, 19, 6, 7)
        let x = TestData.randn([bn, c, h, w], seed: 31)
        let t = Tensor.channelsToTokens(x)
        XCTAssertEqual(t.shape, [bn, h * w, c])
        for b in 0..<bn {
            for ch in 0..<c {
                for p in 0..<(h * w) { XCTAssertEqual(t[(b * h * w + p) * c + ch], x[(b * c + ch) * h * w + p]) }
            }
        }
        let back = Tensor.tokensToChannels(t, height: h, width: w)
        XCTAssertEqual(back.shape, x.shape)
        XCTAssertEqual(back.array, x.array)
    }

    func testTokensGradients() {
        let x = TestData.randn([2, 3, 2, 3], seed: 32)
        GradCheck.check("channelsToTokens", inputs: [x]) { Tensor.channelsToTokens(x) }
        let t = TestData.randn([2, 6, 3], seed: 33)
        GradCheck.check("tokensToChannels", inputs: [t]) { Tensor.tokensToChannels(t, height: 2, width: 3) }
        let big = TestData.randn([1, 10, 3, 4], seed: 34)
        GradCheck.check("channelsToTokens 10 channels", inputs: [big]) { Tensor.channelsToTokens(big) }
        let bigT = TestData.randn([1, 12, 10], seed: 35)
        GradCheck.check("tokensToChannels 10 channels", inputs: [bigT]) { Tensor.tokensToChannels(bigT, height: 3, width: 4) }
    }
}
