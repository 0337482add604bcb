import Foundation
import Models
import Tensor

/// Settings of `CoalescerTrainer`.
public struct CoalescerTrainingOptions: Sendable {
    public var steps = 6000
    public var batchSize = 256
    public var learningRate: Float = 1e-3
    /// Weight of the description embedding in the keys; nil = chosen from the measured spreads.
    public var descScale: Float? = nil
    /// Exponent p of the direction loss |u - normalize(x - R)|^p (the proposal's 1/2).
    public var directionExponent: Float = 0.5
    /// eps inside (|u - t|^2 + eps)^(p/2), which keeps the loss's gradient finite at 0.
    public var directionEps: Float = 1e-4
    /// Weight of the distance loss (d_pred - |x - R|)^2 beside the direction loss.
    public var distanceWeight: Float = 0.1
    /// Fraction of starts drawn from the prior N(0, I); the rest start near a training item of
    /// the requested class: R = (1 - t) y_j + t eps, t ~ U(nearMinT, nearMaxT) (noise-level aware).
    public var priorFraction: Float = 0.5
    public var nearMinT: Float = 0.05
    public var nearMaxT: Float = 0.9
    /// Fraction of steps with the empty prompt: search by image key only (unconditional).
    public var unconditionalFraction: Float = 0.1
    /// Of the non-prior starts, the fraction taken from where the current net's first step from a
    /// prior draw lands (the distribution a second step really sees); the rest are interpolations.
    public var selfStartFraction: Float = 0
    /// With teacher pairs: of the near-data starts, the fraction that start near a pair's target
    /// instead of a training item, R = (1 - t) y_pair + t eps, and are trained towards that target
    /// (the second step then learns to denoise what the first step produces, not to search).
    public var teacherNearFraction: Float = 0
    /// With teacher pairs that keep trajectory points: of the teacher-coupled prior starts, the
    /// fraction that start at a point of the pair's sampling trajectory instead of its x_T (a
    /// level drawn uniformly from the stored ones; the net is told its σ) and are trained
    /// towards the same target, so a re-noised first step can be continued (consistency
    /// distillation's multistep idea). Needs `renoisePath` `.variancePreserving`.
    public var trajectoryFraction: Float = 0
    /// The path of near-data starts and of the adversarial second step's re-noising (the
    /// sampler's `renoise_path`).
    public var renoisePath: CoalescerConfig.RenoisePath = .linear
    /// faiss::index_factory string of the key index ("Flat" = exact).
    public var index = "Flat"
    /// Balanced (optimal-transport-like) variant, off by default (plain nearest neighbour, as the
    /// method states): when set, an item already returned more than `hubCap` times the mean
    /// number of returns per item is skipped in favour of the next of `candidates` neighbours.
    public var hubCap: Float? = nil
    public var candidates = 8
    /// Coupling of starts and targets within a minibatch: `.nearest` (each query its nearest
    /// pair, or the hub-capped choice when `hubCap` is set), or `.matched`: the batch's queries
    /// and their `candidates` nearest pairs are matched one-to-one, greedily by ascending
    /// distance (an approximation of minibatch optimal transport, OT-CFM's idea, restricted to
    /// the retrieved candidates, so within the requested class as the keys carry it).
    public var coupling: Coupling = .nearest
    public enum Coupling: String, Sendable { case nearest, matched }
    /// Adversarial fine-tuning after the regression steps: this many further steps in which the
    /// net's loss also has `adversarialWeight` x the generator hinge loss of a class-conditional
    /// latent discriminator on its 1-step outputs from prior starts (and, when
    /// `secondStepLevel > 0`, on its 2-step outputs after re-noising the first to that level).
    /// The coalescer losses are kept, so it stays a coalescer.
    public var adversarialSteps = 0
    public var adversarialWeight: Float = 0.1
    public var adversarialLearningRate: Float = 2e-4
    public var discriminatorHidden = 512
    public var secondStepLevel: Float = 0
    /// Weight of an auxiliary latent classifier's cross-entropy on the adversarial outputs for
    /// their requested class (0 = none). The classifier is trained on the training latents
    /// (`classifierPretrainSteps` steps first, then alongside the discriminator).
    public var classifierWeight: Float = 0
    public var classifierPretrainSteps = 500
    public var emaDecay: Float = 0.999
    public var seed: UInt64 = 3
    public var progress = true
    public init() {}
}

/// The training set as the coalescer sees it (all in whitened latent coordinates).
public struct CoalescerData {
    /// (N, k) whitened latent coordinates of the training images.
    public var points: [Float]
    /// (N) class labels.
    public var labels: [Int]
    /// (N, descDim) embedding of each item's caption (a random training phrasing of its class).
    public var descriptions: [Float]
    /// Caption embeddings per class (each a list of descDim vectors) to draw query DEs from.
    public var classDescriptions: [[[Float]]]
    /// Embedding of the empty prompt (unconditional).
    public var unconditional: [Float]
    public var dim: Int
    public var descDim: Int
    /// The search runs in the first `searchDim` coordinates (<= dim); the net moves in all `dim`.
    public var searchDim: Int
    public var count: Int { labels.count }
    /// Teacher coupling (`TeacherPairs`), empty when not used: starts and the teacher's targets
    /// (M, dim each) in the same whitened coordinates, and their classes (M; -1 = empty prompt).
    /// Prior starts then take a pair's start and its target instead of searching the index.
    public var teacherStarts: [Float] = []
    public var teacherTargets: [Float] = []
    public var teacherLabels: [Int] = []
    /// Trajectory points of the pairs (M, P, dim) in the net's input coordinates of the
    /// variance-preserving path (`CoalescerConfig.RenoisePath`), and their P levels (σ).
    public var teacherTrajectory: [Float] = []
    public var trajectoryLevels: [Float] = []
    /// Whitening scales of the projection (dim), for the variance-preserving path.
    public var scales: [Float] = []

