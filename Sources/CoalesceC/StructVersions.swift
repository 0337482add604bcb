// StructVersions: how the library reads and writes the caller's versioned structs (the rules are
// in coalesce.h, ABI STABILITY). struct_size is the size of the struct as the caller compiled it;
// every published version has a larger size than the one before, so the size names the version.
import CCoalesceAPI
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One struct of the API: its name and the C sizeof of each published version, oldest first
/// (the last is the layout this library was compiled with).
struct VersionedStruct {
    let name: String
    let versions: [(version: String, size: Int)]
    /// What the caller should do, for the messages about a bad struct_size.
    let howToFill: String

    var oldest: Int { versions[0].size }
    var current: Int { versions[versions.count - 1].size }

    static let engineOptions = VersionedStruct(name: "cz_engine_options", versions: [
        ("0.1", Int(ccapi_sizeof_engine_options_v0_1())), ("0.2", Int(ccapi_sizeof_engine_options())),
    ], howToFill: "fill it with cz_engine_options_init(&opts, sizeof opts)")
    /// cz_generate_params has not grown since 0.1.
    static let generateParams = VersionedStruct(name: "cz_generate_params", versions: [
        ("0.1", Int(ccapi_sizeof_generate_params_v0_1())),
    ], howToFill: "fill it with cz_generate_params_init(&params, sizeof params)")
    static let modelInfo = VersionedStruct(name: "cz_model_info", versions: [
        ("0.2", Int(ccapi_sizeof_model_info())),
    ], howToFill: "set info.struct_size = sizeof info before the call")

    private var known: String {
        versions.map { "\($0.size) (\($0.version))" }.joined(separator: ", ")
    }

    /// Checks a struct_size: a known version's size, or larger than the current one (a newer
    /// caller), at most CZ_MAX_STRUCT_SIZE.
    func check(size: Int) throws {
        guard size <= Int(CZ_MAX_STRUCT_SIZE) else {
            throw EngineError.invalidArgument("\(name).struct_size is \(size), more than CZ_MAX_STRUCT_SIZE "
                                              + "(\(CZ_MAX_STRUCT_SIZE)); was the struct initialised?")
        }
        guard size >= oldest else {
            throw EngineError.invalidArgument("\(name).struct_size is \(size), smaller than the oldest version "
                                              + "(\(known)); \(howToFill)")
        }
        guard size >= current || versions.contains(where: { $0.size == size }) else {
            throw EngineError.invalidArgument("\(name).struct_size is \(size), which is no version's size "
                                              + "(\(known)); \(howToFill)")
        }
    }

    /// Reads the caller's struct at `src` into `dst` (which holds the defaults): the fields its
    /// struct_size covers are copied; bytes beyond the library's layout must be 0.
    func read<T>(_ src: UnsafeRawPointer, into dst: inout T) throws {
        let size = Int(src.load(as: UInt32.self))
        try check(size: size)
        let n = min(size, current)
        withUnsafeMutableBytes(of: &dst) { d in
            d.baseAddress!.copyMemory(from: src, byteCount: min(n, d.count))
        }
        if size > current {
            let bytes = src.assumingMemoryBound(to: UInt8.self)
            for offset in current..<size where bytes[offset] != 0 {
                throw EngineError.invalidArgument(
                    "\(name) has a nonzero byte at offset \(offset), beyond the \(current) bytes this library "
                    + "(\(CZ_VERSION_STRING)) knows: the program asks for a field of a newer libcoalesce")
            }
        }
    }

    /// Writes `value` (the library's layout) into the caller's struct of `size` bytes at `dst`:
    /// the caller's bytes are zeroed, then the fields that fit are copied.
    func write<T>(_ value: T, to dst: UnsafeMutableRawPointer, size: Int) throws {
        try check(size: size)
        dst.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        withUnsafeBytes(of: value) { v in
            dst.copyMemory(from: v.baseAddress!, byteCount: min(size, current, v.count))
        }
    }
}
