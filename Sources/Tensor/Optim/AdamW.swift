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
    public func update() {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        let lr = learningRate, b1 = beta1, b2 = beta2, eps = eps
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            p.makeWritable()  // a parameter that shares a mapped file's values gets its own copy
            let decay: Float = (decayAll || p.rank >= 2) ? lr * weightDecay : 0
            let (pd, mi, vi) = (p.data, m[i], v[i])
            Runtime.parallelFor(p.count, cost: 8) { lo, hi in
                for j in lo..<hi {
                    let gj = g[j]
                    mi[j] = b1 * mi[j] + (1 - b1) * gj
                    vi[j] = b2 * vi[j] + (1 - b2) * gj * gj
                    let mh = mi[j] / bc1, vh = vi[j] / bc2
                    pd[j] -= decay * pd[j] + lr * mh / (vh.squareRoot() + eps)
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
    var total: Double = 0
    for p in parameters { if let g = p.grad { for j in 0..<p.count { total += Double(g[j] * g[j]) } } }
    let norm = Float(total.squareRoot())
    if norm > maxNorm && norm > 0 {
        let s = maxNorm / (norm + 1e-6)
        for p in parameters { if let g = p.grad { for j in 0..<p.count { g[j] *= s } } }
    }
    return norm
}
