import Foundation
import Tensor
import XCTest

/// Tests of the safetensors reader and writer, including interchange with Python's `safetensors`.
final class SafeTensorsTests: XCTestCase {
    // MARK: Helpers (private to this file)

    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "coalesce-safetensors-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A file made by hand: header length (default: the header's), header text, data bytes.
    private func handMade(_ header: String, data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        let n = length ?? UInt64(h.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + h + data
    }

    private func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt32($0))) } }
    }

    /// Asserts that decoding `bytes` throws `TensorError.safetensors` mentioning `text`.
    private func assertRejected(_ bytes: [UInt8], mentioning text: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.decode(bytes), file: file, line: line) { error in
            guard case TensorError.safetensors(let message) = error else {
                return XCTFail("expected TensorError.safetensors, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(text), "\"\(message)\" does not mention \"\(text)\"",
                          file: file, line: line)
        }
    }

    private func sample() -> SafeTensors {
        var values = [Float]()
        var s: UInt32 = 12345
        for _ in 0..<(17 * 33) {
            s = s &* 1_664_525 &+ 1_013_904_223
            values.append(Float(Int32(bitPattern: s)) / 1e6)
        }
        values[0] = -0.0
        values[1] = 1e30
        values[2] = Float.leastNormalMagnitude / 1024  // subnormal
        values[3] = .infinity
        return SafeTensors(tensors: [
            "b.weight": .init(shape: [3, 4], values: (0..<12).map { Float($0) * 0.37 - 1.1 }),
            "a.bias": .init(shape: [4], values: [1, -2, 3.5, 0.125]),
            "scalar": .init(shape: [], values: [42]),
            "empty": .init(shape: [0, 3], values: []),
            "big": .init(shape: [17, 33], values: values),
        ], metadata: [
            "config": #"{"channels": 16, "name": "unet \"tiny\"", "note": "line\nbreak"}"#,
            "format": "pt",
            "ünïcode": "ok ✓",
        ])
    }

    /// Runs python3 with `script` and `arguments`; returns stdout, or skips when python3 or
    /// the safetensors package is not available.
    private func python(_ script: String, _ arguments: [String]) throws -> Data {
        let probe = try runPython("import numpy\nfrom safetensors.numpy import load_file, save_file", [])
        guard probe.status == 0 else {
            throw XCTSkip("python3 with numpy and safetensors is not available: \(probe.stderr)")
        }
        let r = try runPython(script, arguments)
        guard r.status == 0 else {
            XCTFail("python failed (\(r.status)): \(r.stderr)")
            return Data()
        }
        return r.stdout
    }

    private func runPython(_ script: String, _ arguments: [String]) throws
        -> (status: Int32, stdout: Data, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw XCTSkip("cannot run python3: \(error)") }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, stdout, String(decoding: stderr, as: UTF8.self))
    }

    private struct PyTensor: Decodable { var shape: [Int]; var bits: [UInt32] }
    private struct PyDump: Decodable { var metadata: [String: String]?; var tensors: [String: PyTensor] }

    // MARK: Round trips

    func testRoundTripInMemoryAndOnDisk() throws {
        let st = sample()
        let bytes = try st.encode()
        // Header length is a multiple of 8, padded with spaces, metadata first.
        let n = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
        XCTAssertEqual(n % 8, 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix(#"{"__metadata__":{"#), header)
        XCTAssertTrue(header.hasSuffix("}") || header.hasSuffix(" "))
        XCTAssertEqual(header.trimmingCharacters(in: .whitespaces).last, "}")
        // Tensors appear in sorted order, laid out in that order.
        let order = ["a.bias", "b.weight", "big", "empty", "scalar"].map { header.range(of: "\"\($0)\"")!.lowerBound }
        XCTAssertEqual(order, order.sorted())
        XCTAssertEqual(bytes.count, 8 + n + 4 * (12 + 4 + 1 + 0 + 17 * 33))

        let back = try SafeTensors.decode(bytes)
        XCTAssertEqual(back.metadata, st.metadata)
        XCTAssertEqual(Set(back.tensors.keys), Set(st.tensors.keys))
        for (name, e) in st.tensors {
            XCTAssertEqual(back.tensors[name]?.shape, e.shape, name)
            XCTAssertEqual(back.tensors[name]?.values.map(\.bitPattern), e.values.map(\.bitPattern), name)
        }
        XCTAssertEqual(try back.encode(), bytes, "encoding is deterministic")

        let dir = try temporaryDirectory()
        let path = dir + "/model.safetensors"
        try st.write(path: path)
        try st.write(path: path)  // overwrite
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), bytes)
        XCTAssertEqual(try SafeTensors.read(path: path).config, st.metadata["config"])
    }

    func testTensorConvenience() throws {
        let w = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        var st = SafeTensors(tensors: ["w": w, "s": Tensor(scalar: 7)], metadata: [:])
        st.config = #"{"layers": 2}"#
        let back = try SafeTensors.decode(try st.encode())
        XCTAssertEqual(back.metadata["config"], #"{"layers": 2}"#)
        let t = try back.tensor("w")
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.array, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try back.tensor("s").shape, [])
        XCTAssertEqual(try back.tensor("s").item, 7)
        XCTAssertThrowsError(try back.tensor("nope")) { error in
            guard case TensorError.safetensors(let m) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(m.contains("nope"), m)
        }
        XCTAssertEqual(back.names, ["s", "w"])
    }

    func testParameterCountsGroupByTopLevelName() {
        let st = SafeTensors(tensors: [
            "unet.down.0.weight": .init(shape: [4, 3, 3, 3], values: .init(repeating: 0, count: 108)),
            "unet.down.0.bias": .init(shape: [4], values: .init(repeating: 0, count: 4)),
            "text_encoder.embedding": .init(shape: [10, 2], values: .init(repeating: 0, count: 20)),
            "scale": .init(shape: [], values: [1]),
        ])
        XCTAssertEqual(st.parameterCounts, ["unet": 112, "text_encoder": 20, "scale": 1])
        XCTAssertEqual(SafeTensors().parameterCounts, [:])
    }

    func testEncodeRejectsInconsistentEntries() {
        for st in [SafeTensors(tensors: ["x": .init(shape: [2, 2], values: [1, 2, 3])]),
                   SafeTensors(tensors: ["x": .init(shape: [-1], values: [])]),
                   SafeTensors(tensors: ["": .init(shape: [1], values: [1])]),
                   SafeTensors(tensors: ["__metadata__": .init(shape: [1], values: [1])])] {
            XCTAssertThrowsError(try st.encode()) { error in
                guard case TensorError.safetensors = error else { return XCTFail("got \(error)") }
            }
        }
    }

    func testReadsConvertedDtypes() throws {
        // BF16 1.0, -2.0, 3.140625; F16 0.5, -1.25, 65504, smallest subnormal, -inf; F64 1/3, -2.5.
        let header = #"{"bf":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"#
            + #""h":{"dtype":"F16","shape":[5],"data_offsets":[6,16]},"#
            + #""d":{"dtype":"F64","shape":[2],"data_offsets":[16,32]}}"#
        var data: [UInt8] = [0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40]
        data += [0x00, 0x38, 0x00, 0xbd, 0xff, 0x7b, 0x01, 0x00, 0x00, 0xfc]
        for v in [1.0 / 3.0, -2.5] { data += (0..<8).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt64($0))) } }
        let st = try SafeTensors.decode(handMade(header, data: data))
        XCTAssertEqual(st.tensors["bf"]?.values, [1, -2, 3.140625])
        XCTAssertEqual(st.tensors["h"]?.values, [0.5, -1.25, 65504, 0x1p-24, -.infinity])
        XCTAssertEqual(st.tensors["d"]?.values, [Float(1.0 / 3.0), -2.5])
        XCTAssertTrue(st.metadata.isEmpty)
    }

    // MARK: Interchange with Python's safetensors

    func testFileWrittenByCoalesceLoadsInPython() throws {
        let st = sample()
        let path = try temporaryDirectory() + "/coalesce.safetensors"
        try st.write(path: path)
        let script = """
            import json, sys
            import numpy as np
            from safetensors.numpy import load_file
            from safetensors import safe_open
            t = load_file(sys.argv[1])
            with safe_open(sys.argv[1], framework="np") as f:
                meta = f.metadata()
            out = {"metadata": meta, "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                   "bits": v.view(np.uint32).ravel().tolist()} for k, v in t.items()}}
            assert all(v.dtype == np.float32 for v in t.values())
            print(json.dumps(out))
            """
        let dump = try JSONDecoder().decode(PyDump.self, from: try python(script, [path]))
        XCTAssertEqual(dump.metadata, st.metadata)
        XCTAssertEqual(Set(dump.tensors.keys), Set(st.tensors.keys))
        for (name, e) in st.tensors {
            XCTAssertEqual(dump.tensors[name]?.shape, e.shape, name)
            XCTAssertEqual(dump.tensors[name]?.bits, e.values.map(\.bitPattern), name)
        }
    }

    func testFileWrittenByPythonLoadsInCoalesce() throws {
        let path = try temporaryDirectory() + "/python.safetensors"
        let script = """
            import json, sys
            import numpy as np
            from safetensors.numpy import save_file
            rng = np.random.default_rng(3)
            tensors = {
                "enc.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                "enc.conv.bias": np.array([0.5, -1.0, 1e-38, 3e38], dtype=np.float32),
                "half": np.array([[0.5, -1.25, 65504], [6e-8, np.inf, 0.1]], dtype=np.float16),
                "double": np.array([1 / 3, 1e-40, -2.5, 1e300], dtype=np.float64),
                "scalar": np.array(7.25, dtype=np.float32),
                "empty": np.zeros((0, 5), dtype=np.float32),
            }
            save_file(tensors, sys.argv[1], metadata={"config": json.dumps({"channels": [8, 16]}), "note": "héllo\\n"})
            out = {"tensors": {k: {"shape": list(v.shape),
                   "bits": v.astype(np.float32).view(np.uint32).ravel().tolist()} for k, v in tensors.items()}}
            print(json.dumps(out))
            """
        let expected = try JSONDecoder().decode(PyDump.self, from: try python(script, [path]))
        let st = try SafeTensors.read(path: path)
        XCTAssertEqual(st.metadata, ["config": #"{"channels": [8, 16]}"#, "note": "héllo\n"])
        XCTAssertEqual(Set(st.tensors.keys), Set(expected.tensors.keys))
        for (name, e) in expected.tensors {
            XCTAssertEqual(st.tensors[name]?.shape, e.shape, name)
            XCTAssertEqual(st.tensors[name]?.values.map(\.bitPattern), e.bits, name)
        }
        XCTAssertEqual(try st.tensor("enc.conv.weight").shape, [4, 3, 3, 3])
    }

    // MARK: Corrupt input

    func testCorruptHeadersAreRejected() {
        let a4 = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        let four = floatBytes([1])
        XCTAssertNoThrow(try SafeTensors.decode(handMade(a4, data: four)))

        assertRejected([1, 2, 3], mentioning: "shorter")
        assertRejected(handMade(a4, data: four, length: 1000), mentioning: "beyond the end")
        assertRejected(handMade(a4, data: four, length: .max), mentioning: "beyond the end")
        assertRejected(handMade(#"{"a": {"dtype": "F32","#, data: four), mentioning: "JSON")
        assertRejected(handMade("[1, 2, 3]", data: []), mentioning: "JSON object")
        assertRejected(handMade("", data: []), mentioning: "JSON object")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: four),
                       mentioning: "beyond")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: four + four),
                       mentioning: "needs 12")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                                + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                                data: floatBytes([1, 2, 3])), mentioning: "overlap")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                                + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                                data: floatBytes([1, 2, 3])), mentioning: "no tensor")
        assertRejected(handMade(a4, data: floatBytes([1, 2])), mentioning: "trailing")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, data: four),
                       mentioning: "increasing")
        assertRejected(handMade(#"{"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#, data: four),
                       mentioning: "dtype \"I32\"")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,4]}}"#, data: four),
                       mentioning: "negative")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, data: four),
                       mentioning: "expected 2")
        assertRejected(handMade(#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: four),
                       mentioning: "missing \"dtype\"")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: four),
                       mentioning: "1.5")
        assertRejected(handMade(#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                                data: four), mentioning: "must be a string")
        assertRejected(handMade(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
                                data: four), mentioning: "too large")
    }

    func testEveryTruncationAndRandomCorruptionIsHandled() throws {
        let bytes = try SafeTensors(tensors: ["x": .init(shape: [2, 3], values: [1, 2, 3, 4, 5, 6]),
                                              "y": .init(shape: [1], values: [9])],
                                    metadata: ["config": "{}"]).encode()
        for cut in 0..<bytes.count {
            XCTAssertThrowsError(try SafeTensors.decode(Array(bytes.prefix(cut))), "cut at \(cut)") { error in
                guard case TensorError.safetensors = error else { return XCTFail("cut at \(cut): \(error)") }
            }
        }
        var s: UInt64 = 99
        for _ in 0..<2000 {
            var b = bytes
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            b[Int(s >> 33) % b.count] ^= UInt8(truncatingIfNeeded: s >> 8) | 1
            do { _ = try SafeTensors.decode(b) } catch {
                guard case TensorError.safetensors = error else { return XCTFail("unexpected \(error)") }
            }
        }
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try SafeTensors.read(path: "/nonexistent/x.safetensors")) { error in
            guard case TensorError.io(let path, _) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(path, "/nonexistent/x.safetensors")
        }
    }
}
