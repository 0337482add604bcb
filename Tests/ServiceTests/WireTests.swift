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

    /// One length-delimited field (tag, one-byte length, bytes).
    private func field(_ number: UInt8, _ bytes: [UInt8]) -> [UInt8] {
        precondition(bytes.count < 16384)
        let len: [UInt8] = bytes.count < 128 ? [UInt8(bytes.count)] : [UInt8(bytes.count & 0x7F) | 0x80, UInt8(bytes.count >> 7)]
        return [number << 3 | 2] + len + bytes
    }

    func testStringsMustBeUTF8WithoutNULAndWithinTheirLimit() {
        let generate = { (model: [UInt8], prompt: [UInt8]) in
            self.field(1, Array("g".utf8)) + self.field(10, self.field(1, model) + self.field(2, prompt))
        }
        let cases: [(String, [UInt8], String, String)] = [
            ("NUL in model", generate(Array("tp".utf8) + [0] + Array("../x".utf8), Array("p".utf8)), "generate.model", "g"),
            ("bad UTF-8 prompt", generate(Array("tp".utf8), [0x61, 0xFF, 0xFE]), "generate.prompt", "g"),
            ("overlong NUL", generate(Array("tp".utf8), [0xC0, 0x80]), "generate.prompt", "g"),
            ("long name", field(1, Array("l".utf8)) + field(12, field(1, [UInt8](repeating: 0x6D, count: 129))), "load_model.name", "l"),
            ("bad id", field(1, [0x69, 0xFF]) + field(14, []), "id", ""),
            ("bad id and model", field(1, [0x69, 0]) + field(10, field(1, [0xFF])), "id", ""),
        ]
        for (name, bytes, what, id) in cases {
            switch decode(bytes) {
            case .success(let r): XCTFail("\(name) decoded as \(r)")
            case .failure(let f):
                XCTAssertEqual(f.error.code, .invalidArgument, name)
                XCTAssertTrue(f.error.message.hasPrefix(what + " "), "\(name): \(f.error.message)")
                XCTAssertEqual(f.id, id, name)
            }
        }
        // Valid UTF-8 round-trips byte for byte.
        let id = "ид ✓ 😀"
        let ok = try? decode(field(1, Array(id.utf8)) + field(10, field(1, Array("tp".utf8)) + field(2, Array("é".utf8)))).get()
        XCTAssertEqual(ok?.id, id)
        if case .generate(let g)? = ok?.op { XCTAssertEqual(g.prompt, "é") } else { XCTFail("not generate") }
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
        XCTAssertTrue(g.error.message.hasPrefix("id is 200 bytes"), g.error.message)
        XCTAssertEqual(g.id, "")
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
