import Tensor

/// A network component that owns named parameters. Keys are the checkpoint keys relative to the
/// layer, dot-separated for nesting (`down.0.conv1.weight`), as in PyTorch state dicts.
public protocol Layer: AnyObject {
    /// This layer's parameters and those of its sub-layers, in a stable order.
    var namedParameters: [(String, Tensor)] { get }
}

extension Layer {
    /// All parameters, in the order of `namedParameters`.
    public var parameters: [Tensor] { namedParameters.map(\.1) }

    /// Total number of scalar parameters.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Parameters keyed by full name, for saving.
    public func stateDict(prefix: String = "") -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedParameters.map { (prefix + $0.0, $0.1) })
    }

    /// Takes values from `tensors` (keys = `prefix` + parameter key). Every parameter must be
    /// present with the same shape; the error names the first key that is missing or wrong.
    /// Values are copied, except those of read-only tensors (a mapped safetensors file, see
    /// `SafeTensors.map(path:)`), which the parameters share (`Tensor.share(valuesOf:)`): they
    /// stay in the file's pages, one copy for every process that maps the file. Training that
    /// writes such a parameter gets a copy first (`Tensor.makeWritable()`).
    public func load(from tensors: [String: Tensor], prefix: String = "") throws {
        for (key, p) in namedParameters {
            guard let t = tensors[prefix + key] else {
                throw ModelError.missingWeight(prefix + key)
            }
            guard t.shape == p.shape else {
                throw ModelError.weightShape(key: prefix + key, expected: p.shape, got: t.shape)
            }
            p.share(valuesOf: t)
        }
    }
}

/// Prefixes sub-layer parameter names: `nest("conv1", conv1)` -> `conv1.weight`, ...
@inlinable
public func nest(_ name: String, _ layer: Layer) -> [(String, Tensor)] {
    layer.namedParameters.map { ("\(name).\($0.0)", $0.1) }
}

/// Same for an array of layers: `down.0.weight`, `down.1.weight`, ...
@inlinable
public func nest(_ name: String, _ layers: [Layer]) -> [(String, Tensor)] {
    layers.enumerated().flatMap { i, l in nest("\(name).\(i)", l) }
}

/// Errors from building, loading or running models.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// A weight the model needs is not in the checkpoint.
    case missingWeight(String)
    /// A checkpoint weight has a different shape than the model expects.
    case weightShape(key: String, expected: [Int], got: [Int])
    /// The model configuration is invalid (message says which field).
    case invalidConfig(String)
    /// An input had the wrong shape or value (message says what).
    case invalidInput(String)
    /// The caller's progress callback asked to stop (samplers check it after every step).
    case cancelled

    public var description: String {
        switch self {
        case let .missingWeight(k): return "checkpoint has no weight '\(k)'"
        case let .weightShape(k, e, g): return "weight '\(k)' has shape \(g), model expects \(e)"
        case let .invalidConfig(m): return "invalid model config: \(m)"
        case let .invalidInput(m): return "invalid input: \(m)"
        case .cancelled: return "cancelled by the progress callback"
        }
    }
}
