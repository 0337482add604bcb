import Dispatch

/// A training step's forward and backward passes on fixed parts of the batch, one network
/// replica per part, run at the same time on the compute threads (data parallelism on one
/// machine). Every op of a step on a small grid is too short to split well over the cores
/// (measured: the teacher's step at batch 128 ran 1.4x faster on 2 threads than on 1), where
/// two half batches on a core each come close to 2x.
///
/// Part 0 runs on the trained network (its parameters get the gradients), part p on replica p,
/// a network of the same architecture whose weights alias the trained network's
/// (`Tensor.alias(valuesOf:)`) and which keeps gradients of its own. Each part's loss is the mean
/// over its rows, so its backward pass is seeded with rows / batch; the replicas' gradients are
/// then added to the trained network's in part order. The parts are fixed by the batch size
/// alone: with one thread they run one after the other, and the gradients have the same bits at
/// every thread count.
public final class DataParallelStep {
    /// Parts of every batch (the replicas plus the trained network).
    public let parts: Int
    public let parameters: [Tensor]
    private let replicas: [[Tensor]]

    /// `replicas`: the parameters of each replica network, in the order of `parameters`.
    public init(parameters: [Tensor], replicas: [[Tensor]]) {
        for r in replicas {
            precondition(r.count == parameters.count && zip(r, parameters).allSatisfy { $0.shape == $1.shape },
                         "DataParallelStep: a replica's parameters do not match the network's")
        }
        self.parameters = parameters
        self.replicas = replicas
        parts = replicas.count + 1
    }

    /// Rows of part `p` when a batch of `b` rows is cut into `parts` (the first b % parts parts
    /// get one row more; a part may be empty when b < parts).
    public static func rows(part p: Int, of parts: Int, batch b: Int) -> Range<Int> {
        let base = b / parts, extra = b % parts
        let lo = p * base + min(p, extra)
        return lo..<(lo + base + (p < extra ? 1 : 0))
    }

    /// Part `p`'s share of a batch of `b` rows (its rows / b): the weight of its loss, and of
    /// anything else measured per part, in the batch's mean.
    public static func share(part p: Int, of parts: Int, batch b: Int) -> Float {
        Float(rows(part: p, of: parts, batch: b).count) / Float(b)
    }

    /// Zeroes every gradient, runs `loss(p, rows)` (part p's loss: the mean over its rows, built
    /// on the trained network for p = 0 and on replica p otherwise) and its backward pass for every
    /// non-empty part, then sums the gradients into `parameters`. Parts run concurrently when the
    /// calling thread may use at least two threads (each part gets an equal share of them), one
    /// after the other otherwise or while ops are being profiled. Returns the batch's loss.
    public func run(batch b: Int, _ loss: (_ part: Int, _ rows: Range<Int>) -> Tensor) -> Float {
        precondition(b >= 1, "DataParallelStep: empty batch")
        for replica in replicas { for (t, p) in zip(replica, parameters) { t.alias(valuesOf: p) } }
        for p in parameters { p.zeroGrad() }
        for replica in replicas { for t in replica { t.zeroGrad() } }
        let losses = UnsafeMutablePointer<Float>.allocate(capacity: parts)
        losses.initialize(repeating: 0, count: parts)
        defer { losses.deallocate() }
        func one(_ p: Int) {
            let rows = Self.rows(part: p, of: parts, batch: b)
            if rows.isEmpty { return }
            let l = loss(p, rows)
            losses[p] = l.item
            l.backward(seed: Tensor(scalar: Self.share(part: p, of: parts, batch: b)))
        }
        let threads = Runtime.availableThreads
        if threads >= 2 && parts > 1 && !OpProfiler.enabled {
            let share = max(1, threads / parts)
            DispatchQueue.concurrentPerform(iterations: parts) { p in Runtime.withThreadCap(share) { one(p) } }
        } else {
            for p in 0..<parts { one(p) }
        }
        for replica in replicas {
            for (t, p) in zip(replica, parameters) {
                guard let rg = t.grad else { continue }
                let g = p.gradBuffer(), n = p.count
                Runtime.parallelFor(n, cost: 1) { lo, hi in for j in lo..<hi { g[j] += rg[j] } }
            }
        }
        return (0..<parts).reduce(Float(0)) { $0 + losses[$1] * Self.share(part: $1, of: parts, batch: b) }
    }
}
