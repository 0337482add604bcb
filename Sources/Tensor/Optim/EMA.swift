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
        updates += 1
        let n = Float(updates)
        let d = warmup ? min(decay, (1 + n) / (10 + n)) : decay
        for (s, p) in zip(shadow, parameters) {
            let (sd, pd) = (s.data, p.data)
            Runtime.parallelFor(s.count, cost: 2) { lo, hi in
                for j in lo..<hi { sd[j] = d * sd[j] + (1 - d) * pd[j] }
            }
        }
    }

    /// Writes the averaged values into `parameters` (e.g. before saving or sampling).
    /// Sets the update count (when the shadow weights come from a checkpoint), so the warmup
    /// decay continues where it stopped.
    public func restoreUpdates(_ n: Int) { updates = max(0, n) }

    public func copy(into parameters: [Tensor]) {
        for (s, p) in zip(shadow, parameters) { p.copyValues(from: s) }
    }
}
