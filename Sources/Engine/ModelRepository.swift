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

/// The part of a model's `config.json` the Engine reads; backends read the rest themselves.
public struct ModelConfig: Sendable, Equatable, Decodable {
    /// Backend name, e.g. "test-pattern" or "coalescer" (chooses the plugin).
    public var backend: String
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

    /// Reads and decodes `<root>/<name>/config.json`.
    /// - Throws: `.invalidArgument` for a bad name or malformed config, `.notFound` when the
    ///   model directory or its config.json is missing.
    public func config(for name: String) throws -> ModelConfig {
        let dir = try directory(for: name)
        guard isDirectory(dir) else {
            throw EngineError.notFound("model \(quoted(name)) not found: no directory \(quoted(dir))")
        }
        let path = dir + "/config.json"
        guard isRegularFile(path), let data = FileManager.default.contents(atPath: path) else {
            throw EngineError.notFound("model \(quoted(name)) has no readable config.json at \(quoted(path))")
        }
        guard data.count <= Self.maxConfigBytes else {
            throw EngineError.invalidArgument("config.json of model \(quoted(name)) is \(data.count) bytes (max \(Self.maxConfigBytes))")
        }
        do {
            return try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch {
            throw EngineError.invalidArgument("config.json of model \(quoted(name)) is not valid (needs {\"backend\": \"<name>\", ...}): \(error)")
        }
    }
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

extension ModelRepository {
    /// A revision for a model whose backend reports none: "content-" and 16 hex digits of a
    /// 64-bit FNV-1a hash over the names and bytes of the regular files directly in `directory`
    /// (config and weights), in name order. Any change to those files changes it; the same files
    /// give the same revision on every machine.
    public static func contentRevision(of directory: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) {
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where isRegularFile(directory + "/" + name) {
            let fd = open(directory + "/" + name, O_RDONLY | O_CLOEXEC)
            if fd < 0 { continue }
            defer { close(fd) }
            Array(name.utf8 + [0]).withUnsafeBytes(mix)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                buffer.withUnsafeBytes { mix(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
        }
        let hex = String(h, radix: 16)
        return "content-" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}

func isRegularFile(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
}
