import Foundation
import Tensor
import XCTest

// Shared helpers for the Tensor tests: a finite-difference gradient check and an independent
// NumPy reference runner.

/// Finite-difference gradient check.
///
/// The scalar probed is L = Σ_k Σ_i out_k[i] * R_k[i], accumulated in float64, with R_k fixed
/// random weights (so every output element matters with a different weight). The analytic
/// gradient comes from `out_k.backward(seed: R_k)`; the numeric one from central differences
/// (L(x + h) - L(x - h)) / 2h, one input element at a time.
///
/// Error per element: |analytic - numeric| / max(|analytic|, |numeric|, floor) with
/// floor = max(1e-3, 1e-2 * max_i |numeric_i| over that input tensor), so gradient entries near
/// zero are compared against the tensor's gradient scale (float32 rounding of the forward pass
/// puts an absolute noise of about 1e-6 / 2h on every numeric entry). The maximum over all
/// elements of all checked inputs is printed and must be below `bound`.
enum GradCheck {
    /// Default bound on the max relative error (float32 forward, h = 1e-2).
    static let defaultBound = 2e-2

    /// Checks d L / d input for every tensor in `inputs` (they get `requiresGrad = true`);
    /// `f` builds the outputs from the current values (it may close over other, unchecked
    /// tensors). Returns the max relative error.
    @discardableResult
    static func check(_ name: String, inputs: [Tensor], h: Float = 1e-2, bound: Double = defaultBound,
                      seed: UInt64 = 7, file: StaticString = #filePath, line: UInt = #line,
                      _ f: () -> [Tensor]) -> Double {
        for t in inputs { t.requiresGrad = true; t.clearGrad() }
        var rng = RandomGenerator(seed: seed)
        let outs = f()
        let weights = outs.map { Tensor.randn($0.shape, rng: &rng) }
        for (o, r) in zip(outs, weights) { o.backward(seed: r) }
        let analytic = inputs.map { $0.gradArray ?? [Float](repeating: 0, count: $0.count) }

        func loss() -> Double {
            GradMode.withDisabled {
                let outs = f()
                var acc: Double = 0
                for (o, r) in zip(outs, weights) {
                    precondition(o.count == r.count, "\(name): output shape changed")
                    for i in 0..<o.count { acc += Double(o[i]) * Double(r[i]) }
                }
                return acc
            }
        }

        var worst: Double = 0
        var worstAt = ""
        for (ti, t) in inputs.enumerated() {
            var numerics = [Double](repeating: 0, count: t.count)
            for i in 0..<t.count {
                let orig = t[i]
                t[i] = orig + h
                let up = t[i]
                let lp = loss()
                t[i] = orig - h
                let down = t[i]
                let lm = loss()
                t[i] = orig
                numerics[i] = (lp - lm) / (Double(up) - Double(down))
            }
            let floor = max(1e-3, 1e-2 * (numerics.map(abs).max() ?? 0))
            for i in 0..<t.count {
                let numeric = numerics[i]
                let a = Double(analytic[ti][i])
                let err = abs(a - numeric) / max(abs(a), abs(numeric), floor)
                if err > worst {
                    worst = err
                    worstAt = "input \(ti) \(t.shape) element \(i): analytic \(a), numeric \(numeric)"
                }
            }
        }
        for t in inputs { t.clearGrad() }
        print("gradcheck \(name): max relative error \(String(format: "%.3e", worst)) (bound \(bound))"
              + (worst > 0 ? " worst at \(worstAt)" : ""))
        XCTAssertLessThan(worst, bound, "gradcheck \(name): \(worstAt)", file: file, line: line)
        return worst
    }

    /// Convenience for single-output ops.
    @discardableResult
    static func check(_ name: String, inputs: [Tensor], h: Float = 1e-2, bound: Double = defaultBound,
                      file: StaticString = #filePath, line: UInt = #line, single f: @escaping () -> Tensor) -> Double {
        check(name, inputs: inputs, h: h, bound: bound, file: file, line: line) { [f()] }
    }
}

/// Test inputs: seeded random tensors.
enum TestData {
    static func randn(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return Tensor.randn(shape, std: std, rng: &rng)
    }

    static func uniform(_ shape: [Int], _ lo: Float, _ hi: Float, seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return Tensor.uniform(shape, lo: lo, hi: hi, rng: &rng)
    }

    /// Values with |x| in [0.1, 1.5] and random sign: away from kinks at 0 (relu, |.|).
    static func awayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        let t = Tensor.uniform(shape, lo: 0.1, hi: 1.5, rng: &rng)
        for i in 0..<t.count where rng.nextFloat() < 0.5 { t[i] = -t[i] }
        return t
    }
}

/// Runs a NumPy script as an independent reference implementation.
///
/// Inputs are written as raw little-endian float32 files `<name>.bin` in a fresh temporary
/// directory whose path the script receives as `d` (a Python string); the script must write
/// `out.bin` (float32) there. Throws XCTSkip when python3 or NumPy is missing.
enum NumPyReference {
    static func run(_ script: String, inputs: [String: Tensor], file: StaticString = #filePath,
                    line: UInt = #line) throws -> [Float] {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("coalesce-tensortests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, t) in inputs {
            let bytes = Data(bytes: t.data, count: t.count * MemoryLayout<Float>.size)
            try bytes.write(to: dir.appendingPathComponent("\(name).bin"))
        }
        let program = """
        import sys
        import numpy as np
        d = sys.argv[1]
        def load(name, shape):
            return np.fromfile(d + '/' + name + '.bin', dtype='<f4').astype(np.float64).reshape(shape)
        def save(a):
            np.asarray(a, dtype='<f4').tofile(d + '/out.bin')
        \(script)
        """
        let (status, output) = try python(["-c", program, dir.path])
        if status == 97 { throw XCTSkip("python3 with NumPy is not available: \(output)") }
        guard status == 0 else {
            XCTFail("NumPy reference failed (status \(status)): \(output)", file: file, line: line)
            return []
        }
        let data = try Data(contentsOf: dir.appendingPathComponent("out.bin"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Runs python3 (through /usr/bin/env); status 97 means python3 or numpy is missing.
    private static func python(_ args: [String]) throws -> (Int32, String) {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import numpy"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        do { try probe.run() } catch { return (97, "cannot start python3: \(error)") }
        probe.waitUntilExit()
        if probe.terminationStatus != 0 { return (97, "python3 -c 'import numpy' failed") }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    /// Max |a - b| over two equally long arrays (fails the test on a length mismatch).
    static func maxAbsDiff(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
        XCTAssertEqual(a.count, b.count, "reference length", file: file, line: line)
        var m: Float = 0
        for (x, y) in zip(a, b) { m = max(m, abs(x - y)) }
        if a.count != b.count { return .infinity }
        return m
    }
}
