import CZLib

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The contents of an IDX file of unsigned bytes: its dimensions (outermost first) and the values
/// in row-major order. For an image file, `dims == [count, rows, columns]`.
public struct IDXFile: Equatable, Sendable {
    public var dims: [Int]
    public var data: [UInt8]

    public init(dims: [Int], data: [UInt8]) {
        self.dims = dims
        self.data = data
    }
}

/// Reading and writing IDX files (the MNIST / Fashion-MNIST format), unsigned-byte element type
/// (0x08) with 1 to 3 dimensions.
///
/// Layout: two zero bytes, the type byte (0x08), the number of dimensions, each dimension as a
/// big-endian UInt32, then the values. Files compressed with gzip are read transparently (through
/// zlib's `gzopen`/`gzread`, whatever their name); `write` compresses when the path ends in `.gz`.
public enum IDX {
    /// The largest data size accepted (4 GiB); anything bigger is a corrupt header.
    public static let maxBytes = 1 << 32

    /// Reads the IDX file at `path` (plain or gzip-compressed). Validates the magic number, the
    /// element type, the number and size of the dimensions, and that the data is exactly as long
    /// as the dimensions say: a truncated file or trailing bytes give `ImageIOError.idx`.
    public static func read(path: String) throws -> IDXFile {
        guard let gz = gzopen(path, "rb") else {
            let code = errno
            throw ImageIOError.io(path: path, call: "gzopen",
                                  message: code != 0 ? FileIO.errnoMessage(code) : "cannot open")
        }
        defer { gzclose(gz) }
        gzbuffer(gz, 1 << 17)

        var magic = [UInt8](repeating: 0, count: 4)
        let got = try readFully(gz, into: &magic, path: path)
        guard got == 4 else {
            throw ImageIOError.idx(path: path, message: "truncated: \(got) of 4 header bytes\(zlibNote(gz))")
        }
        let dims = try parseHeader(magic, path: path) { count in
            var raw = [UInt8](repeating: 0, count: count)
            let n = try readFully(gz, into: &raw, path: path)
            guard n == count else {
                throw ImageIOError.idx(path: path,
                                       message: "truncated: \(n) of \(count) dimension bytes\(zlibNote(gz))")
            }
            return raw
        }
        let total = dims.reduce(1, *)
        var data = [UInt8](repeating: 0, count: total)
        let n = try readFully(gz, into: &data, path: path)
        guard n == total else {
            throw ImageIOError.idx(path: path, message:
                "truncated: dimensions \(dims) need \(total) data bytes, found \(n)\(zlibNote(gz))")
        }
        var extra = [UInt8](repeating: 0, count: 1)
        if try readFully(gz, into: &extra, path: path) > 0 {
            throw ImageIOError.idx(path: path, message:
                "trailing bytes after the \(total) data bytes that dimensions \(dims) describe")
        }
        return IDXFile(dims: dims, data: data)
    }

    /// Encodes `file` as IDX bytes (uncompressed). Throws if the dimensions are invalid or do not
    /// match the data length.
    public static func encode(_ file: IDXFile) throws -> [UInt8] {
        try validate(file, path: "<memory>")
        var out: [UInt8] = [0, 0, 0x08, UInt8(file.dims.count)]
        for d in file.dims {
            let v = UInt32(d)
            out += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
        }
        out += file.data
        return out
    }

