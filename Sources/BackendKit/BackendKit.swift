// What every Swift backend plugin needs, once: the C vtable (Include/coalesce_backend.h), error
// buffers, request parsing and validation, the describe JSON through Codable, mixed-request
// batching, progress and cancel, thread hints, and planar-float to interleaved-byte output.
// A plugin's folder then holds only its model code: a `SwiftBackend` type and a one-line
// `cz_backend_entry` that returns `BackendKit.vtable(for:)`.
import CCoalesceABI
import Foundation
import Models
import Tensor

/// One validated request as a Swift backend model sees it (the engine's own
/// `Engine.BackendRequest` is the host side of the C ABI).
public struct SwiftBackendRequest: Sendable {
    public var prompt: String
    public var seed: UInt64
    public var count: Int
    /// Network evaluations: >= 1, or -1 for "auto" where the backend supports it (0, "the
    /// default", is resolved to `defaultSteps` before the backend sees it).
    public var steps: Int
    /// The guidance scale: the request's, or the model's default when the request says 0.
    public var guidance: Float

    package init(prompt: String, seed: UInt64, count: Int, steps: Int, guidance: Float) {
        self.prompt = prompt; self.seed = seed; self.count = count; self.steps = steps; self.guidance = guidance
    }
}

/// What `describe()` reports (Include/coalesce_backend.h).
public struct BackendDescription: Encodable, Sendable {
    public var backend: String
    public var height: Int, width: Int, channels: Int
    public var defaultSteps: Int
    public var maxSteps: Int
    public var maxBatch: Int
    public var supportsGuidance: Bool
    public var supportsAutoSteps: Bool
    public var classes: [String]
    /// Guidance used when a request says 0 (only where guidance is supported).
    public var defaultGuidance: Float?

    public init(backend: String, height: Int, width: Int, channels: Int, defaultSteps: Int, maxSteps: Int,
                maxBatch: Int, supportsGuidance: Bool, supportsAutoSteps: Bool, classes: [String],
                defaultGuidance: Float? = nil) {
        self.backend = backend; self.height = height; self.width = width; self.channels = channels
        self.defaultSteps = defaultSteps; self.maxSteps = maxSteps; self.maxBatch = maxBatch
        self.supportsGuidance = supportsGuidance; self.supportsAutoSteps = supportsAutoSteps
        self.classes = classes; self.defaultGuidance = defaultGuidance
    }

    enum CodingKeys: String, CodingKey {
        case backend, height, width, channels, defaultSteps = "default_steps", maxSteps = "max_steps"
        case maxBatch = "max_batch", supportsGuidance = "supports_guidance"
        case supportsAutoSteps = "supports_auto_steps", classes, defaultGuidance = "default_guidance"
    }
}

/// Failures a backend reports; each maps to a status code and a message for the host.
public enum BackendError: Error, CustomStringConvertible {
    case invalidArgument(String)
    case cancelled
    case failed(String)

    public var description: String {
        switch self {
        case let .invalidArgument(m): return m
        case .cancelled: return "cancelled by the progress callback"
        case let .failed(m): return m
        }
    }
}

/// A loaded model of a Swift backend. `generate` may be called from several threads at once.
public protocol SwiftBackendModel: AnyObject {
    var description: BackendDescription { get }
    /// Images of `requests` (which share steps and guidance), in order, as planar floats in
    /// [0, 1] (image after image, channel planes of height x width). `progress(step, total)`
    /// after each network evaluation round; it returns false to cancel (throw
    /// `BackendError.cancelled`, or any error: the kit reports CANCELLED once cancelled).
    func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float]
    /// Extra request checks beyond the kit's (nil = fine), e.g. steps the model cannot take.
    func check(_ request: SwiftBackendRequest) -> String?
}

extension SwiftBackendModel {
    public func check(_ request: SwiftBackendRequest) -> String? { nil }
}

