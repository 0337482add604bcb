import Foundation

/// Wall time per op, forward and backward, for finding where a training step goes
/// (`coalesce bench ops --unet-only --profile`). Off unless `enabled` is set; when off it costs
/// one load and branch per op.
///
/// Forward time is attributed by gaps: the time since the previous recorded op finished on this
/// thread is charged to the op recording now (so untracked work between ops, such as a model's
/// own glue code, lands on the next op). Backward time is each op's backward closure, exactly.
/// Single-threaded callers only (the training loop); the op kernels may still run in parallel.
public enum OpProfiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var forward: [String: (seconds: Double, calls: Int)] = [:]
    nonisolated(unsafe) static var backward: [String: (seconds: Double, calls: Int)] = [:]
    nonisolated(unsafe) static var lastMark: UInt64 = 0

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Starts a measured region: clears the tables and the forward clock.
    public static func reset() {
        forward = [:]; backward = [:]
        lastMark = now()
    }

    static func recordForward(_ op: String) {
        let t = now()
        let e = forward[op, default: (0, 0)]
        forward[op] = (e.seconds + Double(t &- lastMark) / 1e9, e.calls + 1)
        lastMark = t
    }

    static func recordBackward(_ op: String, seconds: Double) {
        let e = backward[op, default: (0, 0)]
        backward[op] = (e.seconds + seconds, e.calls + 1)
    }

    /// Rows (op, forward s, backward s, calls), most expensive first.
    public static func report() -> [(op: String, forward: Double, backward: Double, calls: Int)] {
        let ops = Set(forward.keys).union(backward.keys)
        return ops.map { op in
            (op, forward[op]?.seconds ?? 0, backward[op]?.seconds ?? 0, max(forward[op]?.calls ?? 0, backward[op]?.calls ?? 0))
        }.sorted { $0.forward + $0.backward > $1.forward + $1.backward }
    }

    /// A short op name from a `#function` string: "conv2d(_:weight:...)" -> "conv2d".
    static func name(_ function: StaticString) -> String {
        let s = "\(function)"
        return s.firstIndex(of: "(").map { String(s[..<$0]) } ?? s
    }
}
