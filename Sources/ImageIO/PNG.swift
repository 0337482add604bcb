import CPNG

/// PNG encoding and decoding through libpng's simplified API (`png_image_*`).
///
/// The simplified API reports failures through `png_image.message` (libpng catches its own
/// `longjmp` internally), so a truncated or corrupt file becomes a thrown `ImageIOError.png`,
/// never a crash.
///
/// Reading converts every PNG colour type to 8-bit gray: RGB is converted with libpng's
/// luminance weights (in linear light, as libpng's simplified API does), palettes are expanded,
/// and an alpha channel is removed by compositing onto black (the background of
/// Fashion-MNIST-style images). 16-bit samples are reduced to 8 bits the simplified API's way:
/// without a gAMA/sRGB chunk it takes them as *linear* light and encodes them to sRGB, so black and
/// white stay 0 and 255 but 16-bit mid-gray 0x8000 becomes about 186, not 128.
/// Writing a `GrayImage` produces an 8-bit gray PNG, which reads back unchanged; raw pixels with
/// 1-4 channels can be encoded too (the daemon's PNG replies).
public enum PNG {
    /// Encodes `image` as an 8-bit grayscale PNG in memory.
    public static func encode(_ image: GrayImage) throws -> [UInt8] {
        try image.validate()
        return try encode(pixels: image.pixels[...], width: image.width, height: image.height, channels: 1)
    }

    /// Encodes 8-bit pixels (row-major, `channels` interleaved: 1 gray, 2 gray+alpha, 3 RGB,
    /// 4 RGBA) as a PNG in memory. Throws `ImageIOError.invalidImage` if the sizes do not match.
    public static func encode(pixels: ArraySlice<UInt8>, width: Int, height: Int, channels: Int) throws -> [UInt8] {
        let (alpha, color) = (UInt32(PNG_FORMAT_FLAG_ALPHA), UInt32(PNG_FORMAT_FLAG_COLOR))
        let formats: [Int: UInt32] = [1: 0, 2: alpha, 3: color, 4: color | alpha]  // GRAY, GA, RGB, RGBA
        guard let format = formats[channels] else {
            throw ImageIOError.invalidImage("PNG encode: \(channels) channels (1 to 4 supported)")
        }
        guard width > 0, height > 0, width <= GrayImage.maxSide, height <= GrayImage.maxSide,
              pixels.count == width * height * channels else {
            throw ImageIOError.invalidImage(
                "PNG encode: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        }
        let stride = Int32(width * channels)
        var png = makeImage(width: width, height: height, format: format)
        var size: png_alloc_size_t = 0
        // First pass: ask for the size (memory == NULL).
        let sized = pixels.withUnsafeBytes { px in
            png_image_write_to_memory(&png, nil, &size, 0, px.baseAddress, stride, nil)
        }
        guard sized != 0, size > 0 else { throw ImageIOError.png(message(of: &png, call: "png_image_write_to_memory")) }
        var out = [UInt8](repeating: 0, count: Int(size))
        var png2 = makeImage(width: width, height: height, format: format)
        var written = size
        let ok = out.withUnsafeMutableBytes { mem in
            pixels.withUnsafeBytes { px in
                png_image_write_to_memory(&png2, mem.baseAddress, &written, 0, px.baseAddress, stride, nil)
            }
        }
        guard ok != 0 else { throw ImageIOError.png(message(of: &png2, call: "png_image_write_to_memory")) }
        out.removeSubrange(Int(written)...)
        return out
    }

    /// Encodes `image` and writes it to `path` atomically (temporary file, then rename).
    public static func write(_ image: GrayImage, to path: String) throws {
        try FileIO.writeAtomically(try encode(image), to: path)
    }

    /// Decodes PNG bytes into a gray image (see the type's documentation for colour conversion).
    /// Throws `ImageIOError.png` for bytes that are not a complete, valid PNG and
    /// `ImageIOError.invalidImage` for sides larger than `GrayImage.maxSide`.
    public static func decode(_ bytes: [UInt8]) throws -> GrayImage {
        let d = try decodeInterleaved(bytes, keepColour: false)
        return GrayImage(width: d.width, height: d.height, pixels: d.pixels)
    }

    /// The one libpng read path: 8-bit gray, or RGB when `keepColour` and the PNG has colour
    /// (interleaved, row-major), alpha composited onto black.
    static func decodeInterleaved(_ bytes: [UInt8], keepColour: Bool) throws
        -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
        guard !bytes.isEmpty else { throw ImageIOError.png("no data (0 bytes)") }
        // libpng reads `bytes` lazily until png_image_finish_read, so both calls run while the
        // buffer pointer is valid.
        return try bytes.withUnsafeBytes { buf in
            var png = png_image()
            png.version = png_uint_32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&png, buf.baseAddress, buf.count) != 0 else {
                throw ImageIOError.png(message(of: &png, call: "png_image_begin_read_from_memory"))
            }
            let width = Int(png.width), height = Int(png.height)
            guard width >= 1, height >= 1, width <= GrayImage.maxSide, height <= GrayImage.maxSide else {
                png_image_free(&png)
                throw ImageIOError.invalidImage(
                    "PNG size \(width)x\(height) is outside 1...\(GrayImage.maxSide) on a side")
            }
            let colour = keepColour && (png.format & UInt32(PNG_FORMAT_FLAG_COLOR)) != 0
            let channels = colour ? 3 : 1
            png.format = colour ? UInt32(PNG_FORMAT_FLAG_COLOR) : png_uint_32(PNG_FORMAT_GRAY)  // RGB or GRAY
            var pixels = [UInt8](repeating: 0, count: width * height * channels)
            var black = png_color(red: 0, green: 0, blue: 0)
            let ok = pixels.withUnsafeMutableBytes { out in
                png_image_finish_read(&png, &black, out.baseAddress, Int32(width * channels), nil)
            }
            guard ok != 0 else { throw ImageIOError.png(message(of: &png, call: "png_image_finish_read")) }
            return (pixels, width, height, channels)
        }
    }

    /// Runs `body` on the bytes of the file at `path`; a decoding error names the file.
    static func withFile<T>(_ path: String, _ body: ([UInt8]) throws -> T) throws -> T {
        let bytes = try FileIO.readAll(path: path)
        do {
            return try body(bytes)
        } catch let ImageIOError.png(message) {
            throw ImageIOError.png("\(path): \(message)")
        } catch let ImageIOError.invalidImage(message) {
            throw ImageIOError.invalidImage("\(path): \(message)")
        }
    }

    /// Reads and decodes the PNG file at `path`.
    public static func read(path: String) throws -> GrayImage {
        try withFile(path, decode)
    }

    // MARK: Helpers

    private static func makeImage(width: Int, height: Int, format: UInt32 = 0) -> png_image {
        var png = png_image()
        png.version = png_uint_32(PNG_IMAGE_VERSION)
        png.width = png_uint_32(width)
        png.height = png_uint_32(height)
        png.format = png_uint_32(format)  // 0 = PNG_FORMAT_GRAY
        return png
    }

    /// libpng's message for a failed call (the fixed-size `message` field of `png_image`).
    private static func message(of png: inout png_image, call: String) -> String {
        let text = withUnsafeBytes(of: &png.message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return text.isEmpty ? "\(call) failed" : "\(call): \(text)"
    }
}
