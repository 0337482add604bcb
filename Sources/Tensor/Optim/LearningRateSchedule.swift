import Foundation

/// Linear warmup from 0 to `peak` over `warmupSteps`, then cosine decay to `peak * finalFraction`
/// at `totalSteps` (and constant after).
public struct WarmupCosineSchedule: Sendable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var finalFraction: Float

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, finalFraction: Float = 0.05) {
        self.peak = peak; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
        self.finalFraction = finalFraction
    }

    /// Learning rate for the 0-based step.
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let t = min(1, Float(step - warmupSteps) / Float(span))
        let floor = peak * finalFraction
        return floor + (peak - floor) * 0.5 * (1 + cosf(Float.pi * t))
    }
}
