// Value types of a generation call: the request, its progress reports, the resulting images.

/// One generation request.
public struct GenerateRequest: Sendable, Equatable {
    /// Registry name of a loaded model.
    public var model: String
    /// UTF-8 text prompt; "" means unconditional.
    public var prompt: String
    /// Image i of the request uses seed + i.
    public var seed: UInt64
    /// Network evaluations; 0 = the model's default, -1 = "auto" (backend decides).
    public var steps: Int32
    /// Number of images, >= 1.
    public var count: Int32
    /// Classifier-free guidance scale (ignored where the backend has none).
    public var guidance: Float
    /// When set, the request fails with `.deadlineExceeded` once this instant passes.
    public var deadline: ContinuousClock.Instant?

    public init(model: String, prompt: String = "", seed: UInt64 = 0, steps: Int32 = 0, count: Int32 = 1,
                guidance: Float = 0, deadline: ContinuousClock.Instant? = nil) {
        self.model = model
        self.prompt = prompt
        self.seed = seed
        self.steps = steps
        self.count = count
        self.guidance = guidance
        self.deadline = deadline
    }
}

/// A progress report: step `step` of `total` finished (step counts from 1).
public struct GenerateProgress: Sendable, Equatable {
    public var step: Int
    public var total: Int

    public init(step: Int, total: Int) {
        self.step = step
        self.total = total
    }
}

/// A progress closure: return false to cancel the request.
public typealias ProgressHandler = (GenerateProgress) -> Bool

/// Images produced by one request: `count` images of height x width x channels uint8 pixels,
/// row-major, image after image. The batches of the requests of one backend call share that
/// call's buffer, each holding its range of it: nothing is copied until `pixels` of a batch that
/// is not its whole buffer is read (`image(_:)` never copies).
public struct ImageBatch: Sendable, Equatable {
    public var model: String
    /// Backend name and version, and the model's revision and load generation that served it.
    public var backend: String
    public var backendVersion: String
    public var revision: String
    public var generation: Int
    public var width: Int
    public var height: Int
    public var channels: Int
    public var count: Int
    /// The buffer the images are in, and their bytes of it.
    private var buffer: [UInt8]
    private var range: Range<Int>

    public init(model: String, backend: String, backendVersion: String, revision: String, generation: Int,
                width: Int, height: Int, channels: Int, count: Int, pixels: [UInt8]) {
        self.init(model: model, backend: backend, backendVersion: backendVersion, revision: revision,
                  generation: generation, width: width, height: height, channels: channels, count: count,
                  buffer: pixels, range: pixels.indices)
    }

    /// A batch whose images are `buffer[range]` (`range` within `buffer`).
    init(model: String, backend: String, backendVersion: String, revision: String, generation: Int,
         width: Int, height: Int, channels: Int, count: Int, buffer: [UInt8], range: Range<Int>) {
        self.model = model
        self.backend = backend
        self.backendVersion = backendVersion
        self.revision = revision
        self.generation = generation
        self.width = width
        self.height = height
        self.channels = channels
        self.count = count
        self.buffer = buffer
        self.range = range
    }

    /// All images, image after image.
    public var pixels: [UInt8] {
        get { range == buffer.indices ? buffer : Array(buffer[range]) }
        set { buffer = newValue; range = newValue.indices }
    }

    /// Bytes of one image.
    public var imageBytes: Int { width * height * channels }

    /// The pixels of image `index`.
    public func image(_ index: Int) -> ArraySlice<UInt8> {
        let start = range.lowerBound + index * imageBytes
        return buffer[start..<(start + imageBytes)]
    }

    public static func == (a: ImageBatch, b: ImageBatch) -> Bool {
        a.model == b.model && a.backend == b.backend && a.backendVersion == b.backendVersion && a.revision == b.revision
            && a.generation == b.generation && a.width == b.width && a.height == b.height && a.channels == b.channels
            && a.count == b.count && a.buffer[a.range].elementsEqual(b.buffer[b.range])
    }
}

/// Limits applied to every request before it reaches a backend: the one definition of the
/// generation limits. `Engine.validate` checks every request against them, whatever the face (C
/// library, daemon, CLI, Python), with one message per kind of error. Include/coalesce.h repeats
/// the constants (`CZ_MAX_STEPS`, `CZ_MAX_COUNT`, `CZ_MAX_PROMPT_BYTES`, `CZ_MAX_GUIDANCE`);
/// `EngineTests.LimitsTests` reads the header and fails if they differ.
///
/// - steps: 1...`stepLimit` (64: what every bundled backend accepts), 0 = the model's default,
///   -1 = auto; a model may allow fewer (its `max_steps`).
/// - count: 1...`maxCount` images per request (the C library allows `countLimit`, the daemon 64
///   by default; more than a model's `max_batch` run as several backend calls).
/// - guidance: a finite number in `guidanceRange` (0...100; 0 = the model's default), for every
///   model, with guidance or without.
/// - prompt: at most `maxPromptBytes` UTF-8 bytes (default `promptBytesLimit`), no NUL.
/// - seed: any 64-bit value; image i uses seed + i (wrapping).
public struct EngineLimits: Sendable, Equatable {
    /// Most steps any request may ask for (CZ_MAX_STEPS). Every bundled backend caps here.
    public static let stepLimit: Int32 = 64
    /// Most images one request may ask for in the C library (CZ_MAX_COUNT).
    public static let countLimit: Int32 = 4096
    /// Most images per request by default (the daemon's `--max-count`).
    public static let defaultMaxCount: Int32 = 64
    /// Longest prompt by default, in UTF-8 bytes (CZ_MAX_PROMPT_BYTES).
    public static let promptBytesLimit = 1024
    /// Accepted guidance scales (CZ_MAX_GUIDANCE is the upper bound); 0 = the model's default.
    public static let guidanceRange: ClosedRange<Float> = 0...100

    /// Most images per request.
    public var maxCount: Int32
    /// Most steps per request (at most `stepLimit`).
    public var maxSteps: Int32
    /// Longest prompt in UTF-8 bytes.
    public var maxPromptBytes: Int

    public init(maxCount: Int32 = EngineLimits.defaultMaxCount, maxSteps: Int32 = EngineLimits.stepLimit,
                maxPromptBytes: Int = EngineLimits.promptBytesLimit) {
        self.maxCount = maxCount
        self.maxSteps = min(maxSteps, Self.stepLimit)
        self.maxPromptBytes = maxPromptBytes
    }
}
