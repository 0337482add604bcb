import Tensor
import XCTest

final class Conv2dTests: XCTestCase {
    /// (kernel, stride, padding) combinations covering the pointwise fast path, strided 1x1,
    /// valid and same 3x3, strided 3x3.
    static let configs: [(k: Int, s: Int, p: Int)] = [(1, 1, 0), (1, 2, 0), (3, 1, 0), (3, 1, 1), (3, 2, 1), (3, 2, 0)]

    func testOutputShape() {
        let x = Tensor(zeros: [2, 3, 8, 6])
        let w = Tensor(zeros: [5, 3, 3, 3])
        XCTAssertEqual(Tensor.conv2d(x, weight: w, bias: nil, stride: 1, padding: 1).shape, [2, 5, 8, 6])
        XCTAssertEqual(Tensor.conv2d(x, weight: w, bias: nil, stride: 2, padding: 1).shape, [2, 5, 4, 3])
        XCTAssertEqual(Tensor.conv2d(x, weight: w, bias: nil).shape, [2, 5, 6, 4])
    }

    func testGradients() {
        for (i, c) in Self.configs.enumerated() {
            let x = TestData.randn([2, 3, 5, 6], seed: 10 + UInt64(i))
            let w = TestData.randn([4, 3, c.k, c.k], seed: 20 + UInt64(i), std: 0.5)
            let b = TestData.randn([4], seed: 30 + UInt64(i))
            GradCheck.check("conv2d k\(c.k) s\(c.s) p\(c.p)", inputs: [x, w, b]) {
                Tensor.conv2d(x, weight: w, bias: b, stride: c.s, padding: c.p)
            }
        }
        // Channel counts >= 8 so the transposes run their 8x8 block path (plus ragged edges).
        for (i, c) in [(3, 1, 1), (3, 2, 1), (1, 1, 0)].enumerated() {
            let x = TestData.randn([1, 9, 5, 5], seed: 80 + UInt64(i))
            let w = TestData.randn([10, 9, c.0, c.0], seed: 90 + UInt64(i), std: 0.2)
            let b = TestData.randn([10], seed: 95 + UInt64(i))
            GradCheck.check("conv2d 9->10 channels k\(c.0) s\(c.1) p\(c.2)", inputs: [x, w, b]) {
                Tensor.conv2d(x, weight: w, bias: b, stride: c.1, padding: c.2)
            }
        }
        let x = TestData.randn([1, 2, 4, 4], seed: 40)
        let w = TestData.randn([3, 2, 3, 3], seed: 41)
        GradCheck.check("conv2d no bias", inputs: [x, w]) {
            Tensor.conv2d(x, weight: w, bias: nil, stride: 1, padding: 1)
        }
    }

    /// A batch large enough to be split into several chunks (16x16, 130 channels, 3x3: about
    /// 300k column values per image, so chunks of 3 images for a batch of 7) gives the same
    /// outputs and gradients as running each image alone. Tolerance: 1e-4 relative to the
    /// largest magnitude.
    func testChunkedBatchMatchesPerImage() {
        let (bn, cin, hw, cout) = (7, 130, 16, 5)
        let x = TestData.randn([bn, cin, hw, hw], seed: 100)
        let w = TestData.randn([cout, cin, 3, 3], seed: 101, std: 0.05)
        let b = TestData.randn([cout], seed: 102)
        x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
        let seed = TestData.randn([bn, cout, hw, hw], seed: 103)
        let y = Tensor.conv2d(x, weight: w, bias: b, stride: 1, padding: 1)
        y.backward(seed: seed)
        let (yAll, gxAll, gwAll, gbAll) = (y.array, x.gradArray!, w.gradArray!, b.gradArray!)
        x.clearGrad(); w.clearGrad(); b.clearGrad()

        var gwSum = [Float](repeating: 0, count: w.count), gbSum = [Float](repeating: 0, count: cout)
        let per = cin * hw * hw, perOut = cout * hw * hw
        for i in 0..<bn {
            let xi = Tensor(Array(x.array[(i * per)..<((i + 1) * per)]), shape: [1, cin, hw, hw], requiresGrad: true)
            let yi = Tensor.conv2d(xi, weight: w, bias: b, stride: 1, padding: 1)
            yi.backward(seed: Tensor(Array(seed.array[(i * perOut)..<((i + 1) * perOut)]), shape: yi.shape))
            assertClose(Array(yAll[(i * perOut)..<((i + 1) * perOut)]), yi.array, "output image \(i)")
            assertClose(Array(gxAll[(i * per)..<((i + 1) * per)]), xi.gradArray!, "dX image \(i)")
            for j in 0..<w.count { gwSum[j] += w.grad![j] }
            for j in 0..<cout { gbSum[j] += b.grad![j] }
            w.clearGrad(); b.clearGrad()
        }
        assertClose(gwAll, gwSum, "dW")
        assertClose(gbAll, gbSum, "db")
    }

