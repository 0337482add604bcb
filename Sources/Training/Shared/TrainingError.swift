/// Errors from the Training module (data, training loops, evaluation).
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// A training or evaluation setting is out of range (message names the field).
    case invalidConfig(String)
    /// Input data has the wrong size, count or labels (message says what).
    case invalidData(String)
    /// No generator is registered under this name (the list names those that are).
    case unknownGenerator(name: String, known: [String])
    /// A generator failed or returned the wrong number or size of images.
    case generation(String)
    /// A checkpoint or data file is missing or unreadable (path and reason).
    case file(path: String, message: String)

    public var description: String {
        switch self {
        case let .invalidConfig(m): return "invalid setting: \(m)"
        case let .invalidData(m): return "invalid data: \(m)"
        case let .unknownGenerator(name, known):
            return "unknown model '\(name)'; known: \(known.joined(separator: ", "))"
        case let .generation(m): return "generation failed: \(m)"
        case let .file(path, message): return "\(path): \(message)"
        }
    }
}
