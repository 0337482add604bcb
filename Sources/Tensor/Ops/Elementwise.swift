import CCoalesceKernels
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

/// An element-wise binary function with its partial derivatives. Ops are generic over it so the
/// optimiser specialises and inlines each loop (a closure call per element was 5% of a UNet step).
@usableFromInline
protocol BinaryFunction {
    func f(_ a: Float, _ b: Float) -> Float
    func da(_ a: Float, _ b: Float) -> Float
    func db(_ a: Float, _ b: Float) -> Float
}

// SiLU, sigmoid and exp use `Kernels.expApprox` (polynomial, relative error ~1.2e-7, vectorises)
// instead of a libm call per element.

/// An element-wise unary function; `df(x, y)` is the derivative given input x and output y.
@usableFromInline
protocol UnaryFunction {
    func f(_ x: Float) -> Float
    func df(_ x: Float, _ y: Float) -> Float
}

struct AddFn: BinaryFunction {
    @inline(__always) func f(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) func da(_ a: Float, _ b: Float) -> Float { 1 }
    @inline(__always) func db(_ a: Float, _ b: Float) -> Float { 1 }
}
struct SubFn: BinaryFunction {
    @inline(__always) func f(_ a: Float, _ b: Float) -> Float { a - b }
    @inline(__always) func da(_ a: Float, _ b: Float) -> Float { 1 }
    @inline(__always) func db(_ a: Float, _ b: Float) -> Float { -1 }
}
struct MulFn: BinaryFunction {
    @inline(__always) func f(_ a: Float, _ b: Float) -> Float { a * b }
    @inline(__always) func da(_ a: Float, _ b: Float) -> Float { b }
    @inline(__always) func db(_ a: Float, _ b: Float) -> Float { a }
}
struct DivFn: BinaryFunction {
    @inline(__always) func f(_ a: Float, _ b: Float) -> Float { a / b }
    @inline(__always) func da(_ a: Float, _ b: Float) -> Float { 1 / b }
    @inline(__always) func db(_ a: Float, _ b: Float) -> Float { -a / (b * b) }
}

