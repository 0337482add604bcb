import Foundation

/// Kernel Inception Distance (Bińkowski et al., "Demystifying MMD GANs", 2018) in a feature space:
/// the squared maximum mean discrepancy between generated and real features under the cubic
/// polynomial kernel k(x, y) = (x·y / d + 1)^3, estimated without bias.
///
/// Unlike FID, the estimate does not depend on the number of images in expectation, so rows scored
/// at different n compare, and it comes with an error bar: the images are split into `blocks`
/// disjoint blocks (generated block i against real block i), each block gives an unbiased estimate,
/// and the result is their mean with the standard error of that mean (sample standard deviation
/// over the blocks / sqrt(blocks)). Every sum runs in Double in a fixed order, so the value does not
/// depend on the machine.
public enum KernelDistance {
    public struct Estimate: Codable, Equatable, Sendable {
        /// Mean of the blocks' unbiased MMD² estimates.
        public var value: Double
        /// Standard error of `value` (0 with a single block).
        public var standardError: Double
        public var blocks: Int

        enum CodingKeys: String, CodingKey { case value, standardError = "standard_error", blocks }
    }

    /// The cubic polynomial kernel of two rows of `d` features.
    @inline(__always)
    static func kernel(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> Double {
        var dot = 0.0
        for i in 0..<d { dot += Double(a[i]) * Double(b[i]) }
        let v = dot / Double(d) + 1
        return v * v * v
    }

    /// Mean of k over distinct pairs of rows of one set (the unbiased within-set term).
    static func withinMean(_ m: FeatureMatrix, rows: Range<Int>) -> Double {
        let d = m.cols, n = rows.count
        guard n >= 2 else { return 0 }
        var sum = 0.0
        m.values.withUnsafeBufferPointer { p in
            let base = p.baseAddress!
            for i in rows {
                for j in (i + 1)..<rows.upperBound { sum += kernel(base + i * d, base + j * d, d) }
            }
        }
        return 2 * sum / Double(n * (n - 1))
    }

    /// Mean of k over all pairs (one row of each set).
    static func crossMean(_ a: FeatureMatrix, rowsA: Range<Int>, _ b: FeatureMatrix, rowsB: Range<Int>) -> Double {
        let d = a.cols
        var sum = 0.0
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                for i in rowsA {
                    for j in rowsB { sum += kernel(pa.baseAddress! + i * d, pb.baseAddress! + j * d, d) }
                }
            }
        }
        return sum / Double(max(1, rowsA.count * rowsB.count))
    }

    /// Block `i` of `blocks` equal parts of `0..<n` (the first n % blocks parts one row longer).
    static func block(_ i: Int, of blocks: Int, count n: Int) -> Range<Int> {
        let base = n / blocks, extra = n % blocks
        let start = i * base + min(i, extra)
        return start ..< start + base + (i < extra ? 1 : 0)
    }

    /// The real set's within-block terms, which depend only on the real features: compute once
    /// and pass to `compute` for every generated set scored against the same real set.
    public struct RealTerms: Sendable {
        public var blocks: Int
        public var rows: Int
        var within: [Double]
    }

    public static func realTerms(_ real: FeatureMatrix, blocks: Int = 10) -> RealTerms {
        let b = max(1, min(blocks, real.rows / 2))
        return RealTerms(blocks: b, rows: real.rows,
                         within: (0..<b).map { withinMean(real, rows: block($0, of: b, count: real.rows)) })
    }

    /// KID of `generated` against `real` (same feature dimension), over `terms.blocks` blocks
    /// (fewer when either set has fewer than 2 rows per block).
    public static func compute(generated: FeatureMatrix, real: FeatureMatrix, terms: RealTerms? = nil) throws -> Estimate {
        guard generated.cols == real.cols, generated.cols > 0 else {
            throw TrainingError.invalidData("KID: feature dimensions differ (\(generated.cols) vs \(real.cols))")
        }
        guard generated.rows >= 2, real.rows >= 2 else {
            throw TrainingError.invalidData("KID needs at least 2 images on each side (got \(generated.rows) and \(real.rows))")
        }
        var t = terms ?? realTerms(real)
        let b = min(t.blocks, generated.rows / 2)
        if b != t.blocks || t.rows != real.rows { t = realTerms(real, blocks: b) }
        var estimates: [Double] = []
        for i in 0..<b {
            let g = block(i, of: b, count: generated.rows), r = block(i, of: b, count: real.rows)
            estimates.append(withinMean(generated, rows: g) + t.within[i] - 2 * crossMean(generated, rowsA: g, real, rowsB: r))
        }
        let mean = estimates.reduce(0, +) / Double(b)
        guard b > 1 else { return Estimate(value: mean, standardError: 0, blocks: 1) }
        let variance = estimates.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(b - 1)
        return Estimate(value: mean, standardError: (variance / Double(b)).squareRoot(), blocks: b)
    }
}
