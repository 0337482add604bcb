import CCoalesceKernels
/// Exponential moving average of weights: `shadow = decay * shadow + (1 - decay) * p` after each
/// optimiser step. Sample from the shadow weights (`copy(into:)`), as diffusion models do.
/// With `warmup`, the decay ramps as min(decay, (1 + n) / (10 + n)) so early averages are not
/// dominated by the random initialisation.
public final class EMA {
    public let decay: Float
    public let warmup: Bool
    public let shadow: [Tensor]
    public private(set) var updates = 0

    public init(parameters: [Tensor], decay: Float = 0.999, warmup: Bool = true) {
        self.decay = decay
        self.warmup = warmup
        shadow = parameters.map { $0.detached() }
    }

    /// Folds the current parameter values into the average.
    public func update(_ parameters: [Tensor]) {
        precondition(parameters.count == shadow.count, "EMA: parameter count changed")
        let d = advance()
        for (i, p) in parameters.enumerated() { fold(i, p, decay: d) }
    }

    /// Counts one update and returns its decay (AdamW.step fuses the average into its pass).
    func advance() -> Float {
        updates += 1
        let n = Float(updates)
        return warmup ? min(decay, (1 + n) / (10 + n)) : decay
    }

    /// shadow[i] = d shadow[i] + (1 - d) p, elementwise (`cck_ema_update`).
    func fold(_ i: Int, _ p: Tensor, decay d: Float) {
        let (sd, pd) = (shadow[i].data, p.data)
        Runtime.parallelFor(p.count, cost: 2) { lo, hi in cck_ema_update(sd + lo, pd + lo, hi - lo, d, Int32(CCK_ISA_BEST)) }
    }

    /// Writes the averaged values into `parameters` (e.g. before saving or sampling).
    /// Sets the update count (when the shadow weights come from a checkpoint), so the warmup
    /// decay continues where it stopped.
    public func restoreUpdates(_ n: Int) { updates = max(0, n) }

    public func copy(into parameters: [Tensor]) {
        for (s, p) in zip(shadow, parameters) { p.copyValues(from: s) }
    }
}
