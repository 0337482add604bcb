// Reductions.

extension Tensor {
    /// Sum of all elements (scalar).
    public func sum() -> Tensor {
        var acc: Double = 0
        for i in 0..<count { acc += Double(data[i]) }
        let out = Tensor([Float(acc)], shape: [])
        return out.recording([self]) { [self] out in
            let g = out.grad![0], gx = self.gradBuffer()
            Runtime.parallelFor(count) { lo, hi in for i in lo..<hi { gx[i] += g } }
        }
    }

    /// Mean of all elements (scalar).
    public func mean() -> Tensor { sum().scaled(1 / Float(max(1, count))) }

    /// Sum over the last dimension: (..., D) -> (..., 1).
    public func sumLast() -> Tensor {
        let d = shape.last ?? 1, rows = count / max(1, d)
        var s = shape
        if s.isEmpty { s = [1] } else { s[s.count - 1] = 1 }
        let out = Tensor(uninitialized: s)
        let (px, py) = (data, out.data)
        Runtime.parallelFor(rows, cost: d) { lo, hi in
            for r in lo..<hi {
                var acc: Float = 0
                for k in 0..<d { acc += px[r * d + k] }
                py[r] = acc
            }
        }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            Runtime.parallelFor(rows, cost: d) { lo, hi in
                for r in lo..<hi { for k in 0..<d { gx[r * d + k] += g[r] } }
            }
        }
    }

    /// Mean over the last dimension: (..., D) -> (..., 1).
    public func meanLast() -> Tensor { sumLast().scaled(1 / Float(max(1, shape.last ?? 1))) }
}