    /// The points truncated to the search coordinates, (N, searchDim).
    public var searchPoints: [Float] {
        if searchDim == dim { return points }
        var out = [Float](repeating: 0, count: count * searchDim)
        for i in 0..<count { for j in 0..<searchDim { out[i * searchDim + j] = points[i * dim + j] } }
        return out
    }

    public init(points: [Float], labels: [Int], descriptions: [Float], classDescriptions: [[[Float]]],
                unconditional: [Float], dim: Int, descDim: Int) {
        self.points = points; self.labels = labels; self.descriptions = descriptions
        self.classDescriptions = classDescriptions; self.unconditional = unconditional
        self.dim = dim; self.descDim = descDim; self.searchDim = dim
    }

    /// Item indices per class.
    public var itemsByClass: [[Int]] {
        var out = [[Int]](repeating: [], count: classDescriptions.count)
        for (i, c) in labels.enumerated() { out[c].append(i) }
        return out
    }

    /// Keys concat(s * DE_i, y_i[0..<searchDim]), (N, descDim + searchDim).
    public func keys(descScale s: Float) -> [Float] {
        let w = descDim + searchDim
        var out = [Float](repeating: 0, count: count * w)
        for i in 0..<count {
            let o = i * w
            for j in 0..<descDim { out[o + j] = s * descriptions[i * descDim + j] }
            for j in 0..<searchDim { out[o + descDim + j] = points[i * dim + j] }
        }
        return out
    }
}

/// Measured spreads behind the choice of desc_scale.
public struct CoalescerSpreads: Sendable, CustomStringConvertible {
    /// From prior starts: mean and std of the squared distance to the nearest item (any class).
    public var nearestSqMean: Double, nearestSqStd: Double
    /// 95th percentile of (squared distance to the nearest item of the requested class) minus
    /// (squared distance to the nearest item of any class): what the description term must beat.
    public var classGapSq95: Double
    /// Mean squared distance |DE_a - DE_b|^2 between caption embeddings of different classes
    /// (minimum over class pairs of the class-mean value), and within one class (mean).
    public var betweenClassDescSqMin: Double, withinClassDescSq: Double
    /// desc_scale chosen: sqrt(2 * classGapSq95 / betweenClassDescSqMin), clamped to [1.5, 60].
    public var suggestedDescScale: Float

    public var description: String {
        String(format: "spreads: nearest item |R-x|^2 from prior %.1f ± %.1f; in-class minus any-class gap (95th pct) %.2f; "
               + "|ΔDE|^2 between classes (min) %.3f, within class %.4f -> suggested desc_scale %.2f",
               nearestSqMean, nearestSqStd, classGapSq95, betweenClassDescSqMin, withinClassDescSq, suggestedDescScale)
    }
}

/// What coalescer training measured.
public struct CoalescerReport: Sendable, CustomStringConvertible {
    public var steps = 0
    public var seconds = 0.0
    public var descScale: Float = 0
    public var directionExponent: Float = 0
    public var hubCap: Float? = nil
    public var indexBuildSeconds = 0.0
    public var searchSeconds = 0.0
    public var queries = 0
    /// Mean losses over the first and the last 100 steps.
    public var firstDistanceLoss: Float = 0, firstDirectionLoss: Float = 0
    public var lastDistanceLoss: Float = 0, lastDirectionLoss: Float = 0
    /// Distinct training items the search returned in the first epoch (first N queries), from all
    /// starts and from prior starts only, and over the whole run.
    public var distinctFirstEpoch = 0, distinctFirstEpochPrior = 0, distinctTotal = 0
    public var priorQueriesFirstEpoch = 0
    public var items = 0
    /// How often the retrieved item had the requested class (conditional queries), by start.
    public var classMatchPrior = 0.0, classMatchNear = 0.0
    /// Share of all retrievals taken by the 1% most-returned items (hubness).
    public var top1PercentShare = 0.0

