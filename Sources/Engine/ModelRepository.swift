// ModelRepository: a directory of models, `<root>/<model-name>/config.json` plus weights.
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

/// The part of a model's `config.json` the Engine reads and checks for every backend; backends
/// read (and check) the rest themselves. Decoding validates type and range of each field and
/// throws `EngineError.invalidArgument` naming the field.
public struct ModelConfig: Sendable, Equatable, Decodable {
    /// Backend name, e.g. "test-pattern" or "coalescer" (chooses the plugin).
    public var backend: String
    /// Steps used when a request asks for the default, if the config sets it (1...maxSteps).
    public var defaultSteps: Int?
    /// Free-form revision string.
    public var revision: String?
    /// Weights file name inside the model directory (no path), if the config names one.
    public var weights: String?

    /// Largest `default_steps` any config may ask for (`EngineLimits.stepLimit`, CZ_MAX_STEPS).
    public static let maxSteps = Int(EngineLimits.stepLimit)

    enum CodingKeys: String, CodingKey {
        case backend, revision, weights
        case defaultSteps = "default_steps"
    }

    public init(backend: String, defaultSteps: Int? = nil, revision: String? = nil, weights: String? = nil) {
        self.backend = backend
        self.defaultSteps = defaultSteps
        self.revision = revision
        self.weights = weights
    }

    public init(from decoder: Decoder) throws {
        let c: KeyedDecodingContainer<CodingKeys>
        do {
            c = try decoder.container(keyedBy: CodingKeys.self)
        } catch {
            throw EngineError.invalidArgument("it is not a JSON object")
        }
        guard c.contains(.backend) else {
            throw EngineError.invalidArgument("field \"backend\" is missing (needs {\"backend\": \"<name>\", ...})")
        }
        backend = try Self.field(c, .backend, "a string (a backend name)")
        defaultSteps = try Self.optionalField(c, .defaultSteps, Int.self, "an integer")
        revision = try Self.optionalField(c, .revision, String.self, "a string")
        weights = try Self.optionalField(c, .weights, String.self, "a string (a file name)")
        if let steps = defaultSteps, steps < 1 || steps > Self.maxSteps {
            throw EngineError.invalidArgument("field \"default_steps\" must be in 1...\(Self.maxSteps), got \(steps)")
        }
        if let w = weights, w.isEmpty || w == "." || w == ".." || w.contains("/") {
            throw EngineError.invalidArgument("field \"weights\" must be a file name inside the model directory, got \(quoted(w))")
        }
    }

    private static func field(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, _ what: String) throws -> String {
        guard let v = try optionalField(c, key, String.self, what) else {
            throw EngineError.invalidArgument("field \"\(key.rawValue)\" must be \(what), got null")
        }
        return v
    }

    private static func optionalField<T: Decodable>(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys,
                                                    _ type: T.Type, _ what: String) throws -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: key)
        } catch {
            throw EngineError.invalidArgument("field \"\(key.rawValue)\" must be \(what)")
        }
    }
}

/// A directory of model directories. Names are directory names and must match
/// `[A-Za-z0-9][A-Za-z0-9._-]*` (no path separators, no "..").
public struct ModelRepository: Sendable {
    /// The repository root.
    public let root: String

    /// Longest accepted model name.
    public static let maxNameLength = 128
    /// Largest config.json read.
    public static let maxConfigBytes = 1 << 20

    public init(root: String) {
        self.root = root
    }

