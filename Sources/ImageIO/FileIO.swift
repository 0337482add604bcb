#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small file helpers on top of POSIX calls. Every call that can fail goes through `check`, which
/// turns a failure into `ImageIOError.io` naming the path, the call and `strerror(errno)`.
enum FileIO {
    /// The system's message for the current `errno`.
    static func errnoMessage(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    /// Runs a POSIX call that returns -1 on failure (retrying on EINTR) and throws if it failed.
    @discardableResult
    static func check<T: BinaryInteger>(_ call: String, path: String, _ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let code = errno
            if code == EINTR { continue }
            throw ImageIOError.io(path: path, call: call, message: errnoMessage(code))
        }
    }

    /// Whether a regular file (or a link to one) exists at `path`.
    static func isFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Whether a directory exists at `path`.
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Reads a whole file into memory.
    static func readAll(path: String) throws -> [UInt8] {
        let fd = try check("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var st = stat()
        try check("fstat", path: path) { fstat(fd, &st) }
        var out = [UInt8]()
        out.reserveCapacity(Int(st.st_size) + 1)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buf in
                try check("read", path: path) { read(fd, buf.baseAddress, buf.count) }
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// Writes `bytes` to `path` atomically: into a temporary file in the same directory, flushed,
    /// then renamed over `path`. On failure the temporary file is removed and `path` is untouched.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = try check("open", path: tmp) { open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            var done = 0
            try bytes.withUnsafeBytes { buf in
                while done < buf.count {
                    let n = try check("write", path: tmp) { write(fd, buf.baseAddress! + done, buf.count - done) }
                    done += n
                }
            }
            try check("fsync", path: tmp) { fsync(fd) }
        }
        try check("rename", path: path) { rename(tmp, path) }
        ok = true
    }

    /// `directory` joined with `name` (no separator doubling; an absolute `name` is kept as is).
    static func join(_ directory: String, _ name: String) -> String {
        if name.hasPrefix("/") || directory.isEmpty { return name }
        return directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
