// The samplers' copy of the generation limits equals Include/coalesce.h (and so the Engine's
// EngineLimits, which EngineTests.LimitsTests compares with the same header).
import Foundation
import Models
import XCTest

final class SamplingLimitsTests: XCTestCase {
    func testSamplingLimitsAreTheHeaders() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let text = try String(contentsOfFile: root + "/Include/coalesce.h", encoding: .utf8)
        var defines: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 3, parts[0] == "#define" { defines[String(parts[1])] = String(parts[2]) }
        }
        XCTAssertEqual(defines["CZ_MAX_STEPS"].flatMap { Int($0) }, SamplingLimits.maxSteps)
        XCTAssertEqual(defines["CZ_MAX_GUIDANCE"].flatMap { Float($0) }, SamplingLimits.guidanceRange.upperBound)
        XCTAssertEqual(SamplingLimits.guidanceRange.lowerBound, 0)
        XCTAssertEqual(LatentDiffusionConfig().maxSteps, SamplingLimits.maxSteps)
    }
}
