import Foundation
import ImageIO
import Training
import XCTest

final class EvaluatorTests: XCTestCase {
    func testPromptsNameTheirClass() {
        XCTAssertEqual(EvaluationPrompts.classPrompts.count, 10)
        for (c, p) in EvaluationPrompts.classPrompts.enumerated() { XCTAssertEqual(EvaluationPrompts.classIndex(of: p), c) }
        XCTAssertEqual(EvaluationPrompts.classIndex(of: "a photo of a shirt"), 6)
        XCTAssertEqual(EvaluationPrompts.classIndex(of: "A T-shirt/top, folded"), 0)
        XCTAssertNil(EvaluationPrompts.classIndex(of: ""))
    }

    func testRegistryKnowsPseudoModels() throws {
        XCTAssertTrue(GeneratorRegistry.names.contains("real-train"))
        XCTAssertTrue(GeneratorRegistry.names.contains("noise"))
        XCTAssertThrowsError(try GeneratorRegistry.make("no-such-model", context: GeneratorContext(modelsDirectory: "models")))
        let noise = try GeneratorRegistry.make("noise", context: GeneratorContext(modelsDirectory: "models"))
        let a = try noise.generate(prompt: "bag", seed: 4, steps: 1, count: 3)
        XCTAssertEqual(a.count, 3 * 784)
        XCTAssertEqual(a, try noise.generate(prompt: "bag", seed: 4, steps: 1, count: 3))
        XCTAssertNotEqual(a, try noise.generate(prompt: "bag", seed: 5, steps: 1, count: 3))
    }

    /// Saved images come back by class, in the order of labels.txt, as the same bytes; asking for
    /// more than a class holds, and malformed folders, are clear errors.
    func testSavedImagesReplayByClass() throws {
        let dir = NSTemporaryDirectory() + "/saved-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var list = ""
        for i in 0..<5 {
            let pixels = [UInt8](repeating: UInt8(40 * i), count: 784)
            try Data(try PNG.encode(pixels: pixels[...], width: 28, height: 28, channels: 1)).write(to: URL(fileURLWithPath: dir + "/\(i).png"))
            list += "\(i).png\t\(i % 2 == 0 ? 8 : 9)\n"  // 0, 2, 4 are bags; 1, 3 ankle boots
        }
        try list.write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        let g = try SavedImagesGenerator(directory: dir)
        XCTAssertEqual(g.imageSide, 28)
        XCTAssertEqual(try g.generate(prompt: "bag", seed: 1, steps: 1, count: 2), [UInt8](repeating: 0, count: 784) + [UInt8](repeating: 80, count: 784))
        XCTAssertEqual(try g.generate(prompt: "ankle boot", seed: 1, steps: 1, count: 1), [UInt8](repeating: 40, count: 784))
        XCTAssertEqual(try g.generate(prompt: "bag", seed: 2, steps: 1, count: 1), [UInt8](repeating: 160, count: 784))
        XCTAssertThrowsError(try g.generate(prompt: "bag", seed: 3, steps: 1, count: 1))
        XCTAssertThrowsError(try g.generate(prompt: "something", seed: 3, steps: 1, count: 1))
        try "0.png\tbag\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SavedImagesGenerator(directory: dir))
        try "missing.png\t1\n".write(toFile: dir + "/labels.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SavedImagesGenerator(directory: dir))
        XCTAssertThrowsError(try SavedImagesGenerator(directory: dir + "/nowhere"))
    }

    /// The whole harness on a small run: real training images score a low FID, high class
    /// accuracy and are all flagged as near-copies; noise scores a huge FID, zero recall and
    /// coverage, and a density far below real images' (precision alone is not trusted here: see
    /// `PrecisionRecall`).
    func testEvaluateRealTrainAndNoise() throws {
        let (train, test) = try EvalFixtures.data()
        var settings = EvaluationSettings()
        settings.count = 200
        settings.batch = 25
        settings.memorisationTestCount = 500
        let small = train.slice(0..<8000)
        let evaluator = try Evaluator(classifier: EvalFixtures.classifier(), train: small, test: test.slice(0..<2000),
                                      settings: settings)
        evaluator.showProgress = false
        XCTAssertEqual(evaluator.requests().reduce(0) { $0 + $1.count }, 200)
        XCTAssertEqual(Set(evaluator.requests().map(\.label)).count, 10)

        let real = try evaluator.evaluate(RealTrainGenerator(train: small), withReference: false)
        XCTAssertEqual(real.generated.count, 200)
        XCTAssertGreaterThan(real.generated.classAccuracy, 0.85)
        XCTAssertEqual(real.generated.memorisation.pixels.nearCopyFraction, 1)
        XCTAssertGreaterThan(real.generated.precision, 0.6)

        let noise = try evaluator.evaluate(NoiseGenerator(), withReference: true)
        XCTAssertGreaterThan(noise.generated.fid, 20 * real.generated.fid)
        XCTAssertLessThan(noise.generated.precision, real.generated.precision)
        XCTAssertLessThan(noise.generated.density, 0.3 * real.generated.density, "\(noise.generated) vs \(real.generated)")
        XCTAssertLessThan(noise.generated.recall, 0.02)
        XCTAssertLessThan(noise.generated.coverage, 0.05)
        XCTAssertEqual(noise.generated.memorisation.nearCopyFraction, 0)
        let ref = try XCTUnwrap(noise.referenceTrain)
        XCTAssertEqual(ref.fid, real.generated.fid, accuracy: 1e-9)  // same images, same seeds
    }
}
