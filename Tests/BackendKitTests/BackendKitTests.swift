import BackendKit
import CCoalesceABI
import Foundation
import Models
import XCTest

/// What every Swift plugin shares: a model directory's config.json read with typed, range-checked
/// keys (JSON true is not the number 1, and the other way round), the sampling overrides a
/// diffusion model's directory may carry, and the one size limit of a call (max_batch).
final class BackendKitTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "/backendkit-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func config(_ json: String) throws -> ModelDirectoryConfig {
        try json.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        return try ModelDirectoryConfig(directory: dir)
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    func testTypedKeysNameTheFileAndTheKey() throws {
        let c = try config(#"{"backend": "coalescer", "weights": "w.safetensors", "default_steps": 1, "flag": true, "x": 2.5}"#)
        XCTAssertEqual(c.backend, "coalescer")
        XCTAssertEqual(try c.weights(default: "other"), "w.safetensors")
        XCTAssertEqual(try c.int("default_steps", in: 1...64), 1, "JSON 1 is a number, not true")
        XCTAssertNil(try c.int("absent", in: 1...64))
        XCTAssertEqual(try c.number("x", in: 0...10), 2.5)
        XCTAssertTrue(message { _ = try c.int("flag", in: 0...1) }.contains(#""flag" must be an integer"#))
        XCTAssertTrue(message { _ = try c.number("flag", in: 0...1) }.contains(#""flag" must be a number"#))
        XCTAssertTrue(message { _ = try c.int("default_steps", in: 2...64) }.contains("config.json"))
        XCTAssertTrue(message { _ = try c.number("x", in: 0...1) }.contains("0.0...1.0"))
        let sneaky = try config(#"{"weights": "../../etc/passwd"}"#)
        XCTAssertTrue(message { _ = try sneaky.weights(default: "w") }.contains("inside the model directory"))
        XCTAssertEqual(try config("{}").weights(default: "w.safetensors"), "w.safetensors")
        try "[1, 2]".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertTrue(message { _ = try ModelDirectoryConfig(directory: dir) }.contains("not a JSON object"))
        XCTAssertTrue(message { _ = try ModelDirectoryConfig(directory: dir + "/missing") }.contains("cannot read model config"))
    }

    func testSamplingOverridesOfADiffusionModelDirectory() throws {
        var latent = LatentDiffusionConfig()
        latent.maxSteps = 1000
        try config(#"{"default_steps": 8, "default_guidance": 3, "guidance_interval": [0, 0.7]}"#).apply(to: &latent)
        XCTAssertEqual(latent.defaultSteps, 8)
        XCTAssertEqual(latent.defaultGuidance, 3)
        XCTAssertEqual(latent.guidanceInterval, [0, 0.7])
        XCTAssertEqual(latent.maxSteps, SamplingLimits.maxSteps, "capped at what every face accepts")
        try config(#"{"guidance_interval": null}"#).apply(to: &latent)
        XCTAssertNil(latent.guidanceInterval)
        for bad in [#"{"guidance_interval": [0.7, 0.2]}"#, #"{"guidance_interval": [0, 2]}"#, #"{"guidance_interval": [true, 0.5]}"#,
                    #"{"guidance_interval": "all"}"#] {
            XCTAssertTrue(message { try config(bad).apply(to: &latent) }.contains("guidance_interval"), bad)
        }
        XCTAssertTrue(message { try config(#"{"default_guidance": -1}"#).apply(to: &latent) }.contains("default_guidance"))
        // Clipping is a pixel-space setting: refused for a latent model, applied to a nested one.
        XCTAssertTrue(message { try config(#"{"clip_recompute_noise": true}"#).apply(to: &latent) }.contains("pixel-space"))
        var pixel = NestedUNetConfig()
        try config(#"{"clip_sample": false, "clip_recompute_noise": true}"#).apply(to: &pixel)
        XCTAssertFalse(pixel.clipSample)
        XCTAssertEqual(pixel.clipRecomputeNoise, true)
        XCTAssertTrue(message { try config(#"{"clip_sample": 1}"#).apply(to: &pixel) }.contains("true or false"))
    }

    func testACallOfMoreThanMaxBatchImagesIsRefusedAndOneAtTheBoundRunsOnce() throws {
        try #"{"backend": "counting"}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let vt = BackendKit.vtable(for: CountingBackend.self).pointee
        var err = [CChar](repeating: 0, count: 512)
        guard let model = vt.create!(dir, &err, err.count) else { return XCTFail(String(cString: err)) }
        defer { vt.destroy!(model) }
        XCTAssertTrue(String(cString: vt.describe!(model)!).contains("\"max_batch\":\(BackendKit.maxBatch)"))
        func call(_ counts: [Int32]) -> (Int32, String) {
            let prompt = strdup("a")!
            defer { free(prompt) }
            var reqs = counts.enumerated().map { k, c in
                cz_backend_request(struct_size: UInt32(MemoryLayout<cz_backend_request>.size), prompt: prompt, seed: UInt64(10 * k),
                                   steps: 1, count: c, guidance: 0, reserved0: 0, threads: 1)
            }
            let total = Int(counts.reduce(0, +))
            var pixels = [UInt8](repeating: 0, count: total * 4)
            err = [CChar](repeating: 0, count: 512)
            let rc = vt.generate_batch!(model, &reqs, Int32(reqs.count), &pixels, pixels.count, nil, nil, &err, err.count)
            return (rc, String(cString: err))
        }
        CountingBackend.Model.calls = []
        XCTAssertEqual(call([200, Int32(BackendKit.maxBatch) - 200]).0, Int32(CZ_BACKEND_OK.rawValue))
        XCTAssertEqual(CountingBackend.Model.calls, [BackendKit.maxBatch], "one model call for the whole host call")
        let (rc, message) = call([200, Int32(BackendKit.maxBatch) - 199])
        XCTAssertEqual(rc, Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue))
        XCTAssertTrue(message.contains("max_batch is \(BackendKit.maxBatch)"), message)
        XCTAssertEqual(CountingBackend.Model.calls, [BackendKit.maxBatch], "nothing ran")
    }
}

/// A 2x2 one-channel backend that records the images of each model call.
enum CountingBackend: SwiftBackend {
    static let name = "counting"
    static let version = "1"
    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel { Model() }

    final class Model: SwiftBackendModel {
        nonisolated(unsafe) static var calls: [Int] = []
        var description: BackendDescription {
            BackendDescription(backend: "counting", height: 2, width: 2, channels: 1, defaultSteps: 1, maxSteps: 1,
                               maxBatch: BackendKit.maxBatch, supportsGuidance: false, supportsAutoSteps: false, classes: [])
        }
        func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
            let n = requests.reduce(0) { $0 + $1.count }
            Self.calls.append(n)
            return [Float](repeating: 0.5, count: n * 4)
        }
    }
}
