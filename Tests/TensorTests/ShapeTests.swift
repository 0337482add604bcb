import Tensor
import XCTest

final class ShapeTests: XCTestCase {
    func testForward() {
        let x = Tensor((0..<6).map(Float.init), shape: [2, 3])
        XCTAssertEqual(x.reshaped([3, -1]).shape, [3, 2])
        XCTAssertEqual(x.transposedLast2().array, [0, 3, 1, 4, 2, 5])
        let c = Tensor.concat([x, Tensor([9, 9], shape: [2, 1])], axis: 1)
        XCTAssertEqual(c.array, [0, 1, 2, 9, 3, 4, 5, 9])
        XCTAssertEqual(x.slice(1..<2).array, [3, 4, 5])
        XCTAssertEqual(x.gatherRows([1, 1, 0]).array, [3, 4, 5, 3, 4, 5, 0, 1, 2])
        let parts = Tensor((0..<12).map(Float.init), shape: [2, 3, 2]).splitChannels([1, 2])
        XCTAssertEqual(parts[0].array, [0, 1, 6, 7])
        XCTAssertEqual(parts[1].array, [2, 3, 4, 5, 8, 9, 10, 11])
    }

    func testGradients() {
        let x = TestData.randn([2, 3, 4], seed: 600)
        GradCheck.check("reshaped", inputs: [x]) { x.reshaped([4, -1]) }
        GradCheck.check("transposedLast2", inputs: [x]) { x.transposedLast2() }
        let y = TestData.randn([2, 1, 4], seed: 601)
        let z = TestData.randn([2, 2, 4], seed: 602)
        GradCheck.check("concat axis 1", inputs: [x, y, z]) { Tensor.concat([x, y, z], axis: 1) }
        let w = TestData.randn([1, 3, 4], seed: 603)
        GradCheck.check("concat axis 0", inputs: [x, w]) { Tensor.concat([x, w], axis: 0) }
        let u = TestData.randn([2, 3, 2], seed: 604)
        GradCheck.check("concat axis -1", inputs: [x, u]) { Tensor.concat([x, u], axis: -1) }
        GradCheck.check("slice", inputs: [x]) { x.slice(1..<2) }
        let v = TestData.randn([2, 5, 3], seed: 605)
        GradCheck.check("splitChannels", inputs: [v]) { v.splitChannels([2, 1, 2]) }
        let table = TestData.randn([4, 3], seed: 606)
        GradCheck.check("gatherRows", inputs: [table]) { table.gatherRows([3, 0, 3, 2]) }
    }
}
