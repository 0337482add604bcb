import ImageIO
import XCTest

final class FashionMNISTTests: XCTestCase {
    func testClassNames() {
        XCTAssertEqual(FashionMNIST.classNames.count, 10)
        XCTAssertEqual(FashionMNIST.classNames.first, "T-shirt/top")
        XCTAssertEqual(FashionMNIST.classNames.last, "Ankle boot")
        XCTAssertEqual(Set(FashionMNIST.classNames).count, 10)
    }

    func testLoadsBothSplits() throws {
        let dir = FashionMNIST.defaultDirectory
        guard FileManager.default.fileExists(atPath: dir) else {
            throw XCTSkip("Fashion-MNIST not installed at \(dir) (Debian package dataset-fashion-mnist)")
        }
        for (split, expected) in [(FashionMNIST.Split.train, 60000), (.test, 10000)] {
            let data = try FashionMNIST.load(split: split)
            XCTAssertEqual(data.count, expected)
            XCTAssertEqual(data.width, 28)
            XCTAssertEqual(data.height, 28)
            XCTAssertEqual(data.pixels.count, expected * 784)
            XCTAssertEqual(data.labels.count, expected)
            XCTAssertTrue(data.labels.allSatisfy { (0..<10).contains($0) })
            // The data set is balanced: every class has a tenth of the images.
            var perClass = [Int](repeating: 0, count: 10)
            for l in data.labels { perClass[l] += 1 }
            XCTAssertEqual(perClass, [Int](repeating: expected / 10, count: 10))
            // Real images: dark background corners, some bright pixels.
            let first = data.image(at: 0)
            XCTAssertEqual(first[0, 0], 0)
            XCTAssertGreaterThan(first.pixels.max() ?? 0, 100)
            XCTAssertEqual(data.slice(10..<15).count, 5)
            XCTAssertEqual(data.slice(10..<15).labels, Array(data.labels[10..<15]))
        }
    }

    func testMissingDirectoryNamesFileAndPackage() throws {
        let dir = try makeTemporaryDirectory(self)
        XCTAssertThrowsError(try FashionMNIST.load(split: .test, directory: dir)) { error in
            guard case ImageIOError.missingDataset(let path, _) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(path.contains("t10k-images-idx3-ubyte"), path)
            XCTAssertTrue("\(error)".contains("dataset-fashion-mnist"), "\(error)")
        }
    }

    func testSmallHandWrittenDataSetAndLabelChecks() throws {
        let dir = try makeTemporaryDirectory(self)
        let pixels = pseudoRandomBytes(3 * 4 * 5, seed: 4)
        try IDX.write(IDXFile(dims: [3, 4, 5], data: pixels), to: dir + "/t10k-images-idx3-ubyte")
        try IDX.write(IDXFile(dims: [3], data: [0, 9, 4]), to: dir + "/t10k-labels-idx1-ubyte.gz")
        let data = try FashionMNIST.load(split: .test, directory: dir)
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(data.height, 4)
        XCTAssertEqual(data.width, 5)
        XCTAssertEqual(data.pixels, pixels)
        XCTAssertEqual(data.labels, [0, 9, 4])

        try IDX.write(IDXFile(dims: [3], data: [0, 10, 4]), to: dir + "/t10k-labels-idx1-ubyte.gz")
        XCTAssertThrowsError(try FashionMNIST.load(split: .test, directory: dir)) { error in
            guard case ImageIOError.dataset(_, let m) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(m.contains("label 10"), m)
        }
        try IDX.write(IDXFile(dims: [2], data: [0, 1]), to: dir + "/t10k-labels-idx1-ubyte.gz")
        XCTAssertThrowsError(try FashionMNIST.load(split: .test, directory: dir)) { error in
            guard case ImageIOError.dataset = error else { return XCTFail("got \(error)") }
        }
    }
}
