import Foundation
import Models
import Tensor
import Training
import XCTest

/// The coalescer's teacher coupling: pairs from a latent diffusion model do not depend on chunk
/// size or on resuming, a file made with other settings is refused, and a net trained on a
/// deterministic coupling learns it (one jump lands on each start's own target, which a net
/// averaging over targets cannot do).
final class TeacherCouplingTests: XCTestCase {
    func tinyTeacher() throws -> LatentDiffusionModel { try LatentDiffusionTests.tinyModel() }

    func settings(_ m: LatentDiffusionModel, seed: UInt64 = 4) -> TeacherPairs.Settings {
        TeacherPairs.Settings(teacher: "tiny", steps: 2, guidance: 2, seed: seed, unconditionalFraction: 0.3,
                              prompts: ["a", "b"], autoencoderHash: TeacherPairs.hash(m.autoencoder))
    }

    func testPairsDoNotDependOnChunksOrResuming() throws {
        let m = try tinyTeacher()
        let dir = NSTemporaryDirectory() + "/teacher-pairs-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = settings(m)
        let once = try TeacherPairs.generate(teacher: m, settings: s, count: 7, path: dir + "/a.st", chunk: 7, progress: false, log: { _ in })
        try TeacherPairs.generate(teacher: m, settings: s, count: 3, path: dir + "/b.st", chunk: 2, progress: false, log: { _ in })
        let resumed = try TeacherPairs.generate(teacher: m, settings: s, count: 7, path: dir + "/b.st", chunk: 3, progress: false, log: { _ in })
        XCTAssertEqual(once.noise, resumed.noise)
        XCTAssertEqual(once.latents, resumed.latents)
        XCTAssertEqual(once.labels, resumed.labels)
        let loaded = try TeacherPairs.load(path: dir + "/b.st")
        XCTAssertEqual(loaded.latents, once.latents)
        XCTAssertEqual(loaded.settings, s)
        XCTAssertEqual(loaded.latentDim, 4 * 7 * 7)
        // The latents are the sampler's from that noise: pair 0 again through the sampler.
        let p0 = Array(once.noise[0..<loaded.latentDim])
        let prompt = once.labels[0] < 0 ? "" : "ab".map(String.init)[once.labels[0]]
        let again = try LatentDiffusionSampler(model: m).latents([.init(prompt: prompt, seed: 0, count: 1, guidance: once.labels[0] < 0 ? 1 : 2)],
                                                                 steps: 2, initialNoise: p0)
        XCTAssertEqual(again.array, Array(once.latents[0..<loaded.latentDim]))
        // Other settings: refused, not mixed in.
        XCTAssertThrowsError(try TeacherPairs.generate(teacher: m, settings: settings(m, seed: 5), count: 9, path: dir + "/b.st",
                                                       progress: false, log: { _ in })) { e in
            XCTAssertTrue("\(e)".contains("other settings"), "\(e)")
        }
        // Not a pairs file.
        try SafeTensors(tensors: ["x": Tensor(zeros: [2])]).write(path: dir + "/c.st")
        XCTAssertThrowsError(try TeacherPairs.load(path: dir + "/c.st")) { e in XCTAssertTrue("\(e)".contains("not a teacher-pairs file"), "\(e)") }
        XCTAssertThrowsError(try TeacherPairs.load(path: dir + "/missing.st"))
        // Wrong noise size for the sampler.
        XCTAssertThrowsError(try LatentDiffusionSampler(model: m).latents([.init(prompt: "a", seed: 0, count: 2, guidance: 1)],
                                                                          steps: 1, initialNoise: p0))
    }

