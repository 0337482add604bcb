// Exports for generation: cz_generate_params_init, cz_generate (and the deprecated
// cz_generate_default_params).
import CCoalesceAPI
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The defaults of cz_generate_params, in this library's layout.
func defaultGenerateParams() -> cz_generate_params {
    var p = cz_generate_params()
    p.struct_size = UInt32(VersionedStruct.generateParams.current)
    p.model = nil
    p.prompt = nil
    p.seed = 0
    p.steps = 0
    p.count = 1
    p.guidance = 0
    p.progress = nil
    p.user_data = nil
    p.timeout_ms = 0
    return p
}

@_cdecl("cz_generate_params_init")
public func czGenerateParamsInit(_ params: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    do {
        guard let params else { throw EngineError.invalidArgument("cz_generate_params_init: params is NULL") }
        var p = defaultGenerateParams()
        p.struct_size = UInt32(truncatingIfNeeded: size)
        try VersionedStruct.generateParams.write(p, to: params, size: size)
        return succeed(nil)
    } catch {
        return fail(nil, error)
    }
}

/// Deprecated since 0.2, kept for programs built against 0.1: returns the 0.1 layout (frozen).
/// The 0.2 header replaces it with an inline wrapper over cz_generate_params_init.
@_cdecl("cz_generate_default_params")
public func czGenerateDefaultParams() -> ccapi_generate_params_v0_1 {
    let p = defaultGenerateParams()
    return ccapi_generate_params_v0_1(struct_size: UInt32(VersionedStruct.generateParams.oldest), model: nil,
                                      prompt: nil, seed: p.seed, steps: p.steps, count: p.count,
                                      guidance: p.guidance, progress: nil, user_data: nil, timeout_ms: 0)
}

@_cdecl("cz_generate")
public func czGenerate(_ engine: OpaquePointer?, _ params: UnsafePointer<cz_generate_params>?,
                       _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    out?.pointee = nil
    guard let eng = resolveEngine(engine, call: "cz_generate") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let out else { throw EngineError.invalidArgument("cz_generate: out is NULL") }
        guard let params else { throw EngineError.invalidArgument("cz_generate: params is NULL") }
        var p = defaultGenerateParams()
        try VersionedStruct.generateParams.read(UnsafeRawPointer(params), into: &p)
        guard let model = try readString(p.model, name: "model", maxBytes: ModelRepository.maxNameLength) else {
            throw EngineError.invalidArgument("cz_generate: params.model is NULL (name a loaded model)")
        }
        let prompt = try readString(p.prompt, name: "prompt", maxBytes: Int(CZ_MAX_PROMPT_BYTES)) ?? ""
        // count, steps and guidance are checked by the engine (Engine.validate), with the messages
        // every face gives.
        let slot = try eng.slot(model)
        var request = GenerateRequest(model: slot.innerName, prompt: prompt, seed: p.seed, steps: p.steps,
                                      count: p.count, guidance: p.guidance)
        if p.timeout_ms > 0 {
            request.deadline = ContinuousClock.now + .milliseconds(Int64(p.timeout_ms))
        }
        var handler: ProgressHandler? = nil
        if let fn = p.progress {
            let ud = p.user_data
            handler = { prog in
                fn(Int32(clamping: prog.step), Int32(clamping: prog.total), ud) != 0
            }
        }
        let batch: ImageBatch
        do {
            batch = try slot.engine.generate(request, progress: handler)
        } catch let e as EngineError where e.code == .notFound && !eng.isCurrent(slot, for: model) {
            // Unloaded or swapped to another directory between lookup and run: say so plainly.
            throw EngineError.unavailable("model \(quoted(model)) was unloaded while the request started; retry")
        }
        guard batch.count == max(1, Int(p.count)), batch.pixels.count == batch.count * batch.imageBytes else {
            throw EngineError.internal("engine returned \(batch.count) images / \(batch.pixels.count) bytes for \(p.count) requested")
        }
        out.pointee = batchHandles.register(CImageBatch(batch, firstSeed: p.seed))
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}
