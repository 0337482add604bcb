import Foundation

/// Whether ops record a backward graph on the current thread. Inference wraps its work in
/// `GradMode.withDisabled { ... }` to save memory and time. Thread-local, so concurrent
/// inference and training on different threads do not interfere.
public enum GradMode {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    public static var isEnabled: Bool {
        pthread_getspecific(key) == nil  // nil (default) = enabled
    }

    /// Runs `body` with gradient recording off on this thread.
    public static func withDisabled<T>(_ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, previous) }
        return try body()
    }
}

extension Tensor {
    /// Whether an op on `inputs` records a backward graph (the condition `recording` checks).
    /// Ops that record none are inference: their products take the row-stable kernels (`RowGEMM`),
    /// so a sample's result depends neither on the batch around it nor on the machine's BLAS.
    @inline(__always)
    static func recordsGradient(_ inputs: [Tensor]) -> Bool {
        GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad })
    }

    /// Attaches `backward` to `self` (an op's output) if any input requires a gradient and
    /// recording is on. `backward` must add into the inputs' `gradBuffer()` and read
    /// `self.grad` (the output gradient). Returns self for chaining.
    @inline(__always)
    @discardableResult
    internal func recording(_ inputs: [Tensor], function: StaticString = #function,
                            _ backward: @escaping (Tensor) -> Void) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        parents = inputs
        if OpProfiler.enabled {
            let op = OpProfiler.name(function)
            OpProfiler.recordForward(op)
            backwardFn = { [unowned self] in
                let t0 = OpProfiler.now()
                backward(self)
                OpProfiler.recordBackward(op, seconds: Double(OpProfiler.now() &- t0) / 1e9)
            }
        } else {
            backwardFn = { [unowned self] in backward(self) }
        }
        return self
    }

    /// Reverse-mode differentiation from this tensor. If `self` is not a scalar, `seed` gives
    /// the output gradient (defaults to ones). Frees the graph afterwards (intermediate
    /// tensors drop their parents and closures) so a second call needs a new forward pass.
    public func backward(seed: Tensor? = nil) {
        // Topological order by iterative DFS (graphs can be deep).
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded { order.append(node); continue }
            if visited.contains(ObjectIdentifier(node)) { continue }
            visited.insert(ObjectIdentifier(node))
            stack.append((node, true))
            for p in node.parents where p.requiresGrad && !visited.contains(ObjectIdentifier(p)) {
                stack.append((p, false))
            }
        }
        let g = gradBuffer()
        if let seed {
            precondition(seed.count == count, "backward seed shape \(seed.shape) vs \(shape)")
            for i in 0..<count { g[i] += seed.data[i] }
        } else {
            for i in 0..<count { g[i] += 1 }
        }
        for node in order.reversed() {
            if let fn = node.backwardFn {
                fn()
                node.backwardFn = nil
                node.parents = []
                if node !== self { node.clearGrad() }  // intermediate grads are not needed again
            }
        }
    }

    /// True if this tensor was produced by a recorded op (it has a backward closure).
    public var hasGraph: Bool { backwardFn != nil }
}
