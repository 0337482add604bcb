// Wire: decodes coalesce.v1.Request bytes and encodes coalesce.v1.Reply bytes with the committed
// protobuf-c code (Sources/CCoalesceProto). Everything from the network is checked here first:
// size, decodability, unknown fields, lengths of strings.
import CCoalesceProto
import CProtobufC
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Image encoding asked for by a client.
public enum ImageFormat: Int32, Sendable {
    case raw = 0
    case png = 1
}

/// A decoded GenerateRequest.
public struct GenerateOp: Sendable, Equatable {
    public var model: String
    public var prompt: String
    public var seed: UInt64
    public var steps: Int32
    public var count: Int32
    public var guidance: Float
    public var format: ImageFormat
    public var timeoutMs: UInt32
    public var wantProgress: Bool
}

/// One decoded request operation.
public enum WireOp: Sendable, Equatable {
    case generate(GenerateOp)
    case listModels
    case loadModel(String)
    case unloadModel(String)
    case health
    case metrics
    case cancel(targetID: String)
}

/// A decoded request.
public struct WireRequest: Sendable, Equatable {
    public var id: String
    public var op: WireOp
}

/// The payload of a reply.
public enum WireReply: Sendable {
    case progress(step: Int, total: Int)
    case images(ImagesPayload)
    case error(StatusCode, String)
    case models(loaded: [ModelStatus], available: [String])
    case model(ModelStatus)
    case health(HealthPayload)
    case metrics(MetricsSnapshot)
    case ack(String)

    /// True for every kind except progress.
    public var isFinal: Bool {
        if case .progress = self { return false }
        return true
    }
}

public struct ImagesPayload: Sendable {
    /// Model, backend, revision, generation and size of the images (its pixels are not read:
    /// `images` carries them).
    public var batch: ImageBatch
    public var format: ImageFormat
    /// One entry per image: its raw bytes (a range of the backend call's buffer) or its PNG.
    public var images: [ArraySlice<UInt8>]
    public var queueMs: UInt32
    public var runMs: UInt32
    public var batchRequests: UInt32
}

public struct HealthPayload: Sendable {
    public var live: Bool
    public var ready: Bool
    public var draining: Bool
    public var queueDepth: Int
    public var modelsLoaded: Int
    public var version: String
    /// Loaded models that cannot serve: (name, reason).
    public var failed: [(String, String)] = []
}

/// Decoding and encoding of protocol messages.
public enum Wire {
    /// Longest request id (and cancel target id) accepted, in bytes.
    public static let maxIDBytes = 128
    /// Longest model name accepted in generate, load_model and unload_model, in bytes: the
    /// repository's limit (`ModelRepository.maxNameLength`), so every request kind has the same.
    public static let maxNameBytes = ModelRepository.maxNameLength

    /// A decode failure: the id if it could be read (else ""), and the error to send back.
    public struct DecodeFailure: Error, Sendable {
        public var id: String
        public var error: EngineError
    }

