// The generation limits: one definition (EngineLimits), the C header's constants equal to it, and
// each bound enforced: a request at the bound succeeds, one just above is refused.
import Engine
import Foundation
import XCTest

/// `#define NAME VALUE` lines of Include/coalesce.h, by name.
func headerConstants(_ root: String) throws -> [String: String] {
    let text = try String(contentsOfFile: root + "/Include/coalesce.h", encoding: .utf8)
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 3, parts[0] == "#define" { out[String(parts[1])] = String(parts[2]) }
    }
    return out
}

final class LimitsTests: XCTestCase {
    func testHeaderConstantsAreTheEnginesLimits() throws {
        let h = try headerConstants(TestSupport.repoRoot)
        XCTAssertEqual(h["CZ_MAX_STEPS"].flatMap { Int32($0) }, EngineLimits.stepLimit)
        XCTAssertEqual(h["CZ_MAX_COUNT"].flatMap { Int32($0) }, EngineLimits.countLimit)
        XCTAssertEqual(h["CZ_MAX_PROMPT_BYTES"].flatMap { Int($0) }, EngineLimits.promptBytesLimit)
        XCTAssertEqual(h["CZ_MAX_GUIDANCE"].flatMap { Float($0) }, EngineLimits.guidanceRange.upperBound)
        XCTAssertEqual(EngineLimits.guidanceRange.lowerBound, 0)
        // The defaults and the configs' own bound are the same numbers.
        XCTAssertEqual(EngineLimits().maxSteps, EngineLimits.stepLimit)
        XCTAssertEqual(EngineLimits().maxPromptBytes, EngineLimits.promptBytesLimit)
        XCTAssertEqual(ModelConfig.maxSteps, Int(EngineLimits.stepLimit))
        XCTAssertEqual(EngineLimits(maxSteps: 10_000).maxSteps, EngineLimits.stepLimit)
    }

    func testEachBoundSucceedsAndJustAboveIsRefused() throws {
        let (engine, _) = try TestSupport.engine(self, models: ["tp": TestSupport.testPatternConfig()])
        try engine.load("tp")
        let top = EngineLimits.guidanceRange.upperBound
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp", steps: EngineLimits.stepLimit)).count, 1)
        XCTAssertEqual(try engine.generate(GenerateRequest(model: "tp", guidance: top)).count, 1)
        // The words every face gives (Bindings/c/test_api.c and test_daemon.py expect them too).
        TestSupport.assertThrows(.invalidArgument,
                                 containing: "steps must be in 1...64, or 0 for the default (4) or -1 for auto; got 65") {
            _ = try engine.generate(GenerateRequest(model: "tp", steps: EngineLimits.stepLimit + 1))
        }
        TestSupport.assertThrows(.invalidArgument,
                                 containing: "guidance must be a finite number in 0...100 (0 = the model's default), got 100.5") {
            _ = try engine.generate(GenerateRequest(model: "tp", guidance: top + 0.5))
        }
        TestSupport.assertThrows(.invalidArgument, containing: "guidance must be a finite number in 0...100") {
            _ = try engine.generate(GenerateRequest(model: "tp", guidance: -0.5))
        }
    }
}