/// A backend: its name, version, and how to load a model directory.
public protocol SwiftBackend {
    static var name: String { get }
    static var version: String { get }
    /// Loads `directory` given its parsed config.json (whose "backend" already matched `name`).
    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel
}

/// A model directory's config.json: {"backend": ..., "weights": ..., other keys}. Typed
/// accessors validate and name the file and key in their errors.
public struct ModelDirectoryConfig {
    public let path: String
    public let object: [String: Any]

    public init(directory: String) throws {
        path = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BackendError.invalidArgument("\(path): cannot read model config")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw BackendError.invalidArgument("\(path): not a JSON object")
        }
        object = obj
    }

    public var backend: String? { object["backend"] as? String }

    /// The weights file name (inside the model directory; no slashes).
    public func weights(default name: String) throws -> String {
        let w = (object["weights"] as? String) ?? name
        guard !w.isEmpty, !w.contains("/") else {
            throw BackendError.invalidArgument("\(path): \"weights\" must be a file name inside the model directory")
        }
        return w
    }

    /// Whether a JSONSerialization value is a JSON true/false. Not `v is Bool`: on Linux the
    /// numbers 0 and 1 bridge to Bool too, which refused `"default_steps": 1`.
    static func isBool(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// An optional integer key within `range`.
    public func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = object[key] else { return nil }
        guard !Self.isBool(v), let i = v as? Int, range.contains(i) else {
            throw BackendError.invalidArgument("\(path): \"\(key)\" must be an integer in \(range.lowerBound)...\(range.upperBound), got \(v)")
        }
        return i
    }

    /// An optional number key within `range`.
    public func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = object[key] else { return nil }
        guard !Self.isBool(v), let d = v as? Double, d.isFinite, range.contains(d) else {
            throw BackendError.invalidArgument("\(path): \"\(key)\" must be a number in \(range.lowerBound)...\(range.upperBound), got \(v)")
        }
        return d
    }
}

/// Builds the C vtable of a Swift backend.
public enum BackendKit {
    /// Most images one call may ask for (`max_batch` in every Swift backend's describe JSON): the
    /// host cuts bigger requests into calls of at most this many (coalesce_backend.h), so each
    /// call is one call of the model.
    public static let maxBatch = 256

    /// The plugin's vtable; call it from `cz_backend_entry`. One backend per plugin library.
    public static func vtable<B: SwiftBackend>(for backend: B.Type) -> UnsafePointer<cz_backend_vtable> {
        lock.lock(); defer { lock.unlock() }
        if let v = table { return UnsafePointer(v) }
        registered = (name: B.name, load: { try B.load(directory: $0, config: $1) })
        let v = UnsafeMutablePointer<cz_backend_vtable>.allocate(capacity: 1)
        v.initialize(to: cz_backend_vtable(
            abi_major: UInt32(CZ_BACKEND_ABI_MAJOR),
            abi_minor: UInt32(CZ_BACKEND_ABI_MINOR),
            name: UnsafePointer(strdup(B.name)),
            version: UnsafePointer(strdup(B.version)),
            create: { dir, err, cap in BackendKit.create(dir, err, cap) },
            describe: { mp in BackendKit.box(mp).map { UnsafePointer($0.describeJSON) } },
            generate: { mp, req, px, cap, prog, user, err, errCap in
                BackendKit.generateBatch(mp, req, 1, px, cap, prog, user, err, errCap)
            },
            destroy: { mp in
                guard let mp else { return }
                Unmanaged<ModelBox>.fromOpaque(UnsafeRawPointer(mp)).release()
            },
            generate_batch: { mp, reqs, n, px, cap, prog, user, err, errCap in
                BackendKit.generateBatch(mp, reqs, n, px, cap, prog, user, err, errCap)
            }))
        table = v
        return UnsafePointer(v)
    }

    // ---- internals ----------------------------------------------------------------------

