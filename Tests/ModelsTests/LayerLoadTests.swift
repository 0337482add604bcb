import Foundation
import Models
import Tensor
import XCTest

/// `Layer.load(from:)`: parameters share the values of a mapped file (no copy, read-only) and copy
/// everything else; the same outputs either way.
final class LayerLoadTests: XCTestCase {
    func testParametersShareAMappedFileAndGiveTheSameOutputs() throws {
        var rng = RandomGenerator(seed: 3)
        let trained = Linear(64, 16, rng: &rng)
        let dir = NSTemporaryDirectory() + "coalesce-layer-load-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/linear.safetensors"
        try SafeTensors(tensors: trained.stateDict()).write(path: path)

        var rng2 = RandomGenerator(seed: 4)
        let copied = Linear(64, 16, rng: &rng2)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        try copied.load(from: try SafeTensors.decode(bytes).allTensors())  // a copy whatever COALESCE_MAP_WEIGHTS says
        let shared = Linear(64, 16, rng: &rng2)
        try shared.load(from: try SafeTensors.map(path: path).allTensors())

        XCTAssertFalse(copied.weight.isReadOnly)
        XCTAssertTrue(shared.weight.isReadOnly)
        XCTAssertTrue(shared.bias!.isReadOnly)
        XCTAssertEqual(shared.weight.array, trained.weight.array)
        let x = Tensor.randn([5, 64], rng: &rng)
        GradMode.withDisabled {
            XCTAssertEqual(shared(x).array, copied(x).array)
            shared.prepareForInference()  // packs a copy; the mapped weight is only read
            XCTAssertEqual(shared(x).array, copied(x).array)
        }
    }
}
