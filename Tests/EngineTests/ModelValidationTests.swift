// Every model load is validated before and after the backend sees it: config.json fields by type
// and range, weight files for non-finite values; and the engine's thread count reaches the
// backend with each request (backend ABI 1.2) instead of through the environment.
import Engine
import Foundation
import XCTest

final class ModelValidationTests: XCTestCase {
    func testConfigFieldsAreCheckedByTypeAndRange() throws {
        let cases: [(String, StatusCode, String)] = [
            ("", .invalidArgument, "empty"),
            ("[1]", .invalidArgument, "not a JSON object"),
            (#"{"revision": "x"}"#, .invalidArgument, "\"backend\" is missing"),
            (#"{"backend": 3}"#, .invalidArgument, "\"backend\""),
            (#"{"backend": "test-pattern", "default_steps": -5}"#, .invalidArgument, "\"default_steps\" must be in 1...64"),
            (#"{"backend": "test-pattern", "default_steps": "two"}"#, .invalidArgument, "\"default_steps\" must be an integer"),
            (#"{"backend": "test-pattern", "default_steps": 2e9}"#, .invalidArgument, "\"default_steps\""),
            (#"{"backend": "test-pattern", "default_steps": 1.5}"#, .invalidArgument, "\"default_steps\""),
            (#"{"backend": "test-pattern", "default_steps": true}"#, .invalidArgument, "\"default_steps\""),
            (#"{"backend": "test-pattern", "revision": 7}"#, .invalidArgument, "\"revision\""),
            (#"{"backend": "test-pattern", "weights": "../w.safetensors"}"#, .invalidArgument, "\"weights\""),
            (#"{"backend": "test-pattern", "weights": "absent.safetensors"}"#, .notFound, "\"weights\""),
            // default_steps above CZ_MAX_STEPS is the engine's to refuse, whatever the backend.
            (#"{"backend": "test-pattern", "default_steps": 65}"#, .invalidArgument, "\"default_steps\" must be in 1...64"),
            // The backend's own fields are the backend's to check.
            (#"{"backend": "test-pattern", "step_delay_ms": "slow"}"#, .internal, "step_delay_ms"),
        ]
        var models: [String: String] = [:]
        for (i, c) in cases.enumerated() { models["m\(i)"] = c.0 }
        let (engine, _) = try TestSupport.engine(self, models: models)
        for (i, c) in cases.enumerated() {
            TestSupport.assertThrows(c.1, containing: c.2) { try engine.load("m\(i)") }
        }
        XCTAssertTrue(engine.loadedModels().isEmpty)
    }

    func testGoodOptionalFieldsLoad() throws {
        let (engine, repo) = try TestSupport.engine(self, models: [
            "tp": #"{"backend": "test-pattern", "default_steps": 3, "revision": "r", "weights": "w.bin"}"#,
        ])
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: repo + "/tp/w.bin"))
        let status = try engine.load("tp")
        XCTAssertEqual(status.info.defaultSteps, 3)
        XCTAssertEqual(try engine.repository.config(for: "tp"),
                       ModelConfig(backend: "test-pattern", defaultSteps: 3, revision: "r", weights: "w.bin"))
    }

    /// A safetensors file with one tensor "w" of the given dtype and raw little-endian bytes.
    func safetensors(dtype: String, bytes: [UInt8]) -> Data {
        var header = Array(#"{"w":{"dtype":"\#(dtype)","shape":[\#(bytes.count)],"data_offsets":[0,\#(bytes.count)]},"__metadata__":{"k":"v"}}"#.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        out.append(contentsOf: bytes)
        return out
    }

    func floats(_ xs: [Float]) -> [UInt8] {
        xs.flatMap { x in withUnsafeBytes(of: x.bitPattern.littleEndian) { Array($0) } }
    }

    func testNonFiniteWeightsAreRefusedAndTheOldInstanceKeepsServing() throws {
        let (engine, repo) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig(revision: "A")])
        let file = URL(fileURLWithPath: repo + "/tp/model.safetensors")
        try safetensors(dtype: "F32", bytes: floats([1, -2, 0.5])).write(to: file)
        try engine.load("tp")
        let bad: [(String, [UInt8])] = [
            ("F32", floats([1, .nan, 2])),
            ("F32", floats([.infinity])),
            ("F64", withUnsafeBytes(of: (-Double.infinity).bitPattern.littleEndian) { Array($0) }),
            ("F16", [0x00, 0x7E]),   // NaN
            ("BF16", [0x80, 0xFF]),  // -infinity
        ]
        for (dtype, bytes) in bad {
            try safetensors(dtype: dtype, bytes: bytes).write(to: file)
            TestSupport.assertThrows(.invalidArgument, containing: "tensor \"w\" (\(dtype)) holds a non-finite value") {
                try engine.load("tp")
            }
        }
        // Malformed files are refused too.
        try Data([9, 0, 0, 0, 0, 0, 0, 0, 0x7B]).write(to: file)
        TestSupport.assertThrows(.invalidArgument, containing: "not a valid safetensors") { try engine.load("tp") }
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp")).revision, "A")
    }

    func testThreadsReachTheBackendAsAValue() throws {
        let config = #"{"backend": "test-pattern", "require_threads": 3}"#
        let before = getenv("COALESCE_THREADS").map { String(cString: $0) }
        let repo = try TestSupport.tempDirectory(self)
        try TestSupport.writeModel(repo, "tp", config)
        let three = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo,
                                                threads: 3))
        try three.load("tp")
        XCTAssertEqual(try three.generate(GenerateRequest(model: "tp", count: 2)).count, 2)
        let defaulted = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo))
        try defaulted.load("tp")
        TestSupport.assertThrows(.invalidArgument, containing: "threads is 0") {
            _ = try defaulted.generate(GenerateRequest(model: "tp"))
        }
        XCTAssertEqual(getenv("COALESCE_THREADS").map { String(cString: $0) }, before)
    }

    /// The committed coalescer model with its config and weights copied into a fresh repository,
    /// or a skip when the plugin or the weights are not there.
    func coalescerRepository(config: String) throws -> (Engine, String) {
        let source = TestSupport.repoRoot + "/models/coalescer"
        let fm = FileManager.default
        guard fm.fileExists(atPath: TestSupport.pluginDirectory + "/libCoalescerBackend.so") else {
            throw XCTSkip("coalescer plugin not built in \(TestSupport.pluginDirectory)")
        }
        guard fm.fileExists(atPath: source + "/coalescer.safetensors") else { throw XCTSkip("no weights in \(source)") }
        let (engine, repo) = try TestSupport.engine(self, models: ["c": config])
        try fm.copyItem(atPath: source + "/coalescer.safetensors", toPath: repo + "/c/coalescer.safetensors")
        return (engine, repo)
    }

    func testCoalescerRefusesBadDefaultStepsAndNaNWeights() throws {
        let good = #"{"backend": "coalescer", "weights": "coalescer.safetensors", "default_steps": 2}"#
        let (engine, repo) = try coalescerRepository(config: good)
        try engine.load("c")
        XCTAssertEqual(try engine.modelStatus("c").info.defaultSteps, 2)
        for (steps, code) in [("-5", StatusCode.invalidArgument), ("\"two\"", .invalidArgument),
                              ("2e9", .invalidArgument), ("65", .invalidArgument)] {
            try TestSupport.writeModel(repo, "c", #"{"backend": "coalescer", "weights": "coalescer.safetensors", "default_steps": \#(steps)}"#)
            TestSupport.assertThrows(code, containing: "default_steps") { try engine.load("c") }
        }
        // The last four bytes of the file are the last F32 value of the last tensor.
        try TestSupport.writeModel(repo, "c", good)
        let file = FileHandle(forUpdatingAtPath: repo + "/c/coalescer.safetensors")!
        file.seekToEndOfFile()
        file.seek(toFileOffset: file.offsetInFile - 4)
        file.write(withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
        file.closeFile()
        TestSupport.assertThrows(.invalidArgument, containing: "non-finite") { try engine.load("c") }
        XCTAssertEqual(try engine.modelStatus("c").generation, 1, "the first instance keeps serving")
    }

    func testPluginsExportOnlyTheEntrySymbol() throws {
        let fm = FileManager.default
        let plugins = try fm.contentsOfDirectory(atPath: TestSupport.pluginDirectory)
            .filter { $0.hasPrefix("lib") && $0.hasSuffix("Backend.so") }
        guard !plugins.isEmpty else { throw XCTSkip("no plugins built in \(TestSupport.pluginDirectory)") }
        for plugin in plugins {
            let p = Process()
            let pipe = Pipe()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["nm", "-D", "--defined-only", TestSupport.pluginDirectory + "/" + plugin]
            p.standardOutput = pipe
            do { try p.run() } catch { throw XCTSkip("nm not available: \(error)") }
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw XCTSkip("nm exited \(p.terminationStatus)") }
            let globals = out.split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: " ")
                guard f.count == 3, f[1].count == 1, f[1].uppercased() == f[1] else { return nil }
                return String(f[2])
            }
            XCTAssertEqual(globals, ["cz_backend_entry"], plugin)
        }
    }
}
