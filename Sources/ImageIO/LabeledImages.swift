/// A set of equally sized gray images with one integer label each, stored contiguously:
/// image `i` is `pixels[i * width * height ..< (i + 1) * width * height]`, row-major, top row first.
public struct LabeledImages: PackedImages, Equatable, Sendable {
    public var count: Int
    public var width: Int
    public var height: Int
    /// `count * width * height` values.
    public var pixels: [UInt8]
    /// `count` labels (for Fashion-MNIST, indices into `FashionMNIST.classNames`).
    public var labels: [Int]

    public init(count: Int, width: Int, height: Int, pixels: [UInt8], labels: [Int]) {
        self.count = count
        self.width = width
        self.height = height
        self.pixels = pixels
        self.labels = labels
    }


    /// The items in `range` (clamped to `0..<count`), for small data slices in tests and tools.
    public func slice(_ range: Range<Int>) -> LabeledImages {
        let lo = max(0, min(range.lowerBound, count)), hi = max(lo, min(range.upperBound, count))
        let n = width * height
        return LabeledImages(count: hi - lo, width: width, height: height,
                             pixels: Array(pixels[lo * n ..< hi * n]), labels: Array(labels[lo..<hi]))
    }
}
