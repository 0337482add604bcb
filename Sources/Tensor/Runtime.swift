import CCoalesceBLAS
import Dispatch
import Foundation

/// Process-wide compute settings: how many threads the tensor core uses.
///
/// `threads` defaults to the number of online cores (2 on our machines); `COALESCE_THREADS`
/// overrides. There is one pool: element-wise loops, im2col and GEMM all split their work with
/// `parallelFor` (Dispatch), and OpenBLAS itself runs single-threaded (see `BLAS.sgemm`). Two
/// pools (OpenBLAS's spinning workers beside Dispatch's) fought over 2 cores: 20% of a UNet
/// training step's samples were in sched_yield.
///
/// A caller can hold itself to fewer threads with `withThreadCap` (thread-local); inside a
/// `parallelFor` body the cap is 1, so nested splits run inline instead of oversubscribing.
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
        let chunks = min(availableThreads, max(1, count * cost / parallelGrain), count)
        if chunks <= 1 { body(0, count); return }
        let per = (count + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per
            let hi = min(count, lo + per)
            if lo < hi { withThreadCap(1) { body(lo, hi) } }
        }
    }

    private static let callsLock = NSLock()
    nonisolated(unsafe) private static var callsInFlight = 0

    /// Runs one of several concurrent calls (a server's requests): while n such calls are in
    /// flight, each is capped at `threads / n` threads (at least 1), so two requests on two cores
    /// run side by side on one core each instead of both splitting every loop over both cores.
    /// The share is fixed when the call starts.
    public static func sharingCores<R>(_ body: () throws -> R) rethrows -> R {
        callsLock.lock()
        callsInFlight += 1
        let share = max(1, threads / callsInFlight)
        callsLock.unlock()
        defer {
            callsLock.lock()
            callsInFlight -= 1
            callsLock.unlock()
        }
        return try withThreadCap(share, body)
    }

    /// Threads the calling thread may use now: `threads`, or fewer under `withThreadCap`.
    public static var availableThreads: Int {
        let cap = Int(ccblas_thread_cap())
        return cap > 0 ? min(cap, threads) : threads
    }

    /// Runs `body` with this thread's parallelism capped at `n` (restored afterwards). Used by
    /// servers that run several requests at once: each request on one core beats two requests
    /// fighting over both.
    @inline(__always)
    public static func withThreadCap<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        let old = ccblas_thread_cap()
        ccblas_set_thread_cap(Int32(max(1, n)))
        defer { ccblas_set_thread_cap(old) }
        return try body()
    }
}
