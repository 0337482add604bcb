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
    /// Most generate requests waiting for one model (nil: half of `maxQueue`, rounded up; see
    /// `queueSharePerModel`), so that one model's backlog leaves room for the others; beyond it
    /// that model's requests are answered RESOURCE_EXHAUSTED naming it. 1...maxQueue.
    public var maxQueuePerModel: Int?
    /// Most requests that share one backend call.
    public var maxBatch: Int
    /// How long the first request of a batch may wait for more (0 = take what is queued).
    public var maxDelay: Duration
    /// Backend calls (batches) one model runs at once, each on a thread of its own; models never
    /// share these threads, so one whose calls hang holds only its own.
    public var callsPerModel: Int
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
                maxQueue: Int = 256, maxBatch: Int = 16, maxDelay: Duration = .zero, callsPerModel: Int = 2,
                maxMessageBytes: Int = 1 << 20, drainTimeout: Duration = .seconds(30), defaultTimeout: Duration? = nil,
                curve: CurveConfiguration? = nil, maxQueuePerModel: Int? = nil) {
        self.endpoints = endpoints
        self.maxQueue = maxQueue
        self.maxQueuePerModel = maxQueuePerModel
        self.maxBatch = maxBatch
        self.maxDelay = maxDelay
        self.callsPerModel = callsPerModel
        self.maxMessageBytes = maxMessageBytes
        self.drainTimeout = drainTimeout
        self.defaultTimeout = defaultTimeout
        self.curve = curve
    }
}

extension ServiceConfiguration {
    /// Most requests one model may have waiting: `maxQueuePerModel`, by default half of
    /// `maxQueue` rounded up (a stuck or flooded model leaves at least half the queue to the rest).
    public var queueSharePerModel: Int { maxQueuePerModel ?? (maxQueue + 1) / 2 }

    /// Checks everything about the configuration that can be checked without binding a socket:
    /// coalesced calls it before it starts any worker or loads any model, so a refused start is
    /// quick and leaves nothing behind. `Service.init` checks it too.
    /// - Throws: `ServiceError.configuration` saying what is wrong.
    public func validate() throws {
        guard !endpoints.isEmpty else { throw ServiceError.configuration("no endpoints") }
        guard maxQueue >= 1, maxBatch >= 1, callsPerModel >= 1 else {
            throw ServiceError.configuration("max queue, max batch and calls per model must be >= 1")
        }
        if let share = maxQueuePerModel, !(1...maxQueue).contains(share) {
            throw ServiceError.configuration("--max-queue-per-model must be 1...\(maxQueue) (--max-queue), got \(share)")
        }
        if let curve {
            if let key = curve.brokerPublicKey, key.utf8.count != 40 {
                throw ServiceError.configuration("--curve-broker-key: expected a 40-character Z85 public key, got \(key.utf8.count) characters")
            }
            for ep in endpoints where ep.connect && !ep.url.hasPrefix("ipc://") && curve.brokerPublicKey == nil {
                // The broker is the CURVE server there; without its key no message would ever arrive.
                throw ServiceError.configuration("--connect \(ep.url) with CurveZMQ needs the broker's public key (--curve-broker-key)")
            }
        }
    }
}

/// The claims on the ipc endpoints a daemon binds (one daemon per socket path; see
/// `IPCEndpointClaim`), taken before anything else starts so that a daemon whose endpoint is
/// served by another refuses at once; `Service.run` binds under them and releases them.
public final class EndpointClaims: @unchecked Sendable {
    private let claims: [IPCEndpointClaim]

    /// Claims every ipc endpoint of `configuration` that is bound (not connected).
    /// - Throws: `ServiceError.configuration` when one is served by a running process.
    public init(configuration: ServiceConfiguration) throws {
        var taken: [IPCEndpointClaim] = []
        for ep in configuration.endpoints where ep.url.hasPrefix("ipc://") && !ep.connect {
            do {
                taken.append(try IPCEndpointClaim(url: ep.url))
            } catch {
                for c in taken { c.release() }
                throw error
            }
        }
        claims = taken
    }

    /// The endpoints whose socket file was left by a daemon that is gone (removed when claimed).
    public var removedStale: [String] { claims.filter(\.removedStale).map(\.url) }

    /// Releases every claim (the daemon no longer serves them).
    public func release() {
        for c in claims { c.release() }
    }
}
