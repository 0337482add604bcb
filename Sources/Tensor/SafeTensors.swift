import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A set of named tensors in the safetensors format (https://github.com/huggingface/safetensors),
/// the format of every Coalesce checkpoint.
///
/// File layout: an 8-byte little-endian header length `N`, `N` bytes of JSON header
///
///     {"__metadata__": {"config": "{...}"},
///      "layer.weight": {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 512]}, ...}
///
/// then the byte buffer; each tensor's `data_offsets` are `[begin, end)` relative to the start of
/// the buffer, values little-endian in row-major order.
///
/// - Reading accepts `F32`, and converts `F16`, `BF16` and `F64` to Float32 (F64 rounds to
///   nearest; F16/BF16 convert exactly). Other dtypes are rejected.
/// - Writing always produces `F32`, with the tensors sorted by name (byte order) and laid out in
///   that order, `__metadata__` first (omitted when empty), and the header padded with spaces to a
///   multiple of 8 bytes, as the Python library does; its files and ours load in each other.
/// - Everything in a file is validated: the header length against the file size, the header as
///   JSON of the shape above, each dtype, each shape (no negative sizes), each pair of offsets
///   (in range, matching `shape` times the dtype size, no overlap, no gap, the whole buffer
///   covered). Any violation throws `TensorError.safetensors` with a message saying what was wrong.
///
/// Model code stores its configuration as a JSON string in the metadata under `configKey`
/// (`"config"`); see `config`.
///
/// Mapped files: `map(path:)` (and `read(path:)` when `COALESCE_MAP_WEIGHTS=1`, which the daemon
/// sets for its worker processes) maps the file read-only (`mmap`, `MAP_PRIVATE`, `PROT_READ`)
/// instead of reading it. Each `F32` tensor whose data is aligned for `Float` (every tensor of an
/// all-F32 file whose header length is a multiple of 4, as this library and Python's write them)
/// is then left in the file's pages: `tensor(_:)` returns a read-only tensor over them
/// (`Tensor.isReadOnly`) and `Layer.load(from:)` shares it, so processes that load the same file
/// share one copy in the page cache. Other dtypes, and a tensor whose data is misaligned, are
/// converted into a buffer of their own as when reading. The mapping lives as long as any tensor
/// or entry using it. The file must not be rewritten in place while mapped (replace it by a
/// rename, as `write(path:)` does): a truncated file's pages fault (SIGBUS) when touched.
public struct SafeTensors: Equatable, Sendable {
    /// One tensor's shape and values (row-major; `values.count` is the product of `shape`).
    public struct Entry: Equatable, Sendable {
        public var shape: [Int]
        /// The values. For an entry of a mapped file (`isMapped`) this is a copy, made at each
        /// access; `SafeTensors.tensor(_:)` reads the mapped values without copying them.
        public var values: [Float] {
            get { mapped.map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.count)) } ?? stored }
            set {
                stored = newValue
                mapped = nil
            }
        }
        private var stored: [Float]
        fileprivate private(set) var mapped: MappedValues?

        public init(shape: [Int], values: [Float]) {
            self.shape = shape
            self.stored = values
        }

        fileprivate init(shape: [Int], mapped: MappedValues) {
            self.shape = shape
            self.stored = []
            self.mapped = mapped
        }

        /// Whether the values are read in place from a mapped file (see `SafeTensors.map(path:)`).
        public var isMapped: Bool { mapped != nil }

        /// The number of values (no copy).
        public var valueCount: Int { mapped?.count ?? stored.count }

        public static func == (a: Entry, b: Entry) -> Bool {
            guard a.shape == b.shape, a.valueCount == b.valueCount else { return false }
            if let ma = a.mapped, let mb = b.mapped, ma.pointer == mb.pointer { return true }
            return a.values == b.values
        }
    }

    /// `count` floats at `pointer` inside `file`, which keeps them mapped.
    fileprivate struct MappedValues: @unchecked Sendable {
        let file: MappedFile
        let pointer: UnsafeMutablePointer<Float>
        let count: Int
    }

    /// Whether `read(path:)` maps files (`map(path:)`) instead of reading them: true when the
    /// environment variable `COALESCE_MAP_WEIGHTS` is `1` when first asked. Off by default: a
    /// process that maps a weights file faults if the file is truncated under it, which a worker
    /// process of the daemon survives (it is restarted) but a program using the library would not.
    public static let mapsFilesByDefault: Bool = getenv("COALESCE_MAP_WEIGHTS").map { String(cString: $0) == "1" } ?? false

    /// The metadata key under which a model's configuration JSON is stored.
    public static let configKey = "config"
    /// The largest header accepted when reading (the Python library's limit, 100 MB).
    public static let maxHeaderBytes = 100_000_000

    /// The tensors by name.
    public var tensors: [String: Entry]
    /// The free-form string metadata (`__metadata__` in the header).
    public var metadata: [String: String]

    public init(tensors: [String: Entry] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Copies the values of `tensors` (no autograd history is kept).
    public init(tensors: [String: Tensor], metadata: [String: String] = [:]) {
        self.tensors = tensors.mapValues { Entry(shape: $0.shape, values: $0.array) }
        self.metadata = metadata
    }

    /// The model configuration JSON stored under `configKey` in the metadata.
    public var config: String? {
        get { metadata[SafeTensors.configKey] }
        set { metadata[SafeTensors.configKey] = newValue }
    }

    /// The tensor names, sorted (byte order, as written to files).
    public var names: [String] {
        tensors.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Parameters (tensor elements) per top-level name, the part before the first "." ("unet",
    /// "text_encoder", "autoencoder", ...; a name without a dot is its own group).
    public var parameterCounts: [String: Int] {
        var out: [String: Int] = [:]
        for (name, e) in tensors {
            let group = name.split(separator: ".", maxSplits: 1).first.map(String.init) ?? name
            out[group, default: 0] += e.shape.reduce(1, *)
        }
        return out
    }

    /// A new tensor holding the values of `name`. Throws `TensorError.safetensors` when there is no
    /// such tensor or its values do not match its shape.
    /// Every tensor by name (what `Layer.load(from:)` takes).
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in names { out[name] = try tensor(name) }
        return out
    }

    /// A mapped tensor (see `map(path:)`) is read-only memory of the file, not a copy.
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = tensors[name] else {
            throw TensorError.safetensors("no tensor named \"\(name)\" (\(tensors.count) tensors present)")
        }
        try SafeTensors.check(e, name: name)
        if let m = e.mapped {
            let t = Tensor(borrowing: m.pointer, shape: e.shape, owner: m.file)
            t.name = name
            return t
        }
        if e.values.isEmpty { return Tensor(zeros: e.shape) }
        let t = Tensor(e.values, shape: e.shape)
        t.name = name
        return t
    }

    // MARK: Reading

    /// Reads and validates the file at `path` (maps it instead when `mapsFilesByDefault`). File
    /// errors are `TensorError.io`; format errors are `TensorError.safetensors` with the path in
    /// the message.
    public static func read(path: String) throws -> SafeTensors {
        if mapsFilesByDefault { return try map(path: path) }
        return try read(bytes: readFile(path), path: path)
    }

    /// Maps the file at `path` read-only and validates it as `read(path:)` does (the same errors):
    /// aligned `F32` tensors stay in the mapping (`Entry.isMapped`), the others are converted into
    /// buffers of their own. An empty file is read, not mapped (it is refused either way).
    public static func map(path: String) throws -> SafeTensors {
        let file = try MappedFile(path: path)
        guard let file else { return try read(bytes: readFile(path), path: path) }
        do {
            return try decode(UnsafeRawBufferPointer(start: file.base, count: file.size), mapping: file)
        } catch let TensorError.safetensors(message) {
            throw TensorError.safetensors("\(path): \(message)")
        }
    }

    /// Decodes the bytes of the file at `path`, naming it in format errors.
    private static func read(bytes: [UInt8], path: String) throws -> SafeTensors {
        do {
            return try decode(bytes)
        } catch let TensorError.safetensors(message) {
            throw TensorError.safetensors("\(path): \(message)")
        }
    }

    /// Decodes and validates safetensors bytes.
    public static func decode(_ bytes: [UInt8]) throws -> SafeTensors {
        try bytes.withUnsafeBytes { try decode($0, mapping: nil) }
    }

    /// Decodes `bytes`; with `mapping` (whose memory `bytes` is), aligned F32 tensors refer to it.
    private static func decode(_ bytes: UnsafeRawBufferPointer, mapping: MappedFile?) throws -> SafeTensors {
        guard bytes.count >= 8 else {
            throw TensorError.safetensors("file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(bytes.count - 8) else {
            throw TensorError.safetensors(
                "header length \(n) is beyond the end of the data (\(bytes.count - 8) bytes follow it)")
        }
        guard n <= UInt64(maxHeaderBytes) else {
            throw TensorError.safetensors("header length \(n) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        let headerEnd = 8 + Int(n)
        let header = try parseHeader(Array(UnsafeRawBufferPointer(rebasing: bytes[8..<headerEnd])))
        let bufferSize = bytes.count - headerEnd

        // Offsets: each in range and of the right size, together tiling the buffer exactly.
        var result = SafeTensors(metadata: header.metadata)
        let ordered = header.tensors.sorted {
            ($0.value.begin, $0.value.end, $0.key) < ($1.value.begin, $1.value.end, $1.key)
        }
        var covered = 0
        var previous: String?
        for (name, info) in ordered {
            guard let dtype = DType(rawValue: info.dtype) else {
                throw TensorError.safetensors("tensor \"\(name)\": dtype \"\(info.dtype)\" is not supported "
                                              + "(supported: F32, F16, BF16, F64)")
            }
            guard info.shape.allSatisfy({ $0 >= 0 }) else {
                throw TensorError.safetensors("tensor \"\(name)\": negative size in shape \(info.shape)")
            }
            var count = 1
            for d in info.shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= Int.max / 8 else {
                    throw TensorError.safetensors("tensor \"\(name)\": shape \(info.shape) is too large")
                }
                count = p
            }
            guard info.begin >= 0, info.end >= info.begin else {
                throw TensorError.safetensors(
                    "tensor \"\(name)\": data_offsets [\(info.begin), \(info.end)] are not an increasing pair")
            }
            guard info.end <= bufferSize else {
                throw TensorError.safetensors("tensor \"\(name)\": data_offsets [\(info.begin), \(info.end)] "
                                              + "are beyond the \(bufferSize)-byte data buffer")
            }
            let expected = count * dtype.size
            guard info.end - info.begin == expected else {
                throw TensorError.safetensors("tensor \"\(name)\": data_offsets [\(info.begin), \(info.end)] "
                    + "span \(info.end - info.begin) bytes, but shape \(info.shape) of \(dtype.rawValue) "
                    + "needs \(expected)")
            }
            if info.begin < covered {
                throw TensorError.safetensors("tensor \"\(name)\": data_offsets [\(info.begin), \(info.end)] "
                                              + "overlap tensor \"\(previous ?? "")\" (which ends at \(covered))")
            }
            if info.begin > covered {
                throw TensorError.safetensors("bytes \(covered)..<\(info.begin) of the data buffer belong to "
                                              + "no tensor (gap before \"\(name)\")")
            }
            covered = info.end
            previous = name
            let raw = UnsafeRawBufferPointer(rebasing: bytes[(headerEnd + info.begin)..<(headerEnd + info.end)])
            if let mapping, let floats = dtype.inPlace(raw, count: count) {
                result.tensors[name] = Entry(shape: info.shape, mapped: MappedValues(file: mapping, pointer: floats, count: count))
            } else {
                result.tensors[name] = Entry(shape: info.shape, values: dtype.convert(raw, count: count))
            }
        }
        guard covered == bufferSize else {
            throw TensorError.safetensors("bytes \(covered)..<\(bufferSize) of the data buffer belong to no tensor "
                                          + "(trailing data)")
        }
        return result
    }

    // MARK: Writing

    /// Encodes as a safetensors file (F32, names sorted, header padded to a multiple of 8).
    /// Throws `TensorError.safetensors` for an empty or reserved name or values that do not match
    /// their shape.
    public func encode() throws -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += SafeTensors.quote("__metadata__") + ":{"
            let keys = metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            json += keys.map { SafeTensors.quote($0) + ":" + SafeTensors.quote(metadata[$0]!) }
                .joined(separator: ",")
            json += "}"
            first = false
        }
        let order = names
        var offset = 0
        for name in order {
            guard !name.isEmpty, name != "__metadata__" else {
                throw TensorError.safetensors("tensor name \"\(name)\" is empty or reserved")
            }
            let e = tensors[name]!
            try SafeTensors.check(e, name: name)
            let end = offset + 4 * e.valueCount
            if !first { json += "," }
            first = false
            json += SafeTensors.quote(name) + ":{\"dtype\":\"F32\",\"shape\":["
                + e.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)

        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        let n = UInt64(header.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        out += header
        for name in order {
            #if _endian(little)
            tensors[name]!.values.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for v in tensors[name]!.values {
                let bits = v.bitPattern
                for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: bits >> shift)) }
            }
            #endif
        }
        return out
    }

    /// Encodes and writes to `path` atomically: a temporary file in the same directory is written,
    /// flushed and renamed over `path`, so readers never see a half-written checkpoint.
    public func write(path: String) throws {
        let bytes = try encode()
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = try SafeTensors.sys("open", tmp) { open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        var renamed = false
        defer { if !renamed { unlink(tmp) } }
        do {
            defer { close(fd) }
            var done = 0
            try bytes.withUnsafeBytes { buf in
                while done < buf.count {
                    done += try SafeTensors.sys("write", tmp) { posixWrite(fd, buf.baseAddress! + done, buf.count - done) }
                }
            }
            try SafeTensors.sys("fsync", tmp) { fsync(fd) }
        }
        try SafeTensors.sys("rename", path) { rename(tmp, path) }
        renamed = true
    }

    // MARK: Helpers

    private static func check(_ e: Entry, name: String) throws {
        guard e.shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.safetensors("tensor \"\(name)\": negative size in shape \(e.shape)")
        }
        let count = e.shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? -1 : $0 * $1 }
        guard count == e.valueCount else {
            throw TensorError.safetensors("tensor \"\(name)\": shape \(e.shape) needs \(count) values, "
                                          + "has \(e.valueCount)")
        }
    }

    /// The element types read (all converted to Float32).
    private enum DType: String {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"

        var size: Int {
            switch self {
            case .f32: return 4
            case .f16, .bf16: return 2
            case .f64: return 8
            }
        }

        /// The values of `raw` as they lie, when they can be used without converting them: F32 on a
        /// little-endian machine, aligned for Float, not empty. nil otherwise (then `convert`).
        func inPlace(_ raw: UnsafeRawBufferPointer, count: Int) -> UnsafeMutablePointer<Float>? {
            #if _endian(little)
            guard self == .f32, count > 0, let base = raw.baseAddress,
                  Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 else { return nil }
            return UnsafeMutableRawPointer(mutating: base).bindMemory(to: Float.self, capacity: count)
            #else
            return nil
            #endif
        }

        func convert(_ raw: UnsafeRawBufferPointer, count: Int) -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                switch self {
                case .f32:
                    #if _endian(little)
                    if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: 4 * count) }
                    #else
                    for i in 0..<count {
                        out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    }
                    #endif
                case .f64:
                    for i in 0..<count {
                        out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                    }
                case .bf16:
                    for i in 0..<count {
                        let h = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                        out[i] = Float(bitPattern: UInt32(h) << 16)
                    }
                case .f16:
                    for i in 0..<count {
                        out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    }
                }
                initialized = count
            }
        }

        /// IEEE 754 binary16 to binary32 (exact, including subnormals, infinities and NaN).
        private func halfToFloat(_ h: UInt16) -> Float {
            let sign: Float = h & 0x8000 != 0 ? -1 : 1
            let exponent = Int((h >> 10) & 0x1f)
            let mantissa = UInt32(h & 0x3ff)
            if exponent == 0 { return sign * Float(mantissa) * 0x1p-24 }
            if exponent == 0x1f {
                let bits = UInt32(h & 0x8000) << 16 | 0x7f80_0000 | mantissa << 13
                return Float(bitPattern: bits)
            }
            let bits = UInt32(h & 0x8000) << 16 | UInt32(exponent - 15 + 127) << 23 | mantissa << 13
            return Float(bitPattern: bits)
        }
    }

    /// One tensor's header entry.
    private struct Info: Decodable {
        var dtype: String
        var shape: [Int]
        var begin: Int
        var end: Int

        enum CodingKeys: String, CodingKey { case dtype, shape, data_offsets }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            dtype = try c.decode(String.self, forKey: .dtype)
            shape = try Info.integers(c, .shape)
            let offsets = try Info.integers(c, .data_offsets)
            guard offsets.count == 2 else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [CodingKeys.data_offsets],
                    debugDescription: "has \(offsets.count) numbers, expected 2 (begin, end)"))
            }
            begin = offsets[0]
            end = offsets[1]
        }

        /// An array of integers. Decoded through Double (exact up to 2^53, far beyond any valid
        /// size) because Foundation reports an integer that does not fit `Int`, or a fraction, only
        /// as "not valid JSON" on Linux.
        private static func integers(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [Int] {
            let values = try c.decode([Double].self, forKey: key)
            return try values.map { v in
                guard v.rounded() == v, abs(v) <= 0x1p53 else {
                    throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key],
                        debugDescription: "holds \(v), expected integers"))
                }
                return Int(v)
            }
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The whole header: tensor entries and metadata.
    private struct Header: Decodable {
        var tensors: [String: Info] = [:]
        var metadata: [String: String] = [:]

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            for key in c.allKeys {
                if key.stringValue == "__metadata__" {
                    metadata = try c.decode([String: String].self, forKey: key)
                } else {
                    tensors[key.stringValue] = try c.decode(Info.self, forKey: key)
                }
            }
        }
    }

    private static func parseHeader(_ bytes: [UInt8]) throws -> Header {
        guard let firstByte = bytes.first(where: { $0 != 0x20 && $0 != 0x0a && $0 != 0x0d && $0 != 0x09 }),
              firstByte == UInt8(ascii: "{") else {
            throw TensorError.safetensors("header is not a JSON object (it must start with '{')")
        }
        do {
            return try JSONDecoder().decode(Header.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw TensorError.safetensors("header: \(explain(error))")
        } catch {
            throw TensorError.safetensors("header is not valid JSON")
        }
    }

    private static func explain(_ error: DecodingError) -> String {
        func field(_ path: [CodingKey]) -> String {
            path.isEmpty ? "the header" : "\"" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }
                .joined(separator: ".") + "\""
        }
        switch error {
        case let .keyNotFound(key, ctx):
            return "\(field(ctx.codingPath)) is missing \"\(key.stringValue)\""
        case let .typeMismatch(type, ctx):
            let name = "\(type)"
            let expected = type == Int.self || type == Double.self ? "a number"
                : type == String.self ? "a string"
                : ctx.codingPath.isEmpty || name.hasPrefix("Dictionary") ? "a JSON object"
                : name.hasPrefix("Array") ? "an array" : name
            return "\(field(ctx.codingPath)) must be \(expected)"
        case let .valueNotFound(_, ctx):
            return "\(field(ctx.codingPath)) is null"
        case let .dataCorrupted(ctx):
            let detail = ctx.debugDescription + (ctx.underlyingError.map { " (\($0))" } ?? "")
            return ctx.codingPath.isEmpty ? "not valid JSON"
                : "\(field(ctx.codingPath)) is invalid: \(detail)"
        @unknown default:
            return "invalid"
        }
    }

    /// A JSON string literal for `s` (Foundation's encoder does the escaping).
    private static func quote(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        guard let data = try? encoder.encode(s) else { return "\"\"" }  // a String always encodes
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs a POSIX call returning -1 on failure (retrying on EINTR); throws `TensorError.io`
    /// naming the call and `strerror(errno)`.
    @discardableResult
    static func sys<T: BinaryInteger>(_ call: String, _ path: String, _ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let code = errno
            if code == EINTR { continue }
            throw TensorError.io(path: path, message: "\(call) failed: \(String(cString: strerror(code)))")
        }
    }

    private static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try sys("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var st = stat()
        try sys("fstat", path) { fstat(fd, &st) }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        try out.withUnsafeMutableBytes { buf in
            while done < size {
                let n = try sys("read", path) { posixRead(fd, buf.baseAddress! + done, size - done) }
                if n == 0 { break }
                done += n
            }
        }
        guard done == size else {
            throw TensorError.io(path: path, message: "file shrank while reading (\(done) of \(size) bytes)")
        }
        return out
    }
}

// File-scope wrappers: inside `SafeTensors`, `read`/`write` name its own methods.
private func posixWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buf, count) }
private func posixRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buf, count) }
