// WeightsCheck: the checks the Engine makes on a model's weight files before any backend sees
// them, whatever the backend: every *.safetensors file in the model directory must be well
// formed and hold only finite floating-point values.
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

public enum WeightsCheck {
    /// Largest safetensors JSON header accepted.
    static let maxHeaderBytes = 100 << 20

    /// Checks every `*.safetensors` file directly inside `directory`.
    /// - Throws: `.invalidArgument` naming the file (and tensor) that is malformed or holds NaN
    ///   or infinity; `.internal` when a file cannot be read.
    public static func checkDirectory(_ directory: String) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names.sorted() where name.hasSuffix(".safetensors") {
            let path = directory + "/" + name
            guard isRegularFile(path) else { continue }
            try checkSafeTensors(path: path)
        }
    }

    /// Checks one safetensors file: header, tensor bounds, and that every F64/F32/F16/BF16
    /// value is finite.
    public static func checkSafeTensors(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw EngineError.internal("weights file \(quoted(path)) cannot be opened: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw EngineError.internal("weights file \(quoted(path)): fstat failed: \(String(cString: strerror(errno)))")
        }
        let size = Int(st.st_size)
        guard size >= 8 else { throw malformed(path, "it is \(size) bytes, shorter than the 8-byte header length") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw EngineError.internal("weights file \(quoted(path)): mmap failed: \(String(cString: strerror(errno)))")
        }
        defer { munmap(base, size) }
        let raw = UnsafeRawPointer(base)
        let headerLength = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(min(maxHeaderBytes, size - 8)) else {
            throw malformed(path, "its header length \(headerLength) does not fit in the file (\(size) bytes)")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = Data(bytes: raw + 8, count: Int(headerLength))
        guard let header = try? JSONDecoder().decode([String: HeaderEntry].self, from: headerBytes) else {
            throw malformed(path, "its header is not a JSON object")
        }
        for (name, entry) in header.sorted(by: { $0.key < $1.key }) where name != "__metadata__" {
            guard let dtype = entry.dtype, let offsets = entry.dataOffsets, offsets.count == 2 else {
                throw malformed(path, "tensor \(quoted(name)) has no dtype or data_offsets")
            }
            let begin = offsets[0], end = offsets[1]
            guard begin >= 0, begin <= end, end <= size - dataStart else {
                throw malformed(path, "tensor \(quoted(name)) has data_offsets [\(begin), \(end)] outside the file")
            }
            if let bad = firstNonFinite(raw + dataStart + begin, bytes: end - begin, dtype: dtype) {
                throw EngineError.invalidArgument(
                    "weights file \(quoted(path)): tensor \(quoted(name)) (\(dtype)) holds a non-finite value "
                    + "(NaN or infinity) at element \(bad)")
            }
        }
    }

    /// Index of the first NaN or infinity among the values at `p`, or nil (also for integer
    /// and unknown dtypes, which cannot hold one).
    static func firstNonFinite(_ p: UnsafeRawPointer, bytes: Int, dtype: String) -> Int? {
        switch dtype {
        case "F64":
            for i in 0..<(bytes / 8) where p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) & 0x7FF0_0000_0000_0000 == 0x7FF0_0000_0000_0000 {
                return i
            }
        case "F32":
            for i in 0..<(bytes / 4) where p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) & 0x7F80_0000 == 0x7F80_0000 {
                return i
            }
        case "F16":
            for i in 0..<(bytes / 2) where p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self) & 0x7C00 == 0x7C00 {
                return i
            }
        case "BF16":
            for i in 0..<(bytes / 2) where p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self) & 0x7F80 == 0x7F80 {
                return i
            }
        default:
            break
        }
        return nil
    }

    /// One header entry, decoded leniently (the "__metadata__" entry has neither field).
    struct HeaderEntry: Decodable {
        var dtype: String?
        var dataOffsets: [Int]?

        enum CodingKeys: String, CodingKey {
            case dtype
            case dataOffsets = "data_offsets"
        }

        init(from decoder: Decoder) throws {
            let c = try? decoder.container(keyedBy: CodingKeys.self)
            dtype = try? c?.decode(String.self, forKey: .dtype)
            dataOffsets = try? c?.decode([Int].self, forKey: .dataOffsets)
        }
    }

    private static func malformed(_ path: String, _ why: String) -> EngineError {
        .invalidArgument("weights file \(quoted(path)) is not a valid safetensors file: \(why)")
    }
}
