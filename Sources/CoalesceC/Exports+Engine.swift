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

/// The defaults of cz_engine_options, in this library's layout.
func defaultEngineOptions() -> cz_engine_options {
    var o = cz_engine_options()
    o.struct_size = UInt32(VersionedStruct.engineOptions.current)
    o.plugin_dir = Defaults.cPluginDirectory
    o.models_dir = Defaults.cModelsDirectory
    o.threads = 0
    o.preload = 0
    o.log = nil
    o.log_user_data = nil
    return o
}

@_cdecl("cz_engine_options_init")
public func czEngineOptionsInit(_ opts: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    do {
        guard let opts else { throw EngineError.invalidArgument("cz_engine_options_init: opts is NULL") }
        var o = defaultEngineOptions()
        o.struct_size = UInt32(truncatingIfNeeded: size)
        try VersionedStruct.engineOptions.write(o, to: opts, size: size)
        return succeed(nil)
    } catch {
        return fail(nil, error)
    }
}

/// Deprecated since 0.2, kept for programs built against 0.1: returns the 0.1 layout (frozen),
/// the size of the return slot such a program reserved. The 0.2 header replaces it with an
/// inline wrapper over cz_engine_options_init.
@_cdecl("cz_engine_default_options")
public func czEngineDefaultOptions() -> ccapi_engine_options_v0_1 {
    let o = defaultEngineOptions()
    return ccapi_engine_options_v0_1(struct_size: UInt32(VersionedStruct.engineOptions.oldest),
                                     plugin_dir: o.plugin_dir, models_dir: o.models_dir,
                                     threads: o.threads, preload: o.preload)
}

@_cdecl("cz_engine_create")
public func czEngineCreate(_ opts: UnsafeRawPointer?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else {
        return fail(nil, EngineError.invalidArgument("cz_engine_create: out is NULL"))
    }
    out.pointee = nil
    do {
        var o = defaultEngineOptions()
        if let opts {
            try VersionedStruct.engineOptions.read(opts, into: &o)
        }
        let pluginDir = try readString(o.plugin_dir, name: "plugin_dir", maxBytes: maxPathBytes)
            ?? Defaults.pluginDirectory()
        let modelsDir = try readString(o.models_dir, name: "models_dir", maxBytes: maxPathBytes)
            ?? Defaults.modelsDirectory()
        guard !pluginDir.isEmpty else { throw EngineError.invalidArgument("plugin_dir is an empty string") }
        guard !modelsDir.isEmpty else { throw EngineError.invalidArgument("models_dir is an empty string") }
        guard o.threads >= 0, o.threads <= 4096 else {
            throw EngineError.invalidArgument("threads must be 0 (the backend's default) or 1...4096, got \(o.threads)")
        }
        guard isDirectoryPath(pluginDir) else {
            throw EngineError.notFound("plugin directory \(quoted(pluginDir)) does not exist or is not a directory "
                                       + "(set cz_engine_options.plugin_dir or COALESCE_PLUGIN_DIR)")
        }
        // threads is a value of this engine: it goes to the backend with every request.
        let logger = libraryLogger(callback: o.log, userData: o.log_user_data)
        let engine = CEngine(pluginDirectory: pluginDir, modelsDirectory: modelsDir, threads: Int(o.threads),
                             logger: logger)
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

@_cdecl("cz_engine_list_models")
public func czEngineListModels(_ engine: OpaquePointer?,
                               _ namesOut: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?,
                               _ countOut: UnsafeMutablePointer<Int>?) -> Int32 {
    namesOut?.pointee = nil
    countOut?.pointee = 0
    guard let eng = resolveEngine(engine, call: "cz_engine_list_models") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let namesOut else { throw EngineError.invalidArgument("cz_engine_list_models: names_out is NULL") }
        let names = eng.modelNames()
        guard let list = calloc(names.count + 1, MemoryLayout<UnsafeMutablePointer<CChar>?>.stride)?
            .bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: names.count + 1) else {
            throw EngineError.resourceExhausted("cz_engine_list_models: out of memory")
        }
        for (i, name) in names.enumerated() {
            guard let copy = strdup(name) else {
                czStringListFree(list)
                throw EngineError.resourceExhausted("cz_engine_list_models: out of memory")
            }
            list[i] = copy
        }
        namesOut.pointee = list
        countOut?.pointee = names.count
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}

@_cdecl("cz_string_list_free")
public func czStringListFree(_ list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
    guard let list else { return }
    var i = 0
    while let s = list[i] {
        free(s)
        i += 1
    }
    free(list)
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

@_cdecl("cz_model_get_info")
public func czModelGetInfo(_ engine: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                           _ info: UnsafeMutableRawPointer?) -> Int32 {
    guard let eng = resolveEngine(engine, call: "cz_model_get_info") else { return StatusCode.invalidArgument.rawValue }
    do {
        guard let info else { throw EngineError.invalidArgument("cz_model_get_info: info is NULL") }
        let size = Int(info.load(as: UInt32.self))
        try VersionedStruct.modelInfo.check(size: size)
        guard let n = try readString(name, name: "name", maxBytes: ModelRepository.maxNameLength) else {
            throw EngineError.invalidArgument("cz_model_get_info: name is NULL")
        }
        let slot = try eng.slot(n)
        let st = try slot.engine.modelStatus(slot.innerName)
        var out = cz_model_info()
        out.struct_size = UInt32(size)
        out.height = Int32(clamping: st.info.height)
        out.width = Int32(clamping: st.info.width)
        out.channels = Int32(clamping: st.info.channels)
        out.default_steps = Int32(clamping: st.info.defaultSteps)
        out.max_steps = Int32(clamping: st.info.maxSteps)
        out.max_batch = Int32(clamping: st.info.maxBatch)
        out.supports_guidance = st.info.supportsGuidance ? 1 : 0
        out.generation = UInt64(max(0, st.generation))
        copyCString(st.backend, into: &out.backend)
        copyCString(st.backendVersion, into: &out.backend_version)
        copyCString(st.revision, into: &out.revision)
        try VersionedStruct.modelInfo.write(out, to: info, size: size)
        return succeed(eng)
    } catch {
        return fail(eng, error)
    }
}

/// Copies `s` into a fixed C char array (a tuple), NUL-terminated, cut at a UTF-8 character
/// boundary when it does not fit.
func copyCString<T>(_ s: String, into field: inout T) {
    withUnsafeMutableBytes(of: &field) { buf in
        guard buf.count > 0 else { return }
        var bytes: [UInt8] = []
        for scalar in s.unicodeScalars {
            let utf8 = Array(String(scalar).utf8)
            if bytes.count + utf8.count > buf.count - 1 { break }
            bytes += utf8
        }
        for i in 0..<buf.count { buf[i] = i < bytes.count ? bytes[i] : 0 }
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
        + "\"supports_guidance\":\(i.supportsGuidance),"
        + (i.defaultGuidance.map { "\"default_guidance\":\(Float($0)),"} ?? "")
        + "\"classes\":[\(classes)]}"
}

/// A JSON string literal for `s` (RFC 8259; Foundation's encoder does the escaping).
func jsonString(_ s: String) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .withoutEscapingSlashes
    guard let data = try? encoder.encode(s) else { return "\"\"" }  // a String always encodes
    return String(decoding: data, as: UTF8.self)
}
