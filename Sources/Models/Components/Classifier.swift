import Foundation
import Tensor

/// Configuration of `Classifier`. JSON keys are snake_case (stored in checkpoint metadata under
/// "config" and beside the weights as classifier.json).
public struct ClassifierConfig: Codable, Equatable, Sendable {
    /// Side of the square input image.
    public var imageSize: Int = 28
    /// Channels of the input image: 1 (gray) or 3 (RGB), planar.
    public var imageChannels: Int = 1
    /// Output channels of each 3x3 convolution (each followed by ReLU).
    public var convChannels: [Int] = [32, 32, 64, 32]
    /// Stride of each convolution (2 halves H and W); same length as `convChannels`.
    public var convStrides: [Int] = [1, 2, 1, 2]
    /// Width of the penultimate layer: the feature space FID and precision/recall use.
    public var featureDim: Int = 128
    /// Number of classes (10 for Fashion-MNIST).
    public var classes: Int = 10
    /// Inputs in [0, 1] are normalised as (x - mean) / std inside the model.
    public var inputMean: Float = 0.2860
    public var inputStd: Float = 0.3530
    /// How the last feature map reaches the penultimate layer: flattened (every position its own
    /// weights) or averaged over the positions (global average pooling, as in Inception).
    public var pool: Pool = .flatten
    /// Where the evaluation features are read: the penultimate layer before its ReLU or after it.
    public var featureLayer: FeatureLayer = .preActivation

    public enum Pool: String, Codable, Sendable { case flatten, average }
    public enum FeatureLayer: String, Codable, Sendable {
        case preActivation = "pre_activation", postActivation = "post_activation"
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", imageChannels = "image_channels", convChannels = "conv_channels", convStrides = "conv_strides"
        case featureDim = "feature_dim", classes, inputMean = "input_mean", inputStd = "input_std"
        case pool, featureLayer = "feature_layer"
    }

    /// Missing keys take their defaults (checkpoints written before `pool` and `feature_layer`
    /// existed are flatten / pre-activation classifiers).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ClassifierConfig()
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        imageChannels = try c.decodeIfPresent(Int.self, forKey: .imageChannels) ?? d.imageChannels
        convChannels = try c.decodeIfPresent([Int].self, forKey: .convChannels) ?? d.convChannels
        convStrides = try c.decodeIfPresent([Int].self, forKey: .convStrides) ?? d.convStrides
        featureDim = try c.decodeIfPresent(Int.self, forKey: .featureDim) ?? d.featureDim
        classes = try c.decodeIfPresent(Int.self, forKey: .classes) ?? d.classes
        inputMean = try c.decodeIfPresent(Float.self, forKey: .inputMean) ?? d.inputMean
        inputStd = try c.decodeIfPresent(Float.self, forKey: .inputStd) ?? d.inputStd
        pool = try c.decodeIfPresent(Pool.self, forKey: .pool) ?? d.pool
        featureLayer = try c.decodeIfPresent(FeatureLayer.self, forKey: .featureLayer) ?? d.featureLayer
    }

    /// Checks sizes; the message names the bad field.
    public func validate() throws {
        guard imageSize >= 4 else { throw ModelError.invalidConfig("image_size \(imageSize) must be >= 4") }
        guard imageChannels == 1 || imageChannels == 3 else {
            throw ModelError.invalidConfig("image_channels \(imageChannels) must be 1 (gray) or 3 (RGB)")
        }
        guard !convChannels.isEmpty, convChannels.allSatisfy({ $0 > 0 }) else {
            throw ModelError.invalidConfig("conv_channels \(convChannels) must be non-empty and positive")
        }
        guard convStrides.count == convChannels.count, convStrides.allSatisfy({ $0 == 1 || $0 == 2 }) else {
            throw ModelError.invalidConfig("conv_strides \(convStrides) must have one entry of 1 or 2 per conv")
        }
        guard featureDim > 0, classes > 1 else {
            throw ModelError.invalidConfig("feature_dim \(featureDim) must be > 0 and classes \(classes) > 1")
        }
        guard inputStd > 0 else { throw ModelError.invalidConfig("input_std \(inputStd) must be > 0") }
    }

    /// The network in a few words: "flatten, pre-activation, 128 features, convs 32-32-64-32".
    public var summary: String {
        "\(pool.rawValue), \(featureLayer == .preActivation ? "pre" : "post")-activation, \(featureDim) features, convs "
            + convChannels.map(String.init).joined(separator: "-")
    }

    /// Side of the last convolution's output.
    public var finalSide: Int {
        convStrides.reduce(imageSize) { side, s in (side + 2 - 3) / s + 1 }
    }

    /// Inputs of the first linear layer (the flattened or averaged last feature map).
    public var flatDim: Int { (convChannels.last ?? 0) * (pool == .flatten ? finalSide * finalSide : 1) }
}

/// A small CNN for 28x28 gray images (the "domain classifier" of our FID, in the spirit of the
/// Fréchet LeNet distance): 3x3 convolutions with ReLU, strided ones downsampling, then
/// flatten -> linear (featureDim) -> ReLU -> linear (classes).
/// `features` is the penultimate layer *before* its ReLU; `logits` the class scores. Measured: with
/// the post-ReLU features, uniform-noise images all land inside the real k-NN manifold
/// (precision 1.0, density 1.27 at 1000 images); before the ReLU, 0.44 and 0.17, because the
/// negative evidence the ReLU discards is what tells noise from clothes.
///
/// Checkpoint keys: `convs.<i>.weight|bias`, `fc1.weight|bias`, `fc2.weight|bias`.
public final class Classifier: Layer {
    public let config: ClassifierConfig
    public let convs: [Conv2d]
    public let fc1: Linear, fc2: Linear

