import ImageIO
import XCTest

final class IDXTests: XCTestCase {
    private func assertIDXError(_ path: String, contains text: String, file: StaticString = #filePath,
                                line: UInt = #line) {
        XCTAssertThrowsError(try IDX.read(path: path), file: file, line: line) { error in
            guard case ImageIOError.idx(let p, let message) = error else {
                return XCTFail("expected ImageIOError.idx, got \(error)", file: file, line: line)
            }
            XCTAssertEqual(p, path, file: file, line: line)
            XCTAssertTrue(message.contains(text), "\(message) does not mention \(text)", file: file, line: line)
        }
    }

    func testEncodeLayout() throws {
        let bytes = try IDX.encode(IDXFile(dims: [2, 1, 3], data: [1, 2, 3, 4, 5, 6]))
        XCTAssertEqual(bytes, [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    }

    func testRoundTripPlainAndGzip() throws {
        let dir = try makeTemporaryDirectory(self)
        for dims in [[300], [7, 11], [5, 28, 28]] {
            let data = pseudoRandomBytes(dims.reduce(1, *), seed: UInt64(dims.count))
            let idx = IDXFile(dims: dims, data: data)
            let plain = dir + "/f\(dims.count)-ubyte"
            let gz = plain + ".gz"
            try IDX.write(idx, to: plain)
            try IDX.write(idx, to: gz)
            XCTAssertEqual(try readBytes(plain), try IDX.encode(idx))
            XCTAssertEqual(Array(try readBytes(gz).prefix(2)), [0x1f, 0x8b], "gzip magic")
            XCTAssertEqual(try IDX.read(path: plain), idx)
            XCTAssertEqual(try IDX.read(path: gz), idx)
        }
        // Compression is detected from the content, not the name.
        try FileManager.default.moveItem(atPath: dir + "/f2-ubyte.gz", toPath: dir + "/renamed")
        XCTAssertEqual(try IDX.read(path: dir + "/renamed").dims, [7, 11])
    }

    func testTruncatedPlainFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let full = try IDX.encode(IDXFile(dims: [10, 4, 4], data: pseudoRandomBytes(160, seed: 2)))
        let path = dir + "/cut"
        try writeBytes(Array(full.prefix(full.count - 10)), to: path)
        assertIDXError(path, contains: "truncated")
        try writeBytes(Array(full.prefix(9)), to: path)
        assertIDXError(path, contains: "dimension bytes")
        try writeBytes(Array(full.prefix(2)), to: path)
        assertIDXError(path, contains: "header")
        try writeBytes([], to: path)
        assertIDXError(path, contains: "truncated")
    }

    func testTruncatedGzipFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let gz = dir + "/x.gz"
        try IDX.write(IDXFile(dims: [50, 28, 28], data: pseudoRandomBytes(50 * 784, seed: 9)), to: gz)
        let bytes = try readBytes(gz)
        let cut = dir + "/cut.gz"
        try writeBytes(Array(bytes.prefix(bytes.count / 2)), to: cut)
        assertIDXError(cut, contains: "truncated")
    }

    func testTrailingBytesAndBadHeaders() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir + "/bad"
        let good = try IDX.encode(IDXFile(dims: [4], data: [1, 2, 3, 4]))
        try writeBytes(good + [9], to: path)
        assertIDXError(path, contains: "trailing")
        try writeBytes([1, 0, 8, 1, 0, 0, 0, 1, 7], to: path)
        assertIDXError(path, contains: "magic")
        try writeBytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], to: path)
        assertIDXError(path, contains: "float")
        try writeBytes([0, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5], to: path)
        assertIDXError(path, contains: "4 dimensions")
        try writeBytes([0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 3], to: path)
        assertIDXError(path, contains: "is 0")
        // Absurd dimensions are refused from the header, before any allocation.
        try writeBytes([0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2], to: path)
        assertIDXError(path, contains: "more than")
    }

    func testMissingFileAndInvalidWrite() throws {
        XCTAssertThrowsError(try IDX.read(path: "/nonexistent/idx")) { error in
            guard case ImageIOError.io(let p, _, _) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(p, "/nonexistent/idx")
        }
        XCTAssertThrowsError(try IDX.encode(IDXFile(dims: [2, 2], data: [1, 2, 3])))
        XCTAssertThrowsError(try IDX.encode(IDXFile(dims: [], data: [])))
    }
}