    /// 64 pairs whose target is a fixed nonlinear function of the start: trained only on prior
    /// starts through the coupling, one jump from each start lands close to its own target,
    /// far closer than the mean of its class's targets is.
    func testNetLearnsADeterministicCoupling() throws {
        var rng = RandomGenerator(seed: 21)
        let k = 4, dd = 3, m = 64
        let classDesc: [[[Float]]] = (0..<2).map { c in [[Float(c), 1, 0]] }
        var starts: [Float] = [], targets: [Float] = [], labels: [Int] = []
        for i in 0..<m {
            let c = i % 2
            let r = (0..<k).map { _ in rng.nextNormal() }
            starts += r
            targets += r.enumerated().map { j, v in Float(2 * c - 1) + 0.6 * tanh(v) + 0.2 * Float(j) }
            labels.append(c)
        }
        var points = [Float](), pl = [Int](), desc = [Float]()
        for i in 0..<40 { let c = i % 2; pl.append(c); points += (0..<k).map { _ in Float(2 * c - 1) + 0.3 * rng.nextNormal() }; desc += classDesc[c][0] }
        var data = CoalescerData(points: points, labels: pl, descriptions: desc, classDescriptions: classDesc,
                                 unconditional: [0, 0, 1], dim: k, descDim: dd)
        data.teacherStarts = starts; data.teacherTargets = targets; data.teacherLabels = labels
        var o = CoalescerTrainingOptions()
        o.steps = 1500; o.batchSize = 32; o.priorFraction = 1; o.unconditionalFraction = 0; o.progress = false
        o.learningRate = 3e-3; o.directionExponent = 2; o.distanceWeight = 1; o.emaDecay = 0.9
        let trainer = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        var c = CoalescerNetConfig(); c.latentDim = k; c.descDim = dd; c.hidden = 128; c.blocks = 2; c.levelInput = true
        let net = try CoalescerNet(config: c, rng: &rng)
        let report = try trainer.train(net)
        XCTAssertEqual(report.queries, 0, "prior starts with teacher pairs must not search")
        let x = GradMode.withDisabled {
            net.jump(Tensor(starts, shape: [m, k]), Tensor(labels.flatMap { classDesc[$0][0] }, shape: [m, dd])).array
        }
        var err = 0.0, spread = 0.0
        for i in 0..<m {
            for j in 0..<k {
                let mean = (0..<m).filter { labels[$0] == labels[i] }.map { Double(targets[$0 * k + j]) }.reduce(0, +) / Double(m / 2)
                err += pow(Double(x[i * k + j] - targets[i * k + j]), 2)
                spread += pow(Double(targets[i * k + j]) - mean, 2)
            }
        }
        XCTAssertLessThan(err, 0.1 * spread, "squared error \(err) of the jumps vs \(spread) of the class means")
    }

    /// Near-data starts can re-noise a pair's target instead of a training item (and then never
    /// search); without that option they search as before.
    func testNearStartsFromPairsDoNotSearch() throws {
        var rng = RandomGenerator(seed: 3)
        let k = 4, dd = 3
        let classDesc: [[[Float]]] = (0..<2).map { c in [[Float(c), 1, 0]] }
        var data = CoalescerData(points: (0..<(40 * k)).map { _ in rng.nextNormal() }, labels: (0..<40).map { $0 % 2 },
                                 descriptions: (0..<40).flatMap { classDesc[$0 % 2][0] }, classDescriptions: classDesc,
                                 unconditional: [0, 0, 1], dim: k, descDim: dd)
        data.teacherStarts = (0..<(8 * k)).map { _ in rng.nextNormal() }
        data.teacherTargets = (0..<(8 * k)).map { _ in rng.nextNormal() }
        data.teacherLabels = (0..<8).map { $0 % 2 }
        var o = CoalescerTrainingOptions()
        o.steps = 5; o.batchSize = 16; o.priorFraction = 0; o.unconditionalFraction = 0; o.progress = false
        var c = CoalescerNetConfig(); c.latentDim = k; c.descDim = dd; c.hidden = 16; c.blocks = 1; c.levelInput = true
        o.teacherNearFraction = 1
        let fromPairs = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        XCTAssertEqual(try fromPairs.train(try CoalescerNet(config: c, rng: &rng)).queries, 0)
        o.teacherNearFraction = 0
        let searched = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        XCTAssertEqual(try searched.train(try CoalescerNet(config: c, rng: &rng)).queries, 5 * 16)
    }
}
