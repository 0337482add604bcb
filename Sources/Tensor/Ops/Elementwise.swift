import Foundation

// Element-wise ops. Each forward writes a new tensor; each backward *adds* into input grads.

/// How a right-hand operand `b` broadcasts against `a`: `b` varies only along one contiguous
/// block of `a`'s dimensions, i.e. `a` viewed as (outer, mid, inner) and `b` as (mid).
/// Shapes follow NumPy rules restricted to that case: b may have fewer dims (aligned right)
/// and size-1 dims, e.g. a (B, C, H, W) with b (1, C, 1, 1) or (C, 1, 1); a (B, D) with b (D)
/// or (B, 1).
struct Broadcast {
    let outer: Int, mid: Int, inner: Int

    init(_ a: [Int], _ b: [Int], op: String) {
        precondition(b.count <= a.count, "\(op): cannot broadcast \(b) to \(a)")
        let padded = [Int](repeating: 1, count: a.count - b.count) + b
        var first = -1, last = -1
        for (i, (da, db)) in zip(a, padded).enumerated() {
            if db == 1 && da != 1 { continue }
            precondition(db == da, "\(op): cannot broadcast \(b) to \(a)")
            if da == 1 { continue }
            if first < 0 { first = i }
            last = i
        }
        if first < 0 { outer = a.reduce(1, *); mid = 1; inner = 1; return }
        for i in first...last {
            precondition(padded[i] == a[i], "\(op): broadcast dims of \(b) against \(a) must be contiguous")
        }
        outer = a[..<first].reduce(1, *)
        mid = a[first...last].reduce(1, *)
        inner = a[(last + 1)...].reduce(1, *)
    }
}

extension Tensor {
    /// Shared driver for binary ops where b broadcasts against a (see `Broadcast`).
    /// `f` computes the output; `da`/`db` give the partial derivatives d out/d a and d out/d b.
    @inline(__always)
    private static func binary(_ a: Tensor, _ b: Tensor, op: String,
                               _ f: @escaping (Float, Float) -> Float,
                               da: @escaping (Float, Float) -> Float,
                               db: @escaping (Float, Float) -> Float) -> Tensor {
        let out = Tensor(uninitialized: a.shape)
        if a.shape == b.shape {
            let (pa, pb, po) = (a.data, b.data, out.data)
            Runtime.parallelFor(a.count) { lo, hi in for i in lo..<hi { po[i] = f(pa[i], pb[i]) } }
            return out.recording([a, b]) { out in
                let g = out.grad!
                if a.requiresGrad {
                    let ga = a.gradBuffer()
                    Runtime.parallelFor(a.count) { lo, hi in for i in lo..<hi { ga[i] += g[i] * da(pa[i], pb[i]) } }
                }
                if b.requiresGrad {
                    let gb = b.gradBuffer()
                    Runtime.parallelFor(b.count) { lo, hi in for i in lo..<hi { gb[i] += g[i] * db(pa[i], pb[i]) } }
                }
            }
        }
        let bc = Broadcast(a.shape, b.shape, op: op)
        let (pa, pb, po) = (a.data, b.data, out.data)
        let (outer, mid, inner) = (bc.outer, bc.mid, bc.inner)
        Runtime.parallelFor(outer * mid, cost: inner) { lo, hi in
            for r in lo..<hi {
                let bv = pb[r % mid]
                let base = r * inner
                for k in 0..<inner { po[base + k] = f(pa[base + k], bv) }
            }
        }
        return out.recording([a, b]) { out in
            let g = out.grad!
            if a.requiresGrad {
                let ga = a.gradBuffer()
                Runtime.parallelFor(outer * mid, cost: inner) { lo, hi in
                    for r in lo..<hi {
                        let bv = pb[r % mid]
                        let base = r * inner
                        for k in 0..<inner { ga[base + k] += g[base + k] * da(pa[base + k], bv) }
                    }
                }
            }
            if b.requiresGrad {
                let gb = b.gradBuffer()
                // Reduce over outer and inner; parallel over mid so writes do not race.
                Runtime.parallelFor(mid, cost: outer * inner) { lo, hi in
                    for m in lo..<hi {
                        var acc: Float = 0
                        let bv = pb[m]
                        for o in 0..<outer {
                            let base = (o * mid + m) * inner
                            for k in 0..<inner { acc += g[base + k] * db(pa[base + k], bv) }
                        }
                        gb[m] += acc
                    }
                }
            }
        }
    }

