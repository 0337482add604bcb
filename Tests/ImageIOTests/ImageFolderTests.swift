import ImageIO
import XCTest

final class ImageFolderTests: XCTestCase {
    /// A folder with three 5x4 images a.png, b.png, c.png.
    private func makeFolder() throws -> String {
        let dir = try makeTemporaryDirectory(self)
        for (i, name) in ["a", "b", "c"].enumerated() {
            let image = GrayImage(width: 5, height: 4, pixels: pseudoRandomBytes(20, seed: UInt64(i + 1)))
            try PNG.write(image, to: "\(dir)/\(name).png")
        }
        return dir
    }

    private func writeCaptions(_ text: String, in dir: String) throws {
        try writeBytes(Array(text.utf8), to: dir + "/" + ImageFolder.captionsFileName)
    }

    private func assertCaptionError(_ dir: String, line: Int, mentions text: String,
                                    file: StaticString = #filePath, lineNumber: UInt = #line) {
        XCTAssertThrowsError(try ImageFolder.load(directory: dir), file: file, line: lineNumber) { error in
            guard case ImageIOError.captions(let path, let l, let message) = error else {
                return XCTFail("expected ImageIOError.captions, got \(error)", file: file, line: lineNumber)
            }
            XCTAssertTrue(path.hasSuffix("captions.jsonl"), path, file: file, line: lineNumber)
            XCTAssertEqual(l, line, "\(error)", file: file, line: lineNumber)
            XCTAssertTrue(message.contains(text), "\(message) does not mention \(text)", file: file, line: lineNumber)
        }
    }

    func testLoadsImagesCaptionsAndLabels() throws {
        let dir = try makeFolder()
        try writeCaptions("""
            {"file": "a.png", "caption": "a red dress", "label": 3}
            {"file": "b.png", "caption": "a \\"quoted\\" shoe"}

            {"caption": "again a", "file": "a.png", "label": null}
            {"file": "c.png", "caption": ""}\r

            """, in: dir)
        let set = try ImageFolder.load(directory: dir)
        XCTAssertEqual(set.count, 4)
        XCTAssertEqual(set.width, 5)
        XCTAssertEqual(set.height, 4)
        XCTAssertEqual(set.files, ["a.png", "b.png", "a.png", "c.png"])
        XCTAssertEqual(set.captions, ["a red dress", "a \"quoted\" shoe", "again a", ""])
        XCTAssertEqual(set.labels, [3, nil, nil, nil])
        XCTAssertEqual(set.pixels.count, 4 * 20)
        XCTAssertEqual(set.image(at: 0), try PNG.read(path: dir + "/a.png"))
        XCTAssertEqual(set.image(at: 2), set.image(at: 0))
        XCTAssertEqual(set.image(at: 3), try PNG.read(path: dir + "/c.png"))
    }

    func testBadLinesNameTheLine() throws {
        let dir = try makeFolder()
        let good = #"{"file": "a.png", "caption": "x"}"#
        try writeCaptions(good + "\n" + #"{"file": "b.png"}"#, in: dir)
        assertCaptionError(dir, line: 2, mentions: "caption")
        try writeCaptions(good + "\n\n" + "{not json", in: dir)
        assertCaptionError(dir, line: 3, mentions: "JSON")
        try writeCaptions(#"{"file": "a.png", "caption": "x", "label": "three"}"#, in: dir)
        assertCaptionError(dir, line: 1, mentions: "\"label\" must be an integer")
        try writeCaptions(#"["a.png", "x"]"#, in: dir)
        assertCaptionError(dir, line: 1, mentions: "object")
        try writeCaptions(good + "\n" + #"{"file": "missing.png", "caption": "x"}"#, in: dir)
        assertCaptionError(dir, line: 2, mentions: "missing.png")
        try writeCaptions(#"{"file": 5, "caption": "x"}"#, in: dir)
        assertCaptionError(dir, line: 1, mentions: "\"file\" must be a string")
    }

    func testSizeMismatchNamesTheFile() throws {
        let dir = try makeFolder()
        try PNG.write(GrayImage(width: 6, height: 4), to: dir + "/wide.png")
        try writeCaptions("""
            {"file": "a.png", "caption": "x"}
            {"file": "wide.png", "caption": "y"}
            """, in: dir)
        XCTAssertThrowsError(try ImageFolder.load(directory: dir)) { error in
            guard case ImageIOError.imageFolder(let path, let message) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(path.hasSuffix("wide.png"), path)
            XCTAssertTrue(message.contains("6x4"), message)
        }
    }

    func testMissingOrEmptyCaptionsFile() throws {
        let dir = try makeFolder()
        XCTAssertThrowsError(try ImageFolder.load(directory: dir)) { error in
            guard case ImageIOError.io(let path, _, _) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(path.hasSuffix("captions.jsonl"), path)
        }
        try writeCaptions("\n\n", in: dir)
        XCTAssertThrowsError(try ImageFolder.load(directory: dir)) { error in
            guard case ImageIOError.imageFolder = error else { return XCTFail("got \(error)") }
        }
    }

    func testCorruptImageIsReported() throws {
        let dir = try makeFolder()
        try writeBytes(Array(try readBytes(dir + "/b.png").prefix(30)), to: dir + "/b.png")
        try writeCaptions(#"{"file": "b.png", "caption": "x"}"#, in: dir)
        XCTAssertThrowsError(try ImageFolder.load(directory: dir)) { error in
            guard case ImageIOError.png(let message) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(message.contains("b.png"), message)
        }
    }
}
