/// Errors thrown by the Tensor module.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    /// Two shapes that had to agree did not (operation, what was expected, what was given).
    case shapeMismatch(op: String, expected: [Int], got: [Int])
    /// A tensor argument had the wrong number of dimensions or an invalid size.
    case invalidShape(op: String, message: String)
    /// A safetensors file could not be read or written; the message says what was wrong.
    case safetensors(String)
    /// A file could not be opened, read or written.
    case io(path: String, message: String)
    /// A LAPACK routine reported failure (its `info` code).
    case lapack(call: String, info: Int)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, expected, got):
            return "\(op): shape mismatch, expected \(expected), got \(got)"
        case let .invalidShape(op, message):
            return "\(op): \(message)"
        case let .safetensors(message):
            return "safetensors: \(message)"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .lapack(call, info):
            return "LAPACK \(call) failed with info=\(info)"
        }
    }
}