    /// Checks a model name (it becomes a directory name under `root`).
    public static func validate(name: String) throws {
        guard !name.isEmpty, name.utf8.count <= maxNameLength else {
            throw EngineError.invalidArgument("model name must be 1...\(maxNameLength) bytes, got \(name.utf8.count)")
        }
        for (i, c) in name.utf8.enumerated() {
            let alnum = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57)
            let ok = alnum || (i > 0 && (c == 45 || c == 95 || c == 46))
            if !ok {
                throw EngineError.invalidArgument(
                    "model name \(quoted(name)) may contain only letters, digits, '-', '_' and '.', and must start with a letter or digit")
            }
        }
    }

    /// The directory of model `name` (not checked for existence).
    public func directory(for name: String) throws -> String {
        try Self.validate(name: name)
        return root + "/" + name
    }

    /// Names of every subdirectory holding a config.json, sorted.
    public func modelNames() -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        return entries.filter { name in
            (try? Self.validate(name: name)) != nil && isRegularFile(root + "/" + name + "/config.json")
        }.sorted()
    }

    /// The directory model `name` leads to now, every symbolic link resolved (`realpath`): a
    /// deploy that switches a link gives another answer. - Throws: `.invalidArgument` for a bad
    /// name, `.notFound` when there is no such directory.
    public func resolvedDirectory(for name: String) throws -> String {
        let dir = try directory(for: name)
        guard isDirectory(dir), let resolved = realpath(dir, nil) else {
            throw EngineError.notFound("model \(quoted(name)) not found: no directory \(quoted(dir))")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Reads and decodes `<root>/<name>/config.json`.
    /// - Throws: `.invalidArgument` for a bad name or malformed config, `.notFound` when the
    ///   model directory or its config.json is missing.
    public func config(for name: String) throws -> ModelConfig {
        try config(for: name, in: try directory(for: name))
    }

    /// Reads and decodes the config.json of model `name` in `dir` (its directory, or the one that
    /// directory resolves to); the same checks and errors as `config(for:)`.
    public func config(for name: String, in dir: String) throws -> ModelConfig {
        try Self.validate(name: name)
        guard isDirectory(dir) else {
            throw EngineError.notFound("model \(quoted(name)) not found: no directory \(quoted(dir))")
        }
        let path = dir + "/config.json"
        guard isRegularFile(path) else {
            throw EngineError.notFound("model \(quoted(name)) has no readable config.json at \(quoted(path))")
        }
        // Read with POSIX calls: FileManager.contents(atPath:) leaked a 4 KiB buffer for every
        // empty file it read (swift-corelibs-foundation).
        let data: [UInt8]
        switch readFile(path, maxBytes: Self.maxConfigBytes) {
        case .failure(let why):
            throw EngineError.notFound("model \(quoted(name)) has no readable config.json at \(quoted(path)) (\(why))")
        case .tooLarge:
            throw EngineError.invalidArgument("config.json of model \(quoted(name)) is larger than \(Self.maxConfigBytes) bytes")
        case .success(let bytes):
            data = bytes
        }
        guard !data.isEmpty else {
            throw EngineError.invalidArgument("config.json of model \(quoted(name)) is empty (needs {\"backend\": \"<name>\", ...})")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: Data(data))
        } catch let e as EngineError {
            throw EngineError.invalidArgument("config.json of model \(quoted(name)): \(e.message)")
        } catch {
            throw EngineError.invalidArgument("config.json of model \(quoted(name)) is not valid JSON (needs {\"backend\": \"<name>\", ...}): \(error)")
        }
        if let w = config.weights, !isRegularFile(dir + "/" + w) {
            throw EngineError.notFound("config.json of model \(quoted(name)): field \"weights\" names \(quoted(w)), "
                                       + "which is not a file in \(quoted(dir))")
        }
        return config
    }
}

/// The outcome of `readFile`.
enum FileRead {
    case success([UInt8])
    case tooLarge
    case failure(String)
}

/// Reads a whole file of at most `maxBytes` bytes with open/read/close.
func readFile(_ path: String, maxBytes: Int) -> FileRead {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(String(cString: strerror(errno))) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(String(cString: strerror(errno)))
        }
        if n == 0 { return .success(out) }
        out += chunk[0..<n]
        if out.count > maxBytes { return .tooLarge }
    }
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

extension ModelRepository {
    /// A revision for a model whose backend reports none: "content-" and 16 hex digits of a
    /// 64-bit FNV-1a hash over the model's own files: `config.json` and the weights file it names
    /// (`"weights"`), names and bytes, in that order. Other files in the directory (notes, samples,
    /// a stray large file) do not enter it and are never read. The same files give the same
    /// revision on every machine; any change to their bytes changes it.
    ///
    /// A file's hash is kept in process, keyed by path and checked against its device, inode, size
    /// and modification and change times, so loading the same unchanged model again (a reload, a
    /// second engine, a hot swap of another model) does not read its weights a second time.
    public static func contentRevision(of directory: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: [UInt8]) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        var names = ["config.json"]
        if let data = FileManager.default.contents(atPath: directory + "/config.json"),
           let weights = (try? JSONDecoder().decode(ModelConfig.self, from: data))?.weights,
           !weights.isEmpty, !weights.contains("/"), weights != "config.json" {
            names.append(weights)
        }
        for name in names {
            let path = directory + "/" + name
            guard isRegularFile(path), let fileHash = FileHashCache.shared.hash(path: path) else { continue }
            mix(Array(name.utf8) + [0])
            mix((0..<8).map { UInt8(truncatingIfNeeded: fileHash >> (8 * $0)) })
        }
        let hex = String(h, radix: 16)
        return "content-" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// FNV-1a hashes of whole files, remembered while the file's identity and times stay the same.
final class FileHashCache: @unchecked Sendable {
    static let shared = FileHashCache()

    private struct Key: Equatable {
        var device: UInt64, inode: UInt64, size: Int64
        var mtime: Int, mtimeNanos: Int, ctime: Int, ctimeNanos: Int
    }

    private let lock = Lock()
    private var entries: [String: (key: Key, hash: UInt64)] = [:]

    /// The hash of the file's bytes, or nil if it cannot be opened.
    func hash(path: String) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let key = Key(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                      mtime: Int(st.st_mtim.tv_sec), mtimeNanos: Int(st.st_mtim.tv_nsec),
                      ctime: Int(st.st_ctim.tv_sec), ctimeNanos: Int(st.st_ctim.tv_nsec))
        if let hit = lock.withLock({ entries[path] }), hit.key == key { return hit.hash }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { break }
            for i in 0..<n { h = (h ^ UInt64(buffer[i])) &* 0x100_0000_01b3 }
        }
        lock.withLock { entries[path] = (key, h) }
        return h
    }
}

func isRegularFile(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}
