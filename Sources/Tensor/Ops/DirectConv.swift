import CCoalesceKernels

// Inference-only 3x3 stride-1 convolution on channels-last data, with bias, activation and an
// optional nearest upsampling of the input fused in (CCoalesceKernels: AVX-512 / AVX2 / baseline,
// chosen from cpuid at run time).
//
// Why a second convolution: `conv2d` (im2col + sgemm) is right for training-size batches and 32+
// output channels, but a small decoder at batch 1 spends most of its time writing and packing a
// column matrix 9x its input for a GEMM whose N is 16-48 (profiled: sgemm packing, transposes,
// a separate SiLU pass, upsample and weight permutation were more than half of a coalescer image).
// The direct kernel reads each input value straight from a padded NHWC buffer and keeps a tile of
// 4 pixels x up to 64 output channels in registers. No autograd: outputs record nothing.

/// Output activation fused into `Tensor.conv3x3NHWC`.
public enum FusedActivation: Sendable {
    case none, silu, sigmoid

    var code: Int32 {
        switch self {
        case .none: return Int32(CCK_ACT_NONE)
        case .silu: return Int32(CCK_ACT_SILU)
        case .sigmoid: return Int32(CCK_ACT_SIGMOID)
        }
    }
}

/// A 3x3 convolution's weight and bias packed once for `Tensor.conv3x3NHWC`: (3, 3, Cin, Coutp)
/// with Cout padded to a multiple of 16. Immutable; build a new one if the weights change.
public final class PackedConv3x3: @unchecked Sendable {
    public let cin: Int, cout: Int
    let weight: UnsafeMutablePointer<Float>
    let bias: UnsafeMutablePointer<Float>

    /// weight (Cout, Cin, 3, 3) as `conv2d` takes it; bias (Cout) or nil.
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3,
                     "PackedConv3x3: weight must be (Cout, Cin, 3, 3), got \(weight.shape)")
        cout = weight.shape[0]
        cin = weight.shape[1]
        if let bias { precondition(bias.count == cout, "PackedConv3x3: bias \(bias.shape) for \(cout) channels") }
        let coutp = Int(cck_padded_cout(Int32(cout)))
        self.weight = .allocate(capacity: 9 * cin * coutp)
        self.bias = .allocate(capacity: coutp)
        cck_pack_conv3x3(weight.data, bias.map { UnsafePointer($0.data) }, Int32(cout), Int32(cin),
                         self.weight, self.bias)
    }

    /// The weight of the convolution that maps output gradients to input gradients (stride 1,
    /// padding 1): W'[ci][co][ky][kx] = W[co][ci][2-ky][2-kx], so that
    /// dx = conv3x3(dy, W') (no bias).
    public static func transposedForInputGradient(_ weight: Tensor) -> PackedConv3x3 {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3,
                     "PackedConv3x3: weight must be (Cout, Cin, 3, 3), got \(weight.shape)")
        return PackedConv3x3(inputGradientOf: weight)
    }

    /// Packed straight from `weight` by `cck_pack_conv3x3_input_gradient` (the same values as
    /// flipping into a (Cin, Cout, 3, 3) tensor and packing that), no bias.
    private init(inputGradientOf weight: Tensor) {
        cout = weight.shape[1]
        cin = weight.shape[0]
        let coutp = Int(cck_padded_cout(Int32(cout)))
        self.weight = .allocate(capacity: 9 * cin * coutp)
        self.bias = .allocate(capacity: coutp)
        self.bias.initialize(repeating: 0, count: coutp)
        cck_pack_conv3x3_input_gradient(weight.data, Int32(weight.shape[0]), Int32(weight.shape[1]), self.weight)
    }

    deinit {
        weight.deallocate()
        bias.deallocate()
    }
}

/// Which path 3x3 stride-1 convolutions take (`COALESCE_CONV=im2col` selects im2col + sgemm).
public enum Conv2dPath {
    public static var current: String {
        ConvGeometry.directDisabled ? "3x3 convs: im2col + sgemm (COALESCE_CONV=im2col)" : "3x3 convs: direct"
    }
}

extension Tensor {
    /// The instruction set `conv3x3NHWC` runs on here ("avx512", "avx2" or "scalar").
    public static var directKernelISA: String { String(cString: cck_isa_name(cck_best_isa())) }

