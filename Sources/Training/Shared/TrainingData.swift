import Foundation
import ImageIO

/// Where a trainer's images come from: `fashion-mnist` (the Debian package's IDX files) or a
/// folder of PNGs (`ImageDataset`), optionally resized to `size` x `size`.
public struct TrainingData: Sendable {
    public var train: LabeledImages
    /// Held-out images for reports (test PSNR, sample grids): Fashion-MNIST's test split, or
    /// every 10th image of a folder of at least 20 (those are then not trained on; smaller
    /// folders report on the training images).
    public var test: LabeledImages
    public var name: String

    public static let fashionMNIST = "fashion-mnist"

    public static func load(_ spec: String, size: Int? = nil) throws -> TrainingData {
        if spec == fashionMNIST {
            var train = try FashionMNIST.load(split: .train)
            var test = try FashionMNIST.load(split: .test)
            if let s = size, s != train.width {
                train = resized(train, to: s); test = resized(test, to: s)
            }
            return TrainingData(train: train, test: test, name: spec)
        }
        let all = try ImageDataset.load(directory: spec, size: size)
        guard all.count >= 20 else { return TrainingData(train: all, test: all, name: spec) }
        let testIdx = Array(stride(from: 9, to: all.count, by: 10))
        let held = Set(testIdx)
        let trainIdx = (0..<all.count).filter { !held.contains($0) }
        return TrainingData(train: select(all, trainIdx), test: select(all, testIdx), name: spec)
    }

    /// The items at `indices`, in that order.
    public static func select(_ images: LabeledImages, _ indices: [Int]) -> LabeledImages {
        let n = images.valuesPerImage
        var px = [UInt8](); px.reserveCapacity(indices.count * n)
        for i in indices { px.append(contentsOf: images.pixels[(i * n)..<((i + 1) * n)]) }
        return LabeledImages(count: indices.count, width: images.width, height: images.height, channels: images.channels,
                             pixels: px, labels: indices.map { images.labels[$0] },
                             captions: images.captions.isEmpty ? [] : indices.map { images.captions[$0] },
                             classNames: images.classNames)
    }

    static func resized(_ images: LabeledImages, to s: Int) -> LabeledImages {
        let n = images.valuesPerImage
        var px = [UInt8](); px.reserveCapacity(images.count * images.channels * s * s)
        for i in 0..<images.count {
            px += ImageDataset.resizeArea(Array(images.pixels[(i * n)..<((i + 1) * n)]), width: images.width,
                                          height: images.height, channels: images.channels, to: s)
        }
        var out = images
        out.width = s; out.height = s; out.pixels = px
        return out
    }
}
