import Tensor
import XCTest

/// Inference products give each row (sample) the same bits whatever the other rows, the number
/// of rows and the thread count; training products match them to rounding.
final class BatchInvarianceTests: XCTestCase {
    /// Row r of every batch is the same input; its output must equal the one-row result exactly.
    func testLinearAndMatmulRowsDoNotDependOnTheBatch() {
        for (inF, outF) in [(64, 512), (512, 512), (48, 196), (5, 7), (300, 1000)] {
            let w = TestData.randn([outF, inF], seed: 900), bias = TestData.randn([outF], seed: 901)
            let b = TestData.randn([inF, outF], seed: 902)
            let row = TestData.randn([1, inF], seed: 903)
            let (lin1, mat1) = GradMode.withDisabled {
                (Tensor.linear(row, weight: w, bias: bias).array, Tensor.matmul(row, b).array)
            }
            for rows in [2, 3, 8, 9, 17, 64] {
                for place in Set([0, rows / 2, rows - 1]) {
                    let x = TestData.randn([rows, inF], seed: UInt64(904 + rows))
                    for j in 0..<inF { x.data[place * inF + j] = row.data[j] }
                    for threads in [1, 2] {
                        let (lin, mat) = Runtime.withThreadCap(threads) {
                            GradMode.withDisabled { (Tensor.linear(x, weight: w, bias: bias).array, Tensor.matmul(x, b).array) }
                        }
                        XCTAssertEqual(Array(lin[(place * outF)..<((place + 1) * outF)]), lin1,
                                       "linear \(inF)->\(outF): row \(place) of \(rows), \(threads) thread(s)")
                        XCTAssertEqual(Array(mat[(place * outF)..<((place + 1) * outF)]), mat1,
                                       "matmul \(inF)x\(outF): row \(place) of \(rows), \(threads) thread(s)")
                    }
                }
            }
            // With gradients recorded the plain (fastest) product runs: same values to rounding.
            let x = TestData.randn([17, inF], seed: 950)
            w.requiresGrad = true
            let trained = Tensor.linear(x, weight: w, bias: bias).array
            w.requiresGrad = false
            let inferred = GradMode.withDisabled { Tensor.linear(x, weight: w, bias: bias).array }
            for i in 0..<trained.count { XCTAssertEqual(trained[i], inferred[i], accuracy: 1e-3 * (1 + abs(trained[i]))) }
        }
    }

    /// Convolutions (direct 3x3, strided im2col, 1x1): image i of a batch equals that image alone.
    func testConvolutionImagesDoNotDependOnTheBatch() {
        for (cin, cout, k, stride, pad, side) in [(4, 16, 3, 1, 1, 28), (16, 32, 3, 2, 1, 14), (8, 12, 1, 1, 0, 7), (3, 1, 3, 1, 1, 9)] {
            let w = TestData.randn([cout, cin, k, k], seed: 960), bias = TestData.randn([cout], seed: 961)
            let batch = 17
            let x = TestData.randn([batch, cin, side, side], seed: 962)
            let per = cin * side * side
            for threads in [1, 2] {
                let all = Runtime.withThreadCap(threads) {
                    GradMode.withDisabled { Tensor.conv2d(x, weight: w, bias: bias, stride: stride, padding: pad) }
                }
                let outPer = all.count / batch
                for i in [0, 5, 16] {
                    let one = Tensor(Array(UnsafeBufferPointer(start: x.data + i * per, count: per)), shape: [1, cin, side, side])
                    let alone = GradMode.withDisabled { Tensor.conv2d(one, weight: w, bias: bias, stride: stride, padding: pad) }.array
                    XCTAssertEqual(Array(all.array[(i * outPer)..<((i + 1) * outPer)]), alone,
                                   "conv \(cin)->\(cout) k\(k) s\(stride) \(side)x\(side): image \(i) of \(batch), \(threads) thread(s)")
                }
            }
        }
    }
}
