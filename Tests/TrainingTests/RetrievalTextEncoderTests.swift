import Foundation
import Models
import Tensor
import Training
import XCTest

/// The `minilm_retrieval` text encoder (`coalesce train text-encoder --retrieval`): MiniLM
/// attention over a model's training captions, values the model's own embeddings of them.
final class RetrievalTextEncoderTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let minilm: MiniLM? = try? MiniLM(directory: root + "/models/minilm")

    func loaded() throws -> MiniLM {
        guard let m = Self.minilm else {
            if ProcessInfo.processInfo.environment["COALESCE_REQUIRE_MINILM"] == "1" {
                XCTFail("models/minilm missing or unreadable; run scripts/fetch-minilm.sh")
            }
            throw XCTSkip("models/minilm not set up (scripts/fetch-minilm.sh)")
        }
        return m
    }

    /// A trigram encoder whose embeddings differ by caption (a fresh one maps every prompt to one
    /// point: its first layer starts at zero).
    func teacher() throws -> TextEncoder {
        var rng = RandomGenerator(seed: 5)
        let t = try TextEncoder(config: TextEncoderConfig(), rng: &rng)
        for (k, p) in t.namedParameters where k == "fc1.weight" {
            for i in 0..<p.count { p.data[i] = Float(sin(Double(i) * 0.37)) * 0.5 }
        }
        return t
    }

    /// Three classes, two phrases each, three templates: (captions, classes, phrase groups).
    func captions() -> ([String], [Int], [Int]) {
        var out: ([String], [Int], [Int]) = ([], [], [])
        var group = 0
        for c in 0..<3 {
            for p in Captions.classPhrases[c].prefix(2) {
                for t in Captions.trainTemplates.prefix(3) {
                    out.0.append(Captions.fill(t, p)); out.1.append(c); out.2.append(group)
                }
                group += 1
            }
        }
        return out
    }

    func rows(_ t: Tensor, _ d: Int) -> [[Float]] { stride(from: 0, to: t.count, by: d).map { Array(t.array[$0..<($0 + d)]) } }
    func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    func testStoredCaptionsComeBackAndRowsDoNotDependOnTheBatch() throws {
        let minilm = try loaded()
        let source = try teacher()
        let (caps, classes, groups) = captions()
        let (enc, report) = try TextEncoderDistiller.retrieval(
            teacher: source, minilm: minilm, captions: caps, classes: classes, groups: groups,
            heldOut: ["a drawing of a tee"], temperatures: [0.005, 0.05, 0.5])
        // The chosen temperature is the sweep's best by phrase-left-out cosine.
        XCTAssertEqual(report.sweep.map(\.temperature), [0.005, 0.05, 0.5])
        XCTAssertEqual(enc.config.temperature, report.sweep.max { $0.cosine < $1.cosine }!.temperature)
        XCTAssertEqual(enc.config.kind, .minilmRetrieval)
        XCTAssertEqual(enc.parameterCount, caps.count * 384 + (caps.count + 1) * 16)

        let d = enc.config.dim
        let (got, want, empty) = GradMode.withDisabled {
            (rows(enc.embed(caps), d), rows(source.embed(caps), d), rows(enc.embed(["", " \t", "\u{7}"]), d))
        }
        // At a low temperature a stored caption is (close to) the source model's own embedding.
        var cfg = enc.config
        cfg.temperature = 0.002
        var rng = RandomGenerator(seed: 0)
        let sharp = try TextEncoder(config: cfg, rng: &rng, minilm: minilm)
        try sharp.load(from: enc.stateDict())
        let sharpRows = GradMode.withDisabled { rows(sharp.embed(caps), d) }
        for i in caps.indices {
            XCTAssertGreaterThan(dot(sharpRows[i], want[i]), 0.99, caps[i])
            XCTAssertEqual(dot(got[i], got[i]), 1, accuracy: 1e-5)
        }
        // No word pieces: the source model's empty-prompt embedding (unconditional), exactly.
        let unconditional = GradMode.withDisabled { source.embed([""]).array }
        for r in empty { XCTAssertEqual(r, unconditional) }
        // A row's bits do not depend on the prompts beside it.
        for i in [0, 7, caps.count - 1] {
            XCTAssertEqual(GradMode.withDisabled { enc.embed([caps[i]]).array }, got[i])
        }
        // A prompt it never stored gets a finite unit embedding.
        let paraphrase = GradMode.withDisabled { enc.embed(["a loose knitted top for cold days"]).array }
        XCTAssertTrue(paraphrase.allSatisfy(\.isFinite))
        XCTAssertEqual(dot(paraphrase, paraphrase), 1, accuracy: 1e-5)
    }

    func testConfigAndWeightsRoundTrip() throws {
        let minilm = try loaded()
        let (caps, classes, groups) = captions()
        let (enc, _) = try TextEncoderDistiller.retrieval(
            teacher: try teacher(), minilm: minilm, captions: caps, classes: classes, groups: groups,
            heldOut: [], temperatures: [0.03])
        let json = try JSONEncoder().encode(enc.config)
        let back = try JSONDecoder().decode(TextEncoderConfig.self, from: json)
        XCTAssertEqual(back, enc.config)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains("\"minilm_retrieval\""))
        var rng = RandomGenerator(seed: 9)
        let copy = try TextEncoder(config: back, rng: &rng, minilm: minilm)
        try copy.load(from: enc.stateDict())
        let prompts = ["something for the beach", "trousers", ""]
        XCTAssertEqual(GradMode.withDisabled { copy.embed(prompts).array }, GradMode.withDisabled { enc.embed(prompts).array })
    }

    func testInvalidRetrievalConfigsAreRefused() throws {
        var cfg = TextEncoderConfig()
        cfg.kind = .minilmRetrieval
        var rng = RandomGenerator(seed: 1)
        XCTAssertThrowsError(try TextEncoder(config: cfg, rng: &rng))          // no captions
        cfg.captions = 4
        for t in [Float(0), -1, .nan, .infinity] {
            cfg.temperature = t
            XCTAssertThrowsError(try TextEncoder(config: cfg, rng: &rng), "temperature \(t)")
        }
        cfg.temperature = 0.05
        XCTAssertNoThrow(try TextEncoder(config: cfg, rng: &rng))
    }
}
