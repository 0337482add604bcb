// Handles: how Swift objects become the opaque cz_engine * / cz_image_batch * of the C API.
//
// Each handle is an Unmanaged, retained Swift object. Every live handle is also recorded in a
// process-wide set, so that a pointer that is not (or no longer) a live handle (garbage, a
// double free, a batch passed as an engine) is answered with CZ_INVALID_ARGUMENT instead of a
// crash. The check costs one mutex and one hash lookup per call.

import Engine

/// The set of live handle addresses, by kind.
final class HandleRegistry<T: AnyObject>: @unchecked Sendable {
    private let lock = Lock()
    private var live: Set<UInt> = []

    /// Retains `object` and returns its opaque address, recorded as live.
    func register(_ object: T) -> OpaquePointer {
        let raw = Unmanaged.passRetained(object).toOpaque()
        lock.withLock { _ = live.insert(UInt(bitPattern: raw)) }
        return OpaquePointer(raw)
    }

    /// The object behind a live handle, or nil (NULL or not a live handle of this kind).
    /// The returned reference is strong: the object stays alive for the caller's use even if
    /// another thread frees the handle meanwhile (which the header forbids anyway).
    func resolve(_ handle: OpaquePointer?) -> T? {
        guard let handle else { return nil }
        let raw = UnsafeMutableRawPointer(handle)
        return lock.withLock { () -> T? in
            guard live.contains(UInt(bitPattern: raw)) else { return nil }
            return Unmanaged<T>.fromOpaque(raw).takeUnretainedValue()
        }
    }

    /// Removes a live handle and returns its object (balancing register's retain), or nil.
    func unregister(_ handle: OpaquePointer?) -> T? {
        guard let handle else { return nil }
        let raw = UnsafeMutableRawPointer(handle)
        let wasLive = lock.withLock { live.remove(UInt(bitPattern: raw)) != nil }
        guard wasLive else { return nil }
        return Unmanaged<T>.fromOpaque(raw).takeRetainedValue()
    }
}

let engineHandles = HandleRegistry<CEngine>()
let batchHandles = HandleRegistry<CImageBatch>()
