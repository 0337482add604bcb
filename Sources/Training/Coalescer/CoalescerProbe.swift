import Foundation
import Models
import Tensor

/// A cheap check of generated latents without decoding, used for the desc_scale / p ablation:
/// each generated point is classified by a 10-nearest-neighbour vote over the training items in
/// the whitened latent space, and its nearest training item is recorded.
public struct CoalescerProbeResult: Sendable, CustomStringConvertible {
    public var steps: Int
    public var samples: Int
    /// Share of generated points whose 10-NN vote gives the requested class.
    public var classAccuracy: Double
    /// Distinct nearest training items among the generated points (diversity).
    public var distinctNearest: Int
    /// Mean distance from a generated point to its nearest training item, divided by the same for
    /// test-set latents (1 = as far as real held-out images; << 1 = copies of training items).
    public var memorisationRatio: Double
    public var redraws: Int

    public var description: String {
        String(format: "steps %d: latent 10-NN class accuracy %.1f%%, distinct nearest items %d/%d, nn-distance ratio vs test %.2f, redraws %d",
               steps, classAccuracy * 100, distinctNearest, samples, memorisationRatio, redraws)
    }
}

public enum CoalescerProbe {
    /// Generates `perClass` points for each class prompt (canonical phrase) at each step count.
    public static func run(model: CoalescerModel, data: CoalescerData, testPoints: [Float],
                           perClass: Int = 100, stepCounts: [Int] = [1, 2, 4], seed: UInt64 = 1000) throws
        -> [CoalescerProbeResult] {
        let k = data.dim
        let index = try FaissIndex(dimension: k)
        try index.add(data.points)
        let testN = testPoints.count / k
        let testNN = try index.search(testPoints, k: 1).distances
        let testMean = testNN.map { Double($0).squareRoot() }.reduce(0, +) / Double(max(1, testN))
        let sampler = CoalescerSampler(model: model)
        var results: [CoalescerProbeResult] = []
        for steps in stepCounts {
            var ok = 0, total = 0, redraws = 0
            var nearest = Set<Int>()
            var distSum = 0.0
            for c in 0..<data.classDescriptions.count {
                let pts = try sampler.latents(prompt: Captions.prompt(forClass: c), seed: seed + UInt64(c) * 10_000,
                                              count: perClass, steps: .fixed(steps))
                redraws += pts.redraws
                let (ids, dists) = try index.search(pts.points, k: 10)
                for i in 0..<perClass {
                    var votes = [Int](repeating: 0, count: data.classDescriptions.count)
                    for j in 0..<10 where ids[i * 10 + j] >= 0 { votes[data.labels[ids[i * 10 + j]]] += 1 }
                    let best = votes.indices.max { votes[$0] < votes[$1] } ?? 0
                    if best == c { ok += 1 }
                    nearest.insert(ids[i * 10])
                    distSum += Double(dists[i * 10]).squareRoot()
                    total += 1
                }
            }
            results.append(CoalescerProbeResult(steps: steps, samples: total, classAccuracy: Double(ok) / Double(total),
                                                distinctNearest: nearest.count,
                                                memorisationRatio: (distSum / Double(total)) / max(testMean, 1e-9),
                                                redraws: redraws))
        }
        return results
    }
}
