import Foundation
import XCTest

/// The coalescer plugin through its C ABI (dlopen + cz_backend_entry), with the committed
/// weights: bad input gives a status code and a message, never a crash; same seed, same pixels.
/// Skipped when the plugin or the weights are not built/present.
final class CoalescerPluginTests: XCTestCase {
    // Mirrors cz_backend_request (Include/coalesce_backend.h); C sizeof is 40.
    struct Request { var structSize: UInt32; var prompt: UnsafePointer<CChar>?; var seed: UInt64; var steps: Int32; var count: Int32; var guidance: Float }
    typealias CreateFn = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int) -> OpaquePointer?
    typealias DescribeFn = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias ProgressFn = @convention(c) (Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias GenerateFn = @convention(c) (OpaquePointer?, UnsafeRawPointer?, UnsafeMutablePointer<UInt8>?, Int,
                                           ProgressFn?, UnsafeMutableRawPointer?, UnsafeMutablePointer<CChar>?, Int) -> Int32
    typealias DestroyFn = @convention(c) (OpaquePointer?) -> Void

    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    func testBadInputAndDeterminismThroughTheABI() throws {
        let lib = Self.root + "/.build/release/libCoalescerBackend.so"
        let modelDir = ProcessInfo.processInfo.environment["COALESCER_TEST_MODEL_DIR"] ?? (Self.root + "/models/coalescer")
        guard FileManager.default.fileExists(atPath: lib) else { throw XCTSkip("plugin not built: \(lib)") }
        guard FileManager.default.fileExists(atPath: modelDir + "/config.json") else { throw XCTSkip("no weights in \(modelDir)") }
        guard let h = dlopen(lib, RTLD_NOW | RTLD_LOCAL) else { return XCTFail("dlopen: \(String(cString: dlerror()))") }
        guard let entry = dlsym(h, "cz_backend_entry") else { return XCTFail("no cz_backend_entry") }
        let vt = unsafeBitCast(entry, to: (@convention(c) () -> UnsafeRawPointer).self)()
        XCTAssertEqual(vt.load(as: UInt32.self), 1)  // abi_major
        let create = unsafeBitCast(vt.load(fromByteOffset: 24, as: UnsafeRawPointer.self), to: CreateFn.self)
        let describe = unsafeBitCast(vt.load(fromByteOffset: 32, as: UnsafeRawPointer.self), to: DescribeFn.self)
        let generate = unsafeBitCast(vt.load(fromByteOffset: 40, as: UnsafeRawPointer.self), to: GenerateFn.self)
        let destroy = unsafeBitCast(vt.load(fromByteOffset: 48, as: UnsafeRawPointer.self), to: DestroyFn.self)
        var err = [CChar](repeating: 0, count: 512)

        XCTAssertNil(create("/nonexistent-dir", &err, err.count))
        XCTAssertTrue(String(cString: err).contains("config.json"), String(cString: err))
        XCTAssertNil(create(nil, &err, err.count))
        guard let m = create(modelDir, &err, err.count) else { return XCTFail("create: \(String(cString: err))") }
        defer { destroy(m) }
        XCTAssertTrue(String(cString: describe(m)!).contains("\"backend\":\"coalescer\""))

        let n = 28 * 28
        func run(_ prompt: UnsafePointer<CChar>?, steps: Int32 = 2, count: Int32 = 2, cap: Int? = nil, seed: UInt64 = 7) -> (Int32, [UInt8]) {
            var px = [UInt8](repeating: 0, count: max(1, Int(max(0, count)) * n))
            var req = Request(structSize: 40, prompt: prompt, seed: seed, steps: steps, count: count, guidance: 0)
            let rc = withUnsafePointer(to: &req) { rp in
                generate(m, UnsafeRawPointer(rp), &px, cap ?? px.count, nil, nil, &err, err.count)
            }
            return (rc, px)
        }
        let ok = run("ankle boot")
        XCTAssertEqual(ok.0, 0, String(cString: err))
        XCTAssertEqual(run("ankle boot").1, ok.1, "same seed, same pixels")
        XCTAssertNotEqual(run("ankle boot", seed: 8).1, ok.1)
        XCTAssertEqual(run("", steps: -1).0, 0, "empty prompt, auto steps")
        XCTAssertEqual(run(String(repeating: "boot ", count: 2500)).0, 0, "12 KB prompt")
        // Bad input: status 1 (invalid argument) with a message.
        XCTAssertEqual(run(nil).0, 1); XCTAssertTrue(String(cString: err).contains("prompt"))
        XCTAssertEqual(run("bag", steps: 99).0, 1); XCTAssertTrue(String(cString: err).contains("steps"))
        XCTAssertEqual(run("bag", count: 0).0, 1)
        XCTAssertEqual(run("bag", count: 2, cap: n).0, 1); XCTAssertTrue(String(cString: err).contains("buffer"))
        let invalidUTF8: [CChar] = [CChar(bitPattern: 0xff), CChar(bitPattern: 0xfe), 0]
        XCTAssertEqual(invalidUTF8.withUnsafeBufferPointer { run($0.baseAddress).0 }, 1)
        XCTAssertEqual(generate(nil, nil, nil, 0, nil, nil, &err, err.count), 1)
        // Cancellation: the progress callback returns 0.
        var px = [UInt8](repeating: 0, count: n)
        var req = Request(structSize: 40, prompt: nil, seed: 1, steps: 2, count: 1, guidance: 0)
        let rc: Int32 = "bag".withCString { p in
            req.prompt = p
            return withUnsafePointer(to: &req) { rp in
                generate(m, UnsafeRawPointer(rp), &px, px.count, { _, _, _ in 0 }, nil, &err, err.count)
            }
        }
        XCTAssertEqual(rc, 4, String(cString: err))
    }
}
