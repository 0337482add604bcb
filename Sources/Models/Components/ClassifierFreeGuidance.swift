import Foundation

/// Classifier-free guidance (Ho & Salimans 2022) for a batch of rows with their own scales,
/// shared by the diffusion samplers: per step, each row's v is v_c (scale 1), v_u (scale 0) or
/// v_u + g (v_c − v_u), and the network is asked only for the rows that need each prediction.
///
/// `interval` limits guidance to a band of noise levels (Kynkäänniemi et al. 2024, "Applying
/// guidance in a limited interval improves sample and distribution quality"): at a timestep t
/// whose fraction t / (T − 1) (1 = pure noise) lies outside it, a guided row takes its
/// conditional prediction alone, and the unconditional pass is skipped for it. An unconditional
/// row (scale 0) stays unconditional. Without an interval every step is guided, as before.
public struct ClassifierFreeGuidance: Sendable {
    /// The requested scale of every row.
    public let scales: [Float]
    /// Band of t / (T − 1) where guidance applies; nil: every step.
    public let interval: ClosedRange<Double>?
    public let trainSteps: Int

    public init(scales: [Float], interval: ClosedRange<Double>?, trainSteps: Int) {
        self.scales = scales; self.interval = interval; self.trainSteps = trainSteps
    }

    /// The scales in force at timestep t.
    public func scales(at t: Int) -> [Float] {
        if Self.guides(at: t, interval: interval, trainSteps: trainSteps) { return scales }
        return scales.map { $0 == 0 ? 0 : 1 }
    }

    /// Whether guidance applies at timestep t: always without an interval, else where
    /// t / (T − 1) lies in it. The samplers and the distillation's guided targets share this rule.
    public static func guides(at t: Int, interval: ClosedRange<Double>?, trainSteps: Int) -> Bool {
        guard let interval else { return true }
        return interval.contains(trainSteps > 1 ? Double(t) / Double(trainSteps - 1) : 1)
    }

    /// The rows needing the conditional prediction and those needing the unconditional one.
    public static func rows(_ g: [Float]) -> (cond: [Int], uncond: [Int]) {
        (g.indices.filter { g[$0] != 0 }, g.indices.filter { g[$0] != 1 })
    }

    /// v of every row (`per` values each): `vc` holds the conditional rows' predictions in the
    /// order of `rows(g).cond` from index `vcStart`, `vu` the unconditional ones from `vuStart`.
    public static func combine(_ g: [Float], per: Int, vc: [Float], vcStart: Int = 0,
                               vu: [Float], vuStart: Int = 0) -> [Float] {
        var v = [Float](repeating: 0, count: g.count * per)
        var ci = vcStart, ui = vuStart
        for (i, s) in g.enumerated() {
            let o = i * per
            if s == 1 {
                for j in 0..<per { v[o + j] = vc[ci + j] }
            } else if s == 0 {
                for j in 0..<per { v[o + j] = vu[ui + j] }
            } else {
                for j in 0..<per {
                    let u0 = vu[ui + j]
                    v[o + j] = u0 + s * (vc[ci + j] - u0)
                }
            }
            if s != 0 { ci += per }
            if s != 1 { ui += per }
        }
        return v
    }

    /// Checks a config's `guidance_interval`: nil, or [lo, hi] with 0 <= lo < hi <= 1.
    public static func validate(interval: [Double]?) throws {
        guard let i = interval else { return }
        guard i.count == 2, i.allSatisfy(\.isFinite), i[0] >= 0, i[0] < i[1], i[1] <= 1 else {
            throw ModelError.invalidConfig("guidance_interval \(i) must be [lo, hi] with 0 <= lo < hi <= 1 (fractions of the noise range, 1 = pure noise)")
        }
    }

    /// The config form [lo, hi] as a range (nil stays nil).
    public static func range(_ interval: [Double]?) -> ClosedRange<Double>? {
        guard let i = interval, i.count == 2 else { return nil }
        return i[0]...i[1]
    }
}
