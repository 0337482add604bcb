import Engine
import Foundation
import XCTest

/// Every backend in the repository (the coalescer, latent-diffusion, distilled-unet and nested-unet
/// plugins with the committed weights, and test-pattern), through the Engine: the same seeds generated at batch sizes 1, 3, 8, 17 and 64,
/// as one request per batch and as a dynamic batch of one-image requests, alone and with another
/// call sharing the cores (the plugin then runs on fewer threads), give byte-identical images.
final class EngineBatchInvarianceTests: XCTestCase {
    static let seeds = 64
    static let base: UInt64 = 1000

    func engine() throws -> Engine {
        let repo = TestSupport.repoRoot + "/models"
        guard FileManager.default.fileExists(atPath: repo + "/coalescer/coalescer.safetensors") else {
            throw XCTSkip("no committed coalescer weights in \(repo)")
        }
        let engine = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo))
        addTeardownBlock { engine.shutdown() }
        return engine
    }

    /// Images of seeds base ..< base + seeds in requests of `batch` consecutive seeds; `dynamic`
    /// sends each batch as `batch` one-image requests through `generateBatch`.
    func images(_ engine: Engine, model: String, batch: Int, dynamic: Bool) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        var i = 0
        while i < Self.seeds {
            let count = min(batch, Self.seeds - i)
            if dynamic {
                let items = (0..<count).map {
                    BatchItem(request: GenerateRequest(model: model, prompt: "sneaker", seed: Self.base + UInt64(i + $0), steps: 2))
                }
                for r in engine.generateBatch(items) { out.append(try r.get().pixels) }
            } else {
                let b = try engine.generate(GenerateRequest(model: model, prompt: "sneaker", seed: Self.base + UInt64(i),
                                                            steps: 2, count: Int32(count)))
                for j in 0..<count { out.append(Array(b.image(j))) }
            }
            i += count
        }
        return out
    }

    func check(_ model: String) throws {
        let engine = try engine()
        try engine.load(model)
        let reference = try images(engine, model: model, batch: 1, dynamic: false)
        XCTAssertGreaterThan(Set(reference).count, Self.seeds / 2, "\(model): seeds give different images")
        for batch in [3, 8, 17, 64] {
            for dynamic in [false, true] {
                let got = try images(engine, model: model, batch: batch, dynamic: dynamic)
                let differing = (0..<Self.seeds).filter { got[$0] != reference[$0] }
                XCTAssertEqual(differing, [], "\(model), batch \(batch)\(dynamic ? " (dynamic)" : ""): images differ from batch 1")
            }
        }
        // Two calls at once: each runs on its share of the cores (Runtime.sharingCores in the plugin).
        var concurrent: [[[UInt8]]] = [[], []]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { k in
            let r = (try? images(engine, model: model, batch: k == 0 ? 64 : 17, dynamic: false)) ?? []
            lock.lock(); concurrent[k] = r; lock.unlock()
        }
        XCTAssertEqual(concurrent[0], reference, "\(model): batch 64 beside another call")
        XCTAssertEqual(concurrent[1], reference, "\(model): batch 17 beside another call")
    }

    func testCoalescerPlugin() throws { try check("coalescer") }

    /// The residual net told the noise level, with a re-noised second step from each image's own
    /// generator.
    func testCoalescerV2() throws {
        guard FileManager.default.fileExists(atPath: TestSupport.repoRoot + "/models/coalescer-v2/coalescer.safetensors") else {
            throw XCTSkip("no committed coalescer-v2 weights")
        }
        try check("coalescer-v2")
    }

    /// The MiniLM text encoder (models/minilm, made at set-up): each prompt is embedded on its own.
    func testCoalescerV2MiniLM() throws {
        guard FileManager.default.fileExists(atPath: TestSupport.repoRoot + "/models/minilm/minilm.safetensors") else {
            throw XCTSkip("models/minilm not set up (scripts/fetch-minilm.sh)")
        }
        try check("coalescer-v2-minilm")
    }

    /// The UNet backends: the teacher, the student and the pixel-space nested UNet (guided, the
    /// batch cut into one chunk per thread at every call).
    func testLatentDiffusion() throws { try check("latent-diffusion") }
    func testDistilledUNet() throws { try check("distilled-unet") }
    /// Guided only below 70% noise: its first step runs conditional only, its second guided.
    func testDistilledUNet2Step() throws { try check("distilled-unet-2step") }
    func testNestedUNet() throws { try check("nested-unet") }

    /// A latent diffusion model with the MiniLM text encoder: the same rule through the UNet sampler.
    func testDistilledUNetMiniLM() throws {
        guard FileManager.default.fileExists(atPath: TestSupport.repoRoot + "/models/minilm/minilm.safetensors") else {
            throw XCTSkip("models/minilm not set up (scripts/fetch-minilm.sh)")
        }
        try check("distilled-unet-minilm")
    }

    func testTestPattern() throws { try check("test-pattern") }
}

/// A model whose backend reports no revision gets one from its directory's contents.
final class ModelRevisionTests: XCTestCase {
    func testCoalescerHasAContentRevision() throws {
        let repo = TestSupport.repoRoot + "/models"
        guard FileManager.default.fileExists(atPath: repo + "/coalescer/coalescer.safetensors") else {
            throw XCTSkip("no committed coalescer weights in \(repo)")
        }
        let engine = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo))
        defer { engine.shutdown() }
        let status = try engine.load("coalescer")
        XCTAssertTrue(status.revision.hasPrefix("content-") && status.revision.count == 24, status.revision)
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "coalescer", seed: 1)).revision, status.revision)
        XCTAssertEqual(try engine.load("coalescer").revision, status.revision, "same files, same revision")
    }

    func testContentRevisionFollowsTheFiles() throws {
        let config = #"{"backend": "test-pattern", "default_steps": 2, "weights": "weights.bin"}"#
        let (engine, repo) = try TestSupport.engine(self, models: ["tp": config])
        defer { engine.shutdown() }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: repo + "/tp/weights.bin"))
        let first = try engine.load("tp").revision
        XCTAssertTrue(first.hasPrefix("content-"), first)
        XCTAssertEqual(try engine.load("tp").revision, first)
        // Files the config does not name are not part of the model: not read, no new revision.
        try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: repo + "/tp/unrelated.bin"))
        XCTAssertEqual(try engine.load("tp").revision, first, "an unrelated file leaves the revision")
        try Data([1, 2, 4]).write(to: URL(fileURLWithPath: repo + "/tp/weights.bin"))
        let second = try engine.load("tp").revision
        XCTAssertNotEqual(second, first, "changed weights change the revision")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: repo + "/tp/weights.bin"))
        XCTAssertEqual(try engine.load("tp").revision, first, "the same bytes give the same revision")
        try TestSupport.writeModel(repo, "tp", #"{"backend": "test-pattern", "default_steps": 3, "weights": "weights.bin"}"#)
        XCTAssertNotEqual(try engine.load("tp").revision, first, "a changed config changes the revision")
        // A revision in the config (reported by the backend) is kept as it is.
        try TestSupport.writeModel(repo, "tp", TestSupport.testPatternConfig(revision: "r7"))
        XCTAssertEqual(try engine.load("tp").revision, "r7")
    }

}
