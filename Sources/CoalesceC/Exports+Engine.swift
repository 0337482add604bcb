// Exports for engines and models: cz_engine_*, cz_model_*, cz_string_free.
import CCoalesceAPI
import Engine
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Longest path accepted from the caller.
private let maxPathBytes = 4096

/// Applies the `threads` option once per process (see cz_engine_options.threads).
private let threadsLock = Lock()

@_cdecl("cz_engine_default_options")
public func czEngineDefaultOptions() -> cz_engine_options {
    var o = cz_engine_options()
    o.struct_size = UInt32(MemoryLayout<cz_engine_options>.stride)
    o.plugin_dir = Defaults.cPluginDirectory
    o.models_dir = Defaults.cModelsDirectory
    o.threads = 0
    o.preload = 0
    return o
}

@_cdecl("cz_engine_create")
public func czEngineCreate(_ opts: UnsafePointer<cz_engine_options>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else {
        return fail(nil, EngineError.invalidArgument("cz_engine_create: out is NULL"))
    }
    out.pointee = nil
    do {
        var o = czEngineDefaultOptions()
        if let opts {
            let size = Int(opts.pointee.struct_size)
            guard size >= MemoryLayout<cz_engine_options>.size else {
                throw EngineError.invalidArgument(
                    "cz_engine_options.struct_size is \(size), expected at least \(MemoryLayout<cz_engine_options>.size) "
                    + "(fill the struct with cz_engine_default_options)")
            }
            o = opts.pointee
        }
        let pluginDir = try readString(o.plugin_dir, name: "plugin_dir", maxBytes: maxPathBytes)
            ?? Defaults.pluginDirectory()
        let modelsDir = try readString(o.models_dir, name: "models_dir", maxBytes: maxPathBytes)
            ?? Defaults.modelsDirectory()
        guard !pluginDir.isEmpty else { throw EngineError.invalidArgument("plugin_dir is an empty string") }
        guard !modelsDir.isEmpty else { throw EngineError.invalidArgument("models_dir is an empty string") }
        guard o.threads >= 0, o.threads <= 4096 else {
            throw EngineError.invalidArgument("threads must be 0 (one per core) or 1...4096, got \(o.threads)")
        }
        guard isDirectoryPath(pluginDir) else {
            throw EngineError.notFound("plugin directory \(quoted(pluginDir)) does not exist or is not a directory "
                                       + "(set cz_engine_options.plugin_dir or COALESCE_PLUGIN_DIR)")
        }
        if o.threads > 0 {
            // Read by the backends' compute runtime when it first starts (once per process).
            threadsLock.withLock { _ = setenv("COALESCE_THREADS", String(o.threads), 1) }
        }
        let engine = CEngine(pluginDirectory: pluginDir, modelsDirectory: modelsDir)
        if o.preload != 0 {
            guard isDirectoryPath(modelsDir) else {
                throw EngineError.notFound("preload: models directory \(quoted(modelsDir)) does not exist")
            }
            engine.preloadAll()
        }
        out.pointee = engineHandles.register(engine)
        return succeed(nil)
    } catch {
        return fail(nil, error)
    }
}

@_cdecl("cz_engine_free")
public func czEngineFree(_ engine: OpaquePointer?) {
    guard let eng = engineHandles.unregister(engine) else { return }
    eng.shutdown()
}

@_cdecl("cz_model_load")
public func czModelLoad(_ engine: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                        _ modelDir: UnsafePointer<CChar>?) -> Int32 {
    guard let eng = resolveEngine(engine, call: "cz_model_load") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let n = try readString(name, name: "name", maxBytes: ModelRepository.maxNameLength) else {
            throw EngineError.invalidArgument("cz_model_load: name is NULL")
        }
        let dir = try readString(modelDir, name: "model_dir", maxBytes: maxPathBytes)
        try eng.load(name: n, directory: dir)
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}

@_cdecl("cz_model_unload")
public func czModelUnload(_ engine: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> Int32 {
    guard let eng = resolveEngine(engine, call: "cz_model_unload") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let n = try readString(name, name: "name", maxBytes: ModelRepository.maxNameLength) else {
            throw EngineError.invalidArgument("cz_model_unload: name is NULL")
        }
        try eng.unload(name: n)
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}

@_cdecl("cz_model_describe")
public func czModelDescribe(_ engine: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                            _ jsonOut: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let eng = resolveEngine(engine, call: "cz_model_describe") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let jsonOut else { throw EngineError.invalidArgument("cz_model_describe: json_out is NULL") }
        jsonOut.pointee = nil
        guard let n = try readString(name, name: "name", maxBytes: ModelRepository.maxNameLength) else {
            throw EngineError.invalidArgument("cz_model_describe: name is NULL")
        }
        let slot = try eng.slot(n)
        let st = try slot.engine.modelStatus(slot.innerName)
        guard let copy = strdup(describeJSON(name: n, directory: slot.directory, status: st)) else {
            throw EngineError.resourceExhausted("cz_model_describe: out of memory")
        }
        jsonOut.pointee = copy
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}

@_cdecl("cz_string_free")
public func czStringFree(_ s: UnsafeMutablePointer<CChar>?) {
    free(s)
}

/// The JSON of cz_model_describe: the backend's description plus what the engine knows.
func describeJSON(name: String, directory: String, status st: ModelStatus) -> String {
    let i = st.info
    let classes = i.classes.map(jsonString).joined(separator: ",")
    return "{\"name\":\(jsonString(name)),\"directory\":\(jsonString(directory)),"
        + "\"backend\":\(jsonString(st.backend)),\"backend_version\":\(jsonString(st.backendVersion)),"
        + "\"revision\":\(jsonString(st.revision)),\"generation\":\(st.generation),"
        + "\"height\":\(i.height),\"width\":\(i.width),\"channels\":\(i.channels),"
        + "\"default_steps\":\(i.defaultSteps),\"max_steps\":\(i.maxSteps),\"max_batch\":\(i.maxBatch),"
        + "\"supports_guidance\":\(i.supportsGuidance),\"classes\":[\(classes)]}"
}

/// A JSON string literal for `s` (RFC 8259; Foundation's encoder does the escaping).
func jsonString(_ s: String) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .withoutEscapingSlashes
    guard let data = try? encoder.encode(s) else { return "\"\"" }  // a String always encodes
    return String(decoding: data, as: UTF8.self)
}