    public var description: String {
        var s = String(format: "coalescer: %d steps in %.0fs (search %.0fs for %d queries, %.0f q/s), desc_scale %.2f, p %.2f\n",
                       steps, seconds, searchSeconds, queries, Double(queries) / max(searchSeconds, 1e-9), descScale, directionExponent)
        if let hubCap { s += String(format: "  balanced variant: items capped at %.1fx the mean number of returns\n", hubCap) }
        s += String(format: "  loss distance %.3f -> %.3f, direction %.3f -> %.3f (first/last 100 steps)\n",
                    firstDistanceLoss, lastDistanceLoss, firstDirectionLoss, lastDirectionLoss)
        s += String(format: "  distinct items returned, first epoch (%d queries): %d of %d (prior starts only: %d from %d queries); whole run: %d; top 1%% of items take %.1f%% of retrievals\n",
                    items, distinctFirstEpoch, items, distinctFirstEpochPrior, priorQueriesFirstEpoch, distinctTotal, top1PercentShare * 100)
        s += String(format: "  retrieved item has the requested class: %.1f%% from prior starts, %.1f%% from near-data starts",
                    classMatchPrior * 100, classMatchNear * 100)
        return s
    }
}

/// Trains the coalescer net (DESIGN.md; the seed proposal's "training step"):
/// pick a random DE and a random R; find the pair nearest to concat(desc_scale * DE, R) in the
/// index; train net(R, pair.description) -> (|x - R|, normalize(x - R)) with the distance loss
/// (d_pred - |x - R|)^2 and the direction loss |u_pred - normalize(x - R)|^p.
public final class CoalescerTrainer {
    public let data: CoalescerData
    public let options: CoalescerTrainingOptions
    public let descScale: Float
    let keyIndex: VectorIndex
    let imageIndex: VectorIndex
    public private(set) var indexBuildSeconds = 0.0

    public init(data: CoalescerData, options: CoalescerTrainingOptions, descScale: Float,
                makeIndex: (Int) throws -> VectorIndex) throws {
        guard data.count > 0, data.points.count == data.count * data.dim,
              data.descriptions.count == data.count * data.descDim else {
            throw TrainingError.invalidData("coalescer data: sizes do not match \(data.count) items")
        }
        self.data = data
        self.options = options
        self.descScale = descScale
        let t0 = Date()
        keyIndex = try makeIndex(data.descDim + data.searchDim)
        try keyIndex.add(data.keys(descScale: descScale))
        imageIndex = try makeIndex(data.searchDim)
        try imageIndex.add(data.searchPoints)
        indexBuildSeconds = Date().timeIntervalSince(t0)
    }

