/// A set of same-sized gray images stored back to back in one pixel buffer
/// (`count * height * width` bytes, row-major, image after image).
public protocol PackedImages {
    var count: Int { get }
    var width: Int { get }
    var height: Int { get }
    var pixels: [UInt8] { get }
}

extension PackedImages {
    /// Image `index` (must be in `0..<count`).
    public func image(at index: Int) -> GrayImage {
        let n = width * height
        return GrayImage(width: width, height: height, pixels: Array(pixels[index * n ..< (index + 1) * n]))
    }
}
