// Outbox: replies produced on scheduler threads, handed to the I/O thread (the only one that
// touches ZeroMQ sockets), which is woken through an eventfd it polls.
#if canImport(Glibc)
import Engine
import Glibc
#endif

final class Outbox: @unchecked Sendable {
    /// Readable when messages are waiting; polled by the I/O thread.
    let fd: Int32
    private let writeFD: Int32
    private let lock = Lock()
    private var items: [(ReplyRoute, [UInt8])] = []

    init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ServiceError.system(call: "pipe", errno: errno) }
        for f in fds {
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        }
        self.fd = fds[0]
        self.writeFD = fds[1]
    }

    deinit {
        close(fd)
        close(writeFD)
    }

    func push(_ route: ReplyRoute, _ bytes: [UInt8]) {
        lock.withLock { items.append((route, bytes)) }
        wake()
    }

    /// Wakes the I/O thread without a message (e.g. to notice a drain request).
    func wake() {
        // A full pipe (EAGAIN) means the I/O thread is already due to wake: nothing to do.
        var one: UInt8 = 1
        _ = write(writeFD, &one, 1)
    }

    /// Takes every waiting message and clears the wake-up counter.
    func takeAll() -> [(ReplyRoute, [UInt8])] {
        var buf = [UInt8](repeating: 0, count: 512)
        while read(fd, &buf, buf.count) > 0 {}
        return lock.withLock {
            let out = items
            items.removeAll(keepingCapacity: true)
            return out
        }
    }

    var isEmpty: Bool { lock.withLock { items.isEmpty } }
}
