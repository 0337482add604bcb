import Tensor
import XCTest

final class ReduceTests: XCTestCase {
    func testForward() {
        let x = Tensor((1...6).map(Float.init), shape: [2, 3])
        XCTAssertEqual(x.sum().item, 21)
        XCTAssertEqual(x.mean().item, 3.5)
        XCTAssertEqual(x.sumLast().array, [6, 15])
        XCTAssertEqual(x.sumLast().shape, [2, 1])
        XCTAssertEqual(x.meanLast().array, [2, 5])
    }

    func testGradients() {
        let x = TestData.randn([3, 4, 2], seed: 700)
        GradCheck.check("sum", inputs: [x]) { x.sum() }
        GradCheck.check("mean", inputs: [x]) { x.mean() }
        GradCheck.check("sumLast", inputs: [x]) { x.sumLast() }
        GradCheck.check("meanLast", inputs: [x]) { x.meanLast() }
    }
}
