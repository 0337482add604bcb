import Foundation
import ImageIO
import XCTest

/// Folders of a user's own images (`--data DIR`): colour, classes, resizing and clear errors.
final class ImageDatasetTests: XCTestCase {
    func writePNG(_ interleaved: [UInt8], side: Int, channels: Int, to path: String) throws {
        try writeBytes(try PNG.encode(pixels: interleaved[...], width: side, height: side, channels: channels), to: path)
    }

    func testAreaAveragingResize() {
        // 4x4 -> 2x2: each output is the mean of a 2x2 block.
        let src: [UInt8] = [0, 2, 10, 10,
                            4, 6, 10, 10,
                            100, 100, 0, 0,
                            100, 100, 0, 255]
        XCTAssertEqual(ImageDataset.resizeArea(src, width: 4, height: 4, channels: 1, to: 2), [3, 10, 100, 64])
        // 3x1 rows -> 2 wide: weights 2/3 + 1/3 (the middle pixel is shared).
        let row: [UInt8] = [0, 90, 180, 0, 90, 180, 0, 90, 180]
        let out = ImageDataset.resizeArea(row, width: 3, height: 3, channels: 1, to: 2)
        XCTAssertEqual(out[0], 30)   // (0 * 1 + 90 * 0.5) / 1.5
        XCTAssertEqual(out[1], 150)  // (90 * 0.5 + 180 * 1) / 1.5
    }

    func testColourPNGDecodesToPlanes() throws {
        let dir = try makeTemporaryDirectory(self)
        // 4x4 RGB: red left half, blue right half.
        var px = [UInt8]()
        for _ in 0..<4 { for x in 0..<4 { px += x < 2 ? [255, 0, 0] : [0, 0, 255] } }
        try writePNG(px, side: 4, channels: 3, to: dir + "/a.png")
        let d = try PNG.decodePlanar(try readBytes(dir + "/a.png"))
        XCTAssertEqual(d.channels, 3)
        XCTAssertEqual(Array(d.pixels[0..<4]), [255, 255, 0, 0])        // R plane, first row
        XCTAssertEqual(Array(d.pixels[32..<36]), [0, 0, 255, 255])      // B plane, first row
        XCTAssertEqual(PNG.interleave(d.pixels[...], width: 4, height: 4, channels: 3), px)
    }

    func testSubfolderClassesMixedChannelsAndResize() throws {
        let dir = try makeTemporaryDirectory(self)
        for sub in ["boots", "bags"] { try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
        try writePNG([UInt8](repeating: 200, count: 8 * 8), side: 8, channels: 1, to: dir + "/boots/a.png")
        try writePNG([UInt8](repeating: 10, count: 6 * 6 * 3), side: 6, channels: 3, to: dir + "/bags/b.png")
        XCTAssertThrowsError(try ImageDataset.load(directory: dir, size: nil)) { e in
            XCTAssertTrue("\(e)".contains("--size"), "\(e)")
        }
        let set = try ImageDataset.load(directory: dir, size: 4)
        XCTAssertEqual(set.count, 2)
        XCTAssertEqual(set.channels, 3)                 // one colour image makes the set RGB
        XCTAssertEqual(set.classNames, ["bags", "boots"])
        XCTAssertEqual(set.labels, [0, 1])              // sorted paths: bags/b.png, boots/a.png
        XCTAssertEqual(set.captions, ["bags", "boots"])
        XCTAssertEqual(set.pixels.count, 2 * 3 * 16)
        XCTAssertTrue(set.pixels[48..<96].allSatisfy { $0 == 200 })  // gray repeated into R, G, B
    }

    func testCaptionsAndErrors() throws {
        let dir = try makeTemporaryDirectory(self)
        XCTAssertThrowsError(try ImageDataset.load(directory: dir, size: nil)) { e in
            XCTAssertTrue("\(e)".contains("no PNG images"), "\(e)")
        }
        try writePNG([UInt8](repeating: 50, count: 16), side: 4, channels: 1, to: dir + "/x.png")
        try "{\"file\": \"x.png\", \"caption\": \"a grey square\", \"label\": 2}\n".write(toFile: dir + "/captions.jsonl", atomically: true, encoding: .utf8)
        let set = try ImageDataset.load(directory: dir, size: nil)
        XCTAssertEqual(set.captions, ["a grey square"])
        XCTAssertEqual(set.labels, [2])
        XCTAssertEqual(set.classNames, ["0", "1", "2"])
        try "{\"file\": \"x.png\", \"caption\": \"ok\"}\nnot json\n".write(toFile: dir + "/captions.jsonl", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ImageDataset.load(directory: dir, size: nil)) { e in
            XCTAssertTrue("\(e)".contains("captions.jsonl:2"), "\(e)")
        }
        try "{\"file\": \"x.png\", \"caption\": \"ok\"}\n".write(toFile: dir + "/captions.jsonl", atomically: true, encoding: .utf8)
        try writeBytes(Array("\u{89}PNG broken".utf8), to: dir + "/x.png")
        XCTAssertThrowsError(try ImageDataset.load(directory: dir, size: nil)) { e in
            XCTAssertTrue("\(e)".contains("x.png"), "\(e)")
        }
    }
}
