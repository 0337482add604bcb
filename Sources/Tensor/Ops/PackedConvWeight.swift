/// A `conv2d` weight packed once for inference, in the layout its forward pass reads: the direct
/// kernel's (3, 3, Cin, Coutp) for 3x3 stride-1 padding-1 convolutions (`PackedConv3x3`, no
/// bias: `conv2d` adds the bias when it moves the result back to NCHW), else the row-stable
/// GEMM's (K*K*Cin, Cout rounded up) for the im2col path. `conv2d` would otherwise pack the
/// weight on every call, which for a UNet at batch 2 cost a quarter of a call's instructions and
/// a fresh allocation the size of every weight. Pointwise (1x1) convolutions read the weight as
/// it is: nothing to pack. The packed product gives the same bits as the unpacked one. The weight
/// must not change after packing (callers pack in `prepareForInference`, after loading, and pack
/// again after the weights change).
public final class PackedConvWeight: @unchecked Sendable {
    let cout: Int, cin: Int, k: Int, stride: Int, padding: Int
    /// The direct kernel's weight (3x3, stride 1, padding 1).
    let direct: PackedConv3x3?
    /// The im2col path's weight: (K*K*Cin, ldw), columns past Cout zero.
    let rows: UnsafeMutablePointer<Float>?
    let ldw: Int

    /// nil where `conv2d` reads the weight as it is (1x1, stride 1, padding 0).
    /// weight (Cout, Cin, K, K).
    public init?(weight: Tensor, stride: Int, padding: Int) {
        precondition(weight.rank == 4 && weight.shape[2] == weight.shape[3],
                     "PackedConvWeight: weight must be (Cout, Cin, K, K), got \(weight.shape)")
        (cout, cin, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
        (self.stride, self.padding) = (stride, padding)
        let g = ConvGeometry(batch: 1, cin: cin, h: k, w: k, cout: cout, k: k, stride: stride, padding: padding)
        if g.isPointwise { return nil }
        if g.isDirect3x3 {
            direct = PackedConv3x3(weight: weight, bias: nil)
            rows = nil
            ldw = 0
            return
        }
        direct = nil
        ldw = RowGEMM.paddedWidth(cout)
        let wp = g.permutedWeight(weight.data)                            // wp: (Cout, K*K*Cin)
        let dst = Tensor.allocate(g.kc * ldw)
        RowGEMM.pack(wp.pointer, transposed: true, n: cout, k: g.kc, ldb: g.kc, into: dst, ldw: ldw)
        wp.release()
        rows = dst
    }

    /// Whether this pack is the weight of a convolution of geometry `g`.
    func fits(_ g: ConvGeometry) -> Bool {
        g.cout == cout && g.cin == cin && g.k == k && g.stride == stride && g.padding == padding
            && (direct != nil) == g.isDirect3x3
    }

    deinit { rows?.deallocate() }
}