    public init(config: ClassifierConfig = ClassifierConfig(), seed: UInt64 = 0) throws {
        try config.validate()
        self.config = config
        var rng = RandomGenerator(seed: seed)
        var cin = config.imageChannels
        var convs: [Conv2d] = []
        for (c, s) in zip(config.convChannels, config.convStrides) {
            convs.append(Conv2d(cin, c, kernel: 3, stride: s, padding: 1, rng: &rng))
            cin = c
        }
        self.convs = convs
        fc1 = Linear(config.flatDim, config.featureDim, rng: &rng)
        fc2 = Linear(config.featureDim, config.classes, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        nest("convs", convs) + nest("fc1", fc1) + nest("fc2", fc2)
    }

    /// Penultimate features (pre-ReLU): x (B, C, S, S) with values in [0, 1] -> (B, featureDim).
    public func features(_ x: Tensor) -> Tensor {
        let (c, s) = (config.imageChannels, config.imageSize)
        precondition(x.rank == 4 && x.shape[1] == c && x.shape[2] == s && x.shape[3] == s,
                     "Classifier: input must be (B, \(c), \(s), \(s)), got \(x.shape)")
        var h = x.adding(-config.inputMean).scaled(1 / config.inputStd)  // h: (B, C, S, S)
        for conv in convs { h = conv(h).relu() }                          // h: (B, C, S', S')
        switch config.pool {
        case .flatten:
            h = h.reshaped([x.shape[0], config.flatDim])                   // h: (B, flatDim)
        case .average:
            let side = config.finalSide
            h = h.reshaped([x.shape[0], config.flatDim, side * side]).meanLast()  // h: (B, C, 1)
                .reshaped([x.shape[0], config.flatDim])                     // h: (B, C)
        }
        return fc1(h)                                                        // (B, featureDim)
    }

    /// Every convolution's output after its ReLU, first layer first: x (B, C, S, S) in [0, 1] ->
    /// [(B, C_i, S_i, S_i)]. The layers a perceptual loss compares.
    public func convActivations(_ x: Tensor) -> [Tensor] {
        var h = x.adding(-config.inputMean).scaled(1 / config.inputStd)
        var out: [Tensor] = []
        for conv in convs {
            h = conv(h).relu()
            out.append(h)
        }
        return out
    }

    /// The features the evaluation scores (`config.featureLayer`): `features(x)`, or after its
    /// ReLU. (B, 1, S, S) -> (B, featureDim).
    public func evaluationFeatures(_ x: Tensor) -> Tensor {
        config.featureLayer == .preActivation ? features(x) : features(x).relu()
    }

    /// Class scores from (pre-ReLU) features (B, featureDim) -> (B, classes).
    public func logits(fromFeatures f: Tensor) -> Tensor { fc2(f.relu()) }

    /// Class scores: x (B, 1, S, S) in [0, 1] -> (B, classes).
    public func logits(_ x: Tensor) -> Tensor { fc2(features(x).relu()) }

    /// 8-bit images (`count` of them, C*S*S each, planar, row-major) as a (count, C, S, S) tensor
    /// in [0, 1].
    public static func inputTensor(pixels: [UInt8], count: Int, side: Int = 28, channels: Int = 1) -> Tensor {
        precondition(pixels.count == count * channels * side * side,
                     "Classifier.inputTensor: \(pixels.count) values for \(count) images of \(side)x\(side)x\(channels)")
        let t = Tensor(zeros: [count, channels, side, side])
        pixels.withUnsafeBufferPointer { p in
            for i in 0..<p.count { t.data[i] = Float(p[i]) * (1 / 255) }
        }
        return t
    }
}

extension Classifier {
    /// Writes the weights to `path` (safetensors, config JSON under metadata "config").
    public func save(path: String) throws {
        let json = try configJSON()
        try SafeTensors(tensors: stateDict(), metadata: [SafeTensors.configKey: json]).write(path: path)
    }

    /// The config as pretty-printed, key-sorted JSON (also written as classifier.json beside the weights).
    public func configJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(config), as: UTF8.self)
    }

    /// Loads a classifier saved by `save(path:)`. Throws `ModelError.invalidConfig` when the
    /// metadata has no config or it does not decode; weight errors name the key.
    public static func load(path: String) throws -> Classifier {
        let file = try SafeTensors.read(path: path)
        guard let json = file.config else {
            throw ModelError.invalidConfig("\(path) has no \"\(SafeTensors.configKey)\" metadata")
        }
        let config: ClassifierConfig
        do {
            config = try JSONDecoder().decode(ClassifierConfig.self, from: Data(json.utf8))
        } catch {
            throw ModelError.invalidConfig("\(path): config metadata does not decode: \(error)")
        }
        let model = try Classifier(config: config)
        var tensors: [String: Tensor] = [:]
        for name in file.names { tensors[name] = try file.tensor(name) }
        try model.load(from: tensors)
        return model
    }
}