    /// Measures the spreads that desc_scale must balance (uses exact search on the image index).
    public static func measureSpreads(data: CoalescerData, samples: Int = 512, seed: UInt64 = 99,
                                      makeIndex: (Int) throws -> VectorIndex) throws -> CoalescerSpreads {
        var rng = RandomGenerator(seed: seed)
        let k = data.searchDim
        let sp = data.searchPoints
        let all = try makeIndex(k)
        try all.add(sp)
        let byClass = data.itemsByClass
        var perClass: [VectorIndex] = []
        for items in byClass {
            let idx = try makeIndex(k)
            var pts: [Float] = []
            for i in items { pts.append(contentsOf: sp[(i * k)..<((i + 1) * k)]) }
            try idx.add(pts)
            perClass.append(idx)
        }
        var q = [Float](repeating: 0, count: samples * k)
        for i in 0..<q.count { q[i] = rng.nextNormal() }
        let nearest = try all.search(q, k: 1).distances.map(Double.init)
        var gaps: [Double] = []
        for i in 0..<samples {
            let c = rng.nextInt(below: perClass.count)
            let d = try perClass[c].search(Array(q[(i * k)..<((i + 1) * k)]), k: 1).distances[0]
            gaps.append(Double(d) - nearest[i])
        }
        gaps.sort()
        let mean = nearest.reduce(0, +) / Double(samples)
        let std = (nearest.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples)).squareRoot()
        // Description spreads.
        let dd = data.descDim
        func sq(_ a: [Float], _ b: [Float]) -> Double {
            var s = 0.0
            for j in 0..<dd { let e = Double(a[j] - b[j]); s += e * e }
            return s
        }
        var within = 0.0, wn = 0
        var minBetween = Double.infinity
        let cd = data.classDescriptions
        for a in 0..<cd.count {
            for x in cd[a] { for y in cd[a] { within += sq(x, y); wn += 1 } }
            for b in (a + 1)..<cd.count where b < cd.count {
                var s = 0.0, n = 0
                for x in cd[a] { for y in cd[b] { s += sq(x, y); n += 1 } }
                minBetween = min(minBetween, s / Double(max(1, n)))
            }
        }
        let gap95 = gaps[min(gaps.count - 1, Int(0.95 * Double(gaps.count)))]
        let suggested = Float((2 * max(gap95, 1e-6) / max(minBetween, 1e-6)).squareRoot())
        return CoalescerSpreads(nearestSqMean: mean, nearestSqStd: std, classGapSq95: gap95,
                                betweenClassDescSqMin: minBetween, withinClassDescSq: within / Double(max(1, wn)),
                                suggestedDescScale: min(60, max(1.5, suggested)))
    }

    /// One-to-one matching of `rows` queries to their `k` candidates each (ids and distances
    /// (rows, k) as the index returns them): all (query, candidate) pairs in ascending distance,
    /// a pair taken when neither its query nor its item is taken yet (greedy; exact OT would be
    /// the Hungarian algorithm on the same costs). A query whose candidates were all taken keeps
    /// its nearest. Deterministic (ties by query, then rank).
    public static func matchOneToOne(ids: [Int], distances: [Float], rows: Int, k: Int) -> [Int] {
        guard rows > 0 else { return [] }
        var pairs: [(Float, Int, Int)] = []
        pairs.reserveCapacity(rows * k)
        for q in 0..<rows { for j in 0..<k where ids[q * k + j] >= 0 { pairs.append((distances[q * k + j], q, j)) } }
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : ($0.1 != $1.1 ? $0.1 < $1.1 : $0.2 < $1.2) }
        var out = [Int](repeating: -1, count: rows)
        var used = Set<Int>()
        for (_, q, j) in pairs where out[q] < 0 {
            let id = ids[q * k + j]
            if used.insert(id).inserted { out[q] = id }
        }
        for q in 0..<rows where out[q] < 0 { out[q] = ids[q * k] }
        return out
    }

    /// Runs the training loop on `net` (weights replaced by their EMA at the end): `steps`
    /// regression steps on the coalescer losses, then `adversarialSteps` in which the adversarial
    /// terms join them (`Adversary`).
    public func train(_ net: CoalescerNet) throws -> CoalescerReport {
        let o = options
        var rng = RandomGenerator(seed: o.seed)
        let opt = AdamW(parameters: net.parameters, learningRate: o.learningRate, weightDecay: 0)
        let schedule = WarmupCosineSchedule(peak: o.learningRate, warmupSteps: min(300, o.steps / 10), totalSteps: max(1, o.steps))
        let ema = EMA(parameters: net.parameters, decay: o.emaDecay)
        let starts = try StartSampler(data: data, options: o)
        var stats = Statistics(items: data.count)
        let regression = o.adversarialSteps > 0 ? max(0, o.steps) : max(1, o.steps)
        let total = regression + max(0, o.adversarialSteps)
        // The discriminator, the latent classifier and their optimisers exist only when used.
        let adversary = o.adversarialSteps > 0 ? Adversary(net: net, data: data, options: o, byClass: starts.byClass, scales: starts.scales) : nil
        adversary?.pretrainClassifier(rng: &rng)
        let progress = ProgressReporter(label: "train coalescer", total: total, itemsPerStep: o.batchSize,
                                        interval: 10, enabled: o.progress)
        for step in 1...total {
            let adversarial = step > regression
            // 1. Queries and starts; 2-3. their targets (searched, or the teacher's).
            var batch = starts.draw(rng: &rng)
            if step > 1 { batch.moveSelfStarts(net) }
            try setTargets(&batch, stats: &stats)
            // 4. Losses and update.
            let (d, u) = net(batch.r, batch.desc, level: batch.level)
            let distLoss = (d - batch.distance).square().mean()
            let dirLoss = (u - batch.direction).square().sumLast().pow(o.directionExponent / 2, eps: o.directionEps).mean()
            var loss = distLoss.scaled(o.distanceWeight) + dirLoss
            if adversarial, let adversary { for term in adversary.generatorTerms(rng: &rng) { loss = loss + term } }
            let activeOpt = adversarial ? adversary!.generatorOptimizer : opt
            activeOpt.zeroGrad()
            loss.backward()
            _ = clipGradNorm(net.parameters, maxNorm: 1)
            if !adversarial { opt.learningRate = schedule.rate(at: step) }
            activeOpt.update()
            ema.update(net.parameters)
            if adversarial, let adversary { adversary.discriminatorStep(rng: &rng) }
            stats.recordLosses(step: step, distance: distLoss.item, direction: dirLoss.item)
            progress.update(step: step, loss: loss.item,
                            extra: adversarial
                                ? String(format: "dist %.3f dir %.3f | ", distLoss.item, dirLoss.item) + adversary!.status
                                : String(format: "dist %.3f dir %.3f distinct %d", distLoss.item, dirLoss.item, stats.firstEpoch.count))
        }
        ema.copy(into: net.parameters)
        var report = stats.report(descScale: descScale, options: o, indexBuildSeconds: indexBuildSeconds)
        report.steps = total
        report.seconds = progress.elapsed
        return report
    }

    /// Fills `batch`'s descriptions and targets: a teacher-coupled row takes its pair's target
    /// and keeps its query's caption; the others search the index (the nearest pair, or the
    /// hub-capped / one-to-one matched choice) and take the found item's own description.
    func setTargets(_ batch: inout Batch, stats: inout Statistics) throws {
        let o = options, k = data.dim, dd = data.descDim, n = data.count, bs = batch.size
        var condRows: [Int] = [], uncondRows: [Int] = []
        var condQ: [Float] = [], uncondQ: [Float] = []
        let ks = data.searchDim
        for b in 0..<bs where batch.teacherRow[b] < 0 {
            let row = Array(UnsafeBufferPointer(start: batch.r.data + b * k, count: ks))
            if batch.requested[b] < 0 {
                uncondRows.append(b); uncondQ.append(contentsOf: row)
            } else {
                condRows.append(b)
                condQ.append(contentsOf: batch.queryDE[b].map { $0 * descScale })
                condQ.append(contentsOf: row)
            }
        }
        let ts = Date()
        let kc = o.hubCap == nil && o.coupling == .nearest ? 1 : max(1, o.candidates)
        let condRes: (ids: [Int], distances: [Float]) = condRows.isEmpty ? ([], []) : try keyIndex.search(condQ, k: kc)
        let uncondRes: (ids: [Int], distances: [Float]) = uncondRows.isEmpty ? ([], []) : try imageIndex.search(uncondQ, k: kc)
        var condIds = condRes.ids, uncondIds = uncondRes.ids
        if o.coupling == .matched {
            condIds = Self.matchOneToOne(ids: condIds, distances: condRes.distances, rows: condRows.count, k: kc)
            uncondIds = Self.matchOneToOne(ids: uncondIds, distances: uncondRes.distances, rows: uncondRows.count, k: kc)
        } else if let cap = o.hubCap {
            let limit = max(2, Int((cap * Float(stats.queries + bs) / Float(n)).rounded(.up)))
            func pick(_ ids: [Int], _ rows: Int) -> [Int] {
                (0..<rows).map { q in
                    let cands = ids[(q * kc)..<((q + 1) * kc)].filter { $0 >= 0 }
                    return cands.first { stats.hits[$0] < limit } ?? cands.first ?? -1
                }
            }
            condIds = pick(condIds, condRows.count)
            uncondIds = pick(uncondIds, uncondRows.count)
        }
        stats.searchSeconds += Date().timeIntervalSince(ts)
        let searched = condRows.count + uncondRows.count
        stats.queries += searched
        var target = [Int](repeating: 0, count: bs)
        for (i, b) in condRows.enumerated() { target[b] = condIds[i] }
        for (i, b) in uncondRows.enumerated() { target[b] = uncondIds[i] }
        for b in 0..<bs {
            if batch.teacherRow[b] >= 0 {
                for j in 0..<dd { batch.desc.data[b * dd + j] = batch.queryDE[b][j] }
                batch.setTarget(b, data.teacherTargets, batch.teacherRow[b] * k)
                continue
            }
            let id = target[b]
            guard id >= 0 && id < n else { throw TrainingError.invalidData("index returned id \(id)") }
            let source = batch.requested[b] >= 0 ? data.descriptions : data.unconditional
            let offset = batch.requested[b] >= 0 ? id * dd : 0
            for j in 0..<dd { batch.desc.data[b * dd + j] = source[offset + j] }
            batch.setTarget(b, data.points, id * k)
            stats.recordRetrieval(id: id, requested: batch.requested[b], isPrior: batch.isPrior[b],
                                  firstEpoch: stats.queries - searched + b < n, labels: data.labels)
        }
    }
}

