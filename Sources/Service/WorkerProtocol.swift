// WorkerProtocol: the messages between the daemon and its backend worker processes
// (proto/worker.proto, package coalesce.worker.v1), as Swift values.
import CCoalesceProto
import Engine
#if canImport(Glibc)
import Glibc
#endif

/// Daemon -> worker.
enum ToWorker: Equatable {
    case generate(call: UInt64, requests: [BackendRequest], imageBytes: Int, threads: Int, progress: Bool)
    case cancel(call: UInt64)
    case ping
    case shutdown
}

/// Worker -> daemon.
enum FromWorker: Equatable {
    case ready(describeJSON: String, backend: String, version: String, pid: Int32)
    case loadFailed(EngineError)
    case progress(call: UInt64, step: Int, total: Int)
    case pixels(call: UInt64, [UInt8])
    case error(call: UInt64, EngineError)
    case pong
}

enum WorkerProtocol {
    static func encode(_ m: ToWorker) -> [UInt8] {
        let arena = Arena()
        var t = Coalesce__Worker__V1__ToWorker()
        coalesce__worker__v1__to_worker__init(&t)
        switch m {
        case .generate(let call, let requests, let imageBytes, let threads, let progress):
            t.call = call
            var g = Coalesce__Worker__V1__Generate()
            coalesce__worker__v1__generate__init(&g)
            g.n_requests = requests.count
            g.requests = arena.array(requests.map { r -> UnsafeMutablePointer<Coalesce__Worker__V1__BackendRequest>? in
                var b = Coalesce__Worker__V1__BackendRequest()
                coalesce__worker__v1__backend_request__init(&b)
                b.prompt = arena.string(r.prompt)
                b.seed = r.seed
                b.steps = r.steps
                b.count = r.count
                b.guidance = r.guidance
                return arena.box(b)
            })
            g.image_bytes = UInt32(clamping: imageBytes)
            g.threads = Int32(clamping: threads)
            g.progress = progress ? 1 : 0
            t.kind_case = COALESCE__WORKER__V1__TO_WORKER__KIND_GENERATE
            t.generate = arena.box(g)
        case .cancel(let call):
            t.call = call
            t.kind_case = COALESCE__WORKER__V1__TO_WORKER__KIND_CANCEL
            t.cancel = 1
        case .ping:
            t.kind_case = COALESCE__WORKER__V1__TO_WORKER__KIND_PING
            t.ping = 1
        case .shutdown:
            t.kind_case = COALESCE__WORKER__V1__TO_WORKER__KIND_SHUTDOWN
            t.shutdown = 1
        }
        let size = coalesce__worker__v1__to_worker__get_packed_size(&t)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBufferPointer { coalesce__worker__v1__to_worker__pack(&t, $0.baseAddress) }
        withExtendedLifetime(arena) {}
        return out
    }

    static func decodeToWorker(_ bytes: [UInt8]) -> ToWorker? {
        guard !bytes.isEmpty, let m = bytes.withUnsafeBufferPointer({
            coalesce__worker__v1__to_worker__unpack(nil, $0.count, $0.baseAddress)
        }) else { return nil }
        defer { coalesce__worker__v1__to_worker__free_unpacked(m, nil) }
        let t = m.pointee
        switch t.kind_case {
        case COALESCE__WORKER__V1__TO_WORKER__KIND_GENERATE:
            guard let g = t.generate?.pointee else { return nil }
            var reqs: [BackendRequest] = []
            for i in 0..<g.n_requests {
                guard let r = g.requests[i]?.pointee else { return nil }
                reqs.append(BackendRequest(prompt: string(r.prompt), seed: r.seed, steps: r.steps, count: r.count,
                                           guidance: r.guidance))
            }
            return .generate(call: t.call, requests: reqs, imageBytes: Int(g.image_bytes), threads: Int(g.threads),
                             progress: g.progress != 0)
        case COALESCE__WORKER__V1__TO_WORKER__KIND_CANCEL: return .cancel(call: t.call)
        case COALESCE__WORKER__V1__TO_WORKER__KIND_PING: return .ping
        case COALESCE__WORKER__V1__TO_WORKER__KIND_SHUTDOWN: return .shutdown
        default: return nil
        }
    }