    /// a + b, b broadcast against a.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        binary(a, b, op: "add", { $0 + $1 }, da: { _, _ in 1 }, db: { _, _ in 1 })
    }

    /// a - b, b broadcast against a.
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        binary(a, b, op: "sub", { $0 - $1 }, da: { _, _ in 1 }, db: { _, _ in -1 })
    }

    /// a * b (element-wise), b broadcast against a.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        binary(a, b, op: "mul", { $0 * $1 }, da: { _, b in b }, db: { a, _ in a })
    }

    /// a / b (element-wise), b broadcast against a.
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        binary(a, b, op: "div", { $0 / $1 }, da: { _, b in 1 / b }, db: { a, b in -a / (b * b) })
    }

    /// Shared driver for unary ops: `f` forward, `df(x, y)` derivative given input and output.
    @inline(__always)
    internal func unary(_ f: @escaping (Float) -> Float,
                        _ df: @escaping (Float, Float) -> Float) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let (px, py) = (data, out.data)
        Runtime.parallelFor(count, cost: 4) { lo, hi in for i in lo..<hi { py[i] = f(px[i]) } }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            Runtime.parallelFor(count, cost: 4) { lo, hi in for i in lo..<hi { gx[i] += g[i] * df(px[i], py[i]) } }
        }
    }

    /// s * x.
    public func scaled(_ s: Float) -> Tensor { unary({ $0 * s }, { _, _ in s }) }
    public static func * (s: Float, x: Tensor) -> Tensor { x.scaled(s) }
    /// x + c.
    public func adding(_ c: Float) -> Tensor { unary({ $0 + c }, { _, _ in 1 }) }
    public prefix static func - (x: Tensor) -> Tensor { x.scaled(-1) }

    /// SiLU (swish): x * sigmoid(x).
    public func silu() -> Tensor {
        unary({ x in x / (1 + expf(-x)) }, { x, _ in
            let s = 1 / (1 + expf(-x))
            return s * (1 + x * (1 - s))
        })
    }

    /// GELU, tanh approximation (Hendrycks & Gimpel; as PyTorch `approximate="tanh"`).
    public func gelu() -> Tensor {
        let c: Float = 0.7978845608028654  // sqrt(2/pi)
        return unary({ x in 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x))) }, { x, _ in
            let u = c * (x + 0.044715 * x * x * x)
            let t = tanhf(u)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
        })
    }

    public func relu() -> Tensor { unary({ max($0, 0) }, { x, _ in x > 0 ? 1 : 0 }) }
    public func sigmoid() -> Tensor { unary({ 1 / (1 + expf(-$0)) }, { _, y in y * (1 - y) }) }
    public func tanh() -> Tensor { unary({ tanhf($0) }, { _, y in 1 - y * y }) }
    public func exp() -> Tensor { unary({ expf($0) }, { _, y in y }) }
    public func square() -> Tensor { unary({ $0 * $0 }, { x, _ in 2 * x }) }
    /// sqrt(x + eps): eps keeps the derivative finite at 0.
    public func sqrt(eps: Float = 0) -> Tensor {
        unary({ ($0 + eps).squareRoot() }, { _, y in 0.5 / max(y, 1e-20) })
    }
    /// (x + eps)^p for x >= 0 (negative inputs are clamped to 0). With eps > 0 the derivative
    /// stays finite at 0 even for p < 1 (DESIGN: the direction loss |.|^(1/2) "finite at 0").
    /// The gradient is 0 for x < 0, where the clamp makes the function flat (at x = 0 it is the
    /// right derivative p * eps^(p-1)).
    public func pow(_ p: Float, eps: Float = 0) -> Tensor {
        unary({ powf(max($0, 0) + eps, p) }, { x, _ in x >= 0 ? p * powf(x + eps, p - 1) : 0 })
    }
}
