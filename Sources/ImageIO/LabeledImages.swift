/// A set of equally sized images (gray or RGB) with one integer label each, stored contiguously:
/// image `i` is `pixels[i * n ..< (i + 1) * n]` with `n = channels * width * height`, planar
/// (channel after channel, as the networks take them), each plane row-major, top row first.
public struct LabeledImages: PackedImages, Equatable, Sendable {
    public var count: Int
    public var width: Int
    public var height: Int
    /// 1 (gray) or 3 (RGB).
    public var channels: Int
    /// `count * channels * width * height` values.
    public var pixels: [UInt8]
    /// `count` labels (for Fashion-MNIST, indices into `FashionMNIST.classNames`; -1 = none).
    public var labels: [Int]
    /// One caption per image, where the data has them (image folders); empty otherwise.
    public var captions: [String]
    /// Class names for the label values, where known (Fashion-MNIST, subfolder names).
    public var classNames: [String]

    public init(count: Int, width: Int, height: Int, channels: Int = 1, pixels: [UInt8], labels: [Int],
                captions: [String] = [], classNames: [String] = []) {
        self.count = count
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
        self.labels = labels
        self.captions = captions
        self.classNames = classNames
    }

    /// Values in one image (`channels * width * height`).
    public var valuesPerImage: Int { channels * width * height }


    /// The items in `range` (clamped to `0..<count`), for small data slices in tests and tools.
    public func slice(_ range: Range<Int>) -> LabeledImages {
        let lo = max(0, min(range.lowerBound, count)), hi = max(lo, min(range.upperBound, count))
        let n = valuesPerImage
        return LabeledImages(count: hi - lo, width: width, height: height, channels: channels,
                             pixels: Array(pixels[lo * n ..< hi * n]), labels: Array(labels[lo..<hi]),
                             captions: captions.isEmpty ? [] : Array(captions[lo..<hi]), classNames: classNames)
    }
}
