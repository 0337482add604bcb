import Engine
import Foundation
import XCTest

/// A load that races a deploy switching the model's symbolic link loads one version: the engine
/// reads config.json, checks the weights and computes the revision in the folder the link led to,
/// and loads again when the link changed while the backend loaded.
final class LinkSwitchTests: XCTestCase {
    /// Launches in process, after running `hook` with the launch's number (a deploy that switches
    /// the link while the backend reads the folder).
    private final class SwitchingLauncher: BackendLauncher, @unchecked Sendable {
        private(set) var launches = 0
        let hook: (Int) throws -> Void
        init(hook: @escaping (Int) throws -> Void) { self.hook = hook }

        func launch(backend: String, model: String, directory: String, pluginDirectory: String) throws -> BackendInstance {
            launches += 1
            try hook(launches)
            return try InProcessLauncher().launch(backend: backend, model: model, directory: directory,
                                                  pluginDirectory: pluginDirectory)
        }
    }

    /// A repository whose model "tp" is a link to releases/v1; releases/v2 is another version.
    /// The configs name no revision, so the model's revision is its folder's content revision.
    private func repository() throws -> String {
        let repo = try TestSupport.tempDirectory(self)
        try TestSupport.writeModel(repo + "/releases", "v1", #"{"backend": "test-pattern", "step_delay_ms": 0}"#)
        try TestSupport.writeModel(repo + "/releases", "v2", #"{"backend": "test-pattern", "step_delay_ms": 1}"#)
        try FileManager.default.createSymbolicLink(atPath: repo + "/tp", withDestinationPath: "releases/v1")
        return repo
    }

    /// Switches `<repo>/tp` to `target` with a rename, as the documented deploy does.
    private func switchLink(_ repo: String, to target: String) throws {
        try? FileManager.default.removeItem(atPath: repo + "/.tp.tmp")
        try FileManager.default.createSymbolicLink(atPath: repo + "/.tp.tmp", withDestinationPath: target)
        guard rename(repo + "/.tp.tmp", repo + "/tp") == 0 else { throw POSIXError(.init(rawValue: errno)!) }
    }

    func testALinkSwitchedDuringTheLoadIsLoadedAgainFromTheNewFolder() throws {
        let repo = try repository()
        let launcher = SwitchingLauncher { [self] n in if n == 1 { try switchLink(repo, to: "releases/v2") } }
        let engine = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo,
                                                 launcher: launcher))
        let status = try engine.load("tp")
        XCTAssertEqual(launcher.launches, 2)  // the first load read through a link that changed under it
        XCTAssertEqual(status.revision, ModelRepository.contentRevision(of: repo + "/releases/v2"))
        XCTAssertNotEqual(status.revision, ModelRepository.contentRevision(of: repo + "/releases/v1"))
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp")).revision, status.revision)
    }

    func testALinkThatKeepsSwitchingFailsTheLoadAndKeepsTheOldInstance() throws {
        let repo = try repository()
        let launcher = SwitchingLauncher { [self] n in
            if n > 1 { try switchLink(repo, to: n % 2 == 0 ? "releases/v2" : "releases/v1") }
        }
        let engine = Engine(configuration: .init(pluginDirectory: TestSupport.pluginDirectory, modelRepository: repo,
                                                 launcher: launcher))
        let first = try engine.load("tp")  // no switch: one launch
        XCTAssertEqual(launcher.launches, 1)
        XCTAssertThrowsError(try engine.load("tp")) { error in
            guard let e = error as? EngineError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.code, .unavailable)
            XCTAssertTrue(e.message.contains("switched to another folder"), e.message)
        }
        XCTAssertEqual(launcher.launches, 4)
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp")).revision, first.revision)
    }
}
