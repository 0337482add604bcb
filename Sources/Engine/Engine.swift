// Engine: the thread-safe model registry every face (daemon, C library, CLI) talks to.
import Logging

/// A snapshot of one loaded model.
public struct ModelStatus: Sendable, Equatable {
    public var name: String
    public var backend: String
    public var backendVersion: String
    public var revision: String
    /// Load number (1 for the first load, +1 for every load of any model since; identifies a
    /// hot-swapped instance).
    public var generation: Int
    /// Requests running on the current instance.
    public var inFlight: Int
    public var info: ModelInfo
    /// Serving, restarting or failed, and the worker process behind it (if any).
    public var runtime: InstanceRuntime
}

/// The engine: loads models from a repository through backend plugins found by name in a plugin
/// directory, swaps them without dropping requests, and runs generation.
///
/// Thread safety: every method may be called from any thread, concurrently. `generate` blocks
/// the calling thread while the backend runs.
///
/// Hot swap (Triton's rule): `load` of a name already served creates the new instance first and
/// then switches the registry to it atomically; requests already running keep their reference to
/// the old instance, which is destroyed when the last of them ends. A failed load leaves the old
/// instance serving.
public final class Engine: @unchecked Sendable {
    /// Where plugins and models live, and the request limits.
    public struct Configuration: Sendable {
        /// Directory holding backend plugins (`libTestPatternBackend.so`, ...).
        public var pluginDirectory: String
        /// Model repository root (`<root>/<name>/config.json`).
        public var modelRepository: String
        public var limits: EngineLimits
        /// Compute threads per backend call, passed to the backend with every request
        /// (`cz_backend_request.threads`, backend ABI 1.2); 0 = the backend's default.
        public var threads: Int
        /// Where model instances run: in this process (default), or in worker processes
        /// (the daemon's `Service.WorkerHub`).
        public var launcher: BackendLauncher

        public init(pluginDirectory: String, modelRepository: String, limits: EngineLimits = EngineLimits(),
                    threads: Int = 0, launcher: BackendLauncher = InProcessLauncher()) {
            self.pluginDirectory = pluginDirectory
            self.modelRepository = modelRepository
            self.limits = limits
            self.threads = threads
            self.launcher = launcher
        }
    }

    public let configuration: Configuration
    public let repository: ModelRepository
    let logger: Logger

    private let lock = Lock()            // guards models, loadCounter, accepting
    private let loadLock = Lock()        // serialises load/unload (backend create runs under it)
    private var models: [String: BackendModel] = [:]
    private var loadCounter = 0
    private var accepting = true

    public init(configuration: Configuration, logger: Logger = Logger(label: "coalesce.engine")) {
        self.configuration = configuration
        self.repository = ModelRepository(root: configuration.modelRepository)
        self.logger = logger
    }

    // MARK: - Registry

    /// How many times `load` tries when the model's directory is switched to another folder (a
    /// symbolic link deploy) while it loads.
    static let loadAttempts = 3

