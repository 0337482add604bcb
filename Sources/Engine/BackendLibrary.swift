// BackendLibrary: one dlopen'ed backend plugin, found BY NAME in the configured plugin directory.
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

/// A loaded backend plugin (a shared library exporting `cz_backend_entry`).
///
/// Plugins are chosen by backend name (e.g. "test-pattern"), never by a path from a request:
/// the name must match `[a-z0-9][a-z0-9_-]*` and is mapped to a file inside the plugin
/// directory (`libTestPatternBackend.so`, `libtest-pattern.so`, `test-pattern.so`, first found),
/// whose vtable must report that name. The directory is never scanned: dlopen runs a library's
/// initialisers, and a SwiftPM build directory also holds libraries that must not be loaded
/// into the host (e.g. libCoalesceLib.so, which carries its own copy of Engine). An accepted
/// library stays mapped until the process exits (see `deinit`).
public final class BackendLibrary: @unchecked Sendable {
    /// The backend name the plugin reports (vtable `name`).
    public let name: String
    /// The backend version string the plugin reports.
    public let version: String
    /// ABI version the plugin was built with.
    public let abiMajor: UInt32
    public let abiMinor: UInt32
    /// The file that was loaded.
    public let path: String

    let vtable: UnsafePointer<cz_backend_vtable>
    private let handle: UnsafeMutableRawPointer

    /// Longest accepted backend name.
    public static let maxNameLength = 64

    private init(handle: UnsafeMutableRawPointer, vtable: UnsafePointer<cz_backend_vtable>, path: String) {
        self.handle = handle
        self.vtable = vtable
        self.path = path
        self.name = vtable.pointee.name.map { String(cString: $0) } ?? ""
        self.version = vtable.pointee.version.map { String(cString: $0) } ?? ""
        self.abiMajor = vtable.pointee.abi_major
        self.abiMinor = vtable.pointee.abi_minor
    }

    /// An accepted plugin stays mapped until the process exits: its code may still run after its
    /// last model is destroyed (a Swift plugin's Dispatch worker threads park inside it), and
    /// unmapping it crashed the host a second later (found by the libcoalesce tests). dlopen of
    /// the same file again returns this mapping, so keeping it costs nothing on reload.
    deinit {}

    /// True when the plugin provides the optional `generate_batch` slot (ABI minor >= 1).
    public var supportsBatch: Bool {
        abiMinor >= 1 && vtable.pointee.generate_batch != nil
    }

    /// Checks a backend name: lowercase letters, digits, '-' and '_', starting with a letter or
    /// digit, at most `maxNameLength` bytes. Anything path-like is refused.
    public static func validate(name: String) throws {
        guard !name.isEmpty, name.utf8.count <= maxNameLength else {
            throw EngineError.invalidArgument(
                "backend name must be 1...\(maxNameLength) bytes, got \(name.utf8.count)")
        }
        for (i, c) in name.utf8.enumerated() {
            let ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (i > 0 && (c == 45 || c == 95))
            if !ok {
                throw EngineError.invalidArgument(
                    "backend name \(quoted(name)) may contain only a-z, 0-9, '-' and '_' (not a path)")
            }
        }
    }

    /// File names tried, in order, for a backend name: "test-pattern" ->
    /// ["libTestPatternBackend.so", "libtest-pattern.so", "test-pattern.so"].
    public static func candidateFileNames(for name: String) -> [String] {
        let camel = name.split(whereSeparator: { $0 == "-" || $0 == "_" })
            .map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        return ["lib\(camel)Backend\(sharedLibrarySuffix)", "lib\(name)\(sharedLibrarySuffix)",
                "\(name)\(sharedLibrarySuffix)"]
    }

    #if canImport(Darwin)
    static let sharedLibrarySuffix = ".dylib"
    #else
    static let sharedLibrarySuffix = ".so"
    #endif

    /// Loads the plugin for backend `name` from `directory`.
    ///
    /// - Throws: `.invalidArgument` for a bad name; `.notFound` when no file in the directory
    ///   provides the backend; `.internal` for a file that cannot be opened, lacks
    ///   `cz_backend_entry`, returns a NULL vtable or has a different ABI major version.
    public static func load(name: String, directory: String) throws -> BackendLibrary {
        try validate(name: name)
        guard isDirectory(directory) else {
            throw EngineError.notFound("plugin directory \(quoted(directory)) does not exist")
        }
        for file in candidateFileNames(for: name) {
            let path = directory + "/" + file
            if FileManager.default.fileExists(atPath: path) {
                let lib = try open(path: path)
                guard lib.name == name else {
                    throw EngineError.internal(
                        "plugin \(quoted(path)) reports backend name \(quoted(lib.name)), expected \(quoted(name))")
                }
                return lib
            }
        }
        throw EngineError.notFound(
            "no plugin for backend \(quoted(name)) in \(quoted(directory)) "
            + "(looked for \(candidateFileNames(for: name).joined(separator: ", ")))")
    }

    /// Opens one plugin file and checks its entry symbol and ABI version. Used by `load`; public
    /// for tools and tests that vet a plugin file. Never call this with a path from a request.
    public static func open(path: String) throws -> BackendLibrary {
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw EngineError.internal("dlopen(\(quoted(path))) failed: \(lastDLError())")
        }
        guard let sym = dlsym(handle, CZ_BACKEND_ENTRY_SYMBOL) else {
            let why = lastDLError()
            dlclose(handle)
            throw EngineError.internal(
                "plugin \(quoted(path)) does not export \(CZ_BACKEND_ENTRY_SYMBOL) (dlsym: \(why))")
        }
        let entry = unsafeBitCast(sym, to: cz_backend_entry_fn.self)
        guard let vt = entry() else {
            dlclose(handle)
            throw EngineError.internal("plugin \(quoted(path)): \(CZ_BACKEND_ENTRY_SYMBOL)() returned NULL")
        }
        let major = vt.pointee.abi_major, minor = vt.pointee.abi_minor
        guard major == UInt32(CZ_BACKEND_ABI_MAJOR) else {
            dlclose(handle)  // vt is dangling from here on
            throw EngineError.internal(
                "plugin \(quoted(path)) was built for backend ABI \(major).\(minor); "
                + "this host speaks ABI \(CZ_BACKEND_ABI_MAJOR).x (major versions must match)")
        }
        guard vt.pointee.create != nil, vt.pointee.describe != nil, vt.pointee.generate != nil,
              vt.pointee.destroy != nil, vt.pointee.name != nil, vt.pointee.version != nil else {
            dlclose(handle)
            throw EngineError.internal(
                "plugin \(quoted(path)) leaves a required vtable slot NULL (name, version, create, describe, generate, destroy)")
        }
        return BackendLibrary(handle: handle, vtable: vt, path: path)
    }

    private static func lastDLError() -> String {
        guard let e = dlerror() else { return "unknown error" }
        return String(cString: e)
    }
}

/// Quotes a string for an error message, escaping control characters, at most 200 characters.
/// Public: the C library's messages quote the same way.
public func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars.prefix(200) {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 32 || scalar.value == 127: out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    if s.unicodeScalars.count > 200 { out += "..." }
    return out + "\""
}
