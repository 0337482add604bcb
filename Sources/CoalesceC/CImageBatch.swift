// CImageBatch: the object behind cz_image_batch *: images the caller owns until
// cz_image_batch_free, independent of the engine that made them.
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class CImageBatch: @unchecked Sendable {
    let count: Int
    let width: Int
    let height: Int
    let channels: Int
    let firstSeed: UInt64
    /// count * height * width * channels bytes, image after image; freed in deinit.
    let pixels: UnsafeMutablePointer<UInt8>

    var imageBytes: Int { width * height * channels }

    /// Copies the Engine's images into a buffer with a stable address.
    init(_ batch: ImageBatch, firstSeed: UInt64) {
        count = batch.count
        width = batch.width
        height = batch.height
        channels = batch.channels
        self.firstSeed = firstSeed
        let source = batch.pixels
        let n = max(1, source.count)
        pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        pixels.initialize(repeating: 0, count: n)
        source.withUnsafeBufferPointer { src in
            if let base = src.baseAddress, src.count > 0 {
                pixels.update(from: base, count: src.count)
            }
        }
    }

    deinit {
        pixels.deallocate()
    }

    /// Pointer to image `index`, or nil when out of range.
    func image(_ index: Int) -> UnsafePointer<UInt8>? {
        guard index >= 0, index < count else { return nil }
        return UnsafePointer(pixels + index * imageBytes)
    }
}