struct ScaleFn: UnaryFunction {
    let s: Float
    @inline(__always) func f(_ x: Float) -> Float { x * s }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { s }
}
struct AddScalarFn: UnaryFunction {
    let c: Float
    @inline(__always) func f(_ x: Float) -> Float { x + c }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { 1 }
}
struct GELUFn: UnaryFunction {
    static let c: Float = 0.7978845608028654  // sqrt(2/pi)
    @inline(__always) func f(_ x: Float) -> Float { 0.5 * x * (1 + tanhf(GELUFn.c * (x + 0.044715 * x * x * x))) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float {
        let t = tanhf(GELUFn.c * (x + 0.044715 * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELUFn.c * (1 + 3 * 0.044715 * x * x)
    }
}
/// Exact GELU, x Φ(x) = x (1 + erf(x / √2)) / 2 (BERT's "gelu"; PyTorch's default).
struct ErfGELUFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { 0.5 * x * (1 + erf(x * 0.70710678118654752)) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float {
        0.5 * (1 + erf(x * 0.70710678118654752)) + x * 0.39894228040143268 * Foundation.exp(-0.5 * x * x)
    }
}
struct ReLUFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { max(x, 0) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : 0 }
}
struct SigmoidFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { 1 / (1 + Kernels.expApprox(-x)) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { y * (1 - y) }
}
struct TanhFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { tanhf(x) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { 1 - y * y }
}
struct ExpFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { Kernels.expApprox(x) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { y }
}
struct SquareFn: UnaryFunction {
    @inline(__always) func f(_ x: Float) -> Float { x * x }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { 2 * x }
}
struct SqrtFn: UnaryFunction {
    let eps: Float
    @inline(__always) func f(_ x: Float) -> Float { (x + eps).squareRoot() }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { 0.5 / max(y, 1e-20) }
}
struct PowFn: UnaryFunction {
    let p: Float, eps: Float
    @inline(__always) func f(_ x: Float) -> Float { powf(max(x, 0) + eps, p) }
    @inline(__always) func df(_ x: Float, _ y: Float) -> Float { x >= 0 ? p * powf(x + eps, p - 1) : 0 }
}

extension Tensor {
    /// Shared driver for binary ops where b broadcasts against a (see `Broadcast`).
    @inline(__always)
    static func binary<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, op: String, _ fn: F) -> Tensor {
        let out = Tensor(uninitialized: a.shape)
        if a.shape == b.shape {
            let (pa, pb, po) = (a.data, b.data, out.data)
            Runtime.parallelFor(a.count) { lo, hi in for i in lo..<hi { po[i] = fn.f(pa[i], pb[i]) } }
            return out.recording([a, b]) { out in
                let g = out.grad!
                if a.requiresGrad {
                    let ga = a.gradBuffer()
                    Runtime.parallelFor(a.count) { lo, hi in for i in lo..<hi { ga[i] += g[i] * fn.da(pa[i], pb[i]) } }
                }
                if b.requiresGrad {
                    let gb = b.gradBuffer()
                    Runtime.parallelFor(b.count) { lo, hi in for i in lo..<hi { gb[i] += g[i] * fn.db(pa[i], pb[i]) } }
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
                for k in 0..<inner { po[base + k] = fn.f(pa[base + k], bv) }
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
                        for k in 0..<inner { ga[base + k] += g[base + k] * fn.da(pa[base + k], bv) }
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
                            for k in 0..<inner { acc += g[base + k] * fn.db(pa[base + k], bv) }
                        }
                        gb[m] += acc
                    }
                }
            }
        }
    }

    /// a + b, b broadcast against a.
    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, op: "add", AddFn()) }
    /// a - b, b broadcast against a.
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, op: "sub", SubFn()) }
    /// a * b (element-wise), b broadcast against a.
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(a, b, op: "mul", MulFn()) }
    /// a / b (element-wise), b broadcast against a.
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(a, b, op: "div", DivFn()) }

    /// Shared driver for unary ops.
    @inline(__always)
    func unary<F: UnaryFunction>(_ fn: F) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let (px, py) = (data, out.data)
        Runtime.parallelFor(count, cost: 4) { lo, hi in for i in lo..<hi { py[i] = fn.f(px[i]) } }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            Runtime.parallelFor(count, cost: 4) { lo, hi in for i in lo..<hi { gx[i] += g[i] * fn.df(px[i], py[i]) } }
        }
    }

    /// s * x.
    public func scaled(_ s: Float) -> Tensor { unary(ScaleFn(s: s)) }
    public static func * (s: Float, x: Tensor) -> Tensor { x.scaled(s) }
    /// x + c.
    public func adding(_ c: Float) -> Tensor { unary(AddScalarFn(c: c)) }
    public prefix static func - (x: Tensor) -> Tensor { x.scaled(-1) }

    /// SiLU (swish): x * sigmoid(x); derivative s * (1 + x * (1 - s)) with s = sigmoid(x). Runs on
    /// the vectorised C kernels (CCoalesceKernels: AVX-512 or AVX2 chosen at run time; this Swift
    /// code is compiled for baseline x86-64): it was the most expensive element-wise op of a UNet step.
    public func silu() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let (px, py) = (UnsafePointer(data), out.data)
        let isa = Int32(CCK_ISA_BEST)
        Runtime.parallelFor(count, cost: 4) { lo, hi in cck_silu(px + lo, py + lo, hi - lo, isa) }
        return out.recording([self]) { [self] out in
            let g = UnsafePointer(out.grad!), gx = self.gradBuffer()
            Runtime.parallelFor(count, cost: 4) { lo, hi in cck_silu_backward(px + lo, g + lo, gx + lo, hi - lo, isa) }
        }
    }
    /// GELU, tanh approximation (Hendrycks & Gimpel; as PyTorch `approximate="tanh"`).
    public func gelu() -> Tensor { unary(GELUFn()) }
    /// GELU, exact (erf) form, as BERT and PyTorch's default `gelu`.
    public func geluErf() -> Tensor { unary(ErfGELUFn()) }
    public func relu() -> Tensor { unary(ReLUFn()) }
    public func sigmoid() -> Tensor { unary(SigmoidFn()) }
    public func tanh() -> Tensor { unary(TanhFn()) }
    public func exp() -> Tensor { unary(ExpFn()) }
    public func square() -> Tensor { unary(SquareFn()) }
    /// sqrt(x + eps): eps keeps the derivative finite at 0.
    public func sqrt(eps: Float = 0) -> Tensor { unary(SqrtFn(eps: eps)) }
    /// (x + eps)^p for x >= 0 (negative inputs are clamped to 0). With eps > 0 the derivative
    /// stays finite at 0 even for p < 1 (DESIGN: the direction loss |.|^(1/2) "finite at 0").
    /// The gradient is 0 for x < 0, where the clamp makes the function flat (at x = 0 it is the
    /// right derivative p * eps^(p-1)).
    public func pow(_ p: Float, eps: Float = 0) -> Tensor { unary(PowFn(p: p, eps: eps)) }
}
