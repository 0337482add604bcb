// IPCEndpointClaim: one daemon per ipc socket path. libzmq's bind on an ipc path unlinks
// whatever file is there and binds anew, so a second daemon started with the same (default) admin
// endpoint silently took the socket from a running one, whose admin endpoint then never answered
// again. Before binding, the daemon takes an exclusive lock on "<path>.lock" for its lifetime and
// checks the path: a socket a live process accepts on means another server is running (refused);
// a socket nobody accepts on is the leftover of a dead daemon (removed, then bound).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Holds the claim on an ipc endpoint's socket path until released (or the process exits).
final class IPCEndpointClaim {
    let url: String
    let path: String
    /// True when a dead server's socket file was found and removed.
    private(set) var removedStale = false
    private var lockFD: Int32 = -1

    /// Claims `url` (ipc://PATH) or throws `ServiceError.configuration` saying why not.
    /// Abstract socket names (ipc://@name) need no claim: the kernel refuses a second bind.
    init(url: String) throws {
        self.url = url
        path = String(url.dropFirst("ipc://".count))
        if path.hasPrefix("@") || path.isEmpty { return }
        let lockPath = path + ".lock"
        lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lockFD < 0 {
            throw ServiceError.configuration("endpoint \(url): cannot open its lock file \(lockPath): \(String(cString: strerror(errno)))")
        }
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            close(lockFD)
            lockFD = -1
            if e == EWOULDBLOCK {
                throw ServiceError.configuration("endpoint \(url) is already served by another running coalesced "
                    + "(it holds \(lockPath)); stop that daemon or choose another endpoint (--admin-endpoint)")
            }
            throw ServiceError.configuration("endpoint \(url): flock(\(lockPath)) failed: \(String(cString: strerror(e)))")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }  // nothing there
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            release()
            throw ServiceError.configuration("endpoint \(url): \(path) exists and is not a socket; not replacing it")
        }
        if Self.acceptsConnections(path) {
            release()
            throw ServiceError.configuration("endpoint \(url) is already served by a running process "
                + "(\(path) accepts connections); stop it or choose another endpoint (--admin-endpoint)")
        }
        unlink(path)
        removedStale = true
    }

    /// Releases the lock (the lock file stays; it is only ever locked, never read).
    func release() {
        if lockFD >= 0 { close(lockFD) }
        lockFD = -1
    }

    deinit { release() }

    /// Whether a process accepts stream connections on the Unix socket at `path` (libzmq's ipc).
    static func acceptsConnections(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0
    }
}
