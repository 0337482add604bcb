// BackendInstance: where one model instance's backend code runs. The Engine keeps the registry,
// batching, deadlines and cancel; an instance only generates. In-process instances call the
// plugin's vtable directly (the C library, the CLI, `coalesced --isolation in-process`); the
// daemon's worker instances (Service.WorkerInstance) run the plugin in a child process.

/// One request as the backend sees it (already validated by the Engine).
public struct BackendRequest: Sendable, Equatable {
    public var prompt: String
    public var seed: UInt64
    public var steps: Int32
    public var count: Int32
    public var guidance: Float

    public init(prompt: String, seed: UInt64, steps: Int32, count: Int32, guidance: Float) {
        self.prompt = prompt
        self.seed = seed
        self.steps = steps
        self.count = count
        self.guidance = guidance
    }
}

/// Whether an instance can take requests.
public enum InstanceState: Sendable, Equatable {
    /// Taking requests.
    case serving
    /// Its worker process died and a new one is starting; requests wait for it.
    case restarting
    /// Its worker crashed repeatedly while loading; requests fail `.unavailable` with the reason
    /// until the model is loaded again.
    case failed(String)

    /// "serving", "restarting" or "failed".
    public var name: String {
        switch self {
        case .serving: return "serving"
        case .restarting: return "restarting"
        case .failed: return "failed"
        }
    }

    /// The failure reason ("" unless failed).
    public var reason: String {
        if case .failed(let r) = self { return r }
        return ""
    }
}

/// What an instance reports about where it runs.
public struct InstanceRuntime: Sendable, Equatable {
    public var state: InstanceState
    /// The worker process serving it; nil in process (or between workers).
    public var workerPID: Int32?
    /// The worker's resident memory in bytes (0 in process).
    public var workerRSSBytes: UInt64
    /// Worker processes started after the first (crashes, hangs).
    public var restarts: Int

    public init(state: InstanceState = .serving, workerPID: Int32? = nil, workerRSSBytes: UInt64 = 0, restarts: Int = 0) {
        self.state = state
        self.workerPID = workerPID
        self.workerRSSBytes = workerRSSBytes
        self.restarts = restarts
    }
}

/// A live model instance made by a backend. Released (model destroyed, worker stopped) on deinit,
/// which the Engine reaches after the instance's last request.
public protocol BackendInstance: AnyObject, Sendable {
    /// Backend name and version as the plugin reports them (vtable `name`, `version`).
    var backendName: String { get }
    var backendVersion: String { get }
    /// The backend's describe() JSON.
    var describeJSON: String { get }
    var runtime: InstanceRuntime { get }

    /// Runs requests that share steps and guidance as one backend call, request after request,
    /// `imageBytes` per image. `progress` (called on the calling thread) returns false to cancel
    /// the whole call. `deadline` is the latest deadline of the requests, if they all have one:
    /// an instance that cannot interrupt its backend may give up on the call some time after it.
    /// `stillWanted` (called on the calling thread) may be asked between steps by an instance that
    /// can stop its backend sooner than the next step's `progress` (a worker process, told at once
    /// to stop at its next step); false stops the whole call as `progress` returning false does.
    /// `everyStep` false says `progress` reports nothing and only decides what `stillWanted` and
    /// `deadline` decide as well: an instance that asks `stillWanted` may then skip it (a worker
    /// process sends no message per step).
    /// - Returns: the call's pixels in one buffer and one outcome per request, its range of that
    ///   buffer (an in-process call succeeds or fails as a whole; a worker that died can fail one
    ///   request and still serve the others).
    func generate(_ reqs: [BackendRequest], imageBytes: Int, threads: Int, deadline: ContinuousClock.Instant?,
                  progress: ((Int, Int) -> Bool)?, everyStep: Bool, stillWanted: (() -> Bool)?) -> BackendOutput
}

/// What one backend call gave: every image in one buffer, request after request, and for each
/// request its bytes of that buffer or why it failed.
public struct BackendOutput: Sendable {
    public var pixels: [UInt8]
    public var results: [Result<Range<Int>, EngineError>]

    public init(pixels: [UInt8], results: [Result<Range<Int>, EngineError>]) {
        self.pixels = pixels
        self.results = results
    }

    /// All of `reqs` from one buffer holding their images request after request.
    public init(pixels: [UInt8], of reqs: [BackendRequest], imageBytes: Int) {
        var offset = 0
        self.init(pixels: pixels, results: reqs.map { r in
            let n = Int(r.count) * imageBytes
            defer { offset += n }
            return .success(offset..<(offset + n))
        })
    }

    /// Every one of `count` requests failed with `error`.
    public init(failing count: Int, with error: EngineError) {
        self.init(pixels: [], results: Array(repeating: .failure(error), count: count))
    }
}

/// Makes instances: in this process, or in a worker process.
public protocol BackendLauncher: Sendable {
    /// Creates model `model` from `directory` with the plugin for `backend` found in `pluginDirectory`.
    /// - Throws: `EngineError` as `BackendLibrary.load` and the backend's create do.
    func launch(backend: String, model: String, directory: String, pluginDirectory: String) throws -> BackendInstance
}

/// Loads the plugin into this process (dlopen) and creates the model there.
public struct InProcessLauncher: BackendLauncher {
    public init() {}

    public func launch(backend: String, model: String, directory: String, pluginDirectory: String) throws -> BackendInstance {
        let library = try BackendLibrary.load(name: backend, directory: pluginDirectory)
        return try InProcessInstance(library: library, model: model, directory: directory)
    }
}
