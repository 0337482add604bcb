// WorkerHub through its public surface: an Engine whose models run in `coalesced worker`
// processes gives the bytes of an in-process Engine, reports the worker, and stops it on unload.
import Engine
import Foundation
import Service
import XCTest

final class WorkerHubTests: XCTestCase {
    private func coalesced() throws -> String {
        let path = ServiceTestSupport.pluginDirectory + "/coalesced"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw XCTSkip("build coalesced first (looked for \(path))")
        }
        return path
    }

    private func repository() throws -> String {
        let root = try ServiceTestSupport.tempDirectory(self)
        try FileManager.default.createDirectory(atPath: root + "/tp", withIntermediateDirectories: true)
        try #"{"backend": "test-pattern", "revision": "w1"}"#.write(toFile: root + "/tp/config.json", atomically: true,
                                                                    encoding: .utf8)
        return root
    }

    func testWorkerGivesTheInProcessBytesAndExitsOnUnload() throws {
        let hub = try WorkerHub(configuration: .init(executable: try coalesced()))
        defer { hub.stop() }
        let repo = try repository()
        let inProcess = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory, modelRepository: repo))
        let isolated = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory, modelRepository: repo,
                                                   launcher: hub))
        try inProcess.load("tp")
        let status = try isolated.load("tp")
        let pid = try XCTUnwrap(status.runtime.workerPID)
        XCTAssertNotEqual(pid, getpid())
        XCTAssertEqual(status.runtime.state, .serving)
        XCTAssertEqual(status.revision, "w1")
        XCTAssertNil(try inProcess.modelStatus("tp").runtime.workerPID)

        let items = (0..<5).map { k in BatchItem(request: GenerateRequest(model: "tp", prompt: "p\(k)", seed: UInt64(k), count: 3)) }
        let a = inProcess.generateBatch(items).map { try? $0.get().pixels }
        var steps: [Int] = []
        let b = isolated.generateBatch(items.enumerated().map { i, item in
            BatchItem(request: item.request) { p in if i == 0 { steps.append(p.step) }; return true }
        }).map { try? $0.get().pixels }
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.allSatisfy { $0?.count == 3 * 28 * 28 })
        XCTAssertEqual(steps, [1, 2, 3, 4])  // progress crosses the process boundary

        // Progress that reports to no one (the daemon's request without want_progress) is not sent
        // per step: the worker's call is stopped through `stillWanted` instead. A deadline needs the
        // steps again (its error names the step reached).
        func quiet(deadline: ContinuousClock.Instant?) -> (pixels: [UInt8]?, calls: Int) {
            var calls = 0
            var item = BatchItem(request: GenerateRequest(model: "tp", prompt: "p0", seed: 0, count: 3, deadline: deadline)) { _ in
                calls += 1
                return true
            }
            item.reportsProgress = false
            item.stillWanted = { true }
            return (try? isolated.generateBatch([item])[0].get().pixels, calls)
        }
        func heard() -> Int { hub.stats().reduce(0) { $0 + $1.progressMessages } }
        let before = heard()
        let silent = quiet(deadline: nil)
        XCTAssertEqual(silent.pixels, a[0])
        XCTAssertEqual(silent.calls, 0)
        XCTAssertEqual(heard(), before, "the worker sent progress nobody asked for")
        let timed = quiet(deadline: .now + .seconds(60))
        XCTAssertEqual(timed.pixels, a[0])
        XCTAssertEqual(timed.calls, 4)
        XCTAssertEqual(heard(), before + 4)
        var stopped = BatchItem(request: GenerateRequest(model: "tp", seed: 1)) { _ in true }
        stopped.reportsProgress = false
        stopped.stillWanted = { false }  // asked before the call starts
        guard case .failure(let notWanted)? = isolated.generateBatch([stopped]).first else { return XCTFail("an unwanted call succeeded") }
        XCTAssertEqual(notWanted.code, .cancelled)

        // Cancel from the progress callback stops the worker's call.
        let cancelled = isolated.generateBatch([BatchItem(request: GenerateRequest(model: "tp", seed: 1)) { _ in false }])
        guard case .failure(let e)? = cancelled.first else { return XCTFail("a cancelled call succeeded") }
        XCTAssertEqual(e.code, .cancelled)

        try isolated.unload("tp")
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        XCTAssertNotEqual(kill(pid, 0), 0, "the worker exits after unload")
        XCTAssertTrue(hub.stats().isEmpty)
    }

    func testLoadFailureInTheWorkerKeepsItsCode() throws {
        let hub = try WorkerHub(configuration: .init(executable: try coalesced()))
        defer { hub.stop() }
        let repo = try repository()
        try #"{"backend": "test-pattern", "fail": true}"#.write(toFile: repo + "/tp/config.json", atomically: true, encoding: .utf8)
        let engine = Engine(configuration: .init(pluginDirectory: ServiceTestSupport.pluginDirectory, modelRepository: repo,
                                                 launcher: hub))
        XCTAssertThrowsError(try engine.load("tp")) { error in
            XCTAssertEqual((error as? EngineError)?.code, .internal)
            XCTAssertTrue("\(error)".contains("asks create() to fail"), "\(error)")
        }
        try #"{"backend": "no-such-backend"}"#.write(toFile: repo + "/tp/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try engine.load("tp")) { error in
            XCTAssertEqual((error as? EngineError)?.code, .notFound)
        }
        XCTAssertFalse(engine.isLoaded("tp"))
    }
}
