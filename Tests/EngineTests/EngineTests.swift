import Engine
import Foundation
import XCTest

final class EngineTests: XCTestCase {
    func testLoadAndGenerateIsDeterministic() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        let status = try engine.load("tp")
        XCTAssertEqual(status.backend, "test-pattern")
        XCTAssertEqual(status.info.width, 28)
        let a = try engine.generate(GenerateRequest(model: "tp", prompt: "a shirt", seed: 7, count: 3))
        let b = try engine.generate(GenerateRequest(model: "tp", prompt: "a shirt", seed: 7, count: 3))
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(a.pixels.count, 3 * 28 * 28)
        XCTAssertEqual(a.pixels, b.pixels)
        // Image i of a request equals a single-image request with seed + i.
        for i in 0..<3 {
            let one = try engine.generate(GenerateRequest(model: "tp", prompt: "a shirt", seed: 7 + UInt64(i)))
            XCTAssertEqual(Array(a.image(i)), one.pixels, "image \(i)")
        }
        let other = try engine.generate(GenerateRequest(model: "tp", prompt: "a shoe", seed: 7, count: 3))
        XCTAssertNotEqual(a.pixels, other.pixels, "prompt must change the images")
        let images = Set((0..<16).map { try? engine.generate(GenerateRequest(model: "tp", seed: UInt64($0))).pixels })
        XCTAssertGreaterThan(images.count, 8, "seeds must give varied images")
    }

    func testBatchEqualsSeparateRequests() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try engine.load("tp")
        let reqs = [GenerateRequest(model: "tp", prompt: "x", seed: 1, count: 2),
                    GenerateRequest(model: "tp", prompt: "y", seed: 9, count: 1),
                    GenerateRequest(model: "tp", prompt: "z", seed: 3, steps: 2, count: 1),
                    GenerateRequest(model: "tp", prompt: "bad", seed: 3, count: -1),
                    GenerateRequest(model: "missing", seed: 3)]
        let results = engine.generateBatch(reqs.map { BatchItem(request: $0) })
        XCTAssertEqual(results.count, 5)
        for k in 0..<3 {
            let alone = try engine.generate(reqs[k])
            XCTAssertEqual(try results[k].get().pixels, alone.pixels, "request \(k)")
        }
        XCTAssertEqual(try? results[3].get(), nil)
        if case .failure(let e) = results[3] { XCTAssertEqual(e.code, .invalidArgument) }
        if case .failure(let e) = results[4] { XCTAssertEqual(e.code, .notFound) } else { XCTFail("expected notFound") }
    }

    func testBatchLargerThanModelMaxIsSplit() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()],
                                                 limits: EngineLimits(maxCount: 256))
        try engine.load("tp")
        // 5 x 64 = 320 images > the backend's max_batch of 256: must run as two backend calls.
        let items = (0..<5).map { BatchItem(request: GenerateRequest(model: "tp", seed: UInt64($0 * 64), count: 64)) }
        let results = engine.generateBatch(items)
        let whole = try engine.generate(GenerateRequest(model: "tp", seed: 4 * 64 + 5))
        XCTAssertEqual(Array(try results[4].get().image(5)), whole.pixels)
    }

    /// One request for more images than the model's max_batch (256 for test-pattern), up to the
    /// engine's limit: parts of 256 on the same instance, image i keeping seed + i, progress over
    /// all parts, a cancel in the second part cancels the request.
    func testOneRequestOverTheModelMaxBatchRunsInParts() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(defaultSteps: 2)],
                                                 limits: EngineLimits(maxCount: 600))
        try engine.load("tp")
        var seen: [GenerateProgress] = []
        let whole = try engine.generate(GenerateRequest(model: "tp", prompt: "x", seed: 9, count: 300)) { seen.append($0); return true }
        XCTAssertEqual(whole.count, 300)
        let first = try engine.generate(GenerateRequest(model: "tp", prompt: "x", seed: 9, count: 256))
        let rest = try engine.generate(GenerateRequest(model: "tp", prompt: "x", seed: 9 + 256, count: 44))
        XCTAssertEqual(whole.pixels, first.pixels + rest.pixels)
        XCTAssertEqual(seen.map(\.step), [1, 2, 3, 4])
        XCTAssertEqual(Set(seen.map(\.total)), [4])
        TestSupport.assertThrows(.cancelled) {
            _ = try engine.generate(GenerateRequest(model: "tp", seed: 9, count: 300)) { $0.step < 3 }
        }
        TestSupport.assertThrows(.invalidArgument, containing: "count must be in 1...600") {
            _ = try engine.generate(GenerateRequest(model: "tp", count: 601))
        }
    }

    /// The batch path plans a request over max_batch the same way as `generate` (one planner):
    /// beside whole requests it runs in parts and gives the bytes it gives alone; a failed part
    /// fails only its request.
    func testABatchWithARequestOverTheModelMaxBatch() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(defaultSteps: 2)],
                                                 limits: EngineLimits(maxCount: 600))
        try engine.load("tp")
        let big = GenerateRequest(model: "tp", prompt: "x", seed: 9, count: 300)
        let small = GenerateRequest(model: "tp", prompt: "y", seed: 4, count: 3)
        var steps: [Int] = []
        let results = engine.generateBatch([BatchItem(request: small), BatchItem(request: big) { steps.append($0.step); return true },
                                            BatchItem(request: small)])
        XCTAssertEqual(try results[1].get().count, 300)
        XCTAssertEqual(try results[1].get().pixels, try engine.generate(big).pixels)
        XCTAssertEqual(try results[0].get().pixels, try engine.generate(small).pixels)
        XCTAssertEqual(try results[2].get().pixels, try results[0].get().pixels)
        XCTAssertEqual(steps, [1, 2, 3, 4])
        let cancelled = engine.generateBatch([BatchItem(request: big) { $0.step < 3 }, BatchItem(request: small)])
        if case .failure(let e) = cancelled[0] { XCTAssertEqual(e.code, .cancelled) } else { XCTFail("expected cancel") }
        XCTAssertEqual(try cancelled[1].get().pixels, try engine.generate(small).pixels)
    }

    /// Count 0 is the default, one image, as steps 0 and guidance 0 are defaults (the wire cannot
    /// tell 0 from unset, so every face reads it the same way).
    func testCountZeroIsOneImage() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try engine.load("tp")
        let zero = try engine.generate(GenerateRequest(model: "tp", seed: 3, count: 0))
        XCTAssertEqual(zero.count, 1)
        XCTAssertEqual(zero.pixels, try engine.generate(GenerateRequest(model: "tp", seed: 3, count: 1)).pixels)
        TestSupport.assertThrows(.invalidArgument, containing: "count") {
            _ = try engine.generate(GenerateRequest(model: "tp", count: -1))
        }
    }

    func testProgressReportsStepsAndCanCancel() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(defaultSteps: 5)])
        try engine.load("tp")
        var seen: [GenerateProgress] = []
        _ = try engine.generate(GenerateRequest(model: "tp")) { seen.append($0); return true }
        XCTAssertEqual(seen.map(\.step), [1, 2, 3, 4, 5])
        XCTAssertEqual(Set(seen.map(\.total)), [5])
        var calls = 0
        TestSupport.assertThrows(.cancelled) {
            _ = try engine.generate(GenerateRequest(model: "tp", steps: 8)) { p in calls += 1; return p.step < 3 }
        }
        XCTAssertEqual(calls, 3)
    }

    func testCancellingOneBatchMemberKeepsTheOthers() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try engine.load("tp")
        let items = [BatchItem(request: GenerateRequest(model: "tp", seed: 1)) { _ in false },
                     BatchItem(request: GenerateRequest(model: "tp", seed: 2)) { _ in true }]
        let results = engine.generateBatch(items)
        if case .failure(let e) = results[0] { XCTAssertEqual(e.code, .cancelled) } else { XCTFail("expected cancel") }
        XCTAssertEqual(try results[1].get().pixels, try engine.generate(GenerateRequest(model: "tp", seed: 2)).pixels)
    }

    func testDeadline() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["slow": TestSupport.testPatternConfig(delayMs: 20)])
        try engine.load("slow")
        TestSupport.assertThrows(.deadlineExceeded) {
            _ = try engine.generate(GenerateRequest(model: "slow", steps: 20, deadline: .now + .milliseconds(50)))
        }
        TestSupport.assertThrows(.deadlineExceeded, containing: "before the request started") {
            _ = try engine.generate(GenerateRequest(model: "slow", deadline: .now - .milliseconds(1)))
        }
        XCTAssertNoThrow(try engine.generate(GenerateRequest(model: "slow", steps: 1, deadline: .now + .seconds(10))))
    }

    func testLimits() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()],
                                                 limits: EngineLimits(maxCount: 8, maxSteps: 10, maxPromptBytes: 16))
        try engine.load("tp")
        TestSupport.assertThrows(.invalidArgument, containing: "count must be in 1...8") {
            _ = try engine.generate(GenerateRequest(model: "tp", count: -1))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "count") {
            _ = try engine.generate(GenerateRequest(model: "tp", count: 9))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "steps") {
            _ = try engine.generate(GenerateRequest(model: "tp", steps: 11))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "steps") {
            _ = try engine.generate(GenerateRequest(model: "tp", steps: -2))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "prompt is longer than 16 bytes") {
            _ = try engine.generate(GenerateRequest(model: "tp", prompt: String(repeating: "p", count: 17)))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "NUL") {
            _ = try engine.generate(GenerateRequest(model: "tp", prompt: "a\u{0}b"))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "guidance") {
            _ = try engine.generate(GenerateRequest(model: "tp", guidance: .nan))
        }
        TestSupport.assertThrows(.notFound, containing: "not loaded") {
            _ = try engine.generate(GenerateRequest(model: "other"))
        }
    }

    func testLoadErrors() throws {
        let (engine, repo) = try TestSupport.engine(self, models: [
            "broken": TestSupport.testPatternConfig(fail: true),
            "nobackend": #"{"backend": "no-such-backend"}"#,
            "garbage": "{not json",
            "sneaky": #"{"backend": "../../tmp/evil"}"#,
        ])
        TestSupport.assertThrows(.internal, containing: "asks create() to fail") { try engine.load("broken") }
        TestSupport.assertThrows(.notFound, containing: "no plugin for backend") { try engine.load("nobackend") }
        TestSupport.assertThrows(.invalidArgument, containing: "not valid") { try engine.load("garbage") }
        TestSupport.assertThrows(.invalidArgument, containing: "not a path") { try engine.load("sneaky") }
        TestSupport.assertThrows(.notFound, containing: "not found") { try engine.load("absent") }
        TestSupport.assertThrows(.invalidArgument) { try engine.load("../etc") }
        TestSupport.assertThrows(.notFound) { try engine.unload("absent") }
        XCTAssertTrue(engine.loadedModels().isEmpty)
        try TestSupport.writeModel(repo, "good", TestSupport.testPatternConfig())
        let failures = engine.loadAll()
        XCTAssertEqual(Set(failures.keys), ["broken", "nobackend", "garbage", "sneaky"])
        XCTAssertEqual(engine.loadedModels().map(\.name), ["good"])
    }

    func testFailedHotSwapKeepsOldInstance() throws {
        let (engine, repo) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(revision: "A")])
        try engine.load("tp")
        try TestSupport.writeModel(repo, "tp", TestSupport.testPatternConfig(revision: "B", fail: true))
        TestSupport.assertThrows(.internal) { try engine.load("tp") }
        let r = try engine.generate(GenerateRequest(model: "tp"))
        XCTAssertEqual(r.revision, "A")
        try TestSupport.writeModel(repo, "tp", TestSupport.testPatternConfig(revision: "C"))
        try engine.load("tp")
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp")).revision, "C")
    }

    func testInFlightRequestFinishesOnOldInstance() throws {
        let (engine, repo) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(revision: "old", delayMs: 40)])
        try engine.load("tp")
        let started = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var slow: Result<ImageBatch, Error>?
        DispatchQueue.global().async {
            slow = Result { try engine.generate(GenerateRequest(model: "tp", seed: 5)) { p in
                if p.step == 1 { started.signal() }
                return true
            } }
            done.signal()
        }
        started.wait()
        try TestSupport.writeModel(repo, "tp", TestSupport.testPatternConfig(revision: "new"))
        let swapped = try engine.load("tp")
        XCTAssertEqual(swapped.revision, "new")
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp", seed: 5)).revision, "new")
        done.wait()
        let old = try XCTUnwrap(slow).get()
        XCTAssertEqual(old.revision, "old")
        XCTAssertEqual(old.pixels, try engine.generate(GenerateRequest(model: "tp", seed: 5)).pixels)
        // Unload while a request runs: it still finishes; new requests get notFound.
        try engine.unload("tp")
        TestSupport.assertThrows(.notFound) { _ = try engine.generate(GenerateRequest(model: "tp")) }
    }

    func testConcurrentGenerationDuringHotSwaps() throws {
        let (engine, repo) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(revision: "0", delayMs: 1)])
        try engine.load("tp")
        let tally = Tally()
        let stop = ManagedAtomicFlag()
        let group = DispatchGroup()
        for t in 0..<4 {
            DispatchQueue.global().async(group: group) {
                var i = 0
                while !stop.isSet {
                    do {
                        let r = try engine.generate(GenerateRequest(model: "tp", seed: UInt64(t * 1000 + i), count: 2))
                        tally.record(revision: r.revision)
                    } catch {
                        tally.record(failure: "\(error)")
                    }
                    i += 1
                }
            }
        }
        for k in 1...10 {
            try TestSupport.writeModel(repo, "tp", TestSupport.testPatternConfig(revision: "\(k)", delayMs: 1))
            try engine.load("tp")
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop.set()
        group.wait()
        XCTAssertEqual(tally.failures, [])
        XCTAssertGreaterThan(tally.ok, 10)
        XCTAssertGreaterThan(tally.revisions.count, 2)
        XCTAssertEqual(try engine.modelStatus("tp").revision, "10")
        XCTAssertEqual(try engine.modelStatus("tp").inFlight, 0)
    }

    func testPluginWithoutBatchSlotGivesTheSamePixels() throws {
        // The test-pattern source built as an ABI 1.0 plugin (no generate_batch): the Engine must
        // fall back to one generate() per request and produce identical images.
        let plugins = try TestSupport.tempDirectory(self)
        var source = try String(contentsOfFile: TestSupport.repoRoot + "/Plugins/TestPattern/test_pattern.c", encoding: .utf8)
        source = source.replacingOccurrences(of: "../../Include/coalesce_backend.h", with: "coalesce_backend.h")
            .replacingOccurrences(of: "../../Include/coalesce.h", with: "coalesce.h")
        try TestSupport.compilePlugin(source: source, into: plugins, file: "libTestPatternBackend.so",
                                      flags: ["-DTP_ABI_MINOR=0"])
        let old = try BackendLibrary.load(name: "test-pattern", directory: plugins)
        XCTAssertEqual(old.abiMinor, 0)
        XCTAssertFalse(old.supportsBatch)
        let (legacy, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()], pluginDirectory: plugins)
        let (current, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try legacy.load("tp")
        try current.load("tp")
        let items = [GenerateRequest(model: "tp", prompt: "a", seed: 3, count: 2),
                     GenerateRequest(model: "tp", prompt: "b", seed: 8, count: 3)].map { BatchItem(request: $0) }
        let a = legacy.generateBatch(items).map { try? $0.get().pixels }
        let b = current.generateBatch(items).map { try? $0.get().pixels }
        XCTAssertEqual(a, b)
        XCTAssertNotNil(a[0])
        XCTAssertEqual(a[1]?.count, 3 * 784)
    }

    func testShutdownRefusesNewRequests() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try engine.load("tp")
        engine.shutdown()
        TestSupport.assertThrows(.unavailable) { _ = try engine.generate(GenerateRequest(model: "tp")) }
    }

    func testErrorCodesMatchTheProtocol() {
        XCTAssertEqual(StatusCode.allCases.map(\.rawValue), [0, 1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(EngineError(code: .deadlineExceeded, message: "m"), .deadlineExceeded("m"))
        XCTAssertEqual(EngineError.unavailable("x").code.rawValue, 7)
    }
}

/// A thread-safe boolean flag for test loops.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Thread-safe counters for the concurrent hot-swap test.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var ok = 0
    private(set) var failures: [String] = []
    private(set) var revisions = Set<String>()
    func record(revision: String) { lock.lock(); ok += 1; revisions.insert(revision); lock.unlock() }
    func record(failure: String) { lock.lock(); failures.append(failure); lock.unlock() }
}
