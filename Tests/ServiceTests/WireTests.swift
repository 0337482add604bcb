import CCoalesceProto
import Engine
import Service
import XCTest

final class WireTests: XCTestCase {
    private func decode(_ bytes: [UInt8], maxBytes: Int = 1 << 20) -> Result<WireRequest, Wire.DecodeFailure> {
        bytes.withUnsafeBytes { Wire.decodeRequest($0, maxBytes: maxBytes) }
    }

    func testDecodesGenerate() throws {
        let bytes = ServiceTestSupport.generate(id: "r1", model: "tp", seed: 9, count: 3, steps: 2, progress: true)
        let req = try decode(bytes).get()
        XCTAssertEqual(req.id, "r1")
        guard case .generate(let g) = req.op else { return XCTFail("not generate: \(req.op)") }
        XCTAssertEqual(g.model, "tp")
        XCTAssertEqual(g.seed, 9)
        XCTAssertEqual(g.count, 3)
        XCTAssertEqual(g.steps, 2)
        XCTAssertTrue(g.wantProgress)
        XCTAssertEqual(g.format, .raw)
    }

    func testBadBytesAreInvalidArgument() {
        let cases: [(String, [UInt8])] = [
            ("garbage", [0xFF, 0xFE, 0x01, 0x02]),
            ("empty", []),
            ("wrong wire type", [0x08, 0x05]),
            ("truncated", Array(ServiceTestSupport.generate(id: "r", model: "a-long-model-name").dropLast(4))),
            ("no operation", ServiceTestSupport.pack(id: "x") { _, _ in }),
        ]
        for (name, bytes) in cases {
            switch decode(bytes) {
            case .success(let r): XCTFail("\(name) decoded as \(r)")
            case .failure(let f): XCTAssertEqual(f.error.code, .invalidArgument, name)
            }
        }
    }

    func testUnknownFieldsAreRefusedWithTheID() {
        let bytes = ServiceTestSupport.pack(id: "u") { _, _ in } + [0xA8, 0x06, 0x01]  // field 101 varint
        guard case .failure(let f) = decode(bytes) else { return XCTFail("accepted an unknown field") }
        XCTAssertEqual(f.id, "u")
        XCTAssertTrue(f.error.message.contains("#101"), f.error.message)
    }

    func testSizeLimits() {
        let bytes = ServiceTestSupport.generate(id: "big", model: "tp")
        guard case .failure(let f) = decode(bytes, maxBytes: 4) else { return XCTFail("size limit ignored") }
        XCTAssertTrue(f.error.message.contains("limit is 4"))
        let longID = ServiceTestSupport.generate(id: String(repeating: "i", count: 200), model: "tp")
        guard case .failure(let g) = decode(longID) else { return XCTFail("long id accepted") }
        XCTAssertTrue(g.error.message.contains("request id"))
    }

    func testEncodedErrorReplyDecodes() throws {
        let bytes = Wire.encodeReply(id: "e1", .error(.resourceExhausted, "queue full"))
        let r = try XCTUnwrap(bytes.withUnsafeBufferPointer { coalesce__v1__reply__unpack(nil, $0.count, $0.baseAddress) })
        defer { coalesce__v1__reply__free_unpacked(r, nil) }
        XCTAssertEqual(String(cString: r.pointee.id), "e1")
        XCTAssertEqual(r.pointee.kind_case, COALESCE__V1__REPLY__KIND_ERROR)
        XCTAssertEqual(r.pointee.error.pointee.code.rawValue, 3)
        XCTAssertEqual(String(cString: r.pointee.error.pointee.message), "queue full")
    }
}
