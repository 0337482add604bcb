// Shared helpers for Engine tests: where the built plugins are, temporary model repositories,
// and compiling deliberately broken plugins with the system C compiler.
import Engine
import Foundation
import XCTest

enum TestSupport {
    /// Repository root (two levels above this file's directory).
    static let repoRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }()

    /// Directory holding libTestPatternBackend.so: $COALESCE_PLUGIN_DIR, else the directory of
    /// the test executable (SwiftPM puts products next to it), else .build/release.
    static let pluginDirectory: String = {
        if let env = ProcessInfo.processInfo.environment["COALESCE_PLUGIN_DIR"], !env.isEmpty { return env }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var candidates = [exe.deletingLastPathComponent().path]
        candidates.append(repoRoot + "/.build/release")
        for dir in candidates where FileManager.default.fileExists(atPath: dir + "/libTestPatternBackend.so") {
            return dir
        }
        return candidates[0]
    }()

    /// A fresh temporary directory, removed at the end of the test.
    static func tempDirectory(_ test: XCTestCase) throws -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("coalesce-engine-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Writes `<repo>/<name>/config.json` with the given JSON.
    static func writeModel(_ repo: String, _ name: String, _ json: String) throws {
        let dir = repo + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try json.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    }

    /// A test-pattern model config.
    static func testPatternConfig(revision: String = "1", delayMs: Int = 0, fail: Bool = false,
                                  defaultSteps: Int = 4) -> String {
        """
        {"backend": "test-pattern", "revision": "\(revision)", "step_delay_ms": \(delayMs),
         "default_steps": \(defaultSteps), "fail": \(fail)}
        """
    }

    /// An engine over a fresh repository holding `models` (name -> config JSON).
    static func engine(_ test: XCTestCase, models: [String: String], limits: EngineLimits = EngineLimits(),
                       pluginDirectory: String? = nil) throws -> (Engine, String) {
        let repo = try tempDirectory(test)
        for (name, json) in models { try writeModel(repo, name, json) }
        let engine = Engine(configuration: .init(pluginDirectory: pluginDirectory ?? Self.pluginDirectory,
                                                 modelRepository: repo, limits: limits))
        return (engine, repo)
    }

    /// Compiles C source into `<dir>/<file>` as a shared library with the repo's Include/.
    static func compilePlugin(source: String, into dir: String, file: String, flags: [String] = []) throws {
        let src = dir + "/" + file + ".c"
        try source.write(toFile: src, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-shared", "-fPIC", "-I", repoRoot + "/Include"] + flags + ["-o", dir + "/" + file, src]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw XCTSkip("no working C compiler to build a test plugin (cc exited \(p.terminationStatus))")
        }
    }

    /// Asserts that `body` throws an EngineError with `code` whose message contains `text`.
    static func assertThrows(_ code: StatusCode, containing text: String = "", file: StaticString = #filePath,
                             line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected \(code), got success", file: file, line: line)
        } catch let e as EngineError {
            XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
            XCTAssertTrue(text.isEmpty || e.message.contains(text), "message \"\(e.message)\" lacks \"\(text)\"", file: file, line: line)
        } catch {
            XCTFail("expected EngineError, got \(error)", file: file, line: line)
        }
    }
}
