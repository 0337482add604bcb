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

    /// Squared error of jumps x (m, k) from their targets, and the targets' squared spread around
    /// their class means (two balanced classes): a net that averaged over targets would have an
    /// error near the spread.
    static func errorAndSpread(_ x: [Float], targets: [Float], labels: [Int], k: Int) -> (err: Double, spread: Double) {
        let m = labels.count
        var err = 0.0, spread = 0.0
        for i in 0..<m {
            for j in 0..<k {
                let mean = (0..<m).filter { labels[$0] == labels[i] }.map { Double(targets[$0 * k + j]) }.reduce(0, +) / Double(m / 2)
                err += pow(Double(x[i * k + j] - targets[i * k + j]), 2)
                spread += pow(Double(targets[i * k + j]) - mean, 2)
            }
        }
        return (err, spread)
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
        let (err, spread) = Self.errorAndSpread(x, targets: targets, labels: labels, k: k)
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

    /// Pairs that keep their trajectories: the point after each update is the sampler's own x at
    /// that timestep, with the schedule's scales, the same whatever the chunking, and it survives
    /// the file. Old files (no `trajectory_every`) still load.
    func testTrajectoryPointsAreTheSamplersAndSurviveResuming() throws {
        let m = try tinyTeacher()
        let dir = NSTemporaryDirectory() + "/teacher-traj-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = settings(m)
        s.steps = 3
        s.trajectoryEvery = 1
        XCTAssertEqual(s.trajectoryUpdates, [0, 1])
        let once = try TeacherPairs.generate(teacher: m, settings: s, count: 5, path: dir + "/a.st", chunk: 5, progress: false, log: { _ in })
        try TeacherPairs.generate(teacher: m, settings: s, count: 2, path: dir + "/b.st", chunk: 2, progress: false, log: { _ in })
        let resumed = try TeacherPairs.generate(teacher: m, settings: s, count: 5, path: dir + "/b.st", chunk: 2, progress: false, log: { _ in })
        let l = once.latentDim
        XCTAssertEqual(once.trajectory.count, 5 * 2 * l)
        XCTAssertEqual(resumed.trajectory, once.trajectory)
        let updates = m.schedule.updates(3, spacing: m.config.spacing)
        XCTAssertEqual(once.trajectoryTimesteps, [updates[0].prev, updates[1].prev])
        XCTAssertEqual(once.trajectorySigmas, once.trajectoryTimesteps.map { m.schedule.scales($0).sigma })
        let loaded = try TeacherPairs.load(path: dir + "/b.st")
        XCTAssertEqual(loaded.trajectory, once.trajectory)
        XCTAssertEqual(loaded.trajectoryAlphas, once.trajectoryAlphas)
        XCTAssertEqual(loaded.settings, s)
        // Pair 3's points are where the sampler passes from its noise.
        let i = 3
        let prompt = once.labels[i] < 0 ? "" : "ab".map(String.init)[once.labels[i]]
        var seen: [[Float]] = []
        let end = try LatentDiffusionSampler(model: m).latents([.init(prompt: prompt, seed: 0, count: 1, guidance: once.labels[i] < 0 ? 1 : 2)],
                                                               steps: 3, initialNoise: Array(once.noise[(i * l)..<((i + 1) * l)]),
                                                               visit: { _, _, x in seen.append(x) })
        XCTAssertEqual(end.array, Array(once.latents[(i * l)..<((i + 1) * l)]))
        XCTAssertEqual(seen.count, 3)
        XCTAssertEqual(seen[0] + seen[1], Array(once.trajectory[(i * 2 * l)..<((i + 1) * 2 * l)]))
        // Without trajectories the file has none, and settings without the key decode as 0.
        let plain = try TeacherPairs.generate(teacher: m, settings: settings(m), count: 2, path: dir + "/c.st", progress: false, log: { _ in })
        XCTAssertTrue(plain.trajectory.isEmpty)
        XCTAssertEqual(try TeacherPairs.load(path: dir + "/c.st").trajectoryLevels, 0)
        let old = #"{"teacher":"t","steps":2,"guidance":2,"seed":1,"unconditional_fraction":0,"prompts":["a"],"autoencoder_hash":"0"}"#
        XCTAssertEqual(try JSONDecoder().decode(TeacherPairs.Settings.self, from: Data(old.utf8)).trajectoryEvery, 0)
    }

    /// The two re-noising paths: linear is (1 - t, t); variance-preserving keeps unit variance in
    /// every coordinate, is pure noise at t = 1 and the point itself at t = 0.
    func testRenoisePaths() {
        let scales: [Float] = [3, 1, 0.2]
        let lin = CoalescerConfig.RenoisePath.linear.coefficients(level: 0.3, scales: scales)
        XCTAssertEqual(lin.signal, [0.7, 0.7, 0.7])
        XCTAssertEqual(lin.noise, [0.3, 0.3, 0.3])
        for t: Float in [0, 0.2, 0.7, 1] {
            let vp = CoalescerConfig.RenoisePath.variancePreserving.coefficients(level: t, scales: scales)
            for j in 0..<3 { XCTAssertEqual(vp.signal[j] * vp.signal[j] + vp.noise[j] * vp.noise[j], 1, accuracy: 1e-5) }
            if t == 0 { XCTAssertEqual(vp.signal, [1, 1, 1]) }
            if t == 1 { XCTAssertEqual(vp.noise, [1, 1, 1]) }
        }
        // A larger whitening scale keeps more signal at the same level (the teacher's noise is
        // the same in every direction; the data's spread is not).
        let mid = CoalescerConfig.RenoisePath.variancePreserving.coefficients(level: 0.7, scales: scales)
        XCTAssertGreaterThan(mid.signal[0], mid.signal[1])
        XCTAssertGreaterThan(mid.signal[1], mid.signal[2])
        var c = CoalescerConfig()
        c.renoisePath = .variancePreserving
        XCTAssertEqual(try CoalescerConfig.from(json: try c.json()).renoisePath, .variancePreserving)
        XCTAssertEqual(try CoalescerConfig.from(json: try CoalescerConfig().json()).renoisePath, .linear)
    }

    /// Trajectory starts: trained only on trajectory points (told their level), one jump from a
    /// point lands near its pair's target; asking for them without points or without the
    /// variance-preserving path is refused.
    func testTrajectoryStartsLearnTheirTargets() throws {
        var rng = RandomGenerator(seed: 5)
        let k = 4, dd = 3, m = 48, levels: [Float] = [0.8, 0.4]
        let classDesc: [[[Float]]] = (0..<2).map { c in [[Float(c), 1, 0]] }
        var starts: [Float] = [], targets: [Float] = [], labels: [Int] = [], traj: [Float] = []
        for i in 0..<m {
            let c = i % 2
            let r = (0..<k).map { _ in rng.nextNormal() }
            let y = r.enumerated().map { j, v in Float(2 * c - 1) + 0.6 * tanh(v) + 0.2 * Float(j) }
            starts += r; targets += y; labels.append(c)
            for sg in levels {
                let a = (1 - sg * sg).squareRoot()
                traj += (0..<k).map { j in (a * y[j] + sg * r[j]) / (a * a + sg * sg).squareRoot() }
            }
        }
        var data = CoalescerData(points: (0..<(20 * k)).map { _ in rng.nextNormal() }, labels: (0..<20).map { $0 % 2 },
                                 descriptions: (0..<20).flatMap { classDesc[$0 % 2][0] }, classDescriptions: classDesc,
                                 unconditional: [0, 0, 1], dim: k, descDim: dd)
        data.teacherStarts = starts; data.teacherTargets = targets; data.teacherLabels = labels
        var o = CoalescerTrainingOptions()
        o.steps = 1200; o.batchSize = 32; o.priorFraction = 1; o.unconditionalFraction = 0; o.progress = false
        o.learningRate = 3e-3; o.directionExponent = 2; o.distanceWeight = 1; o.emaDecay = 0.9
        o.trajectoryFraction = 1
        var c = CoalescerNetConfig(); c.latentDim = k; c.descDim = dd; c.hidden = 96; c.blocks = 2; c.levelInput = true
        o.renoisePath = .variancePreserving
        let noPoints = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        XCTAssertThrowsError(try noPoints.train(try CoalescerNet(config: c, rng: &rng))) { e in XCTAssertTrue("\(e)".contains("trajectory"), "\(e)") }
        data.teacherTrajectory = traj; data.trajectoryLevels = levels; data.scales = [Float](repeating: 1, count: k)
        o.renoisePath = .linear
        let linear = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        XCTAssertThrowsError(try linear.train(try CoalescerNet(config: c, rng: &rng)))
        o.renoisePath = .variancePreserving
        let trainer = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        let net = try CoalescerNet(config: c, rng: &rng)
        XCTAssertEqual(try trainer.train(net).queries, 0)
        for (lv, sg) in levels.enumerated() {
            var rows: [Float] = []
            for i in 0..<m {
                let o = (i * levels.count + lv) * k
                rows += traj[o..<(o + k)]
            }
            let r = Tensor(rows, shape: [m, k])
            let x = GradMode.withDisabled {
                net.jump(r, Tensor(labels.flatMap { classDesc[$0][0] }, shape: [m, dd]), level: Tensor(filled: sg, shape: [m, 1])).array
            }
            let (err, spread) = Self.errorAndSpread(x, targets: targets, labels: labels, k: k)
            XCTAssertLessThan(err, 0.1 * spread, "level \(sg): squared error \(err) of the jumps vs \(spread) of the class means")
        }
    }
}
