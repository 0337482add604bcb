// BackendModel: one live model instance created by a backend plugin. Reference counted: the
// Engine's registry holds one reference and every in-flight request holds one, so a swapped-out
// or unloaded instance is destroyed when its last request ends.
import CCoalesceABI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a model says about itself (the backend's `describe()` JSON).
public struct ModelInfo: Sendable, Equatable, Decodable {
    public var backend: String
    public var height: Int
    public var width: Int
    public var channels: Int
    public var defaultSteps: Int
    public var maxSteps: Int
    public var maxBatch: Int
    public var supportsGuidance: Bool
    /// Free-form revision string from the model's config when the backend reports one, else
    /// `ModelRepository.contentRevision(of:)` of the model directory (computed at load).
    public var revision: String
    public var classes: [String]

    enum CodingKeys: String, CodingKey {
        case backend, height, width, channels, revision, classes
        case defaultSteps = "default_steps", maxSteps = "max_steps", maxBatch = "max_batch"
        case supportsGuidance = "supports_guidance"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        backend = try c.decodeIfPresent(String.self, forKey: .backend) ?? ""
        height = try c.decode(Int.self, forKey: .height)
        width = try c.decode(Int.self, forKey: .width)
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? 1
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? 1
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? 1000
        maxBatch = try c.decodeIfPresent(Int.self, forKey: .maxBatch) ?? 64
        supportsGuidance = try c.decodeIfPresent(Bool.self, forKey: .supportsGuidance) ?? false
        revision = try c.decodeIfPresent(String.self, forKey: .revision) ?? ""
        classes = try c.decodeIfPresent([String].self, forKey: .classes) ?? []
    }

    /// Bytes of one image.
    public var imageBytes: Int { height * width * channels }
}

/// One request as the backend sees it (already validated by the Engine).
struct BackendRequest {
    var prompt: String
    var seed: UInt64
    var steps: Int32
    var count: Int32
    var guidance: Float
}

/// A model instance: the backend's opaque `cz_backend_model *` plus the library that made it.
public final class BackendModel: @unchecked Sendable {
    /// Registry name of the model (its directory name in the repository).
    public let name: String
    /// The model directory it was created from.
    public let directory: String
    /// What the backend reports about this instance.
    public let info: ModelInfo
    /// The plugin (kept open while this instance lives).
    public let library: BackendLibrary
    /// Monotonic load number given by the Engine (1 for the first load, +1 per hot swap).
    public let generation: Int
    /// The raw describe() JSON.
    public let describeJSON: String
    /// Compute threads passed with every request (0 = the backend's default).
    public let threads: Int

    private let handle: OpaquePointer
    private let lock = Lock()
    private var inFlightCount = 0
    private var onRelease: (@Sendable (String, Int) -> Void)?

    init(library: BackendLibrary, name: String, directory: String, generation: Int, threads: Int = 0,
         onRelease: (@Sendable (String, Int) -> Void)?) throws {
        let errCap = 1024
        var err = [CChar](repeating: 0, count: errCap)
        guard let create = library.vtable.pointee.create,
              let describe = library.vtable.pointee.describe else {
            throw EngineError.internal("backend \(quoted(library.name)): required vtable slot is NULL")
        }
        guard let h = create(directory, &err, errCap) else {
            let msg = String(cString: err)
            throw EngineError.internal("backend \(quoted(library.name)) failed to create model \(quoted(name)) from \(quoted(directory)): "
                                       + (msg.isEmpty ? "no message" : msg))
        }
        let json = describe(h).map { String(cString: $0) } ?? "{}"
        do {
            var decoded = try JSONDecoder().decode(ModelInfo.self, from: Data(json.utf8))
            // A backend that reports no revision gets one from the model directory's contents.
            if decoded.revision.isEmpty { decoded.revision = ModelRepository.contentRevision(of: directory) }
            info = decoded
        } catch {
            library.vtable.pointee.destroy?(h)
            throw EngineError.internal("backend \(quoted(library.name)) returned an invalid describe() JSON \(quoted(json)): \(error)")
        }
        guard info.height > 0, info.width > 0, info.channels > 0, info.maxBatch > 0, info.maxSteps > 0 else {
            library.vtable.pointee.destroy?(h)
            throw EngineError.internal("backend \(quoted(library.name)) describes non-positive sizes: \(json)")
        }
        guard info.defaultSteps >= 1, info.defaultSteps <= info.maxSteps else {
            library.vtable.pointee.destroy?(h)
            throw EngineError.internal("backend \(quoted(library.name)) describes default_steps \(info.defaultSteps) "
                                       + "outside 1...max_steps (\(info.maxSteps)): \(json)")
        }
        self.handle = h
        self.library = library
        self.name = name
        self.directory = directory
        self.generation = generation
        self.describeJSON = json
        self.threads = threads
        self.onRelease = onRelease
    }

    deinit {
        library.vtable.pointee.destroy?(handle)
        onRelease?(name, generation)
    }

    /// Requests currently running on this instance.
    public var inFlight: Int { lock.withLock { inFlightCount } }

    func enter() { lock.withLock { inFlightCount += 1 } }
    func leave() { lock.withLock { inFlightCount -= 1 } }

    /// Runs the backend on requests that share steps and guidance, writing all images into one
    /// buffer (request after request). `progress` returns false to cancel the whole call.
    func run(_ reqs: [BackendRequest], progress: ((Int, Int) -> Bool)?) throws -> [UInt8] {
        let total = reqs.reduce(0) { $0 + Int($1.count) }
        var pixels = [UInt8](repeating: 0, count: total * info.imageBytes)
        let errCap = 1024
        var err = [CChar](repeating: 0, count: errCap)
        let box = ProgressBox(progress)
        let ud = Unmanaged.passRetained(box)
        defer { ud.release() }
        let cb: cz_backend_progress_fn = { step, total, userData in
            guard let userData else { return 1 }
            let box = Unmanaged<ProgressBox>.fromOpaque(userData).takeUnretainedValue()
            return box.report(Int(step), Int(total)) ? 1 : 0
        }
        // Keep the prompts alive as C strings for the duration of the call.
        let cPrompts: [UnsafeMutablePointer<CChar>?] = reqs.map { strdup($0.prompt) }
        defer { cPrompts.forEach { free($0) } }
        guard !cPrompts.contains(where: { $0 == nil }) else {
            throw EngineError.resourceExhausted("out of memory copying prompts")
        }
        let vt = library.vtable.pointee
        guard let generateOne = vt.generate else {
            throw EngineError.internal("backend \(quoted(library.name)): generate slot is NULL")
        }
        var cReqs = reqs.enumerated().map { (i, r) in
            cz_backend_request(struct_size: UInt32(MemoryLayout<cz_backend_request>.stride),
                               prompt: UnsafePointer(cPrompts[i]), seed: r.seed, steps: r.steps,
                               count: r.count, guidance: r.guidance, reserved0: 0,
                               threads: Int32(clamping: threads))
        }
        let rc: Int32 = pixels.withUnsafeMutableBufferPointer { px in
            cReqs.withUnsafeMutableBufferPointer { rq in
                if library.supportsBatch, let batch = vt.generate_batch {
                    return batch(handle, rq.baseAddress, Int32(rq.count), px.baseAddress, px.count,
                                 cb, ud.toOpaque(), &err, errCap)
                }
                // No batch slot: one call per request, each writing into its slice.
                var offset = 0
                for k in 0..<rq.count {
                    let bytes = Int(rq[k].count) * info.imageBytes
                    guard let base = rq.baseAddress, let out = px.baseAddress else { return 6 }
                    let r = generateOne(handle, base + k, out + offset, bytes, cb, ud.toOpaque(), &err, errCap)
                    if r != 0 { return r }
                    offset += bytes
                }
                return 0
            }
        }
        if rc != 0 {
            let code = StatusCode(rawValue: rc) ?? .internal
            let msg = String(cString: err)
            throw EngineError(code: code == .ok ? .internal : code,
                              message: msg.isEmpty ? "backend \(quoted(library.name)) returned status \(rc)" : msg)
        }
        return pixels
    }
}

/// Carries the Swift progress closure through the C callback's user_data.
private final class ProgressBox {
    let body: ((Int, Int) -> Bool)?
    init(_ body: ((Int, Int) -> Bool)?) { self.body = body }
    func report(_ step: Int, _ total: Int) -> Bool { body?(step, total) ?? true }
}