    private func assertClose(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let scale = max(1e-6, a.map(abs).max() ?? 0)
        let err = NumPyReference.maxAbsDiff(a, b) / scale
        XCTAssertLessThan(err, 1e-4, "\(what): relative difference \(err)", file: file, line: line)
    }

    /// Against a direct NumPy loop (float64). Tolerance: max abs error < 1e-4.
    func testMatchesNumPy() throws {
        try compareWithNumPy(bn: 2, cin: 5, h: 9, wd: 7, cout: 6)
        // Channels and positions that are not multiples of 8 exercise the blocked transposes' edges.
        try compareWithNumPy(bn: 3, cin: 19, h: 11, wd: 10, cout: 21)
        // Several chunks of images (see testChunkedBatchMatchesPerImage).
        try compareWithNumPy(bn: 7, cin: 130, h: 16, wd: 16, cout: 5, configs: [(3, 1, 1), (3, 2, 1)])
    }

    /// One NumPy run checks every configuration (one Python start per shape keeps the test fast).
    private func compareWithNumPy(bn: Int, cin: Int, h: Int, wd: Int, cout: Int,
                                  configs: [(k: Int, s: Int, p: Int)] = Conv2dTests.configs) throws {
        var inputs: [String: Tensor] = [:]
        var outputs: [Tensor] = []
        for (i, c) in configs.enumerated() {
            let x = TestData.randn([bn, cin, h, wd], seed: 50 + UInt64(i))
            let w = TestData.randn([cout, cin, c.k, c.k], seed: 60 + UInt64(i), std: 0.3)
            let b = TestData.randn([cout], seed: 70 + UInt64(i))
            inputs["x\(i)"] = x; inputs["w\(i)"] = w; inputs["b\(i)"] = b
            outputs.append(Tensor.conv2d(x, weight: w, bias: b, stride: c.s, padding: c.p))
        }
        let configList = configs.map { "(\($0.k), \($0.s), \($0.p))" }.joined(separator: ", ")
        let ref = try NumPyReference.run("""
        B, Ci, H, W, Co = \(bn), \(cin), \(h), \(wd), \(cout)
        results = []
        for i, (K, s, p) in enumerate([\(configList)]):
            x = load('x%d' % i, (B, Ci, H, W)); w = load('w%d' % i, (Co, Ci, K, K)); b = load('b%d' % i, (Co,))
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            Ho, Wo = (H + 2 * p - K) // s + 1, (W + 2 * p - K) // s + 1
            out = np.zeros((B, Co, Ho, Wo))
            for oy in range(Ho):
                for ox in range(Wo):
                    win = xp[:, :, oy * s:oy * s + K, ox * s:ox * s + K]
                    out[:, :, oy, ox] = np.einsum('bckl,ockl->bo', win, w) + b
            results.append(out.ravel())
        save(np.concatenate(results))
        """, inputs: inputs)
        var offset = 0
        for (c, out) in zip(configs, outputs) {
            guard offset + out.count <= ref.count else { return XCTFail("NumPy reference too short") }
            let err = NumPyReference.maxAbsDiff(out.array, Array(ref[offset..<(offset + out.count)]))
            offset += out.count
            print("conv2d [\(bn), \(cin), \(h), \(wd)] -> \(cout) k\(c.k) s\(c.s) p\(c.p) vs NumPy: max abs error \(err)")
            XCTAssertLessThan(err, 1e-4, "conv2d [\(bn), \(cin), \(h), \(wd)] -> \(cout) k\(c.k) s\(c.s) p\(c.p)")
        }
        XCTAssertEqual(offset, ref.count)
    }
}