    /// y = act(conv3x3(up(x)) + bias), stride 1, zero padding 1, all channels-last:
    /// x (B, H, W, Cin) -> (B, H*upsample, W*upsample, Cout), where up() is nearest upsampling.
    /// Inference only (records no gradient). `isa` forces a kernel version (tests); nil = best.
    public static func conv3x3NHWC(_ x: Tensor, _ conv: PackedConv3x3, upsample: Int = 1,
                                   activation: FusedActivation = .none, isa: Int32? = nil) -> Tensor {
        precondition(x.rank == 4 && x.shape[3] == conv.cin,
                     "conv3x3NHWC: input must be (B, H, W, \(conv.cin)), got \(x.shape)")
        precondition(upsample >= 1, "conv3x3NHWC: upsample \(upsample) must be >= 1")
        let out = Tensor(uninitialized: [x.shape[0], x.shape[1] * upsample, x.shape[2] * upsample, conv.cout])
        directConv3x3(x.data, batch: x.shape[0], h: x.shape[1], w: x.shape[2], conv, upsample: upsample,
                      activation: activation, isa: isa, into: out.data)
        return out
    }

    /// `conv3x3NHWC` on raw buffers: x (B, h, w, Cin) -> out (B, h*up, w*up, Cout).
    static func directConv3x3(_ x: UnsafePointer<Float>, batch b: Int, h hIn: Int, w wIn: Int, _ conv: PackedConv3x3,
                              upsample: Int = 1, activation: FusedActivation = .none, isa: Int32? = nil,
                              into out: UnsafeMutablePointer<Float>) {
        if b == 0 { return }
        let (h, w) = (hIn * upsample, wIn * upsample)
        let padded = Scratch.take(b * (h + 2) * (w + 2) * conv.cin)
        cck_pad_nhwc(x, Int32(b), Int32(hIn), Int32(wIn), Int32(conv.cin), Int32(upsample), padded.pointer)
        directConv3x3(padded: padded.pointer, batch: b, h: h, w: w, conv, activation: activation, isa: isa, into: out)
        Scratch.give(padded)
    }

    /// The kernel on an input already padded: (B, h + 2, w + 2, Cin) -> out (B, h, w, Cout).
    static func directConv3x3(padded pin: UnsafePointer<Float>, batch b: Int, h: Int, w: Int, _ conv: PackedConv3x3,
                              activation: FusedActivation = .none, isa: Int32? = nil,
                              into out: UnsafeMutablePointer<Float>) {
        if b == 0 { return }
        let isaCode = isa ?? Int32(CCK_ISA_BEST)
        let (wt, bs) = (UnsafePointer(conv.weight), UnsafePointer(conv.bias))
        let act = activation.code
        // Work units: runs of `unitRows` output rows of one image, fixed by (h, w) alone, so the
        // kernel's tiles cover the same positions of an image whatever the batch and the thread
        // count (an output value never depends on which tile computed it).
        let unitRows = directConvUnitRows(w: w), perImage = (h + unitRows - 1) / unitRows
        // cost: multiply-adds per unit / 64, so a batch-1 layer (tens of µs) stays on one thread:
        // waking a second thread costs about as much as it saves there (measured).
        Runtime.parallelFor(b * perImage, cost: unitRows * w * conv.cin * 9 * conv.cout / 64) { lo, hi in
            for u in lo..<hi {
                let image = u / perImage, r0 = image * h + (u % perImage) * unitRows
                let r1 = min(r0 + unitRows, (image + 1) * h)
                cck_conv3x3_nhwc(pin, Int32(b), Int32(h), Int32(w), Int32(conv.cin), wt, bs, Int32(conv.cout),
                                 out, act, Int32(r0), Int32(r1), isaCode)
            }
        }
    }

    /// Output rows per work unit of the direct convolution: at least 64 positions (whole rows).
    static func directConvUnitRows(w: Int) -> Int { max(1, (64 + w - 1) / w) }

    /// (B, C, H, W) -> (B, H, W, C) copy. Inference helper for `conv3x3NHWC`; records no gradient.
    public func nchwToNHWC() -> Tensor {
        precondition(rank == 4, "nchwToNHWC: expected (B, C, H, W), got \(shape)")
        let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let out = Tensor(uninitialized: [b, h, w, c])
        Layout.transpose(data, batch: b, rows: c, cols: h * w, into: out.data)
        return out
    }

    /// (B, H, W, C) -> (B, C, H, W) copy. Inference helper for `conv3x3NHWC`; records no gradient.
    public func nhwcToNCHW() -> Tensor {
        precondition(rank == 4, "nhwcToNCHW: expected (B, H, W, C), got \(shape)")
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let out = Tensor(uninitialized: [b, c, h, w])
        Layout.transpose(data, batch: b, rows: h * w, cols: c, into: out.data)
        return out
    }
}
