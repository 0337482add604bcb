#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only and private (`mmap(PROT_READ, MAP_PRIVATE)`), unmapped when the
/// last user releases it. Its pages are the page cache's: every process mapping the same file
/// shares them, and they are never written (a write through them faults). `SafeTensors.map(path:)`
/// uses it; tensors that borrow its memory keep it alive (`Tensor.isReadOnly`).
final class MappedFile: @unchecked Sendable {
    /// The first byte (page-aligned).
    let base: UnsafeRawPointer
    /// The file's size when mapped, in bytes.
    let size: Int

    /// Maps `path`. - Returns: nil for an empty file (which cannot be mapped).
    /// - Throws: `TensorError.io` naming the call that failed (open, fstat, mmap).
    init?(path: String) throws {
        let fd = try SafeTensors.sys("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var st = stat()
        try SafeTensors.sys("fstat", path) { fstat(fd, &st) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw TensorError.io(path: path, message: "not a regular file")
        }
        size = Int(st.st_size)
        guard size > 0 else { return nil }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw TensorError.io(path: path, message: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}
