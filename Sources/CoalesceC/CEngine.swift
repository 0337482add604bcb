// CEngine: the object behind cz_engine *. It maps C model names to Engine instances.
//
// Why one Engine per model: the Engine loads models from a repository by directory name
// (`<root>/<name>`), which is what the daemon needs (no paths from the wire). The C API also
// loads a model from any directory under any name, so each C model name gets its own Engine whose
// repository root is the directory's parent. Loads, hot swaps, generation, limits and backend
// calls are exactly the Engine's, which is what keeps the C library's pixels identical to the
// CLI's and the daemon's.
import CCoalesceAPI
import Engine
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits of the C library (the Engine checks them, and then the model's own).
let cLimits = EngineLimits(maxCount: Int32(CZ_MAX_COUNT), maxSteps: Int32(CZ_MAX_STEPS),
                           maxPromptBytes: Int(CZ_MAX_PROMPT_BYTES))

/// One loaded C model name: the Engine serving it and the model's name inside that Engine.
final class ModelSlot: @unchecked Sendable {
    let engine: Engine
    let root: String
    let innerName: String

    init(engine: Engine, root: String, innerName: String) {
        self.engine = engine
        self.root = root
        self.innerName = innerName
    }

    var directory: String { root + "/" + innerName }
}

final class CEngine: @unchecked Sendable {
    let pluginDirectory: String
    let modelsDirectory: String
    /// Compute threads per request (cz_engine_options.threads; 0 = the backend's default).
    let threads: Int
    let messages = MessageTable()
    private let lock = Lock()        // guards slots
    private let loadLock = Lock()    // serialises load/unload on this engine
    private var slots: [String: ModelSlot] = [:]
    private let logger: Logger

    init(pluginDirectory: String, modelsDirectory: String, threads: Int, logger: Logger) {
        self.pluginDirectory = pluginDirectory
        self.modelsDirectory = modelsDirectory
        self.threads = threads
        self.logger = logger
    }

    /// The loaded C model names, sorted.
    func modelNames() -> [String] {
        lock.withLock { Array(slots.keys) }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Stops every Engine; models are destroyed when their last in-flight request ends.
    func shutdown() {
        let all = lock.withLock { () -> [ModelSlot] in
            let all = Array(slots.values)
            slots.removeAll()
            return all
        }
        for slot in all { slot.engine.shutdown() }
    }

    /// The slot serving `name`, or `.notFound`.
    func slot(_ name: String) throws -> ModelSlot {
        guard let s = lock.withLock({ slots[name] }) else {
            throw EngineError.notFound("model \(quoted(name)) is not loaded (load it with cz_model_load)")
        }
        return s
    }

    /// True when `slot` still serves `name`.
    func isCurrent(_ slot: ModelSlot, for name: String) -> Bool {
        lock.withLock { slots[name] === slot }
    }

    /// Loads `name` from `directory` (nil: `<modelsDirectory>/<name>`), hot-swapping a loaded one.
    func load(name: String, directory: String?) throws {
        try ModelRepository.validate(name: name)
        let requested = directory ?? (modelsDirectory + "/" + name)
        guard !requested.isEmpty else { throw EngineError.invalidArgument("model_dir is an empty string") }
        guard let real = realPath(requested) else {
            throw EngineError.notFound("model directory \(quoted(requested)) does not exist (\(errnoMessage()))")
        }
        guard isDirectoryPath(real) else {
            throw EngineError.notFound("model directory \(quoted(requested)) is not a directory")
        }
        let (root, inner) = splitPath(real)
        guard !inner.isEmpty else {
            throw EngineError.invalidArgument("model directory \(quoted(requested)) has no name (it is /)")
        }
        do {
            try ModelRepository.validate(name: inner)
        } catch let e as EngineError {
            throw EngineError.invalidArgument("model directory \(quoted(real)): the directory name must follow the model name rule: \(e.message)")
        }
        try loadLock.withLock {
            let old = lock.withLock { slots[name] }
            if let old, old.root == root, old.innerName == inner {
                try old.engine.load(inner)      // the Engine's own hot swap
                return
            }
            let engine = Engine(configuration: .init(pluginDirectory: pluginDirectory, modelRepository: root,
                                                     limits: cLimits, threads: threads),
                                logger: logger)
            try engine.load(inner)             // new first; a failure leaves `old` serving
            lock.withLock { slots[name] = ModelSlot(engine: engine, root: root, innerName: inner) }
            // The old Engine goes away with its last in-flight request (they hold the slot).
            // Its plugins stay mapped (`BackendLibrary` never unmaps an accepted plugin).
        }
    }

    func unload(name: String) throws {
        try loadLock.withLock {
            let removed = lock.withLock { slots.removeValue(forKey: name) }
            guard removed != nil else {
                throw EngineError.notFound("model \(quoted(name)) is not loaded")
            }
        }
    }

    /// Every model directory under `modelsDirectory`; failures are skipped.
    func preloadAll() {
        for name in ModelRepository(root: modelsDirectory).modelNames() {
            do {
                try load(name: name, directory: nil)
            } catch {
                logger.warning("preload failed", metadata: ["model": "\(name)", "error": "\(error)"])
            }
        }
    }
}

/// The engine's logger: lines go to the host's callback (cz_engine_options.log) when it gave one;
/// otherwise the library logs nothing unless COALESCE_LOG is set (a library must not write to its
/// host's stdout); COALESCE_LOG=debug|info|warning|error picks the level, on stderr.
func libraryLogger(callback: cz_log_fn? = nil, userData: UnsafeMutableRawPointer? = nil) -> Logger {
    if let callback {
        let sink = CallbackLogSink(callback: callback, userData: userData)
        var logger = Logger(label: "coalesce.lib", factory: { _ in CallbackLogHandler(sink: sink) })
        logger.logLevel = .debug
        return logger
    }
    guard let env = getenv("COALESCE_LOG").map({ String(cString: $0) }), !env.isEmpty else {
        return Logger(label: "coalesce.lib", factory: { _ in SwiftLogNoOpLogHandler() })
    }
    var logger = Logger(label: "coalesce.lib", factory: { StreamLogHandler.standardError(label: $0) })
    logger.logLevel = Logger.Level(rawValue: env.lowercased()) ?? .info
    return logger
}

// MARK: - Small path helpers (no Foundation)

func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

func isDirectoryPath(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// "/a/b/c" -> ("/a/b", "c"); "/c" -> ("", "c") so that root + "/" + name is the path again.
func splitPath(_ path: String) -> (String, String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    return (String(path[..<slash]), String(path[path.index(after: slash)...]))
}

func errnoMessage() -> String {
    String(cString: strerror(errno))
}

