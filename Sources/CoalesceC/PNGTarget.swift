// PNGTarget: how cz_image_write_png puts bytes at a path without surprising the caller (the
// rules are in coalesce.h, cz_image_write_png): create new files, replace the caller's own
// single-link regular files atomically, write through regular files that are shared (hard
// links) or not the caller's, and refuse everything else.
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum PNGTarget {
    /// Writes `bytes` to `path` (in existing directory `directory`) by the rules above.
    static func write(_ bytes: [UInt8], to path: String, directory: String) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else {
                throw EngineError.internal("cz_image_write_png: cannot inspect \(quoted(path)): \(errnoMessage())")
            }
            try createNew(bytes, at: path, directory: directory)
            return
        }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG else {
            throw EngineError.invalidArgument(
                "cz_image_write_png: \(quoted(path)) is \(describe(kind)), not a regular file; only regular files are "
                + "written (nothing was changed)")
        }
        if st.st_uid == geteuid() && st.st_nlink == 1 {
            try replaceAtomically(bytes, at: path, directory: directory, mode: st.st_mode & 0o7777)
        } else {
            try writeThrough(bytes, to: path)
        }
    }

    static func describe(_ kind: mode_t) -> String {
        switch kind {
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFDIR: return "a directory"
        default: return "not a regular file"
        }
    }

    /// A temporary file in `directory` holding `bytes` with permission bits `mode`; returns its path.
    private static func temporaryFile(_ bytes: [UInt8], directory: String, mode: mode_t?) throws -> String {
        var template = Array((directory + "/.cz_png_XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw EngineError.internal("cz_image_write_png: cannot create a temporary file in \(quoted(directory)): \(errnoMessage())")
        }
        let tmp = String(cString: template)
        do {
            if let mode {
                guard fchmod(fd, mode) == 0 else {
                    throw EngineError.internal("cz_image_write_png: fchmod: \(errnoMessage())")
                }
            } else {
                // A new file gets the usual 0666 & ~umask (mkstemp made it 0600).
                let mask = umask(0)
                umask(mask)
                _ = fchmod(fd, 0o666 & ~mask)
            }
            try writeAll(fd, bytes, path: tmp)
            guard fsync(fd) == 0 else { throw EngineError.internal("cz_image_write_png: fsync: \(errnoMessage())") }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard close(fd) == 0 else {
            unlink(tmp)
            throw EngineError.internal("cz_image_write_png: close: \(errnoMessage())")
        }
        return tmp
    }

    /// Nothing at `path`: link a complete temporary file there (fails rather than replace
    /// something that appeared meanwhile).
    private static func createNew(_ bytes: [UInt8], at path: String, directory: String) throws {
        let tmp = try temporaryFile(bytes, directory: directory, mode: nil)
        defer { unlink(tmp) }
        guard link(tmp, path) == 0 else {
            let e = errno
            // File systems without hard links: rename, if the path is still free.
            if e == EPERM || e == EOPNOTSUPP || e == ENOSYS {
                var st = stat()
                if lstat(path, &st) != 0 && errno == ENOENT && rename(tmp, path) == 0 { return }
            }
            if e == EEXIST {
                throw EngineError.internal("cz_image_write_png: \(quoted(path)) appeared while the PNG was written; not replaced")
            }
            throw EngineError.internal("cz_image_write_png: cannot create \(quoted(path)): \(String(cString: strerror(e)))")
        }
    }

    /// The caller's own single-link file: temporary file with the same permission bits, renamed over it.
    private static func replaceAtomically(_ bytes: [UInt8], at path: String, directory: String, mode: mode_t) throws {
        let tmp = try temporaryFile(bytes, directory: directory, mode: mode)
        guard rename(tmp, path) == 0 else {
            let why = errnoMessage()
            unlink(tmp)
            throw EngineError.internal("cz_image_write_png: cannot replace \(quoted(path)): \(why)")
        }
    }

    /// A shared or foreign regular file: truncate and rewrite in place (never following a link,
    /// never creating, and only if it is still a regular file once open).
    private static func writeThrough(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw EngineError.internal("cz_image_write_png: cannot open \(quoted(path)) for writing: \(errnoMessage())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw EngineError.invalidArgument("cz_image_write_png: \(quoted(path)) stopped being a regular file; nothing written")
        }
        guard ftruncate(fd, 0) == 0 else {
            throw EngineError.internal("cz_image_write_png: cannot truncate \(quoted(path)): \(errnoMessage())")
        }
        try writeAll(fd, bytes, path: path)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw EngineError.internal("cz_image_write_png: writing \(quoted(path)): \(errnoMessage())")
            }
            done += n
        }
    }
}
