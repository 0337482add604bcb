// Scheduler: the bounded queue of generate jobs, the dynamic batcher and the worker threads.
import Engine
import Foundation
import ImageIO
import Logging

/// Holds accepted jobs until a worker takes them, groups jobs for the same model into one
/// backend call (up to maxBatch jobs, waiting at most maxDelay after the oldest arrived), and
/// sends every job's final reply. Every accepted job gets exactly one final reply.
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
    private var stopping = false         // workers exit when the queue is empty
    private var abortRunning = false     // progress callbacks cancel running jobs
    private var threads: [Thread] = []
    private var liveWorkers = 0

    init(engine: Engine, config: ServiceConfiguration, metrics: Metrics, logger: Logger, send: @escaping Send) {
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.send = send
    }

    func start() {
        cond.lock()
        liveWorkers = max(1, config.workers)
        cond.unlock()
        for i in 0..<max(1, config.workers) {
            let t = Thread { [self] in workerLoop() }
            t.name = "coalesced-worker-\(i)"
            t.start()
            threads.append(t)
        }
    }

    /// Queues a job. - Returns: false when the queue is full (the caller replies RESOURCE_EXHAUSTED).
    func submit(_ job: Job) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        guard queue.count < config.maxQueue, !stopping else { return false }
        queue.append(job)
        cond.broadcast()
        return true
    }

    enum CancelOutcome { case removedFromQueue(Job), signalledRunning, notFound }

    /// Cancels the job (envelope, id): a queued job is removed (the caller replies CANCELLED for
    /// it); a running job is asked to stop at its next step.
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
            return .signalledRunning
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

    /// Stops accepting; workers finish the queue and exit.
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
        while liveWorkers > 0 {
            if !cond.wait(until: until) { return liveWorkers == 0 }
        }
        return true
    }

    // MARK: - Workers

    private func workerLoop() {
        while let batch = nextBatch() {
            process(batch)
            cond.lock()
            running.removeAll { job in batch.contains { $0 === job } }
            cond.broadcast()
            cond.unlock()
        }
        cond.lock()
        liveWorkers -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Blocks until a batch is ready; nil when draining and the queue is empty.
    private func nextBatch() -> [Job]? {
        cond.lock()
        defer { cond.unlock() }
        while true {
            while queue.isEmpty {
                if stopping { return nil }
                cond.wait()
            }
            let first = queue[0]
            if config.maxDelay > .zero, !stopping {
                let until = first.arrival + config.maxDelay
                let now = ContinuousClock.now
                let sameModel = queue.reduce(0) { $0 + ($1.op.model == first.op.model ? 1 : 0) }
                if sameModel < config.maxBatch, now < until {
                    _ = cond.wait(until: Date().addingTimeInterval(seconds(until - now)))
                    continue  // re-evaluate: the queue may have changed
                }
            }
            var batch: [Job] = []
            var rest: [Job] = []
            for job in queue {
                if batch.count < config.maxBatch, job.op.model == first.op.model {
                    batch.append(job)
                } else {
                    rest.append(job)
                }
            }
            queue = rest
            running += batch
            return batch
        }
    }

    private func process(_ batch: [Job]) {
        let start = ContinuousClock.now
        let items = batch.map { job in
            BatchItem(request: job.request) { [self] p in
                job.progressed(step: p.step, total: p.total) {
                    if job.op.wantProgress { send(job.route, job.id, .progress(step: p.step, total: p.total)) }
                }
                return !job.isCancelled && !isAborting
            }
        }
        let results = engine.generateBatch(items)
        let runMs = milliseconds(ContinuousClock.now - start)
        metrics.recordBatch(requests: batch.count)
        for (job, result) in zip(batch, results) {
            guard job.claimFinal() else { continue }  // answered at its deadline while it ran
            switch result {
            case .success(let images):
                var encoded: [[UInt8]] = []
                encoded.reserveCapacity(images.count)
                do {
                    for i in 0..<images.count {
                        encoded.append(job.op.format == .png
                            ? try PNG.encode(pixels: images.image(i), width: images.width, height: images.height,
                                             channels: images.channels)
                            : Array(images.image(i)))
                    }
                } catch {
                    finish(job, outcome: .internal, images: 0)
                    send(job.route, job.id, .error(.internal, "PNG encoding failed: \(error)"))
                    continue
                }
                let queueMs = milliseconds(start - job.arrival)
                // Metrics first: a client that reads metrics right after its reply must see it counted.
                finish(job, outcome: .ok, images: images.count)
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