/// One training batch: each row's query (caption embedding, requested class or -1), its start
/// and noise level, and, once `setTargets` ran, its description input and regression targets
/// (the distance |x - R| and the direction normalize(x - R) to its target x).
struct Batch {
    var size: Int
    var r: Tensor                      // (B, k) starts
    var level: Tensor                  // (B, 1) noise level of each start
    var queryDE: [[Float]]
    var requested: [Int]
    var isPrior: [Bool]
    var teacherRow: [Int]              // the teacher pair of a coupled row, else -1
    var selfRows: [Int]                // rows that start where the net's first step lands
    var desc: Tensor                   // (B, descDim)
    var distance: Tensor               // (B, 1)
    var direction: Tensor              // (B, k)

    /// Moves the self-start rows to where the current net's first step from them lands.
    mutating func moveSelfStarts(_ net: CoalescerNet) {
        guard !selfRows.isEmpty else { return }
        let k = r.shape[1], dd = queryDE.first?.count ?? 0
        let rows = selfRows, queries = queryDE, start = r
        GradMode.withDisabled {
            let rs = start.gatherRows(rows).detached()
            let ds = Tensor(rows.flatMap { queries[$0] }, shape: [rows.count, dd])
            let (d0, u0) = net(rs, ds, level: nil)
            for (i, b) in rows.enumerated() {
                var norm: Float = 0
                for j in 0..<k { norm += u0.data[i * k + j] * u0.data[i * k + j] }
                let scale = max(0, d0.data[i]) / max(norm.squareRoot(), 1e-6)
                for j in 0..<k { start.data[b * k + j] += scale * u0.data[i * k + j] }
            }
        }
    }

    /// Row b's distance and direction from its start to `point[offset..<offset + k]`.
    func setTarget(_ b: Int, _ point: [Float], _ offset: Int) {
        let k = r.shape[1]
        var s: Float = 0
        for j in 0..<k {
            let v = point[offset + j] - r.data[b * k + j]
            direction.data[b * k + j] = v; s += v * v
        }
        let len = s.squareRoot()
        distance.data[b] = len
        for j in 0..<k { direction.data[b * k + j] /= max(len, 1e-6) }
    }
}

