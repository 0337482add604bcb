import Foundation
import Models
import Tensor
import XCTest

/// The MiniLM sentence encoder against the Python reference (sentence-transformers 6.2.0 on the
/// same weights), fixtures written by scripts/minilm-fixtures.py.
final class MiniLMTests: XCTestCase {
    struct Case: Decodable {
        var text: String
        var ids: [Int]
        var embedding: [Float]
        var token_embeddings: [[Float]]?
    }
    struct Fixture: Decodable { var cases: [Case] }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let directory = root.appendingPathComponent("models/minilm").path

    static let fixture: Fixture? = {
        let url = root.appendingPathComponent("Tests/ModelsTests/Fixtures/minilm-reference.json")
        return (try? Data(contentsOf: url)).flatMap { try? JSONDecoder().decode(Fixture.self, from: $0) }
    }()

    /// Loaded once for the whole class (87 MB).
    static let model: MiniLM? = try? MiniLM(directory: directory)

    func loaded() throws -> (MiniLM, Fixture) {
        let fixture = try XCTUnwrap(Self.fixture, "Tests/ModelsTests/Fixtures/minilm-reference.json unreadable")
        guard let model = Self.model else {
            // `make` fetches the weights (scripts/fetch-minilm.sh); CI must not skip silently.
            if ProcessInfo.processInfo.environment["COALESCE_REQUIRE_MINILM"] == "1" {
                XCTFail("models/minilm missing or unreadable; run scripts/fetch-minilm.sh")
            }
            throw XCTSkip("models/minilm not set up (scripts/fetch-minilm.sh)")
        }
        return (model, fixture)
    }

    func testTokenizerMatchesTheReferenceOnTrickyText() throws {
        let (model, fixture) = try loaded()
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 20)
        for c in fixture.cases {
            let ids = model.tokenizer.encode(c.text)
            XCTAssertEqual(ids, c.ids, "\(c.text.prefix(60)): \(model.tokenizer.strings(ids).prefix(24)) vs "
                           + "\(model.tokenizer.strings(c.ids).prefix(24))")
        }
    }

    func testTokenizerBehaviour() throws {
        let (model, _) = try loaded()
        let tok = model.tokenizer
        XCTAssertEqual(tok.strings(tok.encode("Crème BRÛLÉE")), ["[CLS]", "cr", "##eme", "br", "##ule", "##e", "[SEP]"])
        XCTAssertEqual(tok.strings(tok.encode("flip-flops!")), ["[CLS]", "flip", "-", "flop", "##s", "!", "[SEP]"])
        XCTAssertEqual(tok.strings(tok.encode("👟🩴")), ["[CLS]", "[UNK]", "[SEP]"])       // one word, not in the vocabulary
        XCTAssertEqual(tok.encode(""), [tok.cls, tok.sep])
        XCTAssertEqual(tok.encode(String(repeating: "boot ", count: 2000)).count, 256)  // truncated, [SEP] kept
        XCTAssertEqual(tok.encode(String(repeating: "boot ", count: 2000)).last, tok.sep)
        XCTAssertEqual(tok.strings(tok.encode(String(repeating: "z", count: 101))), ["[CLS]", "[UNK]", "[SEP]"])
    }

    func testSentenceEmbeddingsMatchTheReferenceTo1e4() throws {
        let (model, fixture) = try loaded()
        var worst: Float = 0
        for c in fixture.cases {
            let e = model.embed([c.text]).array
            XCTAssertEqual(e.count, 384)
            let err = zip(e, c.embedding).map { abs($0 - $1) }.max() ?? .infinity
            worst = max(worst, err)
            XCTAssertLessThan(err, 1e-4, "\(c.text.prefix(60))")
            XCTAssertEqual(e.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
        }
        print("MiniLM: largest difference from the reference over \(fixture.cases.count) sentences: \(worst)")
    }

    func testTokenEmbeddingsMatchTheReference() throws {
        let (model, fixture) = try loaded()
        for c in fixture.cases {
            guard let want = c.token_embeddings else { continue }
            let got = model.tokenEmbeddings(c.text)
            XCTAssertEqual(got.shape, [want.count, 384])
            let err = zip(got.array, want.flatMap { $0 }).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(err, 1e-4, c.text)
        }
    }

    func testAPromptsEmbeddingDoesNotDependOnItsNeighbours() throws {
        let (model, _) = try loaded()
        let alone = model.embed(["a sandal"]).array
        let together = model.embed(["a very long prompt about boots and coats and bags", "a sandal", ""]).array
        XCTAssertEqual(Array(together[384..<768]), alone)
    }

    func testParaphrasesLandNearTheirClass() throws {
        let (model, _) = try loaded()
        let e = model.embed(["something to wear on your feet at the beach", "a sandal", "a coat"]).array
        func dot(_ i: Int, _ j: Int) -> Float { (0..<384).reduce(0) { $0 + e[i * 384 + $1] * e[j * 384 + $1] } }
        XCTAssertGreaterThan(dot(0, 1), dot(0, 2))
    }
}

extension MiniLMTests {
    /// The same prompt gives the same bits whatever ran before it (long batches of prompts of
    /// every length, as distillation embeds them).
    func testEmbeddingsAreReproducibleAcrossCalls() throws {
        let (model, _) = try loaded()
        let captions = Captions.all(templates: Captions.trainTemplates).map(\.0)
        let first = model.embed(Array(captions.prefix(5))).array
        let all = model.embed(captions + captions.map { "qzxv " + $0 + " and more words after it" }).array
        let again = model.embed(Array(captions.prefix(5))).array
        XCTAssertEqual(first, again)
        XCTAssertEqual(Array(all.prefix(5 * 384)), first)
    }
}

extension MiniLMTests {
    /// A `minilm` text encoder on prompts from outside: other scripts, emoji, control characters,
    /// 10,000 characters. Every embedding is finite and unit length; prompts without word pieces
    /// are unconditional (the empty prompt's embedding); long prompts are cut after 254 word pieces.
    func testWeirdPromptsThroughAMiniLMTextEncoder() throws {
        let (model, _) = try loaded()
        var cfg = TextEncoderConfig()
        cfg.kind = .minilm
        var rng = RandomGenerator(seed: 3)
        let enc = try TextEncoder(config: cfg, rng: &rng, minilm: model)
        let long = String(repeating: "summer footwear with straps ", count: 400).prefix(10_000)
        let prompts = ["", "   \t\n", "\u{7}\u{200B}", "👟🩴🏖️", "运动鞋和凉鞋", "حذاء رياضي", "кроссовки", "जूते",
                       String(long), String(long.prefix(2000)), String(repeating: "z", count: 10_000)]
        let e = GradMode.withDisabled { enc.embed(prompts).array }   // generation runs without gradients
        let d = cfg.dim
        func row(_ i: Int) -> [Float] { Array(e[(i * d)..<((i + 1) * d)]) }
        for i in prompts.indices {
            XCTAssertTrue(row(i).allSatisfy(\.isFinite), "\(prompts[i].prefix(20))")
            XCTAssertEqual(row(i).reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-4)
        }
        XCTAssertEqual(row(1), row(0)); XCTAssertEqual(row(2), row(0))  // unconditional
        XCTAssertNotEqual(row(3), row(0))                                // emoji: [UNK], not empty
        XCTAssertEqual(row(8), row(9))                                   // truncated at 254 word pieces
        XCTAssertEqual(GradMode.withDisabled { enc.embed([prompts[4]]).array }, row(4))  // cached, alone: the same bits
    }
}
