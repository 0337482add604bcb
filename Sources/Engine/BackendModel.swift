// BackendModel: one registered model instance. Reference counted: the Engine's registry holds one
// reference and every in-flight request holds one, so a swapped-out or unloaded instance is
// released (its backend model destroyed, its worker process stopped) when its last request ends.
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

/// What a model says about itself (the backend's `describe()` JSON).
public struct ModelInfo: Sendable, Equatable, Decodable {
    public var backend: String
    public var height: Int
    public var width: Int
    public var channels: Int
    public var defaultSteps: Int
    public var maxSteps: Int
    public var maxBatch: Int
    public var supportsGuidance: Bool
    /// The guidance a request with guidance 0 gets, where the backend reports one (its config's
    /// "default_guidance" or the trained default).
    public var defaultGuidance: Double?
    /// Free-form revision string from the model's config when the backend reports one, else
    /// `ModelRepository.contentRevision(of:)` of the model directory (computed at load).
    public var revision: String
    public var classes: [String]

    enum CodingKeys: String, CodingKey {
        case backend, height, width, channels, revision, classes
        case defaultSteps = "default_steps", maxSteps = "max_steps", maxBatch = "max_batch"
        case supportsGuidance = "supports_guidance", defaultGuidance = "default_guidance"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        backend = try c.decodeIfPresent(String.self, forKey: .backend) ?? ""
        height = try c.decode(Int.self, forKey: .height)
        width = try c.decode(Int.self, forKey: .width)
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? 1
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? 1
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? Int(EngineLimits.stepLimit)
        maxBatch = try c.decodeIfPresent(Int.self, forKey: .maxBatch) ?? 64
        supportsGuidance = try c.decodeIfPresent(Bool.self, forKey: .supportsGuidance) ?? false
        defaultGuidance = try c.decodeIfPresent(Double.self, forKey: .defaultGuidance)
        revision = try c.decodeIfPresent(String.self, forKey: .revision) ?? ""
        classes = try c.decodeIfPresent([String].self, forKey: .classes) ?? []
    }

    /// Bytes of one image.
    public var imageBytes: Int { height * width * channels }
}

/// A registered model instance: a backend instance (in process or in a worker) plus what the
/// Engine knows about it.
public final class BackendModel: @unchecked Sendable {
    /// Registry name of the model (its directory name in the repository).
    public let name: String
    /// The model directory it was created from.
    public let directory: String
    /// What the backend reports about this instance.
    public let info: ModelInfo
    /// Where the backend runs.
    public let instance: BackendInstance
    /// Monotonic load number given by the Engine (1 for the first load, +1 per hot swap).
    public let generation: Int
    /// The raw describe() JSON.
    public var describeJSON: String { instance.describeJSON }
    /// Compute threads passed with every request (0 = the backend's default).
    public let threads: Int

    private let lock = Lock()
    private var inFlightCount = 0
    private var onRelease: (@Sendable (String, Int) -> Void)?

    /// Checks what the backend describes. - Throws: `.internal` for an invalid describe() JSON.
    init(instance: BackendInstance, name: String, directory: String, generation: Int, threads: Int = 0,
         onRelease: (@Sendable (String, Int) -> Void)?) throws {
        let json = instance.describeJSON
        let backend = instance.backendName
        do {
            var decoded = try JSONDecoder().decode(ModelInfo.self, from: Data(json.utf8))
            // A backend that reports no revision gets one from the model directory's contents.
            if decoded.revision.isEmpty { decoded.revision = ModelRepository.contentRevision(of: directory) }
            info = decoded
        } catch {
            throw EngineError.internal("backend \(quoted(backend)) returned an invalid describe() JSON \(quoted(json)): \(error)")
        }
        guard info.height > 0, info.width > 0, info.channels > 0, info.maxBatch > 0, info.maxSteps > 0 else {
            throw EngineError.internal("backend \(quoted(backend)) describes non-positive sizes: \(json)")
        }
        guard info.defaultSteps >= 1, info.defaultSteps <= info.maxSteps else {
            throw EngineError.internal("backend \(quoted(backend)) describes default_steps \(info.defaultSteps) "
                                       + "outside 1...max_steps (\(info.maxSteps)): \(json)")
        }
        self.instance = instance
        self.name = name
        self.directory = directory
        self.generation = generation
        self.threads = threads
        self.onRelease = onRelease
    }

    deinit {
        onRelease?(name, generation)
    }

    /// Requests currently running on this instance.
    public var inFlight: Int { lock.withLock { inFlightCount } }

    func enter() { lock.withLock { inFlightCount += 1 } }
    func leave() { lock.withLock { inFlightCount -= 1 } }

    /// Runs the backend on requests that share steps and guidance: one buffer, one outcome per request.
    func run(_ reqs: [BackendRequest], deadline: ContinuousClock.Instant?, progress: ((Int, Int) -> Bool)?,
             everyStep: Bool = true, stillWanted: (() -> Bool)? = nil) -> BackendOutput {
        instance.generate(reqs, imageBytes: info.imageBytes, threads: threads, deadline: deadline, progress: progress,
                          everyStep: everyStep, stillWanted: stillWanted)
    }
}
