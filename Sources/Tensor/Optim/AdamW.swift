import CCoalesceKernels
import Foundation

/// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019), as PyTorch's
/// `torch.optim.AdamW`: decoupled weight decay `p -= lr * wd * p`, then the Adam update with
/// bias correction. Parameters without a gradient are skipped. Decay is applied only to
/// parameters with rank >= 2 (weights), not to biases and norm scales, unless `decayAll`.
public final class AdamW {
    public let parameters: [Tensor]
    public var learningRate: Float
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public var decayAll: Bool
    public private(set) var step = 0
    private var m: [UnsafeMutablePointer<Float>]
    private var v: [UnsafeMutablePointer<Float>]

    public init(parameters: [Tensor], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                eps: Float = 1e-8, weightDecay: Float = 0.01, decayAll: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        self.decayAll = decayAll
        m = parameters.map { p in let b = Tensor.allocate(p.count); b.initialize(repeating: 0, count: p.count); return b }
        v = parameters.map { p in let b = Tensor.allocate(p.count); b.initialize(repeating: 0, count: p.count); return b }
    }

    deinit {
        m.forEach { $0.deallocate() }
        v.forEach { $0.deallocate() }
    }

    /// Applies one update from the parameters' current gradients (does not zero them).
    public func update() { update(gradientScale: 1, ema: nil) }

    /// One training step's end in one pass over the weights (`cck_adamw_step`): the gradients
    /// clipped to global L2 norm `maxNorm` (as `clipGradNorm`, without writing the scaled
    /// gradients back), the AdamW update, then `ema`'s update from the new values. Same values as
    /// `clipGradNorm`, `update()` and `ema.update(parameters)` one after the other; the
    /// gradients are left unscaled. `ema` must average this optimiser's parameters, in order.
    /// Returns the gradients' norm before clipping.
    @discardableResult
    public func update(clipNorm maxNorm: Float, ema: EMA? = nil) -> Float {
        let norm = gradientNorm(parameters)
        update(gradientScale: clipScale(norm: norm, maxNorm: maxNorm), ema: ema)
        return norm
    }

    private func update(gradientScale: Float, ema: EMA?) {
        if let ema {
            precondition(ema.shadow.count == parameters.count
                         && zip(ema.shadow, parameters).allSatisfy({ $0.count == $1.count }),
                         "AdamW.update: the EMA does not average this optimiser's parameters")
        }
        step += 1
        let emaDecay = ema?.advance() ?? 0
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else {
                if let ema { ema.fold(i, p, decay: emaDecay) }
                continue
            }
            p.makeWritable()  // a parameter that shares a mapped file's values gets its own copy
            let h = cck_adamw_params(grad_scale: gradientScale, lr: learningRate,
                                     decay: (decayAll || p.rank >= 2) ? learningRate * weightDecay : 0,
                                     beta1: beta1, beta2: beta2, bc1: bc1, bc2: bc2, eps: eps, ema_decay: emaDecay)
            let (pd, mi, vi, sd) = (p.data, m[i], v[i], ema?.shadow[i].data)
            Runtime.parallelFor(p.count, cost: 8) { lo, hi in
                withUnsafePointer(to: h) {
                    cck_adamw_step(pd + lo, g + lo, mi + lo, vi + lo, sd.map { $0 + lo }, hi - lo, $0, Int32(CCK_ISA_BEST))
                }
            }
        }
    }

    /// Zeroes every parameter's gradient.
    public func zeroGrad() { parameters.forEach { $0.zeroGrad() } }

    /// The optimiser's state for a checkpoint: the step count and the first and second moments
    /// of every parameter, in parameter order.
    public func exportState() -> (step: Int, m: [Tensor], v: [Tensor]) {
        func copy(_ b: UnsafeMutablePointer<Float>, _ p: Tensor) -> Tensor {
            Tensor(Array(UnsafeBufferPointer(start: b, count: p.count)), shape: p.shape)
        }
        return (step, zip(m, parameters).map { copy($0, $1) }, zip(v, parameters).map { copy($0, $1) })
    }

    /// Restores `exportState()` output (shapes must match the parameters).
    public func restoreState(step: Int, m newM: [Tensor], v newV: [Tensor]) throws {
        guard newM.count == parameters.count, newV.count == parameters.count,
              zip(newM, parameters).allSatisfy({ $0.count == $1.count }),
              zip(newV, parameters).allSatisfy({ $0.count == $1.count }) else {
            throw TensorError.invalidShape(op: "AdamW.restoreState", message: "state does not match the parameters")
        }
        self.step = step
        for i in parameters.indices {
            m[i].update(from: newM[i].data, count: newM[i].count)
            v[i].update(from: newV[i].data, count: newV[i].count)
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (as
/// `torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    let norm = gradientNorm(parameters)
    let s = clipScale(norm: norm, maxNorm: maxNorm)
    if s != 1 {
        for p in parameters { if let g = p.grad { for j in 0..<p.count { g[j] *= s } } }
    }
    return norm
}

/// The global L2 norm of the parameters' gradients: each tensor's Σ g² in double
/// (`cck_sum_squares`, the same bits on every instruction set), added in parameter order.
public func gradientNorm(_ parameters: [Tensor]) -> Float {
    var total: Double = 0
    for p in parameters { if let g = p.grad { total += cck_sum_squares(g, p.count, Int32(CCK_ISA_BEST)) } }
    return Float(total.squareRoot())
}

/// The factor `clipGradNorm` scales gradients by: maxNorm / (norm + 1e-6) above `maxNorm`, else 1.
func clipScale(norm: Float, maxNorm: Float) -> Float {
    norm > maxNorm && norm > 0 ? maxNorm / (norm + 1e-6) : 1
}
