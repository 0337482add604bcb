import ImageIO
import XCTest

final class ImageGridTests: XCTestCase {
    func testLayoutWithPadding() {
        let images = (1...3).map { GrayImage(width: 2, height: 3, fill: UInt8($0 * 10)) }
        let grid = ImageGrid.make(images, columns: 2, padding: 1, background: 9)
        // 2 columns * 2 + 3 paddings; 2 rows * 3 + 3 paddings.
        XCTAssertEqual(grid.width, 7)
        XCTAssertEqual(grid.height, 9)
        XCTAssertEqual(grid.pixels.count, 63)
        let expectedRows: [[UInt8]] = [
            [9, 9, 9, 9, 9, 9, 9],
            [9, 10, 10, 9, 20, 20, 9],
            [9, 10, 10, 9, 20, 20, 9],
            [9, 10, 10, 9, 20, 20, 9],
            [9, 9, 9, 9, 9, 9, 9],
            [9, 30, 30, 9, 9, 9, 9],
            [9, 30, 30, 9, 9, 9, 9],
            [9, 30, 30, 9, 9, 9, 9],
            [9, 9, 9, 9, 9, 9, 9],
        ]
        for (y, row) in expectedRows.enumerated() {
            XCTAssertEqual(Array(grid.pixels[(y * 7)..<(y * 7 + 7)]), row, "row \(y)")
        }
    }

    func testOrderAndDistinctPixelsWithoutPadding() {
        // Each image has distinct pixels so a transposed or flipped copy would show.
        let a = GrayImage(width: 2, height: 2, pixels: [1, 2, 3, 4])
        let b = GrayImage(width: 2, height: 2, pixels: [5, 6, 7, 8])
        let grid = ImageGrid.make([a, b], columns: 1, padding: 0)
        XCTAssertEqual(grid.width, 2)
        XCTAssertEqual(grid.height, 4)
        XCTAssertEqual(grid.pixels, [1, 2, 3, 4, 5, 6, 7, 8])
        let wide = ImageGrid.make([a, b], columns: 2, padding: 0)
        XCTAssertEqual(wide.pixels, [1, 2, 5, 6, 3, 4, 7, 8])
    }

    func testMixedSizesSitTopLeftInLargestCell() {
        let small = GrayImage(width: 1, height: 1, fill: 200)
        let large = GrayImage(width: 3, height: 2, fill: 100)
        let grid = ImageGrid.make([small, large], columns: 2, padding: 0, background: 0)
        XCTAssertEqual(grid.width, 6)
        XCTAssertEqual(grid.height, 2)
        XCTAssertEqual(grid.pixels, [200, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100])
    }

    func testScaleAndEncodable() throws {
        let images = (0..<10).map { GrayImage(width: 28, height: 28, fill: UInt8($0 * 25)) }
        let grid = ImageGrid.make(images, columns: 5, padding: 2, background: 255, scale: 2)
        XCTAssertEqual(grid.width, (5 * 28 + 6 * 2) * 2)
        XCTAssertEqual(grid.height, (2 * 28 + 3 * 2) * 2)
        // The first image's top-left pixel is at (2, 2) before scaling, (4...5, 4...5) after.
        XCTAssertEqual(grid[3, 3], 255)
        XCTAssertEqual(grid[4, 4], 0)
        XCTAssertEqual(grid[5, 5], 0)
        XCTAssertEqual(try PNG.decode(try PNG.encode(grid)), grid)
    }

    func testEmptyListGivesBackgroundImage() throws {
        let grid = ImageGrid.make([], columns: 4, padding: 0, background: 7)
        XCTAssertGreaterThanOrEqual(grid.width, 1)
        XCTAssertGreaterThanOrEqual(grid.height, 1)
        XCTAssertTrue(grid.pixels.allSatisfy { $0 == 7 })
        XCTAssertNoThrow(try grid.validate())
    }
}
