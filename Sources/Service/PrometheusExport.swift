// PrometheusExport: the daemon's metrics in the Prometheus registry (swift-prometheus), kept
// beside the counters of the protobuf Metrics reply and updated under the same lock.
import Engine
import Prometheus

/// The Prometheus view of `Metrics`: the same counters (by outcome, per model, batches,
/// malformed messages), the latency histogram in seconds with the same bounds, and gauges set
/// at each scrape. Names are prefixed `coalesced_`.
final class PrometheusExport: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let latency: ValueHistogram
    private let batches: Counter
    private let batchedRequests: Counter
    private let malformed: Counter

    init(latencyBoundsMs: [Double]) {
        latency = registry.makeValueHistogram(
            descriptor: Self.name("generate_duration", "seconds",
                                  "Generate requests from arrival to final reply (the protobuf Metrics latency, in seconds)."),
            buckets: latencyBoundsMs.filter { $0.isFinite }.map { $0 / 1000 })
        batches = registry.makeCounter(descriptor: Self.name("batches", "total", "Backend calls (batches of generate requests)."))
        batchedRequests = registry.makeCounter(
            descriptor: Self.name("batched_requests", "total", "Generate requests served by those backend calls."))
        malformed = registry.makeCounter(
            descriptor: Self.name("malformed_messages", "total", "Messages that could not be decoded."))
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "coalesced", metricName: metric, unitName: unit, helpText: help)
    }

    private static let requestsByOutcome = name("requests", "total", "Final replies to generate requests, by outcome.")
    private static let modelRequests = name("model_requests", "total", "Generate requests per loaded model.")
    private static let modelImages = name("model_images", "total", "Images generated per loaded model.")
    private static let modelErrors = name("model_errors", "total", "Failed generate requests per loaded model.")

    /// One generate request's final outcome; `perModel` as `Metrics` decides (names that reached a
    /// loaded model only, so clients cannot grow the label set).
    func recordGenerate(model: String, outcome: StatusCode, images: Int, latencyMs: Double, perModel: Bool) {
        registry.makeCounter(descriptor: Self.requestsByOutcome, labels: [("outcome", outcome.description)]).increment()
        latency.record(latencyMs / 1000)
        guard perModel else { return }
        let labels = [("model", model)]
        registry.makeCounter(descriptor: Self.modelRequests, labels: labels).increment()
        registry.makeCounter(descriptor: Self.modelImages, labels: labels).increment(by: Int64(images))
        if outcome != .ok { registry.makeCounter(descriptor: Self.modelErrors, labels: labels).increment() }
    }

    func recordBatch(requests: Int) {
        batches.increment()
        batchedRequests.increment(by: Int64(requests))
    }

    func recordMalformed() { malformed.increment() }

    /// Sets the gauges from the daemon's state now and returns the text exposition format.
    func emit(queueDepth: Int, queueCapacity: Int, inFlight: Int, modelsLoaded: Int, ready: Bool, draining: Bool) -> String {
        let gauges: [(String, String, Double)] = [
            ("queue_depth", "Generate requests waiting in the queue.", Double(queueDepth)),
            ("queue_capacity", "Most generate requests the queue holds.", Double(queueCapacity)),
            ("in_flight", "Generate requests running in a backend.", Double(inFlight)),
            ("models_loaded", "Models loaded.", Double(modelsLoaded)),
            ("ready", "1 when at least one model is loaded and the daemon is not draining.", ready ? 1 : 0),
            ("draining", "1 while the daemon drains (shutting down).", draining ? 1 : 0),
        ]
        for (metric, help, value) in gauges {
            registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "coalesced", metricName: metric,
                                                                unitName: "", helpText: help)).set(value)
        }
        return registry.emitToString()
    }
}
