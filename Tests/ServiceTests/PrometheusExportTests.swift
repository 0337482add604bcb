import Engine
import Foundation
import Service
import XCTest

/// The Prometheus view of an in-process Service: the text exposition carries the counters of the
/// protobuf Metrics reply, per model, and `status` flips to not ready when a drain is requested.
final class PrometheusExportTests: XCTestCase {
    func testCountersPerModelAndReadiness() throws {
        let dir = try ServiceTestSupport.tempDirectory(self)
        try FileManager.default.createDirectory(atPath: dir + "/models/tp", withIntermediateDirectories: true)
        try #"{"backend": "test-pattern", "revision": "p1"}"#.write(toFile: dir + "/models/tp/config.json",
                                                                   atomically: true, encoding: .utf8)
        let engine = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory,
                                                 modelRepository: dir + "/models"))
        try engine.load("tp")
        let service = try Service(engine: engine, configuration: ServiceConfiguration(
            endpoints: [ServiceEndpoint(url: "tcp://127.0.0.1:*", admin: false)], maxQueue: 7))
        XCTAssertEqual(service.status, ServiceStatus(ready: true, draining: false, modelsLoaded: 1, queueDepth: 0))
        let ready = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread { try? service.run { ready.signal() }; done.signal() }.start()
        ready.wait()
        let client = try ServiceClient(endpoint: try XCTUnwrap(service.boundEndpoints.first), timeout: .seconds(5))
        _ = try client.generate(GenerateRequest(model: "tp", seed: 1, count: 3))
        _ = try client.generate(GenerateRequest(model: "tp", seed: 2, count: 1))
        XCTAssertThrowsError(try client.generate(GenerateRequest(model: "missing")))
        let text = service.prometheusText()
        for line in ["coalesced_requests_total{outcome=\"OK\"} 2", "coalesced_requests_total{outcome=\"NOT_FOUND\"} 1",
                     "coalesced_model_requests_total{model=\"tp\"} 2", "coalesced_model_images_total{model=\"tp\"} 4",
                     "coalesced_generate_duration_seconds_count 3", "coalesced_queue_capacity 7.0",
                     "coalesced_models_loaded 1.0", "coalesced_ready 1.0", "coalesced_draining 0.0",
                     "# TYPE coalesced_generate_duration_seconds histogram"] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
        XCTAssertFalse(text.contains("missing"), "an unknown model name became a label")
        service.requestDrain()
        XCTAssertFalse(service.status.ready)
        XCTAssertTrue(service.status.draining)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
    }
}
