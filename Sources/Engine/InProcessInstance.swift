// InProcessInstance: a model created by a plugin loaded into this process; calls go straight
// through the vtable.
import CCoalesceABI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The backend's opaque `cz_backend_model *` plus the library that made it.
public final class InProcessInstance: BackendInstance, @unchecked Sendable {
    /// The plugin (kept open while this instance lives).
    public let library: BackendLibrary
    public let describeJSON: String
    public var backendName: String { library.name }
    public var backendVersion: String { library.version }
    public var runtime: InstanceRuntime { InstanceRuntime() }

    private let handle: OpaquePointer

    /// Creates the model with the plugin's `create`.
    /// - Throws: `.internal` when a required slot is NULL or create fails (with its message).
    public init(library: BackendLibrary, model: String, directory: String) throws {
        let errCap = 1024
        var err = [CChar](repeating: 0, count: errCap)
        guard let create = library.vtable.pointee.create,
              let describe = library.vtable.pointee.describe else {
            throw EngineError.internal("backend \(quoted(library.name)): required vtable slot is NULL")
        }
        guard let h = create(directory, &err, errCap) else {
            let msg = String(cString: err)
            throw EngineError.internal("backend \(quoted(library.name)) failed to create model \(quoted(model)) from \(quoted(directory)): "
                                       + (msg.isEmpty ? "no message" : msg))
        }
        self.handle = h
        self.library = library
        self.describeJSON = describe(h).map { String(cString: $0) } ?? "{}"
    }

    deinit {
        library.vtable.pointee.destroy?(handle)
    }

    /// `stillWanted` is not asked and `progress` is called after every step whatever `everyStep`
    /// says: the backend runs in this thread, and `progress` decides at its next step.
    public func generate(_ reqs: [BackendRequest], imageBytes: Int, threads: Int, deadline: ContinuousClock.Instant?,
                         progress: ((Int, Int) -> Bool)?, everyStep: Bool = true,
                         stillWanted: (() -> Bool)? = nil) -> BackendOutput {
        do {
            let pixels = try run(reqs, imageBytes: imageBytes, threads: threads, progress: progress)
            return BackendOutput(pixels: pixels, of: reqs, imageBytes: imageBytes)
        } catch let e as EngineError {
            return BackendOutput(failing: reqs.count, with: e)
        } catch {
            return BackendOutput(failing: reqs.count, with: .internal("\(error)"))
        }
    }

    /// Runs the backend on requests that share steps and guidance, writing all images into one
    /// buffer (request after request). `progress` returns false to cancel the whole call.
    public func run(_ reqs: [BackendRequest], imageBytes: Int, threads: Int,
                    progress: ((Int, Int) -> Bool)?) throws -> [UInt8] {
        let total = reqs.reduce(0) { $0 + Int($1.count) }
        var pixels = [UInt8](repeating: 0, count: total * imageBytes)
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
        let handle = self.handle
        let rc: Int32 = pixels.withUnsafeMutableBufferPointer { px in
            cReqs.withUnsafeMutableBufferPointer { rq in
                if library.supportsBatch, let batch = vt.generate_batch {
                    return batch(handle, rq.baseAddress, Int32(rq.count), px.baseAddress, px.count,
                                 cb, ud.toOpaque(), &err, errCap)
                }
                // No batch slot: one call per request, each writing into its slice.
                var offset = 0
                for k in 0..<rq.count {
                    let bytes = Int(rq[k].count) * imageBytes
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
