/// An 8-bit grayscale image, row-major, top row first: pixel (x, y) is `pixels[y * width + x]`,
/// 0 is black and 255 white.
///
/// The initialiser does not validate; `validate()` (called by every encoder) checks that the sizes
/// are in range and that `pixels.count == width * height`.
public struct GrayImage: Equatable, Sendable {
    /// The largest width or height accepted anywhere in ImageIO (decoding, encoding, grids).
    public static let maxSide = 16384

    public var width: Int
    public var height: Int
    /// `width * height` values, row-major, top row first.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image filled with one value.
    public init(width: Int, height: Int, fill: UInt8 = 0) {
        self.init(width: width, height: height,
                  pixels: [UInt8](repeating: fill, count: max(0, width) * max(0, height)))
    }

    /// Pixel (x, y); both must be in range.
    public subscript(x: Int, y: Int) -> UInt8 {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }

    /// Throws `ImageIOError.invalidImage` unless both sides are in `1...maxSide` and the pixel
    /// buffer holds exactly `width * height` values.
    public func validate() throws {
        guard width >= 1, height >= 1 else {
            throw ImageIOError.invalidImage("size \(width)x\(height): both sides must be at least 1")
        }
        guard width <= GrayImage.maxSide, height <= GrayImage.maxSide else {
            throw ImageIOError.invalidImage(
                "size \(width)x\(height): a side is larger than \(GrayImage.maxSide)")
        }
        guard pixels.count == width * height else {
            throw ImageIOError.invalidImage(
                "size \(width)x\(height) needs \(width * height) pixels, got \(pixels.count)")
        }
    }

    /// The image enlarged `factor` times in both directions by pixel repetition (nearest
    /// neighbour). A factor below 1 is treated as 1.
    public func scaled(by factor: Int) -> GrayImage {
        let f = max(1, factor)
        if f == 1 { return self }
        let w = width * f, h = height * f
        var out = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h {
            let src = (y / f) * width
            let dst = y * w
            for x in 0..<w { out[dst + x] = pixels[src + x / f] }
        }
        return GrayImage(width: w, height: h, pixels: out)
    }
}
