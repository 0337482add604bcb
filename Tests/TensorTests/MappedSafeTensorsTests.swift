import Foundation
import Tensor
import XCTest

/// Safetensors files mapped read-only (`SafeTensors.map(path:)`) and the read-only tensors over
/// them: the same values and errors as reading, no copy of aligned F32 data, and every way of
/// writing such a tensor giving it a copy first (the file never changes).
final class MappedSafeTensorsTests: XCTestCase {
    private func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let dir = NSTemporaryDirectory() + "coalesce-mapped-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/w.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func sample() -> SafeTensors {
        SafeTensors(tensors: [
            "a.weight": .init(shape: [3, 5], values: (0..<15).map { Float($0) * 0.25 - 1 }),
            "b.bias": .init(shape: [5], values: [1, -2, 3.5, 0.125, -0.0]),
            "empty": .init(shape: [0, 4], values: []),
        ], metadata: ["config": "{}"])
    }

    private func fileBytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func testMappedFileHasTheSameTensorsAsARead() throws {
        let path = try temporaryFile(try sample().encode())
        let read = try SafeTensors.decode(try fileBytes(path))  // a copy whatever COALESCE_MAP_WEIGHTS says
        let mapped = try SafeTensors.map(path: path)
        XCTAssertEqual(mapped, read)
        XCTAssertEqual(mapped.metadata, read.metadata)
        XCTAssertTrue(mapped.tensors["a.weight"]!.isMapped)
        XCTAssertTrue(mapped.tensors["b.bias"]!.isMapped)
        XCTAssertFalse(mapped.tensors["empty"]!.isMapped)  // nothing to map
        XCTAssertFalse(read.tensors["a.weight"]!.isMapped)
        for name in read.names {
            let t = try mapped.tensor(name)
            XCTAssertEqual(t.shape, read.tensors[name]!.shape)
            XCTAssertEqual(t.array, read.tensors[name]!.values)
            XCTAssertEqual(t.isReadOnly, name != "empty", name)
        }
        XCTAssertFalse(try read.tensor("a.weight").isReadOnly)
    }

    func testMisalignedAndConvertedTensorsAreCopies() throws {
        // F16 (one value, 2 bytes) first: the F32 after it starts 2 bytes into the buffer, which
        // is misaligned for Float, so it is converted into a buffer of its own.
        var header = #"{"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"#
            + #""x":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}"#
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)  // data starts 8-aligned
        let n = UInt64(header.utf8.count)
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + Array(header.utf8)
        bytes += [0x00, 0x38]  // F16 0.5
        for v: Float in [1.5, -3] { bytes += (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt32($0))) } }
        let st = try SafeTensors.map(path: try temporaryFile(bytes))
        XCTAssertFalse(st.tensors["h"]!.isMapped)
        XCTAssertFalse(st.tensors["x"]!.isMapped)
        XCTAssertEqual(try st.tensor("h").array, [0.5])
        XCTAssertEqual(try st.tensor("x").array, [1.5, -3])
        XCTAssertFalse(try st.tensor("x").isReadOnly)
    }

    func testTensorsKeepTheMappingAlive() throws {
        let path = try temporaryFile(try sample().encode())
        var t: Tensor?
        do { t = try SafeTensors.map(path: path).tensor("a.weight") }  // the SafeTensors is gone
        try FileManager.default.removeItem(atPath: path)                 // and so is the file's name
        XCTAssertEqual(t!.array, (0..<15).map { Float($0) * 0.25 - 1 })
    }

    func testWritingAReadOnlyTensorCopiesItFirst() throws {
        let path = try temporaryFile(try sample().encode())
        let before = try fileBytes(path)
        let st = try SafeTensors.map(path: path)

        let a = try st.tensor("a.weight")
        a[2] = 99  // subscript
        XCTAssertFalse(a.isReadOnly)
        XCTAssertEqual(a[2], 99)
        XCTAssertEqual(a[3], -0.25)

        let b = try st.tensor("b.bias")
        b.copyValues(from: Tensor([9, 8, 7, 6, 5], shape: [5]))
        XCTAssertFalse(b.isReadOnly)
        XCTAssertEqual(b.array, [9, 8, 7, 6, 5])

        let c = try st.tensor("a.weight")
        c.makeWritable()
        c.data[0] = 7  // its own buffer now
        XCTAssertEqual(c[1], -0.75)

        // A parameter that shares the mapping and is trained: the optimiser copies it.
        let p = Tensor(zeros: [3, 5], requiresGrad: true)
        p.share(valuesOf: try st.tensor("a.weight"))
        XCTAssertTrue(p.isReadOnly)
        p.gradBuffer().update(repeating: 1, count: p.count)
        AdamW(parameters: [p], learningRate: 0.1, weightDecay: 0).update()
        XCTAssertFalse(p.isReadOnly)
        XCTAssertEqual(p[0], -1.1, accuracy: 1e-5)

        // Nothing reached the file or the other tensors over it.
        XCTAssertEqual(try fileBytes(path), before)
        XCTAssertEqual(try st.tensor("a.weight").array, (0..<15).map { Float($0) * 0.25 - 1 })
        XCTAssertEqual(try SafeTensors.read(path: path), sample())
    }

    func testShareCopiesFromATensorThatOwnsItsValues() {
        let p = Tensor(zeros: [2])
        let source = Tensor([1, 2], shape: [2])
        p.share(valuesOf: source)
        XCTAssertFalse(p.isReadOnly)
        source[0] = 5
        XCTAssertEqual(p.array, [1, 2])  // a copy, not the same buffer
    }

    func testMappingGivesTheSameErrorsAsReading() throws {
        let good = try sample().encode()
        for bytes in [[], Array(good.prefix(5)), Array(good.prefix(good.count - 3)), good + [0]] {
            let path = try temporaryFile(bytes)
            var readError = "", mapError = ""
            XCTAssertThrowsError(try SafeTensors.read(path: path)) { readError = "\($0)" }
            XCTAssertThrowsError(try SafeTensors.map(path: path)) { mapError = "\($0)" }
            XCTAssertEqual(mapError, readError)
            XCTAssertTrue(readError.contains(path), readError)
        }
        XCTAssertThrowsError(try SafeTensors.map(path: "/nonexistent/x.safetensors")) { error in
            guard case TensorError.io(let path, _) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(path, "/nonexistent/x.safetensors")
        }
        XCTAssertThrowsError(try SafeTensors.map(path: NSTemporaryDirectory())) { error in
            guard case TensorError.io = error else { return XCTFail("got \(error)") }
        }
    }
}
