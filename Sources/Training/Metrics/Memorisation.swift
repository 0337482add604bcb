/// How close generated images sit to the training set, judged against held-out real images.
///
/// For every generated image: the distance to its nearest training image, in pixels (values in
/// [0, 1], L2 over the whole image) and in classifier features. The same for a set of test images,
/// which were never trained on: their nearest-training distances say how close an honest new image
/// usually is. The near-copy threshold is a low percentile (1st by default) of the test distances;
/// a generated image closer than that to some training image counts as a near-copy. Test images
/// give a near-copy fraction of about the percentile; a generator returning its training set gives
/// 1.0. Reported separately in pixel and feature space.
public struct MemorisationReport: Sendable, Codable, Equatable {
    /// Per space ("pixels", "features").
    public struct Space: Sendable, Codable, Equatable {
        /// Median nearest-training distance of the generated images.
        public var generatedMedian: Double
        /// Median nearest-training distance of the test images.
        public var testMedian: Double
        /// The near-copy threshold (the test distances' percentile).
        public var threshold: Double
        /// Fraction of generated images closer than `threshold` to a training image.
        public var nearCopyFraction: Double
        /// Fraction of test images closer than `threshold` (about the percentile, for reference).
        public var testNearCopyFraction: Double
        /// Distinct training images that are the nearest neighbour of some generated image.
        public var distinctNearest: Int

        enum CodingKeys: String, CodingKey {
            case generatedMedian = "generated_median", testMedian = "test_median", threshold
            case nearCopyFraction = "near_copy_fraction", testNearCopyFraction = "test_near_copy_fraction"
            case distinctNearest = "distinct_nearest"
        }
    }

    public var pixels: Space
    public var features: Space
    /// The percentile of test distances used as threshold.
    public var percentile: Double

    /// An image counts as a near-copy when it is one in either space.
    public var nearCopyFraction: Double { max(pixels.nearCopyFraction, features.nearCopyFraction) }

    public init(pixels: Space, features: Space, percentile: Double) {
        self.pixels = pixels
        self.features = features
        self.percentile = percentile
    }

    /// `generated*` and `test*` are queries; `train*` the training set, in both spaces (same rows).
    public static func compute(generatedPixels: FeatureMatrix, generatedFeatures: FeatureMatrix,
                               testPixels: FeatureMatrix, testFeatures: FeatureMatrix,
                               trainPixels: FeatureMatrix, trainFeatures: FeatureMatrix,
                               percentile: Double = 1) -> MemorisationReport {
        let baseline = MemorisationBaseline(testPixels: testPixels, testFeatures: testFeatures,
                                            trainPixels: trainPixels, trainFeatures: trainFeatures)
        return baseline.report(generatedPixels: generatedPixels, generatedFeatures: generatedFeatures,
                               percentile: percentile)
    }

    static func space(generated: (distances: [Float], indices: [Int]), test: [Float], percentile: Double) -> Space {
        let threshold = Double(quantile(test, percentile / 100))
        func fraction(_ d: [Float]) -> Double {
            Double(d.filter { Double($0) < threshold }.count) / Double(max(1, d.count))
        }
        return Space(generatedMedian: Double(quantile(generated.distances, 0.5)),
                     testMedian: Double(quantile(test, 0.5)),
                     threshold: threshold,
                     nearCopyFraction: fraction(generated.distances),
                     testNearCopyFraction: fraction(test),
                     distinctNearest: Set(generated.indices).count)
    }

    /// The q-quantile (0...1) by linear interpolation between order statistics.
    public static func quantile(_ values: [Float], _ q: Double) -> Float {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        let pos = min(max(q, 0), 1) * Double(s.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
        let t = Float(pos - Double(lo))
        return s[lo] + (s[hi] - s[lo]) * t
    }
}

/// The training set in both spaces and the test images' nearest-training distances: computed once,
/// then any number of generated sets are scored against it.
public struct MemorisationBaseline: Sendable {
    public let trainPixels: FeatureMatrix
    public let trainFeatures: FeatureMatrix
    /// Nearest-training distance of each test image, in pixels and in features.
    public let testPixelDistances: [Float]
    public let testFeatureDistances: [Float]

    public init(testPixels: FeatureMatrix, testFeatures: FeatureMatrix,
                trainPixels: FeatureMatrix, trainFeatures: FeatureMatrix) {
        precondition(trainPixels.rows == trainFeatures.rows && testPixels.rows == testFeatures.rows,
                     "MemorisationBaseline: pixel and feature rows must describe the same images")
        self.trainPixels = trainPixels
        self.trainFeatures = trainFeatures
        testPixelDistances = PairwiseDistances.nearest(queries: testPixels, reference: trainPixels).distances
        testFeatureDistances = PairwiseDistances.nearest(queries: testFeatures, reference: trainFeatures).distances
    }

    public func report(generatedPixels: FeatureMatrix, generatedFeatures: FeatureMatrix,
                       percentile: Double = 1) -> MemorisationReport {
        let gp = PairwiseDistances.nearest(queries: generatedPixels, reference: trainPixels)
        let gf = PairwiseDistances.nearest(queries: generatedFeatures, reference: trainFeatures)
        return MemorisationReport(
            pixels: MemorisationReport.space(generated: gp, test: testPixelDistances, percentile: percentile),
            features: MemorisationReport.space(generated: gf, test: testFeatureDistances, percentile: percentile),
            percentile: percentile)
    }
}