/// Draws the queries and starts of a batch (step 1 of the method): a random caption of a random
/// class (or the empty prompt) and a start that is a teacher pair's x_T or trajectory point, a
/// prior draw, a re-noised pair target, a self-start, or a re-noised training item of the class.
struct StartSampler {
    let data: CoalescerData
    let options: CoalescerTrainingOptions
    let byClass: [[Int]]
    /// Teacher pairs per class; the last list holds the empty prompt's.
    let teacherByClass: [[Int]]
    /// Pairs for an unconditional query: the empty prompt's, or any pair when there are none.
    let uncondPairs: [Int]
    let levels: Int
    /// Whitening scales for the re-noising coefficients (only the variance-preserving path reads them).
    let scales: [Float]

    init(data: CoalescerData, options o: CoalescerTrainingOptions) throws {
        self.data = data; options = o
        let k = data.dim
        byClass = data.itemsByClass
        let classes = byClass.count
        var tb = [[Int]](repeating: [], count: classes + 1)
        for (i, c) in data.teacherLabels.enumerated() { tb[c >= 0 && c < classes ? c : classes].append(i) }
        teacherByClass = tb
        let pool = data.teacherLabels.count
        uncondPairs = tb[classes].isEmpty ? Array(0..<pool) : tb[classes]
        levels = data.trajectoryLevels.count
        guard levels == 0 || data.teacherTrajectory.count == pool * levels * k else {
            throw TrainingError.invalidData("coalescer data: \(data.teacherTrajectory.count) trajectory values for \(pool) pairs of \(levels) levels")
        }
        guard o.trajectoryFraction == 0 || (levels > 0 && o.renoisePath == .variancePreserving) else {
            throw TrainingError.invalidConfig("trajectory starts need teacher pairs with trajectory points and the variance-preserving path")
        }
        scales = data.scales.count == k ? data.scales : [Float](repeating: 1, count: k)
    }

    func draw(rng: inout RandomGenerator) -> Batch {
        let o = options, k = data.dim, dd = data.descDim, bs = o.batchSize, n = data.count
        let classes = byClass.count
        var batch = Batch(size: bs, r: Tensor(zeros: [bs, k]), level: Tensor(filled: 1, shape: [bs, 1]), queryDE: [],
                          requested: [Int](repeating: -1, count: bs), isPrior: [Bool](repeating: false, count: bs),
                          teacherRow: [Int](repeating: -1, count: bs), selfRows: [],
                          desc: Tensor(zeros: [bs, dd]), distance: Tensor(zeros: [bs, 1]), direction: Tensor(zeros: [bs, k]))
        let r = batch.r, level = batch.level
        for b in 0..<bs {
            let uncond = rng.nextFloat() < o.unconditionalFraction
            let c = rng.nextInt(below: classes)
            if uncond {
                batch.queryDE.append(data.unconditional)
            } else {
                batch.requested[b] = c
                let caps = data.classDescriptions[c]
                batch.queryDE.append(caps[rng.nextInt(below: caps.count)])
            }
            batch.isPrior[b] = rng.nextFloat() < o.priorFraction
            let pairs = uncond ? uncondPairs : teacherByClass[c]
            if batch.isPrior[b] && !pairs.isEmpty {
                // Teacher coupling: the pair's start (or a point of its trajectory), later its target.
                let p = pairs[rng.nextInt(below: pairs.count)]
                batch.teacherRow[b] = p
                if levels > 0 && o.trajectoryFraction > 0 && rng.nextFloat() < o.trajectoryFraction {
                    let lv = rng.nextInt(below: levels)
                    level.data[b] = data.trajectoryLevels[lv]
                    let src = (p * levels + lv) * k
                    for j in 0..<k { r.data[b * k + j] = data.teacherTrajectory[src + j] }
                } else {
                    for j in 0..<k { r.data[b * k + j] = data.teacherStarts[p * k + j] }
                }
            } else if batch.isPrior[b] {
                for j in 0..<k { r.data[b * k + j] = rng.nextNormal() }
            } else if !pairs.isEmpty && o.teacherNearFraction > 0 && rng.nextFloat() < o.teacherNearFraction {
                let p = pairs[rng.nextInt(below: pairs.count)]
                batch.teacherRow[b] = p
                renoise(r, row: b, from: data.teacherTargets, offset: p * k, level: level, rng: &rng)
            } else if rng.nextFloat() < o.selfStartFraction {
                for j in 0..<k { r.data[b * k + j] = rng.nextNormal() }
                batch.selfRows.append(b)
                level.data[b] = 0
            } else {
                let pool = uncond ? nil : byClass[c]
                let item = pool.map { $0[rng.nextInt(below: $0.count)] } ?? rng.nextInt(below: n)
                renoise(r, row: b, from: data.points, offset: item * k, level: level, rng: &rng)
            }
        }
        return batch
    }

    /// Row b of `r` := `point[offset..<offset + k]` re-noised along the configured path to a
    /// level t ~ U(nearMinT, nearMaxT) (written to `level`).
    func renoise(_ r: Tensor, row b: Int, from point: [Float], offset: Int, level: Tensor, rng: inout RandomGenerator) {
        let o = options, k = data.dim
        let t = o.nearMinT + (o.nearMaxT - o.nearMinT) * rng.nextFloat()
        level.data[b] = t
        let (ca, cb) = o.renoisePath.coefficients(level: t, scales: scales)
        for j in 0..<k { r.data[b * k + j] = ca[j] * point[offset + j] + cb[j] * rng.nextNormal() }
    }
}

