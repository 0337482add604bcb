// Helpers for Service tests: plugin/model locations, packing requests with the generated
// protobuf-c code, and a tiny DEALER client.
import CCoalesceProto
import CProtobufC
import CZMQ
import Engine
import Foundation
import Service
import XCTest

enum ServiceTestSupport {
    static let repoRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }()

    static let pluginDirectory: String = {
        if let env = ProcessInfo.processInfo.environment["COALESCE_PLUGIN_DIR"], !env.isEmpty { return env }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
        for dir in [exe, repoRoot + "/.build/release"]
        where FileManager.default.fileExists(atPath: dir + "/libTestPatternBackend.so") {
            return dir
        }
        return exe
    }()

    static func tempDirectory(_ test: XCTestCase) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("coalesce-service-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Packs a Request with protobuf-c; `fill` sets the operation.
    static func pack(id: String, _ fill: (inout Coalesce__V1__Request, inout Keep) -> Void) -> [UInt8] {
        var keep = Keep()
        var req = Coalesce__V1__Request()
        coalesce__v1__request__init(&req)
        req.id = keep.string(id)
        fill(&req, &keep)
        let n = coalesce__v1__request__get_packed_size(&req)
        var out = [UInt8](repeating: 0, count: n)
        _ = out.withUnsafeMutableBufferPointer { coalesce__v1__request__pack(&req, $0.baseAddress) }
        keep.release()
        return out
    }

    static func generate(id: String, model: String, seed: UInt64 = 0, count: Int32 = 1, steps: Int32 = 0,
                         progress: Bool = false) -> [UInt8] {
        pack(id: id) { req, keep in
            var g = Coalesce__V1__GenerateRequest()
            coalesce__v1__generate_request__init(&g)
            g.model = keep.string(model)
            g.seed = seed
            g.count = count
            g.steps = steps
            g.want_progress = progress ? 1 : 0
            req.kind_case = COALESCE__V1__REQUEST__KIND_GENERATE
            req.generate = keep.box(g)
        }
    }

    /// C allocations kept alive while packing.
    struct Keep {
        var blocks: [UnsafeMutableRawPointer] = []
        mutating func string(_ s: String) -> UnsafeMutablePointer<CChar> {
            let p = strdup(s)!
            blocks.append(UnsafeMutableRawPointer(p))
            return p
        }
        mutating func box<T>(_ v: T) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
            p.initialize(to: v)
            blocks.append(UnsafeMutableRawPointer(p))
            return p
        }
        mutating func release() {
            for b in blocks { free(b) }
            blocks = []
        }
    }
}

/// A decoded reply (the parts tests look at).
struct TestReply {
    var id: String
    var kind: Coalesce__V1__Reply__KindCase
    var errorCode: UInt32 = 0
    var errorMessage = ""
    var images: [[UInt8]] = []
    var revision = ""
    var progressStep = 0
}

/// A DEALER socket talking to a Service.
final class TestClient {
    let ctx: UnsafeMutableRawPointer
    let sock: ZMQSocket

    init(endpoint: String) {
        ctx = zmq_ctx_new()!
        sock = try! ZMQSocket(context: ctx, type: ZMQ_DEALER)
        try! sock.setLinger(milliseconds: 0)
        try? sock.connect(endpoint)
    }

    deinit {
        sock.close()
        zmq_ctx_term(ctx)
    }

    func send(_ bytes: [UInt8]) {
        try? sock.send(parts: [bytes])
    }

    func sendFrames(_ frames: [[UInt8]]) {
        try? sock.send(parts: frames)
    }

    /// The next reply (a message's last part), or nil after `timeoutMs`.
    func receive(timeoutMs: Int32 = 5000) -> TestReply? {
        try? sock.setReceiveTimeout(milliseconds: timeoutMs)
        guard let payload = sock.receive()?.last,
              let r = payload.withUnsafeBufferPointer({ coalesce__v1__reply__unpack(nil, $0.count, $0.baseAddress) }) else {
            return nil
        }
        defer { coalesce__v1__reply__free_unpacked(r, nil) }
        var out = TestReply(id: String(cString: r.pointee.id), kind: r.pointee.kind_case)
        switch r.pointee.kind_case {
        case COALESCE__V1__REPLY__KIND_ERROR:
            out.errorCode = r.pointee.error.pointee.code.rawValue
            out.errorMessage = String(cString: r.pointee.error.pointee.message)
        case COALESCE__V1__REPLY__KIND_IMAGES:
            let im = r.pointee.images.pointee
            out.revision = String(cString: im.revision)
            out.images = (0..<im.n_images).map { Array(UnsafeBufferPointer(start: im.images[$0].data, count: im.images[$0].len)) }
        case COALESCE__V1__REPLY__KIND_PROGRESS:
            out.progressStep = Int(r.pointee.progress.pointee.step)
        default:
            break
        }
        return out
    }
}
