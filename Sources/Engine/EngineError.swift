// EngineError: every way an Engine call can fail, with the status code shared by the wire
// (coalesce.v1.ErrorCode), the C library (cz_status) and the backend ABI (cz_backend_status).

/// Status codes shared by the backend ABI, the C library and the wire. The raw values are the
/// protocol: never renumber.
public enum StatusCode: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// Success.
    case ok = 0
    /// The request is malformed or outside limits (bad prompt, steps, count, name, ...).
    case invalidArgument = 1
    /// A model, backend plugin or file does not exist.
    case notFound = 2
    /// A queue or batch is full, or memory ran out. Retry later.
    case resourceExhausted = 3
    /// The caller cancelled (progress callback returned false, or a cancel message).
    case cancelled = 4
    /// The request's deadline passed before it finished.
    case deadlineExceeded = 5
    /// A bug or an unexpected failure inside the engine or a backend.
    case `internal` = 6
    /// The engine is shutting down or the model is being unloaded; retry elsewhere or later.
    case unavailable = 7

    public var description: String {
        switch self {
        case .ok: return "OK"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .notFound: return "NOT_FOUND"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .cancelled: return "CANCELLED"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .internal: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        }
    }
}

/// The one error type of the Engine module. Each case carries a message that says what was
/// wrong, meant for the person who sent the request.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Bad input: a field out of range, an invalid name, a malformed config.
    case invalidArgument(String)
    /// A model, plugin, model directory or file does not exist.
    case notFound(String)
    /// A queue is full or memory ran out; retry later.
    case resourceExhausted(String)
    /// The request was cancelled by its caller.
    case cancelled(String)
    /// The request's deadline passed.
    case deadlineExceeded(String)
    /// The engine is shutting down, or the model went away; retry later.
    case unavailable(String)
    /// An unexpected failure (a backend error that fits no other case, a bug).
    case `internal`(String)

    /// The status code for the wire / C library.
    public var code: StatusCode {
        switch self {
        case .invalidArgument: return .invalidArgument
        case .notFound: return .notFound
        case .resourceExhausted: return .resourceExhausted
        case .cancelled: return .cancelled
        case .deadlineExceeded: return .deadlineExceeded
        case .unavailable: return .unavailable
        case .internal: return .internal
        }
    }

    /// The human-readable message.
    public var message: String {
        switch self {
        case .invalidArgument(let m), .notFound(let m), .resourceExhausted(let m), .cancelled(let m),
             .deadlineExceeded(let m), .unavailable(let m), .internal(let m):
            return m
        }
    }

    /// Builds an error from a status code and a message (e.g. a backend's return value).
    /// `.ok` maps to `.internal`, since an error with status OK is itself a bug.
    public init(code: StatusCode, message: String) {
        switch code {
        case .invalidArgument: self = .invalidArgument(message)
        case .notFound: self = .notFound(message)
        case .resourceExhausted: self = .resourceExhausted(message)
        case .cancelled: self = .cancelled(message)
        case .deadlineExceeded: self = .deadlineExceeded(message)
        case .unavailable: self = .unavailable(message)
        case .internal: self = .internal(message)
        case .ok: self = .internal("status OK reported as an error: \(message)")
        }
    }

    public var description: String { "\(code): \(message)" }
}
