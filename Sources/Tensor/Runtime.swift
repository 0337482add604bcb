import CCoalesceBLAS
import Dispatch
import Foundation

/// Process-wide compute settings: how many threads element-wise loops and BLAS use.
///
/// Both default to the number of online cores (2 on our machines); `COALESCE_THREADS` overrides.
/// Element-wise loops never run inside a BLAS call, so the two pools do not oversubscribe.
public enum Runtime {
    public static let threads: Int = {
        if let s = ProcessInfo.processInfo.environment["COALESCE_THREADS"], let n = Int(s), n >= 1 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Makes glibc keep large freed blocks for reuse instead of returning them to the kernel
    /// (see `ccblas_tune_malloc`). Process-global, so only executables call it, at start.
    @discardableResult
    public static func tuneAllocator() -> Bool { ccblas_tune_malloc() == 0 }

    /// Work below this many elements runs on the calling thread: spreading it costs more than it saves.
    public static let parallelGrain = 1 << 15

    /// Runs `body(lo, hi)` over `0..<count` split into at most `threads` contiguous chunks.
    /// `cost` is an estimate of work per element (1 = a few flops) used to decide whether to split.
    @inline(__always)
    public static func parallelFor(_ count: Int, cost: Int = 1, _ body: (Int, Int) -> Void) {
        if count <= 0 { return }
        let chunks = min(threads, max(1, count * cost / parallelGrain), count)
        if chunks <= 1 { body(0, count); return }
        let per = (count + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per
            let hi = min(count, lo + per)
            if lo < hi { body(lo, hi) }
        }
    }
}
