/// Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen, Aila, 2019, "Improved
/// precision and recall metric for assessing generative models"): each set's manifold is the union
/// of balls around its vectors with radius the distance to the k-th nearest neighbour in the same
/// set (k = 3 in the paper). Precision is the fraction of generated vectors inside the real
/// manifold (quality); recall the fraction of real vectors inside the generated manifold (coverage).
/// A collapsed generator (one class, or copies) has a small manifold: low recall.
///
/// Precision counts a generated vector as real-looking when it falls in *any* real ball, so a few
/// real outliers with large radii can swallow a tight cluster of bad samples (uniform noise scores
/// precision 1 in our feature space). Density and coverage (Naeem, Oh, Uh, Choi, Yoo, 2020,
/// "Reliable fidelity and diversity metrics for generative models") are reported beside them:
/// density counts how many real balls contain each generated vector (divided by k; about 1 for
/// real data, near 0 for such clusters), coverage is the fraction of real balls that contain at
/// least one generated vector.
public struct PrecisionRecall: Sendable, Codable, Equatable {
    public var precision: Double
    public var recall: Double
    public var density: Double
    public var coverage: Double

    public init(precision: Double, recall: Double, density: Double, coverage: Double) {
        self.precision = precision
        self.recall = recall
        self.density = density
        self.coverage = coverage
    }

    public static func compute(real: FeatureMatrix, generated: FeatureMatrix, k: Int = 3) -> PrecisionRecall {
        let realRadii = PairwiseDistances.kthNeighbourRadii(real, k: k)
        let genRadii = PairwiseDistances.kthNeighbourRadii(generated, k: k)
        let forward = membership(queries: generated, manifold: real, radii: realRadii)
        let backward = membership(queries: real, manifold: generated, radii: genRadii)
        return PrecisionRecall(
            precision: Double(forward.queriesInside) / Double(max(1, generated.rows)),
            recall: Double(backward.queriesInside) / Double(max(1, real.rows)),
            density: Double(forward.memberships) / Double(k * max(1, generated.rows)),
            coverage: Double(forward.ballsHit) / Double(max(1, real.rows)))
    }

    /// For queries against balls (manifold row j, radius radii[j]): how many queries lie in some
    /// ball, how many (query, ball) memberships there are, and how many balls hold some query.
    static func membership(queries: FeatureMatrix, manifold: FeatureMatrix, radii: [Float])
        -> (queriesInside: Int, memberships: Int, ballsHit: Int) {
        let squared = radii.map { $0 * $0 }
        let n = manifold.rows
        var inside = 0, memberships = 0
        var hit = [Bool](repeating: false, count: n)
        PairwiseDistances.forEachBlock(queries: queries, reference: manifold) { _, m, block in
            for r in 0..<m {
                var count = 0
                for j in 0..<n where block[r * n + j] <= squared[j] { count += 1; hit[j] = true }
                memberships += count
                if count > 0 { inside += 1 }
            }
        }
        return (inside, memberships, hit.filter { $0 }.count)
    }
}
