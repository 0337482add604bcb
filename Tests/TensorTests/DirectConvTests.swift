import CCoalesceKernels
import XCTest
import Tensor

/// The direct NHWC 3x3 kernel (every instruction-set version this CPU can run) against the
/// autograd `conv2d` + upsample + activation it replaces at inference.
final class DirectConvTests: XCTestCase {
    func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, upsample: Int, activation: FusedActivation) -> Tensor {
        GradMode.withDisabled {
            var h = upsample > 1 ? Tensor.upsampleNearest2d(x, scale: upsample) : x
            h = Tensor.conv2d(h, weight: w, bias: b, stride: 1, padding: 1)
            switch activation {
            case .none: return h
            case .silu: return h.silu()
            case .sigmoid: return h.sigmoid()
            }
        }
    }

    func testMatchesConv2dOnEveryISA() {
        var rng = RandomGenerator(seed: 7)
        // (batch, cin, cout, side, upsample): the coalescer decoder's shapes plus odd sizes that
        // hit the channel and pixel tails (cout not a multiple of 16 or 8, width not of 4).
        let cases: [(Int, Int, Int, Int, Int)] = [
            (2, 4, 48, 7, 1), (1, 48, 48, 7, 1), (3, 48, 32, 7, 2), (2, 32, 16, 14, 2), (2, 16, 1, 28, 1),
            (1, 3, 5, 5, 1), (2, 7, 70, 6, 1), (1, 1, 9, 3, 3),
        ]
        let isas = (0...Int(cck_best_isa())).map { Int32($0) }
        XCTAssertFalse(isas.isEmpty)
        for (n, cin, cout, side, up) in cases {
            let x = Tensor.randn([n, cin, side, side], rng: &rng)
            let w = Tensor.randn([cout, cin, 3, 3], std: 0.3, rng: &rng)
            let b = Tensor.randn([cout], rng: &rng)
            let packed = PackedConv3x3(weight: w, bias: b)
            for act in [FusedActivation.none, .silu, .sigmoid] {
                let want = reference(x, w, b, upsample: up, activation: act)
                for isa in isas {
                    let got = Tensor.conv3x3NHWC(x.nchwToNHWC(), packed, upsample: up, activation: act, isa: isa).nhwcToNCHW()
                    XCTAssertEqual(got.shape, want.shape)
                    var worst: Float = 0
                    for i in 0..<want.count { worst = max(worst, abs(got.data[i] - want.data[i]) / (1 + abs(want.data[i]))) }
                    XCTAssertLessThan(worst, 1e-4, "n\(n) \(cin)->\(cout) \(side)x\(side) up\(up) \(act) isa \(isa)")
                }
            }
        }
    }

    func testNoBiasAndLayoutRoundTrip() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([2, 5, 4, 6], rng: &rng)
        XCTAssertEqual(x.nchwToNHWC().nhwcToNCHW().array, x.array)
        XCTAssertEqual(x.nchwToNHWC().shape, [2, 4, 6, 5])
        let w = Tensor.randn([3, 5, 3, 3], rng: &rng)
        let want = reference(x, w, nil, upsample: 1, activation: .none)
        let got = Tensor.conv3x3NHWC(x.nchwToNHWC(), PackedConv3x3(weight: w, bias: nil)).nhwcToNCHW()
        for i in 0..<want.count { XCTAssertEqual(got.data[i], want.data[i], accuracy: 1e-4) }
    }
}