    static func encode(_ m: FromWorker) -> [UInt8] {
        // Pixels are packed from where they are: one copy, into the message.
        guard case .pixels(_, let px) = m else { return encode(m, pixels: nil) }
        return px.withUnsafeBufferPointer { bytes in
            encode(m, pixels: ProtobufCBinaryData(len: bytes.count, data: UnsafeMutablePointer(mutating: bytes.baseAddress)))
        }
    }

    private static func encode(_ m: FromWorker, pixels: ProtobufCBinaryData?) -> [UInt8] {
        let arena = Arena()
        var f = Coalesce__Worker__V1__FromWorker()
        coalesce__worker__v1__from_worker__init(&f)
        func failure(_ e: EngineError) -> UnsafeMutablePointer<Coalesce__Worker__V1__Failure> {
            var x = Coalesce__Worker__V1__Failure()
            coalesce__worker__v1__failure__init(&x)
            x.code = UInt32(e.code.rawValue)
            x.message = arena.string(e.message)
            return arena.box(x)
        }
        switch m {
        case .ready(let json, let backend, let version, let pid):
            var r = Coalesce__Worker__V1__Ready()
            coalesce__worker__v1__ready__init(&r)
            r.describe_json = arena.string(json)
            r.backend = arena.string(backend)
            r.backend_version = arena.string(version)
            r.pid = UInt32(bitPattern: pid)
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_READY
            f.ready = arena.box(r)
        case .loadFailed(let e):
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_LOAD_FAILED
            f.load_failed = failure(e)
        case .progress(let call, let step, let total):
            f.call = call
            var p = Coalesce__Worker__V1__Progress()
            coalesce__worker__v1__progress__init(&p)
            p.step = Int32(clamping: step)
            p.total = Int32(clamping: total)
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_PROGRESS
            f.progress = arena.box(p)
        case .pixels(let call, _):
            f.call = call
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_PIXELS
            f.pixels = pixels ?? ProtobufCBinaryData(len: 0, data: nil)
        case .error(let call, let e):
            f.call = call
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_ERROR
            f.error = failure(e)
        case .pong:
            f.kind_case = COALESCE__WORKER__V1__FROM_WORKER__KIND_PONG
            f.pong = 1
        }
        let size = coalesce__worker__v1__from_worker__get_packed_size(&f)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBufferPointer { coalesce__worker__v1__from_worker__pack(&f, $0.baseAddress) }
        withExtendedLifetime(arena) {}
        return out
    }

    static func decodeFromWorker(_ bytes: UnsafeRawBufferPointer) -> FromWorker? {
        guard bytes.count > 0, let base = bytes.baseAddress,
              let m = coalesce__worker__v1__from_worker__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self))
        else { return nil }
        defer { coalesce__worker__v1__from_worker__free_unpacked(m, nil) }
        let f = m.pointee
        func failure(_ p: UnsafeMutablePointer<Coalesce__Worker__V1__Failure>?) -> EngineError {
            guard let x = p?.pointee else { return .internal("worker sent an empty failure") }
            let code = StatusCode(rawValue: Int32(clamping: x.code)) ?? .internal
            return EngineError(code: code == .ok ? .internal : code, message: string(x.message))
        }
        switch f.kind_case {
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_READY:
            guard let r = f.ready?.pointee else { return nil }
            return .ready(describeJSON: string(r.describe_json), backend: string(r.backend),
                          version: string(r.backend_version), pid: Int32(bitPattern: r.pid))
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_LOAD_FAILED: return .loadFailed(failure(f.load_failed))
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_PROGRESS:
            guard let p = f.progress?.pointee else { return nil }
            return .progress(call: f.call, step: Int(p.step), total: Int(p.total))
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_PIXELS:
            let px = f.pixels.len > 0 && f.pixels.data != nil
                ? Array(UnsafeBufferPointer(start: f.pixels.data, count: f.pixels.len)) : []
            return .pixels(call: f.call, px)
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_ERROR: return .error(call: f.call, failure(f.error))
        case COALESCE__WORKER__V1__FROM_WORKER__KIND_PONG: return .pong
        default: return nil
        }
    }

    private static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
    }
}
