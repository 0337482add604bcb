import Foundation

/// A dense float32 tensor in row-major order with optional reverse-mode gradient.
///
/// Storage is a 64-byte aligned buffer owned by the tensor, or, for weights read from a mapped
/// safetensors file (`SafeTensors.map(path:)`), read-only memory it borrows (`isReadOnly`, aligned
/// only for `Float`): the file's pages, shared by every process that maps the same file, kept
/// mapped while any tensor uses them. Such a tensor must not be written through `data`; `copyValues(from:)`, the
/// subscript setter and the optimisers give it a buffer of its own first (`makeWritable()`).
/// Ops (in `Ops/`) create a new output
/// tensor and, when gradients are being recorded (`GradMode.isEnabled` and some input
/// `requiresGrad`), attach a backward closure that *adds* into the inputs' `grad`.
/// Call `backward()` on a scalar loss to run every recorded closure in reverse topological order.
///
/// Tensors are reference types: an op's output keeps its inputs alive until backward has run
/// (or the output is released). Not thread-safe for concurrent mutation; concurrent *reads*
/// (inference from several threads over shared weights) are safe.
public final class Tensor {
    /// Sizes of each dimension, outermost first. `[]` is a scalar.
    public let shape: [Int]
    /// Number of elements (product of `shape`).
    public let count: Int
    /// The values, valid while the tensor lives: its own buffer, or read-only borrowed memory when
    /// `isReadOnly` (never write through `data` then; call `makeWritable()` first).
    /// Set at creation; only `share(valuesOf:)` and `makeWritable()` change it.
    @exclusivity(unchecked) public private(set) var data: UnsafeMutablePointer<Float>
    /// What keeps borrowed storage alive (a mapped file); nil when the tensor owns `data`.
    private var storageOwner: AnyObject?
    /// Accumulated gradient, allocated (zero-filled) on first use by `gradBuffer()`.
    public private(set) var grad: UnsafeMutablePointer<Float>?
    /// Whether gradients flow into this tensor. Parameters set it; op outputs inherit it.
    public var requiresGrad: Bool
    /// Optional name (parameters use their checkpoint key).
    public var name: String?

    // Autograd bookkeeping.
    internal var parents: [Tensor] = []
    internal var backwardFn: (() -> Void)?

    /// A zero-filled tensor.
    public init(zeros shape: [Int], requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        self.data.initialize(repeating: 0, count: count)
        self.requiresGrad = requiresGrad
    }

    /// A tensor with uninitialised storage (callers fill every element).
    internal init(uninitialized shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        self.requiresGrad = false
    }

    /// A tensor holding `values` (count must equal the product of `shape`).
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *),
                     "Tensor: \(values.count) values for shape \(shape)")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
        self.requiresGrad = requiresGrad
    }

    /// A tensor filled with `value`.
    public convenience init(filled value: Float, shape: [Int], requiresGrad: Bool = false) {
        self.init(uninitialized: shape)
        data.update(repeating: value, count: count)
        self.requiresGrad = requiresGrad
    }

    /// A scalar.
    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    /// A tensor over `count(shape)` floats at `data` that it does not own and never writes;
    /// `owner` keeps them valid (a mapped file) and is released with the tensor.
    internal init(borrowing data: UnsafeMutablePointer<Float>, shape: [Int], owner: AnyObject) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = data
        self.storageOwner = owner
        self.requiresGrad = false
    }

    deinit {
        if storageOwner == nil { data.deallocate() }
        grad?.deallocate()
    }

    // MARK: Borrowed (read-only) storage

    /// Whether `data` is read-only memory this tensor borrows (weights of a mapped file).
    public var isReadOnly: Bool { storageOwner != nil }

    /// Gives a read-only tensor a buffer of its own holding the same values, so that it can be
    /// written (no-op for a tensor that owns its buffer). Not thread-safe: call it before other
    /// threads use the tensor, as for any write.
    public func makeWritable() { ownStorage(keepingValues: true) }

    private func ownStorage(keepingValues: Bool) {
        guard storageOwner != nil else { return }
        let own = Tensor.allocate(count)
        if keepingValues { own.update(from: data, count: count) }
        data = own
        storageOwner = nil
    }

    /// Takes the values of `other` (same shape) without copying them when `other` is read-only:
    /// this tensor then reads the same borrowed memory (and is read-only too), so weights loaded
    /// from a mapped file stay shared between processes; otherwise copies them, as
    /// `copyValues(from:)`. `Layer.load(from:)` loads parameters this way.
    public func share(valuesOf other: Tensor) {
        precondition(other.count == count, "share(valuesOf:): \(other.shape) into \(shape)")
        guard let owner = other.storageOwner else { return copyValues(from: other) }
        if storageOwner == nil { data.deallocate() }
        data = other.data
        storageOwner = owner
    }

    /// Reads `other`'s values in place (same count), without copying, and keeps `other` alive:
    /// the weights of a network replica that keeps gradients of its own (`DataParallelStep`).
    /// This tensor is read-only while it aliases. `other` may move its storage (`makeWritable`),
    /// so call this again before each use; it is a pointer comparison when nothing moved.
    public func alias(valuesOf other: Tensor) {
        precondition(other.count == count, "alias(valuesOf:): \(other.shape) into \(shape)")
        if data == other.data { return }
        if storageOwner == nil { data.deallocate() }
        data = other.data
        storageOwner = other
    }

    static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, n) * 4, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: max(1, n))
    }

    /// The gradient buffer, allocated and zeroed on first use.
    @discardableResult
    public func gradBuffer() -> UnsafeMutablePointer<Float> {
        if let g = grad { return g }
        let g = Tensor.allocate(count)
        g.initialize(repeating: 0, count: count)
        grad = g
        return g
    }

    /// Sets the gradient to zero (keeps the buffer).
    public func zeroGrad() {
        if let g = grad { g.update(repeating: 0, count: count) }
    }

    /// Drops the gradient buffer.
    public func clearGrad() {
        grad?.deallocate()
        grad = nil
    }

    // MARK: Accessors

    public var rank: Int { shape.count }
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var gradArray: [Float]? { grad.map { Array(UnsafeBufferPointer(start: $0, count: count)) } }
    /// The single value of a one-element tensor.
    public var item: Float { precondition(count == 1, "item on tensor of shape \(shape)"); return data[0] }

    public subscript(_ i: Int) -> Float {
        get { data[i] }
        set {
            if storageOwner != nil { makeWritable() }
            data[i] = newValue
        }
    }

    /// A copy of the values with no autograd history.
    public func detached() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Copies values from `other` (same element count) without touching autograd history. A
    /// read-only tensor gets a buffer of its own first (`makeWritable()`).
    public func copyValues(from other: Tensor) {
        precondition(other.count == count, "copyValues: \(other.shape) into \(shape)")
        ownStorage(keepingValues: other === self)
        data.update(from: other.data, count: count)
    }

    // MARK: Creation helpers

    /// Standard-normal values scaled by `std`, drawn from `rng`.
    public static func randn(_ shape: [Int], std: Float = 1, rng: inout RandomGenerator,
                             requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = rng.nextNormal() * std }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Uniform values in [lo, hi).
    public static func uniform(_ shape: [Int], lo: Float, hi: Float, rng: inout RandomGenerator,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = lo + (hi - lo) * rng.nextFloat() }
        t.requiresGrad = requiresGrad
        return t
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = (0..<min(count, 8)).map { String(format: "%.4g", data[$0]) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(count > 8 ? ", ..." : "")])"
    }
}
