import Foundation
import Models
import Tensor

/// Penultimate features and logits of a set of images, row-major.
public struct ClassifierOutputs: Sendable {
    public var count: Int
    public var featureDim: Int
    public var classes: Int
    /// `count * featureDim` values: image i's features are row i.
    public var features: [Float]
    /// `count * classes` values.
    public var logits: [Float]

    /// Argmax of image `i`'s logits.
    public func predictedClass(_ i: Int) -> Int {
        var best = 0
        for c in 1..<classes where logits[i * classes + c] > logits[i * classes + best] { best = c }
        return best
    }

    /// Fraction of the images whose predicted class is their label (`labels[i]` for image i).
    public func accuracy(labels: [Int]) -> Double {
        var correct = 0
        for i in 0..<count where predictedClass(i) == labels[i] { correct += 1 }
        return Double(correct) / Double(max(1, count))
    }

    /// The features as a matrix (count, featureDim).
    public var featureMatrix: FeatureMatrix { FeatureMatrix(rows: count, cols: featureDim, values: features) }
}

/// Runs the domain classifier over 8-bit images in batches without recording gradients.
public struct FeatureExtractor {
    public let classifier: Classifier

    public init(classifier: Classifier) { self.classifier = classifier }

    /// `pixels` holds `count` images of side x side x channels (the classifier's), planar, row-major.
    public func extract(pixels: [UInt8], count: Int, batch: Int = 500) throws -> ClassifierOutputs {
        let side = classifier.config.imageSize, channels = classifier.config.imageChannels, n = channels * side * side
        guard pixels.count == count * n else {
            throw TrainingError.invalidData("\(pixels.count) values for \(count) images of \(side)x\(side)x\(channels)")
        }
        let d = classifier.config.featureDim, k = classifier.config.classes
        var features = [Float](repeating: 0, count: count * d)
        var logits = [Float](repeating: 0, count: count * k)
        var start = 0
        while start < count {
            let end = min(count, start + max(1, batch))
            let x = Classifier.inputTensor(pixels: Array(pixels[start * n ..< end * n]), count: end - start, side: side, channels: channels)
            GradMode.withDisabled {
                let f = classifier.evaluationFeatures(x)     // f: (b, D)
                let l = classifier.logits(fromFeatures: f)   // l: (b, K) (ReLU is idempotent)
                for i in 0..<f.count { features[start * d + i] = f.data[i] }
                for i in 0..<l.count { logits[start * k + i] = l.data[i] }
            }
            start = end
        }
        return ClassifierOutputs(count: count, featureDim: d, classes: k, features: features, logits: logits)
    }
}

extension FeatureExtractor {
    /// Part of the cache key: change it whenever what `Classifier.features` computes changes.
    static let cacheVersion = "features-v2-pre-relu-fc1"

    /// Like `extract`, but keeps the result in a file under `directory` (default: the system
    /// temporary directory, `coalesce-features/`) keyed by a hash of the classifier's weights and
    /// of the pixels, so the 70000 Fashion-MNIST images are run through the classifier once per
    /// checkpoint, not once per evaluation. A missing or unreadable cache file is recomputed.
    public func extractCached(pixels: [UInt8], count: Int, directory: String? = nil) throws -> ClassifierOutputs {
        let dir = directory ?? (NSTemporaryDirectory() + "/coalesce-features")
        var h = FNV1a()
        h.add(bytes: Array(FeatureExtractor.cacheVersion.utf8))
        h.add(bytes: Array(((try? classifier.configJSON()) ?? "").utf8))
        for p in classifier.parameters { h.add(floats: p.data, count: p.count) }
        h.add(bytes: pixels)
        let path = dir + "/" + String(h.value, radix: 16) + "-\(count).bin"
        let d = classifier.config.featureDim, k = classifier.config.classes
        if let data = FileManager.default.contents(atPath: path), data.count == (count * (d + k)) * 4 {
            var values = [Float](repeating: 0, count: count * (d + k))
            _ = values.withUnsafeMutableBytes { dst in data.copyBytes(to: dst) }
            return ClassifierOutputs(count: count, featureDim: d, classes: k,
                                     features: Array(values[0 ..< count * d]), logits: Array(values[count * d ..< count * (d + k)]))
        }
        let out = try extract(pixels: pixels, count: count)
        // Best effort: a cache that cannot be written only costs time on the next run.
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let values = out.features + out.logits
        let data = values.withUnsafeBytes { Data($0) }
        guard FileManager.default.createFile(atPath: path + ".tmp", contents: data) else { return out }
        _ = try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.moveItem(atPath: path + ".tmp", toPath: path)
        return out
    }
}

/// 64-bit FNV-1a hash (cache keys only; not cryptographic).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(bytes: [UInt8]) {
        var v = value
        for b in bytes { v = (v ^ UInt64(b)) &* 0x100_0000_01b3 }
        value = v
    }

    mutating func add(floats: UnsafePointer<Float>, count: Int) {
        var v = value
        for i in 0..<count {
            var bits = floats[i].bitPattern
            for _ in 0..<4 { v = (v ^ UInt64(bits & 0xff)) &* 0x100_0000_01b3; bits >>= 8 }
        }
        value = v
    }
}