    /// Decodes one Request. Malformed bytes, unknown fields, a missing operation, oversize strings
    /// and an oversize message all become a DecodeFailure (never a crash).
    public static func decodeRequest(_ bytes: UnsafeRawBufferPointer, maxBytes: Int) -> Result<WireRequest, DecodeFailure> {
        guard bytes.count <= maxBytes else {
            return .failure(DecodeFailure(id: "", error: .invalidArgument(
                "message is \(bytes.count) bytes; the limit is \(maxBytes)")))
        }
        guard bytes.count > 0, let base = bytes.baseAddress else {
            return .failure(DecodeFailure(id: "", error: .invalidArgument("empty message: expected a coalesce.v1.Request")))
        }
        guard let req = coalesce__v1__request__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            return .failure(DecodeFailure(id: "", error: .invalidArgument(
                "malformed message: not a valid coalesce.v1.Request (bad wire type, truncated field or invalid UTF-8)")))
        }
        defer { coalesce__v1__request__free_unpacked(req, nil) }
        let r = req.pointee
        // Strings are checked in the raw bytes: after this, every C string below holds exactly the
        // bytes sent (no NUL inside, valid UTF-8), so the id is echoed byte for byte.
        if let p = checkStrings(bytes) {
            return .failure(DecodeFailure(id: p.isID ? "" : string(r.id), error: .invalidArgument(p.message)))
        }
        let id = string(r.id)
        func fail(_ msg: String) -> Result<WireRequest, DecodeFailure> {
            .failure(DecodeFailure(id: id, error: .invalidArgument(msg)))
        }
        if r.base.n_unknown_fields > 0 {
            return fail("unknown field(s) in Request: \(unknownTags(r.base)) (this daemon speaks coalesce.v1)")
        }
        func checkSub(_ base: ProtobufCMessage, _ what: String) -> String? {
            base.n_unknown_fields > 0 ? "unknown field(s) in \(what): \(unknownTags(base))" : nil
        }
        // Lengths, NUL bytes and UTF-8 were checked by checkStrings.
        func name(_ p: UnsafeMutablePointer<CChar>?, _ what: String) -> Result<String, DecodeFailure> {
            .success(string(p))
        }
        switch r.kind_case {
        case COALESCE__V1__REQUEST__KIND_GENERATE:
            guard let g = r.generate?.pointee else { return fail("generate is empty") }
            if let m = checkSub(g.base, "GenerateRequest") { return fail(m) }
            let model: String
            switch name(g.model, "model name") {
            case .success(let s): model = s
            case .failure(let f): return .failure(f)
            }
            guard !model.isEmpty else { return fail("generate.model is required") }
            guard let format = ImageFormat(rawValue: Int32(bitPattern: g.format.rawValue)) else {
                return fail("generate.format \(g.format.rawValue) is not a known ImageFormat (0 RAW, 1 PNG)")
            }
            return .success(WireRequest(id: id, op: .generate(GenerateOp(
                model: model, prompt: string(g.prompt), seed: g.seed, steps: g.steps,
                count: g.count, guidance: g.guidance, format: format,
                timeoutMs: g.timeout_ms, wantProgress: g.want_progress != 0))))
        case COALESCE__V1__REQUEST__KIND_LIST_MODELS:
            if let s = r.list_models?.pointee, let m = checkSub(s.base, "ListModelsRequest") { return fail(m) }
            return .success(WireRequest(id: id, op: .listModels))
        case COALESCE__V1__REQUEST__KIND_LOAD_MODEL:
            guard let s = r.load_model?.pointee else { return fail("load_model is empty") }
            if let m = checkSub(s.base, "LoadModelRequest") { return fail(m) }
            return name(s.name, "model name").map { WireRequest(id: id, op: .loadModel($0)) }
        case COALESCE__V1__REQUEST__KIND_UNLOAD_MODEL:
            guard let s = r.unload_model?.pointee else { return fail("unload_model is empty") }
            if let m = checkSub(s.base, "UnloadModelRequest") { return fail(m) }
            return name(s.name, "model name").map { WireRequest(id: id, op: .unloadModel($0)) }
        case COALESCE__V1__REQUEST__KIND_HEALTH:
            if let s = r.health?.pointee, let m = checkSub(s.base, "HealthRequest") { return fail(m) }
            return .success(WireRequest(id: id, op: .health))
        case COALESCE__V1__REQUEST__KIND_METRICS:
            if let s = r.metrics?.pointee, let m = checkSub(s.base, "MetricsRequest") { return fail(m) }
            return .success(WireRequest(id: id, op: .metrics))
        case COALESCE__V1__REQUEST__KIND_CANCEL:
            guard let s = r.cancel?.pointee else { return fail("cancel is empty") }
            if let m = checkSub(s.base, "CancelRequest") { return fail(m) }
            return name(s.target_id, "cancel target id").map { WireRequest(id: id, op: .cancel(targetID: $0)) }
        default:
            return fail("request has no operation (set one of generate, list_models, load_model, unload_model, health, metrics, cancel)")
        }
    }

    /// The id of an encoded Reply and whether it is final (any kind but progress); nil when the
    /// bytes are not a Reply. The broker uses it to see when a daemon is done with a request.
    public static func replyInfo(_ bytes: UnsafeRawBufferPointer) -> (id: String, isFinal: Bool)? {
        guard let base = bytes.baseAddress, bytes.count > 0,
              let r = coalesce__v1__reply__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else { return nil }
        defer { coalesce__v1__reply__free_unpacked(r, nil) }
        return (string(r.pointee.id), r.pointee.kind_case != COALESCE__V1__REPLY__KIND_PROGRESS)
    }

    /// Encodes a Reply. The images of an images reply are packed from where they are (the
    /// backend call's buffer, or each PNG): one copy, into the message.
    public static func encodeReply(id: String, _ payload: WireReply) -> [UInt8] {
        guard case .images(let im) = payload else { return encodeReply(id: id, payload, imageData: []) }
        var data: [ProtobufCBinaryData] = []
        data.reserveCapacity(im.images.count)
        return pinned(im.images, from: 0, into: &data) { encodeReply(id: id, payload, imageData: $0) }
    }

    /// Calls `body` with the address and length of each of `images`, valid during the call.
    private static func pinned<R>(_ images: [ArraySlice<UInt8>], from i: Int, into data: inout [ProtobufCBinaryData],
                                  _ body: ([ProtobufCBinaryData]) -> R) -> R {
        guard i < images.count else { return body(data) }
        return images[i].withUnsafeBufferPointer { bytes in
            data.append(ProtobufCBinaryData(len: bytes.count, data: UnsafeMutablePointer(mutating: bytes.baseAddress)))
            return pinned(images, from: i + 1, into: &data, body)
        }
    }

    private static func encodeReply(id: String, _ payload: WireReply, imageData: [ProtobufCBinaryData]) -> [UInt8] {
        let arena = Arena()
        var reply = Coalesce__V1__Reply()
        coalesce__v1__reply__init(&reply)
        reply.id = arena.string(id)
        switch payload {
        case .progress(let step, let total):
            var p = Coalesce__V1__Progress()
            coalesce__v1__progress__init(&p)
            p.step = Int32(clamping: step)
            p.total = Int32(clamping: total)
            reply.kind_case = COALESCE__V1__REPLY__KIND_PROGRESS
            reply.progress = arena.box(p)
        case .images(let im):
            var m = Coalesce__V1__Images()
            coalesce__v1__images__init(&m)
            m.model = arena.string(im.batch.model)
            m.backend = arena.string(im.batch.backend)
            m.revision = arena.string(im.batch.revision)
            m.generation = UInt64(im.batch.generation)
            m.width = UInt32(im.batch.width)
            m.height = UInt32(im.batch.height)
            m.channels = UInt32(im.batch.channels)
            m.format = Coalesce__V1__ImageFormat(rawValue: UInt32(im.format.rawValue))
            m.n_images = imageData.count
            m.images = arena.array(imageData)
            m.queue_ms = im.queueMs
            m.run_ms = im.runMs
            m.batch_requests = im.batchRequests
            reply.kind_case = COALESCE__V1__REPLY__KIND_IMAGES
            reply.images = arena.box(m)
        case .error(let code, let message):
            var e = Coalesce__V1__Error()
            coalesce__v1__error__init(&e)
            e.code = Coalesce__V1__ErrorCode(rawValue: UInt32(code.rawValue))
            e.message = arena.string(message)
            reply.kind_case = COALESCE__V1__REPLY__KIND_ERROR
            reply.error = arena.box(e)
        case .models(let loaded, let available):
            var l = Coalesce__V1__ModelList()
            coalesce__v1__model_list__init(&l)
            l.n_loaded = loaded.count
            l.loaded = arena.array(loaded.map { Optional(arena.box(modelInfo($0, arena))) })
            l.n_available = available.count
            l.available = arena.array(available.map { Optional(arena.string($0)) })
            reply.kind_case = COALESCE__V1__REPLY__KIND_MODELS
            reply.models = arena.box(l)
        case .model(let status):
            reply.kind_case = COALESCE__V1__REPLY__KIND_MODEL
            reply.model = arena.box(modelInfo(status, arena))
        case .health(let h):
            var m = Coalesce__V1__Health()
            coalesce__v1__health__init(&m)
            m.live = h.live ? 1 : 0
            m.ready = h.ready ? 1 : 0
            m.draining = h.draining ? 1 : 0
            m.queue_depth = UInt32(clamping: h.queueDepth)
            m.models_loaded = UInt32(clamping: h.modelsLoaded)
            m.version = arena.string(h.version)
            m.n_failed = h.failed.count
            m.failed = arena.array(h.failed.map { (name, reason) -> UnsafeMutablePointer<Coalesce__V1__ModelFailure>? in
                var f = Coalesce__V1__ModelFailure()
                coalesce__v1__model_failure__init(&f)
                f.name = arena.string(name)
                f.reason = arena.string(reason)
                return arena.box(f)
            })
            reply.kind_case = COALESCE__V1__REPLY__KIND_HEALTH
            reply.health = arena.box(m)
        case .metrics(let s):
            reply.kind_case = COALESCE__V1__REPLY__KIND_METRICS
            reply.metrics = arena.box(metrics(s, arena))
        case .ack(let message):
            var a = Coalesce__V1__Ack()
            coalesce__v1__ack__init(&a)
            a.message = arena.string(message)
            reply.kind_case = COALESCE__V1__REPLY__KIND_ACK
            reply.ack = arena.box(a)
        }
        let size = coalesce__v1__reply__get_packed_size(&reply)
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBufferPointer { coalesce__v1__reply__pack(&reply, $0.baseAddress) }
        if written != size { out.removeLast(max(0, size - written)) }
        withExtendedLifetime(arena) {}
        return out
    }

    private static func modelInfo(_ s: ModelStatus, _ arena: Arena) -> Coalesce__V1__ModelInfo {
        var m = Coalesce__V1__ModelInfo()
        coalesce__v1__model_info__init(&m)
        m.name = arena.string(s.name)
        m.backend = arena.string(s.backend)
        m.backend_version = arena.string(s.backendVersion)
        m.revision = arena.string(s.revision)
        m.generation = UInt64(s.generation)
        m.width = UInt32(s.info.width)
        m.height = UInt32(s.info.height)
        m.channels = UInt32(s.info.channels)
        m.default_steps = Int32(clamping: s.info.defaultSteps)
        m.max_steps = Int32(clamping: s.info.maxSteps)
        m.max_batch = Int32(clamping: s.info.maxBatch)
        m.supports_guidance = s.info.supportsGuidance ? 1 : 0
        m.in_flight = UInt32(clamping: s.inFlight)
        m.state = arena.string(s.runtime.state.name)
        m.failure = arena.string(s.runtime.state.reason)
        m.worker_pid = UInt32(clamping: s.runtime.workerPID ?? 0)
        m.worker_rss_bytes = s.runtime.workerRSSBytes
        m.worker_restarts = UInt32(clamping: s.runtime.restarts)
        return m
    }

    private static func metrics(_ s: MetricsSnapshot, _ arena: Arena) -> Coalesce__V1__Metrics {
        var m = Coalesce__V1__Metrics()
        coalesce__v1__metrics__init(&m)
        m.queue_depth = UInt32(clamping: s.queueDepth)
        m.queue_capacity = UInt32(clamping: s.queueCapacity)
        m.in_flight = UInt32(clamping: s.inFlight)
        m.n_requests_by_outcome = s.outcomes.count
        m.requests_by_outcome = arena.array(s.outcomes.map { (code, n) -> UnsafeMutablePointer<Coalesce__V1__OutcomeCount>? in
            var o = Coalesce__V1__OutcomeCount()
            coalesce__v1__outcome_count__init(&o)
            o.outcome = Coalesce__V1__ErrorCode(rawValue: UInt32(code.rawValue))
            o.count = n
            return arena.box(o)
        })
        m.n_latency = s.latencyBuckets.count
        m.latency = arena.array(s.latencyBuckets.map { (le, n) -> UnsafeMutablePointer<Coalesce__V1__HistogramBucket>? in
            var b = Coalesce__V1__HistogramBucket()
            coalesce__v1__histogram_bucket__init(&b)
            b.le_ms = le
            b.count = n
            return arena.box(b)
        })
        m.latency_count = s.latencyCount
        m.latency_sum_ms = s.latencySumMs
        m.n_per_model = s.perModel.count
        m.per_model = arena.array(s.perModel.map { c -> UnsafeMutablePointer<Coalesce__V1__ModelCounts>? in
            var x = Coalesce__V1__ModelCounts()
            coalesce__v1__model_counts__init(&x)
            x.model = arena.string(c.model)
            x.requests = c.requests
            x.images = c.images
            x.errors = c.errors
            return arena.box(x)
        })
        m.batches = s.batches
        m.batched_requests = s.batchedRequests
        m.malformed = s.malformed
        m.n_workers = s.workers.count
        m.workers = arena.array(s.workers.map { w -> UnsafeMutablePointer<Coalesce__V1__WorkerProcess>? in
            var x = Coalesce__V1__WorkerProcess()
            coalesce__v1__worker_process__init(&x)
            x.model = arena.string(w.model)
            x.pid = UInt32(clamping: w.pid)
            x.rss_bytes = w.rssBytes
            x.state = arena.string(w.state)
            return arena.box(x)
        })
        m.daemon_rss_bytes = s.daemonRSSBytes
        return m
    }

    private static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
    }

    private static func unknownTags(_ base: ProtobufCMessage) -> String {
        guard let f = base.unknown_fields else { return "?" }
        return (0..<min(Int(base.n_unknown_fields), 8)).map { "#\(f[Int($0)].tag)" }.joined(separator: ", ")
    }
}

/// C allocations that live until the arena is released (one per encoded reply).
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for b in blocks { free(b) }
    }

    private func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        // malloc(0) may return NULL; always ask for at least one byte.
        guard let p = malloc(max(bytes, 1)) else { fatalError("out of memory encoding a reply") }
        blocks.append(p)
        return p
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8)
        let p = raw(utf8.count + 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
        utf8.withUnsafeBufferPointer { src in
            for i in 0..<src.count { p[i] = CChar(bitPattern: src[i]) }
        }
        p[utf8.count] = 0
        return p
    }

    func box<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let p = raw(MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
        p.initialize(to: value)
        return p
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let p = raw(MemoryLayout<T>.stride * max(values.count, 1)).bindMemory(to: T.self, capacity: max(values.count, 1))
        for (i, v) in values.enumerated() { (p + i).initialize(to: v) }
        return p
    }
}
