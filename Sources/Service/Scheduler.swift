// Scheduler: the bounded queue of generate jobs, the dynamic batcher and its threads.
import Engine
import Foundation
import ImageIO
import Logging

/// Holds accepted jobs until a thread takes them, groups jobs for the same model into one
/// backend call (up to maxBatch jobs, waiting at most maxDelay after the oldest arrived), and
/// sends every job's final reply. Every accepted job gets exactly one final reply.
///
/// Threads: one model runs at most `callsPerModel` backend calls at once, each on a thread of its own,
/// and no model can take the threads another model needs: when a job's model has a free call
/// and no thread is idle, another thread starts. So a model whose calls do not come back (a
/// worker frozen or stuck inside a call, a worker restarting) holds `callsPerModel` threads and delays
/// only its own requests. `callsPerModel` threads live as long as the scheduler; the threads started
/// beyond them exit after `surplusLinger` without work. At most `callsPerModel` x (loaded models + 1)
/// threads exist at once.
final class Scheduler: @unchecked Sendable {
    typealias Send = @Sendable (ReplyRoute, String, WireReply) -> Void

    private let engine: Engine
    private let config: ServiceConfiguration
    private let metrics: Metrics
    private let send: Send
    private let logger: Logger

    private let cond = NSCondition()
    private var queue: [Job] = []        // FIFO, guarded by cond
    private var running: [Job] = []      // guarded by cond
    private var calls: [String: Int] = [:]  // backend calls running per model, guarded by cond
    private var stopping = false         // threads exit when the queue is empty
    private var abortRunning = false     // progress callbacks cancel running jobs
    private var threadCount = 0          // live threads, guarded by cond
    private var idleThreads = 0          // threads waiting for a batch, guarded by cond
    private var threadCap: Int           // guarded by cond; see `threadCapNow`
    private var threadsStarted = 0

    /// How long a thread started beyond `callsPerModel` waits for work before it exits.
    static let surplusLinger: Duration = .seconds(5)

    init(engine: Engine, config: ServiceConfiguration, metrics: Metrics, logger: Logger, send: @escaping Send) {
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.send = send
        self.threadCap = max(1, config.callsPerModel) * 2
    }

    /// Backend calls one model may run at once (threads it may hold).
    private var callsPerModel: Int { max(1, config.callsPerModel) }

    func start() {
        let cap = threadCapNow()
        cond.lock()
        threadCap = cap
        for _ in 0..<callsPerModel { startThread() }
        cond.unlock()
    }

    /// Under cond.
    private func startThread() {
        threadCount += 1
        threadsStarted += 1
        let t = Thread { [self] in threadLoop() }
        t.name = "coalesced-worker-\(threadsStarted - 1)"
        t.start()
    }

    /// `callsPerModel` threads for every loaded model and for one more (requests for a name that is not
    /// loaded fail at once, but hold a thread meanwhile). Called outside cond: the engine has its
    /// own lock.
    private func threadCapNow() -> Int {
        callsPerModel * (engine.loadedCount + 1)
    }

    /// Why `submit` refused a job (the caller replies RESOURCE_EXHAUSTED, or UNAVAILABLE when
    /// stopping).
    enum Refusal: Error, Equatable {
        /// `maxQueue` jobs are waiting.
        case queueFull
        /// The job's model already has its share of the queue waiting (`queueSharePerModel`).
        case modelShareFull
        /// The scheduler is draining.
        case stopping
    }

    /// Queues a job, unless the queue is full or the job's model already has
    /// `queueSharePerModel` jobs waiting: a model whose requests pile up (stuck, slow, flooded)
    /// cannot take the room other models need.
    func submit(_ job: Job) -> Result<Void, Refusal> {
        let cap = threadCapNow()
        cond.lock()
        defer { cond.unlock() }
        threadCap = cap
        guard !stopping else { return .failure(.stopping) }
        guard queue.count < config.maxQueue else { return .failure(.queueFull) }
        let share = config.queueSharePerModel
        if share < config.maxQueue {
            var waiting = 0
            for queued in queue where queued.op.model == job.op.model { waiting += 1 }
            guard waiting < share else { return .failure(.modelShareFull) }
        }
        queue.append(job)
        if idleThreads == 0, threadCount < threadCap, calls[job.op.model, default: 0] < callsPerModel {
            startThread()  // every thread is busy, maybe with a model that does not come back
        }
        cond.broadcast()
        return .success(())
    }

    enum CancelOutcome { case removedFromQueue(Job), stoppedRunning(Job), notFound }

