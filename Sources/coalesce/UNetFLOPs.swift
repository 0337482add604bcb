import Models

/// Multiply-adds of one forward pass of a `UNet` (or a `NestedUNet`, or a coalescer's net and
/// decoder), counted from the layer
/// shapes alone, so that a time per call reads as GFLOP/s and the same count holds for any
/// implementation of the network (ours, PyTorch's, ONNX Runtime's).
///
/// Counted, per image: every convolution (Ho·Wo·Cout·Cin·k², including 1x1 skips, strided
/// downsampling, the upsampling convolutions and a nested network's adapters), every linear
/// layer (rows·in·out: time MLP, condition projection, residual blocks' time projections,
/// attention projections; a cross-attention's key and value projections have one row, the
/// context token), and the two attention products (Tq·Tk·C for QKᵀ and for PV, all heads
/// together). Not counted: group norm, SiLU, softmax, the attention scaling, additions,
/// upsampling copies, the sinusoidal timestep embedding and biases; together they are a few
/// percent of the total. FLOPs = 2 × multiply-adds. A training step counts 3 × the forward
/// (the backward pass computes one gradient for the input and one for the weights of every
/// product, each as large as the forward product); the optimiser's element-wise update is
/// not counted.
struct UNetFLOPs {
    private(set) var multiplyAdds = 0

    /// Forward multiply-adds of `config` on a (H, W) = (side, side) input, per image, with
    /// `inject` adding in-adapter work and `middle` replacing the middle block (a nested
    /// network's inner UNet and adapters), as `UNet.forward` runs them.
    mutating func unet(_ config: UNetConfig, side: Int, middle: ((inout UNetFLOPs, _ side: Int, _ channels: Int) -> Void)? = nil) {
        let ch = config.channels, c0 = ch[0], timeDim = 4 * c0
        linear(rows: 1, c0, timeDim)
        linear(rows: 1, timeDim, timeDim)
        if config.condDim > 0 { linear(rows: 1, config.condDim, timeDim) }
        // Sides per level: a stride-2, padding-1 3x3 convolution takes s to ceil(s / 2).
        var sides = [side]
        for _ in 1..<ch.count { sides.append((sides[sides.count - 1] + 1) / 2) }
        conv(side: side, config.inChannels, c0, kernel: 3)
        var cin = c0
        for (i, c) in ch.enumerated() {
            for _ in 0..<config.layersPerLevel {
                resBlock(config, side: sides[i], cin, c)
                attention(config, level: i, side: sides[i], channels: c)
                cin = c
            }
            if i < ch.count - 1 { conv(side: sides[i + 1], c, c, kernel: 3) }
        }
        let cm = ch[ch.count - 1], sm = sides[sides.count - 1]
        if let middle {
            middle(&self, sm, cm)
        } else if config.midBlock {
            resBlock(config, side: sm, cm, cm)
            if config.midAttention { selfAttention(side: sm, channels: cm) }
            resBlock(config, side: sm, cm, cm)
        }
        cin = cm
        for level in stride(from: ch.count - 1, through: 0, by: -1) {
            let c = ch[level]
            for j in 0..<config.layersPerLevel {
                resBlock(config, side: sides[level], j == 0 ? cin + c : c, c)
                attention(config, level: level, side: sides[level], channels: c)
            }
            if level > 0 { conv(side: sides[level - 1], c, ch[level - 1], kernel: 3) }
            cin = level > 0 ? ch[level - 1] : c
        }
        conv(side: side, c0, config.outChannels, kernel: 3)
    }

    /// A `NestedUNet` on (side, side) images: the outer network, whose middle is the in-adapter,
    /// the inner network at the outer bottleneck's side and the out-adapter.
    mutating func nested(outer: UNetConfig, inner: UNetConfig?, side: Int) {
        guard let inner else { return unet(outer, side: side) }
        unet(outer, side: side) { counter, s, co in
            let ci = inner.channels[0]
            counter.conv(side: s, co, ci, kernel: 3)   // in_adapter
            counter.unet(inner, side: s)
            counter.conv(side: s, ci, co, kernel: 3)   // out_adapter
        }
    }

    /// One coalescer jump and the decode of its end point, per image: the net's linear layers,
    /// the whitened-PCA unprojection (latentDim x dim) and the autoencoder's five decoder
    /// convolutions (two at the latent side, then one after each x2 upsampling, then the image).
    /// LayerNorm, SiLU, the jump's arithmetic and the sigmoid are not counted, as above.
    mutating func coalescer(_ config: CoalescerConfig) {
        let n = config.net, a = config.autoencoder, d = a.decoderWidths, s = a.latentSide
        let inputs = n.latentDim + n.descDim + (n.levelInput ? 1 : 0)
        // In, then hidden x hidden layers: depth - 1 of them (plain MLP) or two per residual block.
        linear(rows: 1, inputs, n.hidden)
        for _ in 0..<(n.blocks == 0 ? n.depth - 1 : 2 * n.blocks) { linear(rows: 1, n.hidden, n.hidden) }
        linear(rows: 1, n.hidden, 1 + n.latentDim)
        linear(rows: 1, n.latentDim, a.latentDim)                  // unproject
        conv(side: s, a.latentChannels, d[2], kernel: 3)
        conv(side: s, d[2], d[2], kernel: 3)
        conv(side: 2 * s, d[2], d[1], kernel: 3)
        conv(side: 4 * s, d[1], d[0], kernel: 3)
        conv(side: 4 * s, d[0], a.imageChannels, kernel: 3)
    }

    mutating func conv(side: Int, _ cin: Int, _ cout: Int, kernel: Int) {
        multiplyAdds += side * side * cout * cin * kernel * kernel
    }

    mutating func linear(rows: Int, _ inFeatures: Int, _ outFeatures: Int) {
        multiplyAdds += rows * inFeatures * outFeatures
    }

    mutating func resBlock(_ config: UNetConfig, side: Int, _ cin: Int, _ cout: Int) {
        conv(side: side, cin, cout, kernel: 3)
        linear(rows: 1, 4 * config.channels[0], cout)
        conv(side: side, cout, cout, kernel: 3)
        if cin != cout { conv(side: side, cin, cout, kernel: 1) }
    }

    /// The attention blocks that follow a residual block of `level`.
    mutating func attention(_ config: UNetConfig, level: Int, side: Int, channels c: Int) {
        guard config.attentionLevels[level] else { return }
        selfAttention(side: side, channels: c)
        if config.contextDim > 0 {
            let t = side * side
            linear(rows: t, c, c)                     // q
            linear(rows: 1, config.contextDim, c)     // k (one context token)
            linear(rows: 1, config.contextDim, c)     // v
            multiplyAdds += 2 * t * 1 * c             // QKᵀ and PV against one token
            linear(rows: t, c, c)                     // out
        }
    }

    mutating func selfAttention(side: Int, channels c: Int) {
        let t = side * side
        linear(rows: t, c, 3 * c)                     // qkv
        multiplyAdds += 2 * t * t * c                 // QKᵀ and PV, all heads
        linear(rows: t, c, c)                         // out
    }
}