/// The adversarial phase's other players: a class-conditional latent discriminator (hinge loss)
/// and, with `classifierWeight` > 0, an auxiliary latent classifier, with their optimisers and
/// the net's own optimiser for this phase.
final class Adversary {
    let net: CoalescerNet
    let data: CoalescerData
    let options: CoalescerTrainingOptions
    let scales: [Float]
    let byClass: [[Int]]
    let discriminator: LatentDiscriminator
    let discriminatorOptimizer: AdamW
    let generatorOptimizer: AdamW
    let classifier: (net: LatentClassifier, optimizer: AdamW)?
    /// The latest step's fakes (1-step, then 2-step outputs) and their classes.
    var fakes: [Tensor] = []
    var fakeClasses: [Int] = []
    var stats: (g: Float, d: Float, real: Float, fake: Float, classifier: Float) = (0, 0, 0, 0, 0)

    init(net: CoalescerNet, data: CoalescerData, options o: CoalescerTrainingOptions, byClass: [[Int]], scales: [Float]) {
        self.net = net; self.data = data; options = o; self.byClass = byClass; self.scales = scales
        let classes = byClass.count, k = data.dim
        var drng = RandomGenerator(seed: o.seed &+ 7)
        discriminator = LatentDiscriminator(dim: k, hidden: o.discriminatorHidden, classes: classes, rng: &drng)
        discriminatorOptimizer = AdamW(parameters: discriminator.parameters, learningRate: o.adversarialLearningRate, beta1: 0, beta2: 0.99, weightDecay: 0)
        generatorOptimizer = AdamW(parameters: net.parameters, learningRate: o.adversarialLearningRate, beta1: 0, beta2: 0.99, weightDecay: 0)
        if o.classifierWeight > 0 && classes >= 2 {
            let c = LatentClassifier(dim: k, hidden: o.discriminatorHidden, classes: classes, rng: &drng)
            classifier = (c, AdamW(parameters: c.parameters, learningRate: 1e-3, weightDecay: 1e-4))
        } else {
            classifier = nil
        }
    }

    var status: String {
        String(format: "adv g %.3f d %.3f D(real) %.2f D(fake) %.2f cls %.3f", stats.g, stats.d, stats.real, stats.fake, stats.classifier)
    }

    /// `classifierPretrainSteps` steps of the latent classifier on training latents.
    func pretrainClassifier(rng: inout RandomGenerator) {
        guard classifier != nil else { return }
        for _ in 0..<max(0, options.classifierPretrainSteps) { classifierStep(rng: &rng) }
    }

    /// One step of the latent classifier on a batch of training latents of random classes.
    func classifierStep(rng: inout RandomGenerator) {
        guard let classifier else { return }
        let k = data.dim, classes = byClass.count
        var rows: [Float] = [], ys: [Int] = []
        for _ in 0..<options.batchSize {
            let c = rng.nextInt(below: classes)
            guard !byClass[c].isEmpty else { continue }
            let item = byClass[c][rng.nextInt(below: byClass[c].count)]
            rows += data.points[(item * k)..<((item + 1) * k)]; ys.append(c)
        }
        guard !ys.isEmpty else { return }
        let l = Tensor.crossEntropyLoss(classifier.net(Tensor(rows, shape: [ys.count, k])), labels: ys)
        classifier.optimizer.zeroGrad(); l.backward(); classifier.optimizer.update()
        stats.classifier = l.item
    }

    /// The net's adversarial terms, each weighted: the generator hinge loss of its 1-step
    /// outputs from prior starts for requested classes (10% unconditional, class index
    /// `classes`), with `secondStepLevel` > 0 also of its 2-step outputs after re-noising the
    /// first along the configured path, and the latent classifier's cross-entropy on them.
    func generatorTerms(rng: inout RandomGenerator) -> [Tensor] {
        let o = options, k = data.dim, dd = data.descDim, bs = o.batchSize, classes = byClass.count
        var cls: [Int] = [], de: [Float] = []
        for _ in 0..<bs {
            if rng.nextFloat() < o.unconditionalFraction {
                cls.append(classes); de += data.unconditional
            } else {
                let c = rng.nextInt(below: classes)
                let caps = data.classDescriptions[c]
                cls.append(c); de += caps[rng.nextInt(below: caps.count)]
            }
        }
        let gdesc = Tensor(de, shape: [bs, dd])
        let r0 = Tensor.randn([bs, k], rng: &rng)
        let x1 = net.jump(r0, gdesc, level: Tensor(filled: 1, shape: [bs, 1]))
        var g = discriminator(x1, classes: cls).mean().scaled(-1)
        fakes = [x1.detached()]; fakeClasses = cls
        var second: Tensor? = nil
        if o.secondStepLevel > 0 {
            let t = o.secondStepLevel
            let r2: Tensor
            if o.renoisePath == .linear {
                r2 = x1.detached().scaled(1 - t) + Tensor.randn([bs, k], std: t, rng: &rng)
            } else {
                let (ca, cb) = o.renoisePath.coefficients(level: t, scales: scales)
                r2 = x1.detached() * Tensor(ca, shape: [k]) + Tensor.randn([bs, k], rng: &rng) * Tensor(cb, shape: [k])
            }
            let x2 = net.jump(r2, gdesc, level: Tensor(filled: t, shape: [bs, 1]))
            g = g + discriminator(x2, classes: cls).mean().scaled(-1)
            second = x2
            fakes.append(x2.detached()); fakeClasses += cls
        }
        stats.g = g.item
        var terms = [g.scaled(o.adversarialWeight)]
        if let classifier {
            let condRows = (0..<bs).filter { cls[$0] < classes }
            if !condRows.isEmpty {
                let labels = condRows.map { cls[$0] }
                var ce = Tensor.crossEntropyLoss(classifier.net(x1.gatherRows(condRows)), labels: labels)
                if let x2 = second {
                    ce = ce + Tensor.crossEntropyLoss(classifier.net(x2.gatherRows(condRows)), labels: labels)
                }
                terms.append(ce.scaled(o.classifierWeight))
            }
        }
        return terms
    }