    /// Cancels the job (envelope, id): a queued job is removed; a running job is marked cancelled
    /// (its backend call stops at the backend's next step, and is told at once where it runs in a
    /// worker process) and its final reply claimed. Either way the caller replies CANCELLED for it
    /// now. A running job whose final reply is already claimed (its result is on its way, or its
    /// deadline passed) is not found.
    func cancel(envelope: [[UInt8]], id: String) -> CancelOutcome {
        cond.lock()
        defer { cond.unlock() }
        if let i = queue.firstIndex(where: { $0.matches(envelope: envelope, id: id) }) {
            let job = queue.remove(at: i)
            cond.broadcast()
            return .removedFromQueue(job)
        }
        if let job = running.first(where: { $0.matches(envelope: envelope, id: id) && !$0.isAnswered }) {
            job.cancel()
            if job.claimFinal() { return .stoppedRunning(job) }
        }
        return .notFound
    }

    /// Removes queued jobs whose deadline passed and returns them (their final reply claimed).
    func takeExpired(now: ContinuousClock.Instant) -> [Job] {
        cond.lock()
        defer { cond.unlock() }
        var expired: [Job] = []
        queue.removeAll { job in
            if let d = job.deadline, d <= now { expired.append(job); return true }
            return false
        }
        if !expired.isEmpty { cond.broadcast() }
        return expired.filter { $0.claimFinal() }
    }

    /// Running jobs whose deadline passed and that have no final reply yet, their final reply
    /// claimed: the caller answers them DEADLINE_EXCEEDED now, without waiting for the backend,
    /// which stops at its next step (the result of the call is dropped for them).
    func takeExpiredRunning(now: ContinuousClock.Instant) -> [Job] {
        cond.lock()
        defer { cond.unlock() }
        return running.filter { job in
            guard let d = job.deadline, d <= now, !job.isAnswered else { return false }
            return job.claimFinal()
        }
    }

    var depth: Int { cond.lock(); defer { cond.unlock() }; return queue.count }
    var runningCount: Int { cond.lock(); defer { cond.unlock() }; return running.count }
    var isIdle: Bool { cond.lock(); defer { cond.unlock() }; return queue.isEmpty && running.isEmpty }

    /// Stops accepting; its threads finish the queue and exit.
    func beginDrain() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    /// After the drain timeout: removes queued jobs (returned, to be failed) and asks running
    /// jobs to stop at their next step.
    func abort() -> [Job] {
        cond.lock()
        defer { cond.unlock() }
        stopping = true
        abortRunning = true
        let rest = queue
        queue.removeAll()
        cond.broadcast()
        return rest.filter { $0.claimFinal() }
    }

    /// Waits until every worker thread has exited or `timeout` passes. - Returns: true if all exited.
    func join(timeout: Duration) -> Bool {
        let until = Date().addingTimeInterval(seconds(timeout))
        cond.lock()
        defer { cond.unlock() }
        while threadCount > 0 {
            if !cond.wait(until: until) { return threadCount == 0 }
        }
        return true
    }

    // MARK: - Threads

