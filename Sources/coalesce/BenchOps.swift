import CCoalesceKernels
import ArgumentParser
import Foundation
import Models
import Tensor

/// `coalesce bench ops`: GFLOP/s of conv forward/backward at the shapes our models use, beside
/// sgemm of the same GEMM size measured in the same run, and UNet training/inference speed.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "GFLOP/s of conv forward/backward vs sgemm at model shapes; UNet train-step images/s.")

    @Option(help: "Batch size for conv and UNet measurements.") var batch = 64
    @Option(help: "Seconds to spend timing each measurement (at least 3 repetitions).") var seconds = 1.0
    @Flag(help: "Shorter run (fewer shapes, 0.3 s per measurement).") var quick = false
    @Flag(help: "Skip the UNet training-step measurement.") var noUnet = false
    @Flag(help: "Only the UNet measurement (for profiling it).") var unetOnly = false
    @Flag(help: "Only the square sgemm (the machine's GEMM peak at the compute threads).") var sgemmOnly = false
    @Flag(help: "After the UNet measurement, time one more training step op by op and print a table.") var profile = false

    /// Best-of time per call, in seconds, over repetitions filling `budget` seconds.
    func time(_ budget: Double, _ body: () -> Void) -> Double { times(budget, body).min()! }

    /// Every timed call's seconds (after one warm-up call), at least 3, filling `budget` seconds.
    func times(_ budget: Double, _ body: () -> Void) -> [Double] {
        body()  // warm-up
        var all: [Double] = [], spent = 0.0
        while all.count < 3 || spent < budget {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            all.append(dt); spent += dt
            if all.count >= 200 { break }
        }
        return all
    }

    /// The machine's arithmetic ceiling at the compute threads: every thread runs independent fused
    /// multiply-adds on registers at once (`cck_fma_peak_loop`); best of the repetitions. nil on
    /// a CPU without FMA.
    func fmaPeak(budget: Double) -> Double? {
        let threads = Runtime.threads, iterations = 20_000_000
        var best = 0.0
        var spent = 0.0
        for _ in 0..<max(3, Int(budget / 0.1)) {
            let flops = UnsafeMutablePointer<Int>.allocate(capacity: threads)
            defer { flops.deallocate() }
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                var sink: Float = 0
                flops[t] = cck_fma_peak_loop(iterations, Int32(CCK_ISA_BEST), &sink)
                if sink.isNaN { print("") }
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let total = (0..<threads).reduce(0) { $0 + flops[$1] }
            if total == 0 { return nil }
            best = max(best, Double(total) / dt / 1e9)
            spent += dt
            if spent > budget * 3 { break }
        }
        return best
    }

    func run() throws {
        BLAS.load()
        let budget = quick ? 0.3 : seconds
        print("BLAS core \(BLAS.coreName) (chosen by \(BLAS.coreSource)), \(BLAS.threads) BLAS threads, \(Runtime.threads) compute threads")
        var rng = RandomGenerator(seed: 1)
        if unetOnly { return try benchUNet(budget: budget, rng: &rng) }

        // Square sgemm for reference.
        let n = 1024
        let a = Tensor.randn([n, n], rng: &rng), b = Tensor.randn([n, n], rng: &rng), c = Tensor(zeros: [n, n])
        let tg = time(budget) {
            BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n,
                       beta: 0, c: c.data, ldc: n, openBLASOnly: true)
        }
        print(String(format: "sgemm %dx%dx%d: %.1f GFLOP/s", n, n, n, 2.0 * Double(n * n * n) / tg / 1e9))
        if BLAS.ownKernels {
            let to = time(budget) {
                BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n,
                           beta: 0, c: c.data, ldc: n)
            }
            print(String(format: "training GEMM (cck_sgemm) %dx%dx%d: %.1f GFLOP/s", n, n, n, 2.0 * Double(n * n * n) / to / 1e9))
        }
        if let peak = fmaPeak(budget: budget) {
            print(String(format: "FMA peak (%@, %d threads, registers only): %.1f GFLOP/s", cck_best_isa() == Int32(CCK_ISA_AVX512) ? "AVX-512" : "AVX2",
                         Runtime.threads, peak))
        }
        if sgemmOnly { return }
        print("")
        print("conv 3x3, batch \(batch)      | sgemm same GEMM | conv fwd  (ratio) | conv bwd  (ratio)")
        var shapes: [(hw: Int, cin: Int, cout: Int, stride: Int)] = [
            (28, 32, 32, 1), (28, 32, 64, 1), (14, 64, 64, 1), (14, 64, 128, 1), (7, 128, 128, 1), (28, 64, 64, 2),
        ]
        if quick { shapes = [(28, 32, 32, 1), (14, 64, 64, 1), (7, 128, 128, 1)] }
        for s in shapes {
            let x = Tensor.randn([batch, s.cin, s.hw, s.hw], rng: &rng, requiresGrad: true)
            let w = Tensor.randn([s.cout, s.cin, 3, 3], std: 0.05, rng: &rng, requiresGrad: true)
            let bias = Tensor(zeros: [s.cout], requiresGrad: true)
            let ho = (s.hw + 2 - 3) / s.stride + 1
            let m = batch * ho * ho, k = s.cin * 9
            let flops = 2.0 * Double(m) * Double(k) * Double(s.cout)
            // The GEMM inside the conv, alone: (M x K) @ (K x Cout).
            let ga = Tensor.randn([m, k], rng: &rng), gb = Tensor.randn([k, s.cout], rng: &rng)
            let gc = Tensor(zeros: [m, s.cout])
            let tGemm = time(budget) {
                BLAS.sgemm(transA: false, transB: false, m: m, n: s.cout, k: k, a: ga.data, lda: k,
                           b: gb.data, ldb: s.cout, beta: 0, c: gc.data, ldc: s.cout)
            }
            let tFwd = time(budget) {
                GradMode.withDisabled { _ = Tensor.conv2d(x, weight: w, bias: bias, stride: s.stride, padding: 1) }
            }
            // Backward alone: run forward once per repetition outside the timed region.
            var tBwd = Double.infinity
            for rep in 0..<max(3, Int(budget / max(tFwd, 1e-4) / 3)) {
                let y = Tensor.conv2d(x, weight: w, bias: bias, stride: s.stride, padding: 1)
                let seed = Tensor(filled: 1, shape: y.shape)
                let t0 = DispatchTime.now().uptimeNanoseconds
                y.backward(seed: seed)
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                if rep > 0 { tBwd = min(tBwd, dt) }
                x.zeroGrad(); w.zeroGrad(); bias.zeroGrad()
                if rep > 50 { break }
            }
            let gGemm = flops / tGemm / 1e9, gFwd = flops / tFwd / 1e9, gBwd = 2 * flops / tBwd / 1e9
            print(String(format: "%2dx%-2d %3d->%-3d s%d       | %6.1f GFLOP/s  | %6.1f (%3.0f%%)    | %6.1f (%3.0f%%)",
                         s.hw, s.hw, s.cin, s.cout, s.stride, gGemm, gFwd, 100 * gFwd / gGemm, gBwd, 100 * gBwd / gGemm))
        }
        if noUnet { return }
        try benchUNet(budget: budget, rng: &rng)
    }

    func benchUNet(budget: Double, rng: inout RandomGenerator) throws {
        let net = try UNet(UNetConfig(), rng: &rng)
        print("")
        print("UNet \(UNetConfig().channels) x\(UNetConfig().layersPerLevel), \(net.parameterCount) parameters, batch \(batch), 28x28x1")
        let x = Tensor.randn([batch, 1, 28, 28], rng: &rng)
        let target = Tensor.randn([batch, 1, 28, 28], rng: &rng)
        let t = (0..<batch).map { Float($0 * 7 % 1000) }
        let opt = AdamW(parameters: net.parameters, learningRate: 1e-4)
        let tInfer = time(budget) { GradMode.withDisabled { _ = net(x, t: t) } }
        print(String(format: "  forward (inference):   %7.1f images/s  (%.1f ms per batch)", Double(batch) / tInfer, tInfer * 1e3))
        let steps = times(max(budget, 2)) {
            let loss = Tensor.mseLoss(net(x, t: t), target)
            opt.zeroGrad()
            loss.backward()
            opt.update()
        }.sorted()
        let tTrain = steps[0], tMedian = steps[steps.count / 2]
        print(String(format: "  training step (AdamW): %7.1f images/s  (%.1f ms per batch; median of %d steps %.1f images/s)",
                     Double(batch) / tTrain, tTrain * 1e3, steps.count, Double(batch) / tMedian))
        if profile {
            OpProfiler.enabled = true
            defer { OpProfiler.enabled = false }
            OpProfiler.reset()
            let t0 = DispatchTime.now().uptimeNanoseconds
            let loss = Tensor.mseLoss(net(x, t: t), target)
            let t1 = DispatchTime.now().uptimeNanoseconds
            opt.zeroGrad()
            loss.backward()
            let t2 = DispatchTime.now().uptimeNanoseconds
            opt.update()
            let t3 = DispatchTime.now().uptimeNanoseconds
            print(String(format: "  profiled step: forward %.1f ms, backward %.1f ms, optimizer %.1f ms (zeroGrad included in backward)",
                         Double(t1 - t0) / 1e6, Double(t2 - t1) / 1e6, Double(t3 - t2) / 1e6))
            print("  op                      calls   forward ms  backward ms")
            for row in OpProfiler.report().prefix(16) {
                let name = row.op.count < 22 ? row.op + String(repeating: " ", count: 22 - row.op.count) : row.op
                print("  " + name + String(format: " %6d   %10.1f  %11.1f", row.calls, row.forward * 1e3, row.backward * 1e3))
            }
        }
        print("  reference: PyTorch CPU on this machine, 2.7M-param diffusers UNet: 72 images/s training, 205 images/s inference (DESIGN.md)")
    }
}
