/// Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen, Aila, 2019, "Improved
/// precision and recall metric for assessing generative models"): each set's manifold is the union
/// of balls around its vectors with radius the distance to the k-th nearest neighbour in the same
/// set (k = 3 in the paper). Precision is the fraction of generated vectors inside the real
/// manifold (quality); recall the fraction of real vectors inside the generated manifold (coverage).
/// A collapsed generator (one class, or copies) has a small manifold: low recall.
public struct PrecisionRecall: Sendable, Codable, Equatable {
    public var precision: Double
    public var recall: Double

    public init(precision: Double, recall: Double) {
        self.precision = precision
        self.recall = recall
    }

    public static func compute(real: FeatureMatrix, generated: FeatureMatrix, k: Int = 3) -> PrecisionRecall {
        let realRadii = PairwiseDistances.kthNeighbourRadii(real, k: k)
        let genRadii = PairwiseDistances.kthNeighbourRadii(generated, k: k)
        return PrecisionRecall(precision: coverage(queries: generated, manifold: real, radii: realRadii),
                               recall: coverage(queries: real, manifold: generated, radii: genRadii))
    }

    /// Fraction of query rows within radii[j] of some manifold row j.
    static func coverage(queries: FeatureMatrix, manifold: FeatureMatrix, radii: [Float]) -> Double {
        let squared = radii.map { $0 * $0 }
        let n = manifold.rows
        var inside = 0
        PairwiseDistances.forEachBlock(queries: queries, reference: manifold) { _, m, block in
            for r in 0..<m {
                for j in 0..<n where block[r * n + j] <= squared[j] { inside += 1; break }
            }
        }
        return Double(inside) / Double(max(1, queries.rows))
    }
}
