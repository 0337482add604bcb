import XCTest

final class ImageIOPlaceholderTests: XCTestCase {
    func testModuleBuilds() {}
}
