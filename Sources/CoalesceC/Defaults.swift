// Defaults: where plugins and models are when the caller does not say (see cz_engine_options).
import CCoalesceAPI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum Defaults {
    /// Directory holding libcoalesce.so itself (found with dladdr), or nil.
    static let libraryDirectory: String? = {
        var buf = [CChar](repeating: 0, count: 4096)
        guard ccapi_library_path(&buf, UInt(buf.count)) == 0 else { return nil }
        let fname = String(cString: buf)
        let path = realPath(fname) ?? fname
        let (dir, _) = splitPath(path)
        return dir.isEmpty ? "/" : dir
    }()

    private static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    /// COALESCE_PLUGIN_DIR, else <libdir>/coalesce/backends (installed), else <libdir> (build tree).
    static func pluginDirectory() -> String {
        if let e = env("COALESCE_PLUGIN_DIR") { return e }
        guard let lib = libraryDirectory else { return "." }
        let installed = lib + "/coalesce/backends"
        return isDirectoryPath(installed) ? installed : lib
    }

    /// COALESCE_MODELS_DIR, else <libdir>/../share/coalesce/models.
    static func modelsDirectory() -> String {
        if let e = env("COALESCE_MODELS_DIR") { return e }
        guard let lib = libraryDirectory else { return "models" }
        let (prefix, _) = splitPath(lib)
        return (prefix.isEmpty ? "" : prefix) + "/share/coalesce/models"
    }

    /// The strings handed out by cz_engine_default_options: computed once, owned by the library
    /// for the life of the process (the header promises they stay valid).
    static let cPluginDirectory: UnsafePointer<CChar> = UnsafePointer(strdup(pluginDirectory())) ?? emptyMessage
    static let cModelsDirectory: UnsafePointer<CChar> = UnsafePointer(strdup(modelsDirectory())) ?? emptyMessage
}
