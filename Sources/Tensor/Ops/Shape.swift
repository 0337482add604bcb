// Shape ops: reshape, transpose, concat, slice, gather rows.

extension Tensor {
    /// Same values, new shape (one dimension may be -1). Copies (tensors own their storage).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "reshape \(shape) -> \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "reshape: \(shape) has \(count) elements, not \(s)")
        let out = Tensor(uninitialized: s)
        out.data.update(from: data, count: count)
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            Runtime.parallelFor(count) { lo, hi in for i in lo..<hi { gx[i] += g[i] } }
        }
    }

    /// Swaps the last two dimensions: (..., M, N) -> (..., N, M).
    public func transposedLast2() -> Tensor {
        precondition(rank >= 2, "transposedLast2 needs rank >= 2, got \(shape)")
        let m = shape[rank - 2], n = shape[rank - 1], batch = count / max(1, m * n)
        var s = shape
        s.swapAt(rank - 2, rank - 1)
        let out = Tensor(uninitialized: s)
        let (px, py) = (data, out.data)
        Runtime.parallelFor(batch * m, cost: n) { lo, hi in
            for r in lo..<hi {
                let b = r / m, i = r % m
                for j in 0..<n { py[b * m * n + j * m + i] = px[b * m * n + i * n + j] }
            }
        }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            Runtime.parallelFor(batch * m, cost: n) { lo, hi in
                for r in lo..<hi {
                    let b = r / m, i = r % m
                    for j in 0..<n { gx[b * m * n + i * n + j] += g[b * m * n + j * m + i] }
                }
            }
        }
    }

    /// Concatenates tensors along `axis`; all other dimensions must agree.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concat of nothing")
        let r = parts[0].rank
        let ax = axis < 0 ? axis + r : axis
        for p in parts {
            precondition(p.rank == r && (0..<r).allSatisfy { $0 == ax || p.shape[$0] == parts[0].shape[$0] },
                         "concat: shapes \(parts.map(\.shape)) differ off axis \(ax)")
        }
        let outer = parts[0].shape[..<ax].reduce(1, *)
        let inners = parts.map { $0.shape[ax...].reduce(1, *) }
        let total = inners.reduce(0, +)
        var s = parts[0].shape
        s[ax] = parts.map { $0.shape[ax] }.reduce(0, +)
        let out = Tensor(uninitialized: s)
        var offset = 0
        for (p, inner) in zip(parts, inners) {
            for o in 0..<outer { (out.data + o * total + offset).update(from: p.data + o * inner, count: inner) }
            offset += inner
        }
        return out.recording(parts) { out in
            let g = out.grad!
            var offset = 0
            for (p, inner) in zip(parts, inners) {
                if p.requiresGrad {
                    let gp = p.gradBuffer()
                    for o in 0..<outer {
                        for k in 0..<inner { gp[o * inner + k] += g[o * total + offset + k] }
                    }
                }
                offset += inner
            }
        }
    }

    /// Rows `range` of the first dimension.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "slice \(range) of \(shape)")
        let row = count / max(1, shape[0])
        var s = shape
        s[0] = range.count
        let out = Tensor(uninitialized: s)
        out.data.update(from: data + range.lowerBound * row, count: range.count * row)
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer() + range.lowerBound * row
            for i in 0..<(range.count * row) { gx[i] += g[i] }
        }
    }

    /// Splits the first dimension into chunks along `axis` 1 (channels): returns tensors of
    /// `sizes[i]` channels each. Shape (B, C, ...) with sum(sizes) == C.
    public func splitChannels(_ sizes: [Int]) -> [Tensor] {
        precondition(rank >= 2 && sizes.reduce(0, +) == shape[1], "splitChannels \(sizes) of \(shape)")
        let b = shape[0], inner = count / (shape[0] * shape[1])
        var result: [Tensor] = []
        var c0 = 0
        for c in sizes {
            var s = shape
            s[1] = c
            let out = Tensor(uninitialized: s)
            let start = c0
            for bi in 0..<b {
                (out.data + bi * c * inner).update(from: data + (bi * shape[1] + start) * inner, count: c * inner)
            }
            result.append(out.recording([self]) { [self] out in
                let g = out.grad!, gx = self.gradBuffer()
                for bi in 0..<b {
                    let dst = gx + (bi * shape[1] + start) * inner, src = g + bi * c * inner
                    for k in 0..<(c * inner) { dst[k] += src[k] }
                }
            })
            c0 += c
        }
        return result
    }

    /// Rows of a (N, D) tensor picked by index: (indices.count, D). Gradients scatter-add back.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        precondition(rank == 2, "gatherRows needs (N, D), got \(shape)")
        let n = shape[0], d = shape[1]
        let out = Tensor(uninitialized: [indices.count, d])
        for (r, i) in indices.enumerated() {
            precondition(i >= 0 && i < n, "gatherRows: index \(i) out of range 0..<\(n)")
            (out.data + r * d).update(from: data + i * d, count: d)
        }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            for (r, i) in indices.enumerated() { for k in 0..<d { gx[i * d + k] += g[r * d + k] } }
        }
    }
}
