import Foundation
import Tensor

/// A network call of inference cut into contiguous chunks of the batch, one per thread, each
/// chunk's whole pass on its own thread: one fork and join per call instead of one per operation.
/// At the batch of one guided image (2) most operations of a UNet are too small to split, so the
/// second core idled through them and each split cost a wake-up; whole images per core keep both
/// busy. The images' outputs are the same bits either way: inference computes an image's output
/// from that image alone, whatever the batch around it and the thread count (see ARCHITECTURE.md,
/// "Batch, thread and machine invariance"; tested in `UNetTests`).
public enum BatchChunks {
    /// `body(rows)` computes the outputs of images `rows` (tensors whose first dimension is
    /// `rows.count`); returns the outputs of all `batch` images, chunks concatenated in order.
    /// With gradients on (training needs one graph), on one thread, for one image or while
    /// `OpProfiler` is on, it is `body(0..<batch)`.
    /// A body that throws stops nothing else: the first chunk's error (in chunk order) is thrown
    /// after every chunk has run.
    public static func map(batch: Int, _ body: (Range<Int>) throws -> [Tensor]) rethrows -> [Tensor] {
        let chunks = min(batch, Runtime.availableThreads)
        if chunks <= 1 || GradMode.isEnabled || OpProfiler.enabled { return try body(0..<batch) }
        let per = (batch + chunks - 1) / chunks
        let results = Results(count: chunks)
        // One chunk per iteration: parallelFor caps each body at one thread.
        try withoutActuallyEscaping(body) { body in
            Runtime.parallelFor(chunks, cost: Runtime.parallelGrain) { lo, hi in
                for c in lo..<hi {
                    let rows = (c * per)..<min(batch, (c + 1) * per)
                    if rows.isEmpty { continue }
                    do {
                        results.set(c, try GradMode.withDisabled { try body(rows) })  // GradMode is per thread
                    } catch {
                        results.fail(c, error)
                    }
                }
            }
            if let error = results.firstError { throw error }
        }
        let parts = results.values.filter { !$0.isEmpty }
        guard let first = parts.first else { return [] }
        if parts.count == 1 { return first }
        return first.indices.map { i in Tensor.concat(parts.map { $0[i] }, axis: 0) }
    }

    /// The chunks' outputs, written from the threads that computed them.
    private final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var values: [[Tensor]]

        init(count: Int) { values = Array(repeating: [], count: count) }

        private var errors: [Int: Error] = [:]

        func set(_ i: Int, _ v: [Tensor]) {
            lock.lock()
            values[i] = v
            lock.unlock()
        }

        func fail(_ i: Int, _ e: Error) {
            lock.lock()
            errors[i] = e
            lock.unlock()
        }

        var firstError: Error? { errors.keys.min().map { errors[$0]! } }
    }
}
