// Metrics: counters and a latency histogram for the daemon, read over the protocol (and, through
// PrometheusExport, over HTTP).
import Engine

/// Per-model request counts.
public struct ModelCountsSnapshot: Sendable, Equatable {
    public var model: String
    public var requests: UInt64
    public var images: UInt64
    public var errors: UInt64
}

/// A consistent copy of the daemon's metrics.
public struct MetricsSnapshot: Sendable {
    public var queueDepth: Int
    public var queueCapacity: Int
    public var inFlight: Int
    /// Final replies to generate requests, by status code.
    public var outcomes: [(StatusCode, UInt64)]
    /// Cumulative histogram of generate latency (arrival to final reply), upper bounds in ms.
    public var latencyBuckets: [(Double, UInt64)]
    public var latencyCount: UInt64
    public var latencySumMs: Double
    public var perModel: [ModelCountsSnapshot]
    public var batches: UInt64
    public var batchedRequests: UInt64
    public var malformed: UInt64
    /// Backend worker processes (empty in process).
    public var workers: [WorkerStat] = []
    /// The daemon's own resident memory.
    public var daemonRSSBytes: UInt64 = 0
}

/// Thread-safe metric counters.
final class Metrics: @unchecked Sendable {
    /// Histogram upper bounds in milliseconds; the last bucket is +inf.
    static let bounds: [Double] = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, .infinity]

    private let lock = Lock()
    private var outcomes: [StatusCode: UInt64] = [:]
    private var buckets = [UInt64](repeating: 0, count: Metrics.bounds.count)
    private var latencyCount: UInt64 = 0
    private var latencySum: Double = 0
    private var perModel: [String: ModelCountsSnapshot] = [:]
    private var batches: UInt64 = 0
    private var batchedRequests: UInt64 = 0
    private var malformed: UInt64 = 0
    /// The same counters in the Prometheus registry (`coalesced --http`'s /metrics).
    let prometheus = PrometheusExport(latencyBoundsMs: Metrics.bounds)

    /// Records the final outcome of one generate request.
    func recordGenerate(model: String, outcome: StatusCode, images: Int, latencyMs: Double) {
        lock.withLock {
            outcomes[outcome, default: 0] += 1
            let i = Metrics.bounds.firstIndex { latencyMs <= $0 } ?? (Metrics.bounds.count - 1)
            buckets[i] += 1
            latencyCount += 1
            latencySum += latencyMs
            // Count per model only for names that reached a loaded model, so random names sent by
            // clients cannot grow this table without bound.
            let countModel = outcome == .ok || perModel[model] != nil
            prometheus.recordGenerate(model: model, outcome: outcome, images: images, latencyMs: latencyMs,
                                      perModel: countModel)
            if countModel {
                var c = perModel[model] ?? ModelCountsSnapshot(model: model, requests: 0, images: 0, errors: 0)
                c.requests += 1
                c.images += UInt64(images)
                if outcome != .ok { c.errors += 1 }
                perModel[model] = c
            }
        }
    }

    func recordBatch(requests: Int) {
        lock.withLock {
            batches += 1
            batchedRequests += UInt64(requests)
            prometheus.recordBatch(requests: requests)
        }
    }

    func recordMalformed() {
        lock.withLock {
            malformed += 1
            prometheus.recordMalformed()
        }
    }

    func snapshot(queueDepth: Int, queueCapacity: Int, inFlight: Int) -> MetricsSnapshot {
        lock.withLock {
            var cumulative: UInt64 = 0
            let hist = zip(Metrics.bounds, buckets).map { (le, n) -> (Double, UInt64) in
                cumulative += n
                return (le, cumulative)
            }
            return MetricsSnapshot(
                queueDepth: queueDepth, queueCapacity: queueCapacity, inFlight: inFlight,
                outcomes: outcomes.sorted { $0.key.rawValue < $1.key.rawValue }.map { ($0.key, $0.value) },
                latencyBuckets: hist, latencyCount: latencyCount, latencySumMs: latencySum,
                perModel: perModel.values.sorted { $0.model < $1.model },
                batches: batches, batchedRequests: batchedRequests, malformed: malformed)
        }
    }
}
