import Engine
import Foundation
import XCTest

final class BackendLibraryTests: XCTestCase {
    func testLoadsTestPatternByName() throws {
        let lib = try BackendLibrary.load(name: "test-pattern", directory: TestSupport.pluginDirectory)
        XCTAssertEqual(lib.name, "test-pattern")
        XCTAssertEqual(lib.abiMajor, 1)
        XCTAssertGreaterThanOrEqual(lib.abiMinor, 1)
        XCTAssertTrue(lib.supportsBatch)
        XCTAssertTrue(lib.path.hasSuffix("libTestPatternBackend.so"), lib.path)
    }

    func testCandidateFileNames() {
        XCTAssertEqual(BackendLibrary.candidateFileNames(for: "test-pattern").first, "libTestPatternBackend.so")
        XCTAssertEqual(BackendLibrary.candidateFileNames(for: "coalescer").first, "libCoalescerBackend.so")
    }

    func testRefusesPathLikeNames() {
        for bad in ["", "../test-pattern", "a/b", "/etc/passwd", "Test", "-x", "x y", String(repeating: "a", count: 65)] {
            TestSupport.assertThrows(.invalidArgument) {
                _ = try BackendLibrary.load(name: bad, directory: TestSupport.pluginDirectory)
            }
        }
    }

    func testMissingPluginIsNotFound() {
        TestSupport.assertThrows(.notFound, containing: "no plugin for backend") {
            _ = try BackendLibrary.load(name: "no-such-backend", directory: TestSupport.pluginDirectory)
        }
        TestSupport.assertThrows(.notFound, containing: "plugin directory") {
            _ = try BackendLibrary.load(name: "test-pattern", directory: "/nonexistent/plugins")
        }
    }

    func testMissingEntrySymbolIsRefused() throws {
        let dir = try TestSupport.tempDirectory(self)
        try TestSupport.compilePlugin(source: "int not_the_entry(void) { return 1; }\n",
                                      into: dir, file: "libNoEntryBackend.so")
        TestSupport.assertThrows(.internal, containing: "does not export cz_backend_entry") {
            _ = try BackendLibrary.load(name: "no-entry", directory: dir)
        }
    }

    func testWrongMajorIsRefused() throws {
        let dir = try TestSupport.tempDirectory(self)
        let src = """
        #include "coalesce_backend.h"
        static cz_backend_model *c(const char *d, char *e, size_t n) { (void)d; (void)e; (void)n; return 0; }
        static const char *ds(cz_backend_model *m) { (void)m; return "{}"; }
        static int g(cz_backend_model *m, const cz_backend_request *r, uint8_t *p, size_t cap,
                     cz_backend_progress_fn f, void *u, char *e, size_t n) { return 6; }
        static void x(cz_backend_model *m) { (void)m; }
        static const cz_backend_vtable vt = { 99, 0, "future", "9.0", c, ds, g, x, 0 };
        const cz_backend_vtable *cz_backend_entry(void) { return &vt; }
        """
        try TestSupport.compilePlugin(source: src, into: dir, file: "libFutureBackend.so")
        TestSupport.assertThrows(.internal, containing: "ABI 99.0") {
            _ = try BackendLibrary.load(name: "future", directory: dir)
        }
    }

    func testAlternateFileNamesAndNameCheck() throws {
        let dir = try TestSupport.tempDirectory(self)
        let built = TestSupport.pluginDirectory + "/libTestPatternBackend.so"
        try FileManager.default.copyItem(atPath: built, toPath: dir + "/test-pattern.so")
        let lib = try BackendLibrary.load(name: "test-pattern", directory: dir)
        XCTAssertEqual(lib.name, "test-pattern")
        XCTAssertTrue(lib.path.hasSuffix("/test-pattern.so"))
        // A file found under another backend's name is refused: its vtable names test-pattern.
        try FileManager.default.copyItem(atPath: built, toPath: dir + "/libImpostorBackend.so")
        TestSupport.assertThrows(.internal, containing: "reports backend name") {
            _ = try BackendLibrary.load(name: "impostor", directory: dir)
        }
        // Files that match no candidate name are never loaded.
        let other = try TestSupport.tempDirectory(self)
        try FileManager.default.copyItem(atPath: built, toPath: other + "/renamed.so")
        TestSupport.assertThrows(.notFound) { _ = try BackendLibrary.load(name: "test-pattern", directory: other) }
    }

    /// A Swift plugin takes the requests of one generate_batch call as the host grouped them (same
    /// steps and guidance, as the ABI says) and refuses a call that mixes them: the images of such a
    /// call would not be those of its requests alone.
    func testSwiftPluginRefusesABatchThatMixesSteps() throws {
        let directory = TestSupport.repoRoot + "/models/coalescer"
        guard FileManager.default.fileExists(atPath: directory + "/coalescer.safetensors") else {
            throw XCTSkip("no committed coalescer weights")
        }
        let lib = try BackendLibrary.load(name: "coalescer", directory: TestSupport.pluginDirectory)
        let model = try InProcessInstance(library: lib, model: "coalescer", directory: directory)
        let one = BackendRequest(prompt: "a bag", seed: 1, steps: 1, count: 1, guidance: 0)
        var two = one
        two.steps = 2
        TestSupport.assertThrows(.invalidArgument, containing: "must share steps and guidance") {
            _ = try model.run([one, two], imageBytes: 28 * 28, threads: 1, progress: nil)
        }
        XCTAssertEqual(try model.run([one, one], imageBytes: 28 * 28, threads: 1, progress: nil).count, 2 * 28 * 28)
    }
}
