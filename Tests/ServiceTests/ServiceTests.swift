import CCoalesceProto
import Engine
import Foundation
import Service
import XCTest

final class ServiceTests: XCTestCase {
    /// Starts a Service on a free tcp port over a repository with one test-pattern model.
    private func startService(delayMs: Int = 0, maxQueue: Int = 64, callsPerModel: Int = 2)
        throws -> (Service, String, Thread, DispatchSemaphore) {
        let dir = try ServiceTestSupport.tempDirectory(self)
        try FileManager.default.createDirectory(atPath: dir + "/models/tp", withIntermediateDirectories: true)
        try #"{"backend": "test-pattern", "revision": "r1", "step_delay_ms": \#(delayMs)}"#
            .write(toFile: dir + "/models/tp/config.json", atomically: true, encoding: .utf8)
        let engine = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory,
                                                 modelRepository: dir + "/models"))
        try engine.load("tp")
        let service = try Service(engine: engine, configuration: ServiceConfiguration(
            endpoints: [ServiceEndpoint(url: "tcp://127.0.0.1:*", admin: false),
                        ServiceEndpoint(url: "ipc://\(dir)/admin.ipc", admin: true)],
            maxQueue: maxQueue, callsPerModel: callsPerModel, drainTimeout: .seconds(10)))
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            do { try service.run { ready.signal() } } catch { XCTFail("run: \(error)"); ready.signal() }
            done.signal()
        }
        thread.start()
        ready.wait()
        let tcp = try XCTUnwrap(service.boundEndpoints.first)
        addTeardownBlock {
            service.requestDrain()
            done.wait()
        }
        return (service, tcp, thread, done)
    }

    func testEachModelGetsAShareOfTheQueue() throws {
        XCTAssertEqual(ServiceConfiguration(maxQueue: 256).queueSharePerModel, 128)
        XCTAssertEqual(ServiceConfiguration(maxQueue: 7).queueSharePerModel, 4)
        XCTAssertEqual(ServiceConfiguration(maxQueue: 1).queueSharePerModel, 1)
        XCTAssertEqual(ServiceConfiguration(maxQueue: 8, maxQueuePerModel: 8).queueSharePerModel, 8)
        XCTAssertNoThrow(try ServiceConfiguration(maxQueue: 8, maxQueuePerModel: 1).validate())
        for share in [0, -1, 9] {
            XCTAssertThrowsError(try ServiceConfiguration(maxQueue: 8, maxQueuePerModel: share).validate()) { error in
                XCTAssertTrue("\(error)".contains("--max-queue-per-model must be 1...8"), "\(error)")
            }
        }
    }

    func testGenerateOverTheWireMatchesTheEngine() throws {
        let (service, tcp, _, _) = try startService()
        let client = TestClient(endpoint: tcp)
        client.send(ServiceTestSupport.generate(id: "g1", model: "tp", seed: 5, count: 2, steps: 3, progress: true))
        var progress: [Int] = []
        var final: TestReply?
        while final == nil, let r = client.receive() {
            XCTAssertEqual(r.id, "g1")
            if r.kind == COALESCE__V1__REPLY__KIND_PROGRESS { progress.append(r.progressStep) } else { final = r }
        }
        let reply = try XCTUnwrap(final)
        XCTAssertEqual(progress, [1, 2, 3])
        XCTAssertEqual(reply.kind, COALESCE__V1__REPLY__KIND_IMAGES, reply.errorMessage)
        XCTAssertEqual(reply.images.count, 2)
        let direct = try service.engine.generate(GenerateRequest(model: "tp", seed: 5, steps: 3, count: 2))
        XCTAssertEqual(reply.images[0] + reply.images[1], direct.pixels)
        XCTAssertEqual(reply.revision, "r1")
    }

    func testMalformedInputGetsErrorsAndServiceStaysUp() throws {
        let (_, tcp, _, _) = try startService()
        let client = TestClient(endpoint: tcp)
        client.send([0xFF, 0x00, 0x13])
        XCTAssertEqual(client.receive()?.errorCode, 1)
        client.sendFrames([[1], [2], [3]])
        XCTAssertEqual(client.receive()?.errorCode, 1)
        client.send(ServiceTestSupport.generate(id: "nf", model: "nope"))
        XCTAssertEqual(client.receive()?.errorCode, 2)
        client.send(ServiceTestSupport.generate(id: "ok", model: "tp"))
        XCTAssertEqual(client.receive()?.kind, COALESCE__V1__REPLY__KIND_IMAGES)
    }

    func testDrainAnswersEveryAcceptedRequest() throws {
        let (service, tcp, _, done) = try startService(delayMs: 5, callsPerModel: 1)
        let client = TestClient(endpoint: tcp)
        for i in 0..<20 { client.send(ServiceTestSupport.generate(id: "d\(i)", model: "tp", seed: UInt64(i))) }
        Thread.sleep(forTimeInterval: 0.05)
        service.requestDrain()
        var finals: [String: TestReply] = [:]
        while finals.count < 20, let r = client.receive(timeoutMs: 5000) {
            if r.kind != COALESCE__V1__REPLY__KIND_PROGRESS { finals[r.id] = r }
        }
        XCTAssertEqual(Set(finals.keys), Set((0..<20).map { "d\($0)" }))
        XCTAssertTrue(finals.values.allSatisfy { $0.kind == COALESCE__V1__REPLY__KIND_IMAGES })
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        done.signal()  // let the teardown's wait pass
    }
}

final class ServiceClientTests: XCTestCase {
    func testSwiftClientAgainstAnInProcessService() throws {
        let dir = try ServiceTestSupport.tempDirectory(self)
        try FileManager.default.createDirectory(atPath: dir + "/models/tp", withIntermediateDirectories: true)
        try #"{"backend": "test-pattern", "revision": "sc"}"#.write(toFile: dir + "/models/tp/config.json",
                                                                   atomically: true, encoding: .utf8)
        let engine = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory,
                                                 modelRepository: dir + "/models"))
        try engine.load("tp")
        let service = try Service(engine: engine, configuration: ServiceConfiguration(
            endpoints: [ServiceEndpoint(url: "tcp://127.0.0.1:*", admin: false)]))
        let ready = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread { try? service.run { ready.signal() }; done.signal() }.start()
        ready.wait()
        defer { service.requestDrain(); done.wait() }
        let client = try ServiceClient(endpoint: try XCTUnwrap(service.boundEndpoints.first), timeout: .seconds(5))
        var steps: [Int] = []
        let remote = try client.generate(GenerateRequest(model: "tp", prompt: "p", seed: 11, count: 2)) { steps.append($0.step) }
        let local = try engine.generate(GenerateRequest(model: "tp", prompt: "p", seed: 11, count: 2))
        XCTAssertEqual(remote.pixels, local.pixels)
        XCTAssertEqual(remote.revision, "sc")
        XCTAssertEqual(steps, [1, 2, 3, 4])
        XCTAssertThrowsError(try client.generate(GenerateRequest(model: "missing"))) { error in
            XCTAssertEqual((error as? EngineError)?.code, .notFound)
        }
    }
}
