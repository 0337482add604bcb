// SystemdNotify: tells a supervising systemd (Type=notify units) that the daemon is ready or
// stopping, through the datagram socket named in $NOTIFY_SOCKET (the sd_notify protocol), without
// linking libsystemd. Without $NOTIFY_SOCKET it does nothing.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum SystemdNotify {
    /// Sends `state` (e.g. "READY=1", "STOPPING=1"); returns false when there is no socket or the
    /// send failed (the daemon runs on either way).
    @discardableResult
    static func send(_ state: String) -> Bool {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        let abstract = path.hasPrefix("@")  // Linux abstract namespace: a leading NUL byte
        if abstract { path.removeFirst() }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path) - (abstract ? 1 : 0)
        guard path.hasPrefix("/") || abstract, bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i + (abstract ? 1 : 0)] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 1 : 0))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), sa, length)
            }
        }
        return sent == message.count
    }
}
