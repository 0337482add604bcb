// ServiceError: failures of the daemon itself (not of a request).
#if canImport(Glibc)
import Glibc
#endif

/// The Service module's error type.
public enum ServiceError: Error, CustomStringConvertible {
    /// A system or ZeroMQ call failed; `call` names it, `errno` says why.
    case system(call: String, errno: Int32)
    /// A configuration value is unusable (an endpoint, a limit).
    case configuration(String)

    public var description: String {
        switch self {
        case .system(let call, let e):
            return "\(call) failed: \(String(cString: zmqOrSystemError(e))) (errno \(e))"
        case .configuration(let m):
            return "configuration: \(m)"
        }
    }

    /// What went wrong without the call's name: for `.system` the error's text alone
    /// ("Resource temporarily unavailable").
    public var reason: String {
        switch self {
        case .system(_, let e): return String(cString: zmqOrSystemError(e))
        case .configuration(let m): return m
        }
    }
}

import CZMQ

func zmqOrSystemError(_ e: Int32) -> UnsafePointer<CChar> {
    zmq_strerror(e)
}

/// Runs a ZeroMQ/system call returning -1 on failure and throws a ServiceError naming it.
@discardableResult
func zmqCall(_ name: String, _ body: () -> Int32) throws -> Int32 {
    let rc = body()
    if rc == -1 { throw ServiceError.system(call: name, errno: zmq_errno()) }
    return rc
}