    /// The discriminator's hinge step: training latents of the fakes' classes against the fakes;
    /// then a classifier step.
    func discriminatorStep(rng: inout RandomGenerator) {
        let k = data.dim, n = data.count, classes = byClass.count
        let fake = Tensor.concat(fakes, axis: 0)
        var realRows: [Float] = []
        for c in fakeClasses {
            let item = c < classes && !byClass[c].isEmpty ? byClass[c][rng.nextInt(below: byClass[c].count)]
                : rng.nextInt(below: n)
            realRows += data.points[(item * k)..<((item + 1) * k)]
        }
        let real = Tensor(realRows, shape: [fakeClasses.count, k])
        let dr = discriminator(real, classes: fakeClasses), df = discriminator(fake, classes: fakeClasses)
        let dl = dr.scaled(-1).adding(1).relu().mean() + df.adding(1).relu().mean()
        stats.d = dl.item; stats.real = dr.mean().item; stats.fake = df.mean().item
        discriminatorOptimizer.zeroGrad()
        dl.backward()
        discriminatorOptimizer.update()
        classifierStep(rng: &rng)
    }
}

/// What the training loop counts for the report: retrievals (distinct items, hubness, class
/// match) and the losses of the first and the latest 100 steps.
struct Statistics {
    var hits: [Int]
    var firstEpoch = Set<Int>(), firstEpochPrior = Set<Int>()
    var priorQueries = 0
    var matchPrior = (0, 0), matchNear = (0, 0)
    var queries = 0
    var searchSeconds = 0.0
    var firstDistance: [Float] = [], firstDirection: [Float] = []
    var lastDistance: [Float] = [], lastDirection: [Float] = []

    init(items: Int) { hits = [Int](repeating: 0, count: items) }

    mutating func recordRetrieval(id: Int, requested: Int, isPrior: Bool, firstEpoch inFirst: Bool, labels: [Int]) {
        hits[id] += 1
        if inFirst {
            firstEpoch.insert(id)
            if isPrior { firstEpochPrior.insert(id); priorQueries += 1 }
        }
        if requested >= 0 {
            let ok = labels[id] == requested ? 1 : 0
            if isPrior { matchPrior.0 += ok; matchPrior.1 += 1 } else { matchNear.0 += ok; matchNear.1 += 1 }
        }
    }

    mutating func recordLosses(step: Int, distance: Float, direction: Float) {
        if step <= 100 { firstDistance.append(distance); firstDirection.append(direction) }
        lastDistance.append(distance); lastDirection.append(direction)
        if lastDistance.count > 100 { lastDistance.removeFirst(); lastDirection.removeFirst() }
    }

    func report(descScale: Float, options o: CoalescerTrainingOptions, indexBuildSeconds: Double) -> CoalescerReport {
        func avg(_ a: [Float]) -> Float { a.isEmpty ? 0 : a.reduce(0, +) / Float(a.count) }
        var report = CoalescerReport()
        report.descScale = descScale
        report.directionExponent = o.directionExponent
        report.hubCap = o.hubCap
        report.indexBuildSeconds = indexBuildSeconds
        report.items = hits.count
        report.searchSeconds = searchSeconds
        report.queries = queries
        report.firstDistanceLoss = avg(firstDistance); report.firstDirectionLoss = avg(firstDirection)
        report.lastDistanceLoss = avg(lastDistance); report.lastDirectionLoss = avg(lastDirection)
        report.distinctFirstEpoch = firstEpoch.count
        report.distinctFirstEpochPrior = firstEpochPrior.count
        report.priorQueriesFirstEpoch = priorQueries
        report.distinctTotal = hits.filter { $0 > 0 }.count
        let sorted = hits.sorted(by: >)
        let top = sorted.prefix(max(1, hits.count / 100)).reduce(0, +)
        report.top1PercentShare = Double(top) / Double(max(1, hits.reduce(0, +)))
        report.classMatchPrior = Double(matchPrior.0) / Double(max(1, matchPrior.1))
        report.classMatchNear = Double(matchNear.0) / Double(max(1, matchNear.1))
        return report
    }
}
