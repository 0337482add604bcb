// Exports for image batches: accessors, cz_image_batch_free, cz_image_write_png.
import CCoalesceAPI
import Engine
import ImageIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@_cdecl("cz_image_batch_count")
public func czImageBatchCount(_ batch: OpaquePointer?) -> Int32 {
    batchHandles.resolve(batch).map { Int32(clamping: $0.count) } ?? 0
}

@_cdecl("cz_image_batch_width")
public func czImageBatchWidth(_ batch: OpaquePointer?) -> Int32 {
    batchHandles.resolve(batch).map { Int32(clamping: $0.width) } ?? 0
}

@_cdecl("cz_image_batch_height")
public func czImageBatchHeight(_ batch: OpaquePointer?) -> Int32 {
    batchHandles.resolve(batch).map { Int32(clamping: $0.height) } ?? 0
}

@_cdecl("cz_image_batch_channels")
public func czImageBatchChannels(_ batch: OpaquePointer?) -> Int32 {
    batchHandles.resolve(batch).map { Int32(clamping: $0.channels) } ?? 0
}

@_cdecl("cz_image_batch_pixels")
public func czImageBatchPixels(_ batch: OpaquePointer?, _ index: Int32) -> UnsafePointer<UInt8>? {
    batchHandles.resolve(batch)?.image(Int(index))
}

@_cdecl("cz_image_batch_seed")
public func czImageBatchSeed(_ batch: OpaquePointer?, _ index: Int32) -> UInt64 {
    guard let b = batchHandles.resolve(batch), index >= 0, Int(index) < b.count else { return 0 }
    return b.firstSeed &+ UInt64(index)
}

@_cdecl("cz_image_batch_free")
public func czImageBatchFree(_ batch: OpaquePointer?) {
    _ = batchHandles.unregister(batch)
}

@_cdecl("cz_image_write_png")
public func czImageWritePNG(_ batch: OpaquePointer?, _ index: Int32, _ path: UnsafePointer<CChar>?) -> Int32 {
    do {
        guard batch != nil else { throw EngineError.invalidArgument("cz_image_write_png: batch is NULL") }
        guard let b = batchHandles.resolve(batch) else {
            throw EngineError.invalidArgument("cz_image_write_png: batch is not a live cz_image_batch")
        }
        guard index >= 0, Int(index) < b.count else {
            throw EngineError.invalidArgument("cz_image_write_png: index \(index) is outside 0...\(b.count - 1)")
        }
        guard let path = try readString(path, name: "path", maxBytes: 4096) else {
            throw EngineError.invalidArgument("cz_image_write_png: path is NULL")
        }
        guard !path.isEmpty else { throw EngineError.invalidArgument("cz_image_write_png: path is empty") }
        let (dir, file) = splitPath(path)
        guard !file.isEmpty else { throw EngineError.invalidArgument("cz_image_write_png: path \(quoted(path)) names a directory") }
        let parent = dir.isEmpty ? "/" : dir
        guard isDirectoryPath(parent) else {
            throw EngineError.notFound("cz_image_write_png: directory \(quoted(parent)) does not exist")
        }
        guard let px = b.image(Int(index)) else { throw EngineError.internal("cz_image_write_png: no pixels") }
        let png: [UInt8]
        do {
            png = try PNG.encode(pixels: Array(UnsafeBufferPointer(start: px, count: b.imageBytes))[...],
                                 width: b.width, height: b.height, channels: b.channels)
        } catch {
            throw EngineError.invalidArgument("cz_image_write_png: \(error)")
        }
        try PNGTarget.write(png, to: path, directory: parent)
        return succeed(nil)
    } catch {
        return fail(nil, error)
    }
}

