// CoalesceC: libcoalesce.so, the engine as a C library. The contract is Include/coalesce.h;
// this module implements it with @_cdecl functions over the Engine module.
//
// Rules every exported function follows:
//  - It never traps on caller input: pointers are checked for NULL and, for handles, against the
//    registry of live handles (Handles.swift); numbers are range-checked before any conversion.
//  - Failure returns a cz_status and records a message (ErrorStore.swift): per (engine, thread)
//    for calls on an engine, thread-local for the others. Success clears that message.
//  - Exported names are exactly the header's; exports.map keeps everything else local.
import CCoalesceAPI
import CCoalesceKernels
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Version, status strings, messages, diagnostics

private let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(CZ_VERSION_STRING)) ?? emptyMessage

@_cdecl("cz_version")
public func czVersion() -> UnsafePointer<CChar>? {
    versionString
}

@_cdecl("cz_version_number")
public func czVersionNumber() -> Int32 {
    Int32(CZ_VERSION_MAJOR * 10000 + CZ_VERSION_MINOR * 100 + CZ_VERSION_PATCH)
}

private let statusNames: [UnsafePointer<CChar>] = ([
    "CZ_OK", "CZ_INVALID_ARGUMENT", "CZ_NOT_FOUND", "CZ_RESOURCE_EXHAUSTED", "CZ_CANCELLED",
    "CZ_DEADLINE_EXCEEDED", "CZ_INTERNAL", "CZ_UNAVAILABLE",
] as [String]).map { UnsafePointer(strdup($0)) ?? emptyMessage }
private let unknownStatus: UnsafePointer<CChar> = UnsafePointer(strdup("CZ_UNKNOWN_STATUS")) ?? emptyMessage

@_cdecl("cz_status_string")
public func czStatusString(_ status: Int32) -> UnsafePointer<CChar>? {
    guard status >= 0, Int(status) < statusNames.count else { return unknownStatus }
    return statusNames[Int(status)]
}

@_cdecl("cz_engine_errmsg")
public func czEngineErrmsg(_ engine: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard engine != nil else { return threadMessage() }
    guard let eng = engineHandles.resolve(engine) else {
        // Not a live engine: the call that was given it recorded its message thread-locally.
        return threadMessage()
    }
    return eng.messages.get()
}

/// Deprecated in 0.3: generation runs on Coalesce's own kernels and never loads OpenBLAS.
@_cdecl("cz_blas_core")
public func czBlasCore() -> UnsafePointer<CChar>? {
    UnsafeRawPointer(("none" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("cz_kernel_isa")
public func czKernelIsa() -> UnsafePointer<CChar>? {
    cck_isa_name(cck_best_isa())
}

// MARK: - Status helpers shared by the exports

/// Records `error` for the calling thread (on `engine`, or thread-locally) and returns its code.
func fail(_ engine: CEngine?, _ error: Error) -> Int32 {
    let e: EngineError
    if let ee = error as? EngineError {
        e = ee
    } else {
        e = .internal("\(error)")
    }
    if let engine {
        engine.messages.set(e.message)
    } else {
        setThreadMessage(e.message)
    }
    return e.code.rawValue
}

/// Records success (clears the calling thread's message) and returns CZ_OK.
func succeed(_ engine: CEngine?) -> Int32 {
    if let engine {
        engine.messages.set("")
    } else {
        setThreadMessage("")
    }
    return StatusCode.ok.rawValue
}

/// Resolves an engine handle, or records why not (thread-locally) and returns nil.
func resolveEngine(_ handle: OpaquePointer?, call: String) -> CEngine? {
    guard handle != nil else {
        setThreadMessage("\(call): engine is NULL")
        return nil
    }
    guard let eng = engineHandles.resolve(handle) else {
        setThreadMessage("\(call): engine is not a live cz_engine (freed already, or not from cz_engine_create)")
        return nil
    }
    return eng
}

/// Reads a C string argument: nil if NULL; throws for invalid UTF-8 or more than `maxBytes`.
func readString(_ p: UnsafePointer<CChar>?, name: String, maxBytes: Int) throws -> String? {
    guard let p else { return nil }
    let n = strnlen(p, maxBytes + 1)
    guard n <= maxBytes else {
        throw EngineError.invalidArgument("\(name) is longer than \(maxBytes) bytes")
    }
    guard let s = String(validatingCString: p) else {
        throw EngineError.invalidArgument("\(name) is not valid UTF-8")
    }
    return s
}
