import Foundation

// Losses: return scalars averaged over the batch.

extension Tensor {
    /// Mean squared error over all elements: mean((pred - target)^2). `target` gets no gradient.
    public static func mseLoss(_ pred: Tensor, _ target: Tensor) -> Tensor {
        precondition(pred.count == target.count, "mseLoss: \(pred.shape) vs \(target.shape)")
        var acc: Double = 0
        for i in 0..<pred.count { let d = Double(pred.data[i] - target.data[i]); acc += d * d }
        let n = Float(max(1, pred.count))
        let out = Tensor([Float(acc) / n], shape: [])
        return out.recording([pred]) { out in
            let g = out.grad![0] * 2 / n, gp = pred.gradBuffer()
            for i in 0..<pred.count { gp[i] += g * (pred.data[i] - target.data[i]) }
        }
    }

    /// Mean squared error with one weight per row (the first dimension): mean over all elements
    /// of w[row] (pred - target)^2, so weights of 1 give `mseLoss`. `target` gets no gradient.
    public static func mseLoss(_ pred: Tensor, _ target: Tensor, rowWeights w: [Float]) -> Tensor {
        precondition(pred.count == target.count, "mseLoss: \(pred.shape) vs \(target.shape)")
        precondition(pred.rank >= 1 && pred.shape[0] == w.count, "mseLoss: \(w.count) row weights for \(pred.shape)")
        let per = pred.count / max(1, w.count)
        var acc: Double = 0
        for r in 0..<w.count {
            var row: Double = 0
            for i in (r * per)..<((r + 1) * per) { let d = Double(pred.data[i] - target.data[i]); row += d * d }
            acc += Double(w[r]) * row
        }
        let n = Float(max(1, pred.count))
        let out = Tensor([Float(acc) / n], shape: [])
        return out.recording([pred]) { out in
            let g = out.grad![0] * 2 / n, gp = pred.gradBuffer()
            for r in 0..<w.count {
                let gr = g * w[r]
                for i in (r * per)..<((r + 1) * per) { gp[i] += gr * (pred.data[i] - target.data[i]) }
            }
        }
    }

    /// Softmax cross-entropy: logits (B, C), labels in 0..<C, mean over B.
    public static func crossEntropyLoss(_ logits: Tensor, labels: [Int]) -> Tensor {
        precondition(logits.rank == 2 && logits.shape[0] == labels.count,
                     "crossEntropyLoss: logits \(logits.shape) for \(labels.count) labels")
        let b = logits.shape[0], c = logits.shape[1]
        let probs = [Float](unsafeUninitializedCapacity: b * c) { buf, n in
            for r in 0..<b {
                let row = logits.data + r * c
                var m = -Float.infinity
                for j in 0..<c { m = max(m, row[j]) }
                var z: Float = 0
                for j in 0..<c { let e = expf(row[j] - m); buf[r * c + j] = e; z += e }
                for j in 0..<c { buf[r * c + j] /= z }
            }
            n = b * c
        }
        var loss: Double = 0
        for (r, y) in labels.enumerated() {
            precondition(y >= 0 && y < c, "crossEntropyLoss: label \(y) out of range 0..<\(c)")
            loss -= Double(logf(max(probs[r * c + y], 1e-30)))
        }
        let out = Tensor([Float(loss / Double(b))], shape: [])
        return out.recording([logits]) { out in
            let g = out.grad![0] / Float(b), gl = logits.gradBuffer()
            for r in 0..<b {
                for j in 0..<c { gl[r * c + j] += g * (probs[r * c + j] - (j == labels[r] ? 1 : 0)) }
            }
        }
    }
}
