// ServiceClient: a small synchronous Swift client for coalesced (for `coalesce generate --remote`
// and tests). One DEALER socket; one request in flight at a time; not thread-safe.
import CCoalesceProto
import CProtobufC
import CZMQ
import Engine

public final class ServiceClient {
    public let endpoint: String
    public var timeout: Duration
    private let ctx: UnsafeMutableRawPointer
    private let socket: ZMQSocket
    private var counter = 0

    /// Connects (lazily, as ZeroMQ does) to `endpoint`. `curve` = (server public key, client public
    /// key, client secret key), Z85, for a daemon running CurveZMQ.
    public init(endpoint: String, timeout: Duration = .seconds(30),
                curve: (serverKey: String, publicKey: String, secretKey: String)? = nil) throws {
        guard let ctx = zmq_ctx_new() else { throw ServiceError.system(call: "zmq_ctx_new", errno: zmq_errno()) }
        let socket: ZMQSocket
        do {
            socket = try ZMQSocket(context: ctx, type: ZMQ_DEALER)
        } catch {
            zmq_ctx_term(ctx)
            throw error
        }
        self.ctx = ctx
        self.socket = socket
        self.endpoint = endpoint
        self.timeout = timeout
        // From here a throw runs deinit, which closes the socket and terminates the context.
        try socket.setLinger(milliseconds: 0)
        if let curve {
            try socket.setCurveClient(serverKey: curve.serverKey, publicKey: curve.publicKey, secretKey: curve.secretKey)
        }
        try socket.connect(endpoint)
    }

    deinit {
        socket.close()
        zmq_ctx_term(ctx)
    }

    /// Generates remotely. `request.deadline` is ignored (use `timeoutMs`); `progress` is called
    /// for every progress reply. - Throws: `EngineError` with the daemon's code and message, or
    /// `.deadlineExceeded` when no final reply comes within `timeout`.
    public func generate(_ request: GenerateRequest, timeoutMs: UInt32 = 0,
                         progress: ((GenerateProgress) -> Void)? = nil) throws -> ImageBatch {
        counter += 1
        let id = "swift-\(counter)"
        let arena = Arena()
        var g = Coalesce__V1__GenerateRequest()
        coalesce__v1__generate_request__init(&g)
        g.model = arena.string(request.model)
        g.prompt = arena.string(request.prompt)
        g.seed = request.seed
        g.steps = request.steps
        g.count = request.count
        g.guidance = request.guidance
        g.timeout_ms = timeoutMs
        g.want_progress = progress == nil ? 0 : 1
        var req = Coalesce__V1__Request()
        coalesce__v1__request__init(&req)
        req.id = arena.string(id)
        req.kind_case = COALESCE__V1__REQUEST__KIND_GENERATE
        req.generate = arena.box(g)
        var bytes = [UInt8](repeating: 0, count: coalesce__v1__request__get_packed_size(&req))
        _ = bytes.withUnsafeMutableBufferPointer { coalesce__v1__request__pack(&req, $0.baseAddress) }
        withExtendedLifetime(arena) {}
        try socket.send(parts: [bytes])

        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw EngineError.deadlineExceeded("no reply from \(endpoint) within \(timeout)")
            }
            var item = socket.pollItem()
            let ms = max(1, Int(milliseconds(left)))
            guard zmq_poll(&item, 1, ms) > 0 else { continue }
            guard let parts = socket.receive() else { continue }
            // A daemon's reply is one part; each part is read as a reply.
            for part in parts {
                guard let reply = part.withUnsafeBufferPointer({ coalesce__v1__reply__unpack(nil, $0.count, $0.baseAddress) }) else {
                    throw EngineError.internal("undecodable reply from \(endpoint)")
                }
                defer { coalesce__v1__reply__free_unpacked(reply, nil) }
                let r = reply.pointee
                guard let rid = r.id, String(cString: rid) == id else { continue }  // a stale reply
                switch r.kind_case {
                case COALESCE__V1__REPLY__KIND_PROGRESS:
                    if let p = r.progress?.pointee { progress?(GenerateProgress(step: Int(p.step), total: Int(p.total))) }
                case COALESCE__V1__REPLY__KIND_ERROR:
                    let e = r.error?.pointee
                    let code = StatusCode(rawValue: Int32(bitPattern: e?.code.rawValue ?? 6)) ?? .internal
                    throw EngineError(code: code, message: e?.message.map { String(cString: $0) } ?? "")
                case COALESCE__V1__REPLY__KIND_IMAGES:
                    guard let im = r.images?.pointee else { throw EngineError.internal("empty images reply") }
                    var pixels: [UInt8] = []
                    for i in 0..<im.n_images {
                        let b = im.images[i]
                        if let d = b.data { pixels += UnsafeBufferPointer(start: d, count: b.len) }
                    }
                    let str = { (p: UnsafeMutablePointer<CChar>?) in p.map { String(cString: $0) } ?? "" }
                    return ImageBatch(model: str(im.model), backend: str(im.backend), backendVersion: "",
                                      revision: str(im.revision), generation: Int(im.generation), width: Int(im.width),
                                      height: Int(im.height), channels: Int(im.channels), count: Int(im.n_images),
                                      pixels: pixels)
                default:
                    throw EngineError.internal("unexpected reply kind \(r.kind_case.rawValue) to generate")
                }
            }
        }
    }
}