    private func threadLoop() {
        cond.lock()
        while let batch = nextBatch() {
            cond.unlock()
            process(batch)
            cond.lock()
            running.removeAll { job in batch.contains { $0 === job } }
            let model = batch[0].op.model
            calls[model, default: 1] -= 1
            if calls[model] == 0 { calls.removeValue(forKey: model) }
            cond.broadcast()
        }
        threadCount -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Under cond (released while waiting). Blocks until a batch is ready; nil when the thread
    /// exits: draining with an empty queue, or a thread beyond `callsPerModel` without work for
    /// `surplusLinger`.
    private func nextBatch() -> [Job]? {
        let idleSince = ContinuousClock.now
        while true {
            if queue.isEmpty && stopping { return nil }
            let now = ContinuousClock.now
            var wake: ContinuousClock.Instant?
            if let batch = takeBatch(now: now, wake: &wake) {
                // Work left for another model (or another call of this one) and nobody to take it:
                // wake an idle thread, or start one.
                if hasRunnable() {
                    if idleThreads > 0 { cond.broadcast() } else if threadCount < threadCap { startThread() }
                }
                return batch
            }
            if threadCount > callsPerModel {
                let until = idleSince + Self.surplusLinger
                if now >= until { return nil }
                wake = min(wake ?? until, until)
            }
            idleThreads += 1
            if let wake {
                _ = cond.wait(until: Date().addingTimeInterval(seconds(wake - now)))
            } else {
                cond.wait()
            }
            idleThreads -= 1
        }
    }

    /// Under cond. The oldest queued job whose model has a call free gives a batch: it and the
    /// next queued jobs for its model, up to maxBatch. With maxDelay a model's batch waits (at
    /// most maxDelay after its oldest job arrived) to fill; `wake` is set to the earliest such end.
    private func takeBatch(now: ContinuousClock.Instant, wake: inout ContinuousClock.Instant?) -> [Job]? {
        var queued: [String: Int] = [:]
        if config.maxDelay > .zero { for job in queue { queued[job.op.model, default: 0] += 1 } }
        var seen = Set<String>()
        for first in queue where seen.insert(first.op.model).inserted {
            let model = first.op.model
            guard calls[model, default: 0] < callsPerModel else { continue }
            if config.maxDelay > .zero, !stopping, queued[model, default: 0] < config.maxBatch {
                let until = first.arrival + config.maxDelay
                if now < until {
                    wake = min(wake ?? until, until)
                    continue
                }
            }
            var batch: [Job] = []
            var rest: [Job] = []
            for job in queue {
                if batch.count < config.maxBatch, job.op.model == model {
                    batch.append(job)
                } else {
                    rest.append(job)
                }
            }
            queue = rest
            running += batch
            calls[model, default: 0] += 1
            return batch
        }
        return nil
    }

    /// Under cond. True when a queued job's model has a call free.
    private func hasRunnable() -> Bool {
        queue.contains { calls[$0.op.model, default: 0] < callsPerModel }
    }

    private func process(_ batch: [Job]) {
        let start = ContinuousClock.now
        let items = batch.map { job in
            var item = BatchItem(request: job.request) { [self] p in
                job.progressed(step: p.step, total: p.total) {
                    if job.op.wantProgress { send(job.route, job.id, .progress(step: p.step, total: p.total)) }
                }
                return !job.isCancelled && !isAborting
            }
            item.stillWanted = { [self] in !job.isCancelled && !isAborting }
            item.reportsProgress = job.op.wantProgress
            return item
        }
        let results = engine.generateBatch(items)
        let runMs = milliseconds(ContinuousClock.now - start)
        metrics.recordBatch(requests: batch.count)
        for (job, result) in zip(batch, results) {
            guard job.claimFinal() else { continue }  // answered at its deadline while it ran
            switch result {
            case .success(var images):
                // Raw images are the job's ranges of the call's buffer, not copies; PNGs replace them.
                var encoded: [ArraySlice<UInt8>] = []
                encoded.reserveCapacity(images.count)
                do {
                    for i in 0..<images.count {
                        encoded.append(job.op.format == .png
                            ? try PNG.encode(pixels: images.image(i), width: images.width, height: images.height,
                                             channels: images.channels)[...]
                            : images.image(i))
                    }
                } catch {
                    finish(job, outcome: .internal, images: 0)
                    send(job.route, job.id, .error(.internal, "PNG encoding failed: \(error)"))
                    continue
                }
                let queueMs = milliseconds(start - job.arrival)
                // Metrics first: a client that reads metrics right after its reply must see it counted.
                finish(job, outcome: .ok, images: images.count)
                images.pixels = []  // the payload carries the images once, in `images`
                send(job.route, job.id, .images(ImagesPayload(
                    batch: images, format: job.op.format, images: encoded, queueMs: UInt32(queueMs.rounded()),
                    runMs: UInt32(runMs.rounded()), batchRequests: UInt32(batch.count))))
            case .failure(let e):
                let error = isAborting && e.code == .cancelled
                    ? EngineError.unavailable("daemon shut down before the request finished") : e
                finish(job, outcome: error.code, images: 0)
                send(job.route, job.id, .error(error.code, error.message))
            }
        }
        logger.debug("batch done", metadata: ["model": "\(batch[0].op.model)", "requests": "\(batch.count)",
                                              "ms": "\(runMs)"])
    }

    private var isAborting: Bool { cond.lock(); defer { cond.unlock() }; return abortRunning }

    /// Records a job's final outcome (the reply was already sent).
    func finish(_ job: Job, outcome: StatusCode, images: Int) {
        metrics.recordGenerate(model: job.op.model, outcome: outcome, images: images,
                               latencyMs: milliseconds(ContinuousClock.now - job.arrival))
    }
}

func milliseconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return Double(s) * 1e3 + Double(atto) / 1e15
}

func seconds(_ d: Duration) -> Double {
    milliseconds(d) / 1e3
}
