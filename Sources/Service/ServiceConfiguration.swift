// ServiceConfiguration: endpoints, queue and batching limits of the daemon.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One ZeroMQ endpoint the daemon binds a ROUTER socket to.
public struct ServiceEndpoint: Sendable, Equatable {
    /// e.g. "tcp://127.0.0.1:5555" or "ipc:///tmp/coalesced-0.ipc".
    public var url: String
    /// Whether load/unload are accepted on this endpoint.
    public var admin: Bool
    /// Connect to `url` (the backend of `coalesced broker`) instead of binding it. Messages then
    /// carry two routing frames (broker, client) instead of one, and the daemon sends the broker
    /// heartbeats (BrokerProtocol).
    public var connect: Bool

    public init(url: String, admin: Bool, connect: Bool = false) {
        self.url = url
        self.admin = admin
        self.connect = connect
    }
}

/// How the daemon serves.
public struct ServiceConfiguration: Sendable {
    public var endpoints: [ServiceEndpoint]
    /// Most generate requests waiting (not yet running); a full queue answers RESOURCE_EXHAUSTED.
    public var maxQueue: Int
    /// Most requests that share one backend call.
    public var maxBatch: Int
    /// How long the first request of a batch may wait for more (0 = take what is queued).
    public var maxDelay: Duration
    /// Worker threads (models and batches served concurrently).
    public var workers: Int
    /// Largest message accepted with an error reply; 4x this is the hard socket limit
    /// (ZMQ_MAXMSGSIZE) beyond which the peer is disconnected.
    public var maxMessageBytes: Int
    /// How long SIGTERM/SIGINT waits for accepted requests before failing the rest.
    public var drainTimeout: Duration
    /// Per-request timeout applied when a request sets none (nil = none).
    public var defaultTimeout: Duration?
    /// CurveZMQ for every non-ipc endpoint (nil = plaintext; loopback-only by default).
    public var curve: CurveConfiguration?

    /// The default ipc endpoint: ipc:///tmp/coalesced-<uid>.ipc.
    public static var defaultIPCEndpoint: String { "ipc:///tmp/coalesced-\(getuid()).ipc" }

    public init(endpoints: [ServiceEndpoint] = [ServiceEndpoint(url: "tcp://127.0.0.1:5555", admin: false),
                                                ServiceEndpoint(url: ServiceConfiguration.defaultIPCEndpoint, admin: true)],
                maxQueue: Int = 256, maxBatch: Int = 16, maxDelay: Duration = .zero, workers: Int = 2,
                maxMessageBytes: Int = 1 << 20, drainTimeout: Duration = .seconds(30), defaultTimeout: Duration? = nil,
                curve: CurveConfiguration? = nil) {
        self.endpoints = endpoints
        self.maxQueue = maxQueue
        self.maxBatch = maxBatch
        self.maxDelay = maxDelay
        self.workers = workers
        self.maxMessageBytes = maxMessageBytes
        self.drainTimeout = drainTimeout
        self.defaultTimeout = defaultTimeout
        self.curve = curve
    }
}
