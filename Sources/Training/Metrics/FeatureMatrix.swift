import Tensor

/// A set of vectors as a row-major matrix (rows, cols): image features or flattened pixels.
public struct FeatureMatrix: Sendable {
    public var rows: Int
    public var cols: Int
    /// `rows * cols` values; row i is `values[i * cols ..< (i + 1) * cols]`.
    public var values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "FeatureMatrix: \(values.count) values for \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    /// 8-bit images as vectors with values in [0, 1] (one row per image).
    public init(pixels: [UInt8], count: Int) {
        precondition(count > 0 && pixels.count % count == 0, "FeatureMatrix: \(pixels.count) pixels for \(count) images")
        self.init(rows: count, cols: pixels.count / count, values: pixels.map { Float($0) * (1 / 255) })
    }

    /// The rows at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> FeatureMatrix {
        var out = [Float](repeating: 0, count: indices.count * cols)
        for (r, i) in indices.enumerated() {
            for j in 0..<cols { out[r * cols + j] = values[i * cols + j] }
        }
        return FeatureMatrix(rows: indices.count, cols: cols, values: out)
    }

    /// Squared L2 norm of each row.
    public var squaredNorms: [Float] {
        (0..<rows).map { i in
            var s: Float = 0
            for j in 0..<cols { let v = values[i * cols + j]; s += v * v }
            return s
        }
    }
}

/// Euclidean distances between the rows of two matrices, computed block by block with one sgemm
/// per block: |q - x|^2 = |q|^2 + |x|^2 - 2 q.x (clamped at 0, so exact copies read 0 up to float
/// rounding of the norms, about 1e-3 relative).
public enum PairwiseDistances {
    /// Calls `body(firstQuery, block)` for consecutive blocks of query rows, where `block` holds
    /// squared distances (rowsInBlock, reference.rows) row-major. Blocks are at most `blockRows` rows.
    public static func forEachBlock(queries: FeatureMatrix, reference: FeatureMatrix, blockRows: Int = 256,
                                    _ body: (Int, Int, UnsafeBufferPointer<Float>) -> Void) {
        precondition(queries.cols == reference.cols, "PairwiseDistances: \(queries.cols) vs \(reference.cols) columns")
        let d = queries.cols, n = reference.rows
        let qn = queries.squaredNorms, xn = reference.squaredNorms
        var block = [Float](repeating: 0, count: min(blockRows, max(1, queries.rows)) * n)
        var start = 0
        while start < queries.rows {
            let m = min(blockRows, queries.rows - start)
            queries.values.withUnsafeBufferPointer { q in
                reference.values.withUnsafeBufferPointer { x in
                    block.withUnsafeMutableBufferPointer { c in
                        guard let qb = q.baseAddress, let xb = x.baseAddress, let cb = c.baseAddress else { return }
                        BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: d, alpha: -2, a: qb + start * d, lda: d,
                                   b: xb, ldb: d, beta: 0, c: cb, ldc: n, openBLASOnly: true)
                        Runtime.parallelFor(m, cost: n) { lo, hi in
                            for r in lo..<hi {
                                let row = cb + r * n, a = qn[start + r]
                                for j in 0..<n { row[j] = max(0, row[j] + a + xn[j]) }
                            }
                        }
                    }
                }
            }
            block.withUnsafeBufferPointer { c in
                body(start, m, UnsafeBufferPointer(rebasing: c[0 ..< m * n]))
            }
            start += m
        }
    }

    /// Distance from each query row to its nearest reference row, and that row's index.
    /// With `excludeSelf`, query i never matches reference i (queries and reference are the same set).
    public static func nearest(queries: FeatureMatrix, reference: FeatureMatrix, excludeSelf: Bool = false)
        -> (distances: [Float], indices: [Int]) {
        var dist = [Float](repeating: .infinity, count: queries.rows)
        var idx = [Int](repeating: -1, count: queries.rows)
        let n = reference.rows
        forEachBlock(queries: queries, reference: reference) { start, m, block in
            for r in 0..<m {
                var best = Float.infinity, bi = -1
                for j in 0..<n where block[r * n + j] < best && !(excludeSelf && j == start + r) {
                    best = block[r * n + j]; bi = j
                }
                dist[start + r] = best.squareRoot(); idx[start + r] = bi
            }
        }
        return (dist, idx)
    }

    /// Distance from each row to its k-th nearest neighbour within the same set (itself excluded).
    public static func kthNeighbourRadii(_ set: FeatureMatrix, k: Int) -> [Float] {
        precondition(k >= 1 && k < set.rows, "kthNeighbourRadii: k \(k) needs more than k rows, got \(set.rows)")
        var radii = [Float](repeating: 0, count: set.rows)
        let n = set.rows
        forEachBlock(queries: set, reference: set) { start, m, block in
            for r in 0..<m {
                // Keep the k smallest distances to other rows (insertion into a sorted buffer).
                var smallest = [Float](repeating: .infinity, count: k)
                for j in 0..<n where j != start + r {
                    let v = block[r * n + j]
                    if v < smallest[k - 1] {
                        var p = k - 1
                        while p > 0 && smallest[p - 1] > v { smallest[p] = smallest[p - 1]; p -= 1 }
                        smallest[p] = v
                    }
                }
                radii[start + r] = smallest[k - 1].squareRoot()
            }
        }
        return radii
    }
}
