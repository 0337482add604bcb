// ErrorStore: the storage behind cz_engine_errmsg. One message per (engine, thread), so that
// concurrent calls on one engine never overwrite each other's message, plus one thread-local
// message for calls that have no engine (cz_engine_create, cz_image_write_png, NULL engine).
import Engine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Empty message returned when the last call succeeded. Static, never freed.
let emptyMessage: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.initialize(to: 0)
    return UnsafePointer(p)
}()

/// Thread-local storage for handle-less calls; the destructor frees a thread's message when
/// the thread exits.
private let threadMessageKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { ptr in free(ptr) }
    return key
}()

/// Records `message` as the calling thread's handle-less message ("" clears it).
func setThreadMessage(_ message: String) {
    let old = pthread_getspecific(threadMessageKey)
    if message.isEmpty {
        pthread_setspecific(threadMessageKey, nil)
    } else {
        pthread_setspecific(threadMessageKey, strdup(message))
    }
    free(old)
}

/// The calling thread's handle-less message, or "".
func threadMessage() -> UnsafePointer<CChar> {
    guard let p = pthread_getspecific(threadMessageKey) else { return emptyMessage }
    return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
}

/// Messages of one engine, keyed by the calling thread.
final class MessageTable: @unchecked Sendable {
    private let lock = Lock()
    private var byThread: [UInt: UnsafeMutablePointer<CChar>] = [:]

    private static var currentThread: UInt {
        #if canImport(Darwin)
        return UInt(bitPattern: pthread_self())
        #else
        return UInt(pthread_self())
        #endif
    }

    /// Sets the calling thread's message ("" clears it). The previous buffer is freed: it was
    /// valid only until this call, as the header promises.
    func set(_ message: String) {
        let me = Self.currentThread
        let fresh: UnsafeMutablePointer<CChar>? = message.isEmpty ? nil : strdup(message)
        let old = lock.withLock { () -> UnsafeMutablePointer<CChar>? in
            let old = byThread[me]
            byThread[me] = fresh
            return old
        }
        free(old)
    }

    /// The calling thread's message, or "".
    func get() -> UnsafePointer<CChar> {
        let me = Self.currentThread
        return lock.withLock { byThread[me].map { UnsafePointer($0) } ?? emptyMessage }
    }

    deinit {
        for (_, p) in byThread { free(p) }
    }
}