    /// Loads model `name` from the repository (or hot-swaps it when already loaded).
    ///
    /// One version, even while a deploy switches the model's symbolic link: the directory the
    /// name leads to is resolved first, and config.json, the weights check and the content
    /// revision are read there; the backend is given the name's path (a backend may find files
    /// beside the model's directory, such as `models/minilm`) and reads through the link, so the
    /// link is resolved again after the backend has loaded, and a load during which it changed
    /// (the backend may have read files of two versions) is dropped and made again, up to
    /// `loadAttempts` times.
    /// - Returns: the status of the new instance.
    /// - Throws: `.invalidArgument` (bad name or config), `.notFound` (no such model or plugin),
    ///   `.internal` (plugin refused: missing symbol, wrong ABI major, failing create),
    ///   `.unavailable` (the directory switched during every attempt). On any failure the
    ///   previously loaded instance, if any, keeps serving.
    @discardableResult
    public func load(_ name: String) throws -> ModelStatus {
        try loadLock.withLock {
            let start = ContinuousClock.now
            do {
                let path = try repository.directory(for: name)
                var loaded: (BackendInstance, String)?
                for attempt in 1...Self.loadAttempts {
                    let dir = try repository.resolvedDirectory(for: name)
                    let config = try repository.config(for: name, in: dir)
                    try WeightsCheck.checkDirectory(dir)
                    let instance = try configuration.launcher.launch(backend: config.backend, model: name, directory: path,
                                                                     pluginDirectory: configuration.pluginDirectory)
                    if (try? repository.resolvedDirectory(for: name)) == dir {
                        loaded = (instance, dir)
                        break
                    }
                    logger.info("model directory switched while loading; loading again", metadata: [
                        "model": "\(name)", "loaded_from": "\(dir)", "attempt": "\(attempt)"])
                }
                guard let (instance, dir) = loaded else {
                    throw EngineError.unavailable("model \(quoted(name)): its directory was switched to another folder "
                                                  + "during each of \(Self.loadAttempts) loads; load it again")
                }
                let generation = lock.withLock { () -> Int in loadCounter += 1; return loadCounter }
                let log = logger
                let model = try BackendModel(instance: instance, name: name, directory: dir, generation: generation,
                                             threads: configuration.threads,
                                             onRelease: { name, gen in
                                                 log.info("model instance released", metadata: [
                                                     "model": "\(name)", "generation": "\(gen)"])
                                             })
                let old = lock.withLock { () -> BackendModel? in
                    let old = models[name]
                    models[name] = model
                    return old
                }
                logger.info(old == nil ? "model loaded" : "model hot-swapped", metadata: [
                    "model": "\(name)", "backend": "\(instance.backendName)", "backend_version": "\(instance.backendVersion)",
                    "worker_pid": "\(instance.runtime.workerPID.map { String($0) } ?? "-")",
                    "revision": "\(model.info.revision)", "generation": "\(generation)",
                    "replaced_generation": "\(old.map { String($0.generation) } ?? "-")",
                    "old_in_flight": "\(old?.inFlight ?? 0)",
                    "ms": "\(milliseconds(since: start))"])
                return status(of: model)
            } catch let error as EngineError {
                logger.warning("model load failed", metadata: [
                    "model": "\(name)", "code": "\(error.code)", "error": "\(error.message)",
                    "still_serving": "\(isLoaded(name))"])
                throw error
            }
        }
    }

    /// Removes model `name` from the registry. Running requests finish; the instance is destroyed
    /// after the last one. - Throws: `.notFound` when it is not loaded.
    public func unload(_ name: String) throws {
        try loadLock.withLock {
            let old = lock.withLock { models.removeValue(forKey: name) }
            guard let old else {
                throw EngineError.notFound("model \(quoted(name)) is not loaded")
            }
            logger.info("model unloaded", metadata: [
                "model": "\(name)", "generation": "\(old.generation)", "in_flight": "\(old.inFlight)"])
        }
    }

    /// Loads every model in the repository. - Returns: the failures by model name.
    @discardableResult
    public func loadAll() -> [String: EngineError] {
        var failures: [String: EngineError] = [:]
        for name in repository.modelNames() {
            do {
                try load(name)
            } catch let error as EngineError {
                failures[name] = error
            } catch {
                failures[name] = .internal("\(error)")
            }
        }
        return failures
    }

    /// True when `name` is currently served.
    public func isLoaded(_ name: String) -> Bool {
        lock.withLock { models[name] != nil }
    }

    /// How many models are served.
    public var loadedCount: Int {
        lock.withLock { models.count }
    }

    /// Snapshots of every loaded model, sorted by name.
    public func loadedModels() -> [ModelStatus] {
        let current = lock.withLock { Array(models.values) }
        return current.map(status(of:)).sorted { $0.name < $1.name }
    }

    /// The status of one loaded model. - Throws: `.notFound` when it is not loaded.
    public func modelStatus(_ name: String) throws -> ModelStatus {
        guard let m = lock.withLock({ models[name] }) else {
            throw EngineError.notFound("model \(quoted(name)) is not loaded")
        }
        return status(of: m)
    }

    /// Stops accepting new requests (they fail with `.unavailable`); running ones finish.
    public func shutdown() {
        lock.withLock { accepting = false }
        logger.info("engine stopped accepting requests")
    }

    /// The current instance of `name`, for a request about to run.
    func instance(_ name: String) throws -> BackendModel {
        try lock.withLock {
            guard accepting else { throw EngineError.unavailable("engine is shutting down") }
            guard let m = models[name] else {
                throw EngineError.notFound("model \(quoted(name)) is not loaded")
            }
            return m
        }
    }

    private func status(of m: BackendModel) -> ModelStatus {
        ModelStatus(name: m.name, backend: m.instance.backendName, backendVersion: m.instance.backendVersion,
                    revision: m.info.revision, generation: m.generation, inFlight: m.inFlight, info: m.info,
                    runtime: m.instance.runtime)
    }
}

func milliseconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    let (s, atto) = d.components
    return (Double(s) * 1e3 + Double(atto) / 1e15 * 1).rounded(toPlaces: 3)
}

extension Double {
    func rounded(toPlaces p: Int) -> Double {
        var m = 1.0
        for _ in 0..<p { m *= 10 }
        return (self * m).rounded() / m
    }
}
