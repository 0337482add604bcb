import Foundation
import ImageIO
import XCTest

final class PNGTests: XCTestCase {
    private func gradient(width: Int, height: Int) -> GrayImage {
        var image = GrayImage(width: width, height: height)
        for y in 0..<height { for x in 0..<width { image[x, y] = UInt8((x * 7 + y * 13) % 256) } }
        return image
    }

    func testRoundTripInMemory() throws {
        for (w, h) in [(1, 1), (28, 28), (37, 23), (300, 2)] {
            let image = gradient(width: w, height: h)
            let bytes = try PNG.encode(image)
            XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            XCTAssertEqual(try PNG.decode(bytes), image, "\(w)x\(h)")
        }
    }

    func testRoundTripThroughFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir + "/noise.png"
        let image = GrayImage(width: 64, height: 48, pixels: pseudoRandomBytes(64 * 48, seed: 7))
        try PNG.write(image, to: path)
        XCTAssertEqual(try PNG.read(path: path), image)
        // Overwriting replaces the file and leaves no temporary files behind.
        try PNG.write(gradient(width: 5, height: 5), to: path)
        XCTAssertEqual(try PNG.read(path: path), gradient(width: 5, height: 5))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["noise.png"])
    }

    func testReadsIndependentlyEncodedGrayPNG() throws {
        let pixels = pseudoRandomBytes(9 * 4, seed: 3)
        let png = handMadePNG(width: 9, height: 4, colorType: 0, samples: pixels)
        XCTAssertEqual(try PNG.decode(png), GrayImage(width: 9, height: 4, pixels: pixels))
    }

    func testRGBIsConvertedToGray() throws {
        // Pixels: gray 100, pure red, pure green, pure blue, white, black.
        let rgb: [UInt8] = [100, 100, 100, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0]
        let image = try PNG.decode(handMadePNG(width: 6, height: 1, colorType: 2, samples: rgb))
        XCTAssertEqual(image.width, 6)
        XCTAssertEqual(image.height, 1)
        XCTAssertLessThanOrEqual(abs(Int(image.pixels[0]) - 100), 1, "neutral gray keeps its value")
        XCTAssertEqual(image.pixels[4], 255)
        XCTAssertEqual(image.pixels[5], 0)
        // Luminance: green > red > blue, all strictly between black and white.
        XCTAssertGreaterThan(image.pixels[2], image.pixels[1])
        XCTAssertGreaterThan(image.pixels[1], image.pixels[3])
        XCTAssertGreaterThan(image.pixels[3], 0)
        XCTAssertLessThan(image.pixels[2], 255)
    }

    func testAlphaIsCompositedOntoBlack() throws {
        // RGBA: opaque white, transparent white, opaque gray 80.
        let rgba: [UInt8] = [255, 255, 255, 255, 255, 255, 255, 0, 80, 80, 80, 255]
        let image = try PNG.decode(handMadePNG(width: 3, height: 1, colorType: 6, samples: rgba))
        XCTAssertEqual(image.pixels[0], 255)
        XCTAssertEqual(image.pixels[1], 0)
        XCTAssertLessThanOrEqual(abs(Int(image.pixels[2]) - 80), 1)
        // Gray + alpha: opaque 200, transparent 200.
        let grayAlpha = try PNG.decode(handMadePNG(width: 2, height: 1, colorType: 4, samples: [200, 255, 200, 0]))
        XCTAssertEqual(grayAlpha.pixels[0], 200)
        XCTAssertEqual(grayAlpha.pixels[1], 0)
    }

    func testSixteenBitGrayIsReducedToEightBits() throws {
        let samples: [UInt8] = [0x00, 0x00, 0xff, 0xff, 0x80, 0x00]
        let image = try PNG.decode(handMadePNG(width: 3, height: 1, colorType: 0, bitDepth: 16, samples: samples))
        XCTAssertEqual(image.pixels[0], 0)
        XCTAssertEqual(image.pixels[1], 255)
        // Documented: 16-bit samples count as linear light, so 0.5 is encoded as sRGB ~0.735 (187).
        XCTAssertTrue((180...192).contains(image.pixels[2]), "\(image.pixels[2])")
    }

    func testTruncatedPNGThrows() throws {
        let image = GrayImage(width: 64, height: 64, pixels: pseudoRandomBytes(64 * 64, seed: 11))
        let bytes = try PNG.encode(image)
        XCTAssertGreaterThan(bytes.count, 1000)
        for cut in [0, 1, 7, 8, 20, 33, 60, bytes.count / 2, bytes.count - 40] {
            XCTAssertThrowsError(try PNG.decode(Array(bytes.prefix(cut))), "cut at \(cut)") { error in
                guard case ImageIOError.png(let message) = error else {
                    return XCTFail("cut at \(cut): expected ImageIOError.png, got \(error)")
                }
                XCTAssertFalse(message.isEmpty)
            }
        }
    }

    func testCorruptPNGThrows() throws {
        let image = GrayImage(width: 32, height: 32, pixels: pseudoRandomBytes(32 * 32, seed: 5))
        let bytes = try PNG.encode(image)
        // Not a PNG at all.
        XCTAssertThrowsError(try PNG.decode(Array("hello, world".utf8)))
        XCTAssertThrowsError(try PNG.decode(pseudoRandomBytes(500, seed: 1)))
        // A flipped byte inside the image data breaks its CRC.
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x5a
        XCTAssertThrowsError(try PNG.decode(flipped)) { error in
            guard case ImageIOError.png = error else { return XCTFail("got \(error)") }
        }
        // Corrupt the signature.
        var badSignature = bytes
        badSignature[1] = 0x51
        XCTAssertThrowsError(try PNG.decode(badSignature))
        // Many random single-byte corruptions: each either decodes or throws, never crashes.
        for i in 0..<200 {
            var b = bytes
            let noise = pseudoRandomBytes(2, seed: UInt64(i) + 100)
            b[8 + Int(noise[0]) % (b.count - 8)] ^= noise[1] | 1
            _ = try? PNG.decode(b)
        }
    }

    func testReadMissingFileNamesIt() {
        XCTAssertThrowsError(try PNG.read(path: "/nonexistent/dir/x.png")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/dir/x.png"), "\(error)")
            guard case ImageIOError.io(_, let call, _) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(call, "open")
        }
    }

    func testInvalidSizesAreRejected() throws {
        for image in [GrayImage(width: 0, height: 5, pixels: []),
                      GrayImage(width: 3, height: 3, pixels: [1, 2, 3]),
                      GrayImage(width: GrayImage.maxSide + 1, height: 1)] {
            XCTAssertThrowsError(try PNG.encode(image)) { error in
                guard case ImageIOError.invalidImage = error else { return XCTFail("got \(error)") }
            }
        }
        // A header announcing an absurd width is refused before any pixel is read.
        let huge = handMadePNG(width: 20000, height: 1, colorType: 0, samples: [UInt8](repeating: 0, count: 20000))
        XCTAssertThrowsError(try PNG.decode(huge)) { error in
            guard case ImageIOError.invalidImage(let m) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(m.contains("20000"), m)
        }
    }

    func testScaledRepeatsPixels() {
        let image = GrayImage(width: 2, height: 1, pixels: [10, 20])
        let big = image.scaled(by: 3)
        XCTAssertEqual(big.width, 6)
        XCTAssertEqual(big.height, 3)
        let row: [UInt8] = [10, 10, 10, 20, 20, 20]
        XCTAssertEqual(big.pixels, row + row + row)
        XCTAssertEqual(image.scaled(by: 0), image)
    }
}
