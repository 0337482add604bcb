import Foundation
import Models
import Training
import XCTest

/// eval/paraphrases.tsv, the held-out prompts of the encoder comparison in BENCHMARKS.md.
final class ParaphraseSetTests: XCTestCase {
    func testAtLeast100ParaphrasesNoneOfThemACaptionTheModelsSaw() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let set = try LabeledPrompt.read(path: root + "/eval/paraphrases.tsv")
        XCTAssertGreaterThanOrEqual(set.count, 100)
        XCTAssertEqual(Set(set.map(\.prompt)).count, set.count, "duplicate prompts")
        for c in 0..<10 { XCTAssertGreaterThanOrEqual(set.filter { $0.label == c }.count, 10, "class \(c)") }
        let seen = Set(Captions.all(templates: Captions.trainTemplates + Captions.heldOutTemplates).map { $0.0.lowercased() })
        for p in set { XCTAssertFalse(seen.contains(p.prompt.lowercased()), p.prompt) }
        XCTAssertTrue(set.contains(LabeledPrompt(label: 5, prompt: "something to wear on your feet at the beach")))
    }

    func testBadLinesAreRefused() throws {
        let path = NSTemporaryDirectory() + "/paraphrases-\(getpid()).tsv"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "# comment\n5\ta sandal\nsandal\tflip flops\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try LabeledPrompt.read(path: path), [LabeledPrompt(label: 5, prompt: "a sandal"),
                                                           LabeledPrompt(label: 5, prompt: "flip flops")])
        try "11\ta hat\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LabeledPrompt.read(path: path))
    }
}