    /// Writes `file` to `path` atomically (temporary file, then rename), gzip-compressed when the
    /// path ends in `.gz`.
    public static func write(_ file: IDXFile, to path: String) throws {
        try validate(file, path: path)
        let bytes = try encode(file)
        guard path.hasSuffix(".gz") else {
            try FileIO.writeAtomically(bytes, to: path)
            return
        }
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        guard let gz = gzopen(tmp, "wb") else {
            throw ImageIOError.io(path: tmp, call: "gzopen", message: FileIO.errnoMessage())
        }
        var closed = false
        defer {
            if !closed { gzclose(gz); unlink(tmp) }
        }
        var done = 0
        try bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let chunk = min(buf.count - done, 1 << 30)
                let n = gzwrite(gz, buf.baseAddress! + done, UInt32(chunk))
                guard n > 0 else {
                    throw ImageIOError.io(path: tmp, call: "gzwrite", message: zlibMessage(gz))
                }
                done += Int(n)
            }
        }
        closed = true
        let rc = gzclose(gz)
        guard rc == Z_OK else {
            unlink(tmp)
            throw ImageIOError.io(path: tmp, call: "gzclose", message: "zlib error \(rc)")
        }
        do {
            try FileIO.check("rename", path: path) { rename(tmp, path) }
        } catch {
            unlink(tmp)
            throw error
        }
    }

    // MARK: Helpers

    /// Checks the magic bytes and reads the dimensions (through `readDims`, which returns
    /// `4 * ndims` bytes). Returns the dimensions.
    private static func parseHeader(_ magic: [UInt8], path: String,
                                    readDims: (Int) throws -> [UInt8]) throws -> [Int] {
        guard magic[0] == 0, magic[1] == 0 else {
            throw ImageIOError.idx(path: path, message:
                "bad magic number (first bytes \(hex(magic[0])) \(hex(magic[1])), expected 00 00)")
        }
        guard magic[2] == 0x08 else {
            let names: [UInt8: String] = [0x09: "signed byte", 0x0B: "short", 0x0C: "int",
                                           0x0D: "float", 0x0E: "double"]
            let name = names[magic[2]].map { " (\($0))" } ?? ""
            throw ImageIOError.idx(path: path, message:
                "element type 0x\(hex(magic[2]))\(name) is not supported; only unsigned byte (0x08) is")
        }
        let ndims = Int(magic[3])
        guard (1...3).contains(ndims) else {
            throw ImageIOError.idx(path: path, message: "\(ndims) dimensions; 1 to 3 are supported")
        }
        let raw = try readDims(4 * ndims)
        var dims = [Int]()
        var total = 1
        for i in 0..<ndims {
            let d = Int(raw[4 * i]) << 24 | Int(raw[4 * i + 1]) << 16 | Int(raw[4 * i + 2]) << 8
                | Int(raw[4 * i + 3])
            guard d >= 1 else {
                throw ImageIOError.idx(path: path, message: "dimension \(i) is 0")
            }
            total = total.multipliedReportingOverflow(by: d).overflow ? Int.max : total * d
            guard total <= maxBytes else {
                throw ImageIOError.idx(path: path, message:
                    "dimensions \(dims + [d]) describe more than \(maxBytes) bytes")
            }
            dims.append(d)
        }
        return dims
    }

    private static func hex(_ b: UInt8) -> String {
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }

    private static func validate(_ file: IDXFile, path: String) throws {
        guard (1...3).contains(file.dims.count) else {
            throw ImageIOError.idx(path: path, message: "\(file.dims.count) dimensions; 1 to 3 are supported")
        }
        guard file.dims.allSatisfy({ $0 >= 1 && $0 <= Int(UInt32.max) }) else {
            throw ImageIOError.idx(path: path, message: "dimensions \(file.dims) must each be in 1...\(UInt32.max)")
        }
        let total = file.dims.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard total == file.data.count else {
            throw ImageIOError.idx(path: path, message:
                "dimensions \(file.dims) need \(total) bytes, data has \(file.data.count)")
        }
    }

    /// Reads up to `buffer.count` bytes; returns how many were read (fewer only at end of data).
    private static func readFully(_ gz: gzFile, into buffer: inout [UInt8], path: String) throws -> Int {
        var done = 0
        let total = buffer.count
        try buffer.withUnsafeMutableBytes { buf in
            while done < total {
                let chunk = UInt32(min(total - done, 1 << 30))
                let n = gzread(gz, buf.baseAddress! + done, chunk)
                if n < 0 {
                    throw ImageIOError.io(path: path, call: "gzread", message: zlibMessage(gz))
                }
                if n == 0 { break }
                done += Int(n)
            }
        }
        return done
    }

    private static func zlibMessage(_ gz: gzFile) -> String {
        var code: Int32 = 0
        guard let msg = gzerror(gz, &code) else { return "zlib error" }
        if code == Z_ERRNO { return FileIO.errnoMessage() }
        let s = String(cString: msg)
        return s.isEmpty ? "zlib error \(code)" : s
    }

    /// " (zlib: ...)" when zlib recorded a problem (for example a truncated gzip stream).
    private static func zlibNote(_ gz: gzFile) -> String {
        var code: Int32 = 0
        guard let msg = gzerror(gz, &code), code != Z_OK else { return "" }
        return " (zlib: \(String(cString: msg)))"
    }
}
