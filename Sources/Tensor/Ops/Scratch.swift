import Foundation

/// Reusable temporary buffers for ops (im2col columns, transposed copies, attention planes).
///
/// Large allocations come from mmap and go back to the kernel on free, so a fresh 100 MB
/// buffer per call costs tens of thousands of page faults and the kernel's zeroing of every page;
/// profiling conv2d at batch 64 showed that as the largest cost after sgemm. Buffers given back
/// are kept (up to `maxCachedBytes` in all) and handed out again to the next request they fit.
/// Thread-safe; each caller owns its buffer between `take` and `give`.
enum Scratch {
    /// A buffer of at least `capacity` floats; contents are unspecified when taken.
    struct Buffer {
        let pointer: UnsafeMutablePointer<Float>
        let capacity: Int
    }

    /// Most bytes kept cached when idle (largest buffers are dropped first beyond this).
    static let maxCachedBytes = 256 << 20

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: [Buffer] = []

    /// A buffer of at least `count` floats (the smallest cached one that fits, else a new one).
    static func take(_ count: Int) -> Buffer {
        lock.lock()
        var best = -1
        for (i, b) in cached.enumerated() where b.capacity >= count {
            if best < 0 || b.capacity < cached[best].capacity { best = i }
        }
        if best >= 0 {
            let b = cached.remove(at: best)
            lock.unlock()
            return b
        }
        lock.unlock()
        let n = max(count, 1)
        return Buffer(pointer: Tensor.allocate(n), capacity: n)
    }

    /// Returns a buffer for reuse.
    static func give(_ buffer: Buffer) {
        lock.lock()
        cached.append(buffer)
        var total = cached.reduce(0) { $0 + $1.capacity * 4 }
        while total > maxCachedBytes, let i = cached.indices.max(by: { cached[$0].capacity < cached[$1].capacity }) {
            total -= cached[i].capacity * 4
            cached.remove(at: i).pointer.deallocate()
        }
        lock.unlock()
    }

    /// Frees every cached buffer (e.g. after training, before serving).
    static func purge() {
        lock.lock()
        for b in cached { b.pointer.deallocate() }
        cached.removeAll()
        lock.unlock()
    }
}