    private static let lock = NSLock()
    nonisolated(unsafe) private static var table: UnsafeMutablePointer<cz_backend_vtable>?
    nonisolated(unsafe) private static var registered: (name: String, load: (String, ModelDirectoryConfig) throws -> SwiftBackendModel)?

    final class ModelBox {
        let model: SwiftBackendModel
        let info: BackendDescription
        let describeJSON: UnsafeMutablePointer<CChar>
        init(_ model: SwiftBackendModel) {
            self.model = model
            info = model.description
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            let json = (try? enc.encode(info)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            describeJSON = strdup(json)!
        }
        deinit { free(describeJSON) }
    }

    static func box(_ p: OpaquePointer?) -> ModelBox? {
        guard let p else { return nil }
        return Unmanaged<ModelBox>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }

    public static func writeError(_ message: String, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) {
        guard let err, cap > 0 else { return }
        // Cut at a character boundary so the message stays valid UTF-8.
        var bytes: [UInt8] = []
        for ch in message.unicodeScalars {
            let u = Array(String(ch).utf8)
            if bytes.count + u.count > cap - 1 { break }
            bytes += u
        }
        for (i, b) in bytes.enumerated() { err[i] = CChar(bitPattern: b) }
        err[bytes.count] = 0
    }

    static func create(_ dir: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> OpaquePointer? {
        guard let dir else { writeError("model_dir is NULL", err, cap); return nil }
        guard let reg = registered else { writeError("backend not registered", err, cap); return nil }
        let path = String(cString: dir)
        do {
            let config = try ModelDirectoryConfig(directory: path)
            guard config.backend == reg.name else {
                throw BackendError.invalidArgument("\(config.path): \"backend\" is \(config.object["backend"].map { "\($0)" } ?? "missing"), expected \"\(reg.name)\"")
            }
            let model = try reg.load(path, config)
            return OpaquePointer(Unmanaged.passRetained(ModelBox(model)).toOpaque())
        } catch let e as BackendError {
            writeError(e.description, err, cap); return nil
        } catch {
            writeError("\(path): \(error)", err, cap); return nil
        }
    }

    static let invalid = Int32(CZ_BACKEND_INVALID_ARGUMENT.rawValue)

    /// Validates one C request against the model's description.
    static func parse(_ r: cz_backend_request, info: BackendDescription, model: SwiftBackendModel) throws -> SwiftBackendRequest {
        guard r.struct_size >= UInt32(MemoryLayout<cz_backend_request>.offset(of: \cz_backend_request.guidance)!) else {
            throw BackendError.invalidArgument("request struct_size \(r.struct_size) is too small")
        }
        guard let cPrompt = r.prompt else { throw BackendError.invalidArgument("prompt is NULL") }
        guard let prompt = String(validatingCString: cPrompt) else { throw BackendError.invalidArgument("prompt is not valid UTF-8") }
        guard r.count >= 1, Int(r.count) <= maxBatch else {
            throw BackendError.invalidArgument("count \(r.count) must be in 1...\(maxBatch) (max_batch)")
        }
        let steps: Int
        switch r.steps {
        case 0: steps = info.defaultSteps
        case -1 where info.supportsAutoSteps: steps = -1
        case 1...Int32(info.maxSteps): steps = Int(r.steps)
        default:
            throw BackendError.invalidArgument("steps \(r.steps) must be in 1...\(info.maxSteps) or 0 (default)"
                                               + (info.supportsAutoSteps ? " or -1 (auto)" : ""))
        }
        var guidance: Float = 0
        if info.supportsGuidance {
            guard r.guidance.isFinite, SamplingLimits.guidanceRange.contains(r.guidance) else {
                throw BackendError.invalidArgument("guidance \(r.guidance) must be a finite number in "
                                                   + "0...\(Int(SamplingLimits.guidanceRange.upperBound)) (0 = the model's default)")
            }
            guidance = r.guidance == 0 ? (info.defaultGuidance ?? 1) : r.guidance
        }
        let req = SwiftBackendRequest(prompt: prompt, seed: r.seed, count: Int(r.count), steps: steps, guidance: guidance)
        if let problem = model.check(req) { throw BackendError.invalidArgument(problem) }
        return req
    }

    static func generateBatch(_ mp: OpaquePointer?, _ reqs: UnsafePointer<cz_backend_request>?, _ nReqs: Int32,
                              _ pixels: UnsafeMutablePointer<UInt8>?, _ cap: Int,
                              _ progress: cz_backend_progress_fn?, _ user: UnsafeMutableRawPointer?,
                              _ err: UnsafeMutablePointer<CChar>?, _ errCap: Int) -> Int32 {
        guard let box = box(mp) else { writeError("model is NULL", err, errCap); return invalid }
        guard let reqs, nReqs >= 1 else { writeError("no requests", err, errCap); return invalid }
        guard let pixels else { writeError("pixel buffer is NULL", err, errCap); return invalid }
        let info = box.info
        let n = info.height * info.width * info.channels, plane = info.height * info.width
        var parsed: [SwiftBackendRequest] = []
        do {
            for k in 0..<Int(nReqs) { parsed.append(try parse(reqs[k], info: info, model: box.model)) }
        } catch {
            writeError("\(error)", err, errCap); return invalid
        }
        if let other = parsed.first(where: { $0.steps != parsed[0].steps || $0.guidance != parsed[0].guidance }) {
            writeError("the requests of one generate_batch call must share steps and guidance: steps \(parsed[0].steps) "
                       + "and \(other.steps), guidance \(parsed[0].guidance) and \(other.guidance)", err, errCap)
            return invalid
        }
        let total = parsed.reduce(0) { $0 + $1.count }
        guard total <= maxBatch else {
            writeError("the call asks for \(total) images; max_batch is \(maxBatch) (the host cuts bigger requests)", err, errCap)
            return invalid
        }
        guard cap >= total * n else {
            writeError("pixel buffer holds \(cap) bytes, \(total * n) needed", err, errCap); return invalid
        }
        var cancelled = false
        do {
            // The host's thread count for this call (ABI 1.2), else all cores; calls running at
            // once share the cores.
            let r0 = reqs.pointee
            let wanted = r0.struct_size >= UInt32(MemoryLayout<cz_backend_request>.size) && r0.threads > 0
                ? Int(r0.threads) : Runtime.threads
            try Runtime.sharingCores { try Runtime.withThreadCap(min(wanted, Runtime.availableThreads)) {
                let floats = try box.model.generate(parsed) { step, steps in
                    guard let progress else { return true }
                    if progress(Int32(step), Int32(steps), user) == 0 { cancelled = true; return false }
                    return true
                }
                guard floats.count == total * n else {
                    throw BackendError.failed("backend returned \(floats.count) values for \(total) images of \(n)")
                }
                // Planar floats (C, H, W) per image -> interleaved bytes (H, W, C), the ABI's layout.
                for img in 0..<total {
                    for ch in 0..<info.channels {
                        for p in 0..<plane {
                            let v = floats[img * n + ch * plane + p]
                            pixels[img * n + p * info.channels + ch] = UInt8(max(0, min(255, (v * 255).rounded())))
                        }
                    }
                }
            } }
        } catch {
            // A sampler stopped by the callback throws ModelError.cancelled; a model that throws
            // something else after a cancel is still reported as cancelled.
            var isCancel = cancelled || error as? ModelError == .cancelled
            if case BackendError.cancelled = error { isCancel = true }
            if isCancel {
                writeError("cancelled by the progress callback", err, errCap); return Int32(CZ_BACKEND_CANCELLED.rawValue)
            }
            if case let BackendError.invalidArgument(m) = error { writeError(m, err, errCap); return invalid }
            writeError("\(info.backend) generation failed: \(error)", err, errCap)
            return Int32(CZ_BACKEND_INTERNAL.rawValue)
        }
        return Int32(CZ_BACKEND_OK.rawValue)
    }
}
