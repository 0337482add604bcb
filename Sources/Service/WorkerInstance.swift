// WorkerInstance: a model instance whose backend runs in a worker process. Generate calls go to
// the current worker; a worker that dies fails (or retries) only the calls it was running and
// is restarted with backoff; a model whose restarted workers keep dying before Ready is failed.
import Engine
import Foundation

/// A `BackendInstance` served by `coalesced worker` processes started by a `WorkerHub`.
///
/// Crash rule: when a worker dies under a call, each of the call's requests is tried again once,
/// alone, with no other call on the model at the same time, on the restarted worker. A request
/// that takes that worker down too is answered INTERNAL naming the model and the signal; the
/// others, which only shared the dead process, succeed. A call still running `hangGrace` after its
/// deadline (it is cancelled at the deadline) is answered DEADLINE_EXCEEDED and its worker killed.
final class WorkerInstance: BackendInstance, @unchecked Sendable {
    let hub: WorkerHub
    let spec: WorkerSpec
    let backendName: String
    let backendVersion: String
    let describeJSON: String

    // Guarded by hub.cond.
    private var current: WorkerProcess?
    private var state: InstanceState = .serving
    private var restartCount = 0
    private var loadFailures = 0
    private var crashes: [ContinuousClock.Instant] = []
    private var shared = 0               // calls running normally
    private var exclusive = false        // a retry running alone
    private var exclusiveWaiting = 0

    init(hub: WorkerHub, spec: WorkerSpec, process: WorkerProcess, ready: WorkerReady) {
        self.hub = hub
        self.spec = spec
        self.current = process
        self.backendName = ready.backend
        self.backendVersion = ready.version
        self.describeJSON = ready.describeJSON
    }

    deinit {
        // The Engine releases an instance after its last request: the worker has nothing running.
        hub.cond.lock()
        if let p = current { hub.retire(p) }
        hub.cond.unlock()
    }

    var runtime: InstanceRuntime {
        hub.cond.lock()
        let s = state, p = current, n = restartCount
        hub.cond.unlock()
        let pid = p.flatMap { $0.ready != nil && $0.status == nil ? $0.pid : nil }
        return InstanceRuntime(state: s, workerPID: pid, workerRSSBytes: pid.map { residentBytes(pid: $0) } ?? 0,
                               restarts: n)
    }

    // MARK: - Called by the hub (under hub.cond)

    func workerReady(_ p: WorkerProcess) {
        guard p === current else { return }
        state = .serving
        loadFailures = 0
        hub.logger.info("worker ready", metadata: ["model": "\(spec.model)", "pid": "\(p.pid)", "restarts": "\(restartCount)"])
    }

    func workerDied(_ p: WorkerProcess, reason: String) {
        guard p === current, !isFailed else { return }
        current = nil
        let now = ContinuousClock.now
        if p.ready == nil {
            loadFailures += 1
            if loadFailures >= hub.configuration.maxLoadFailures {
                state = .failed("worker \(reason) while loading, \(loadFailures) times in a row")
                hub.logger.error("model failed", metadata: ["model": "\(spec.model)", "reason": "\(state.reason)"])
                return
            }
        }
        crashes = crashes.filter { now - $0 < .seconds(60) } + [now]
        var delay = hub.configuration.restartBackoff
        for _ in 1..<min(crashes.count, 20) { delay = delay * 2 }
        delay = min(delay, hub.configuration.restartBackoffMax)
        state = .restarting
        hub.scheduleRestart(self, at: now + delay)
    }

    /// Starts a new worker (called by the hub's I/O thread after the backoff).
    func respawn() {
        hub.cond.lock()
        guard case .restarting = state, current == nil else { hub.cond.unlock(); return }
        hub.cond.unlock()
        if let from = spec.loadedFrom, WorkerSpec.resolve(spec.directory) != from {
            // A deploy switched the model's link (or the folder went) since this instance loaded:
            // a new worker would serve another version as this one. The next load (LoadModel,
            // --poll-s) takes the new version.
            hub.cond.lock()
            state = .failed("its directory \(quoted(spec.directory)) no longer leads to \(quoted(from)), the folder this "
                            + "instance was loaded from (switched by a deploy, or removed), so its worker is not restarted")
            hub.logger.error("model failed", metadata: ["model": "\(spec.model)", "reason": "\(state.reason)"])
            hub.cond.broadcast()
            hub.cond.unlock()
            return
        }
        do {
            let p = try hub.spawn(spec)
            hub.cond.lock()
            current = p
            restartCount += 1
            p.owner = self
            if p.ready != nil { workerReady(p) }
            hub.cond.unlock()
            // A worker that never reports Ready is killed; its death counts as a load failure.
            let timeout = hub.configuration.loadTimeout
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds(timeout)) { [weak self, hub] in
                let strong = self  // released after the lock: deinit takes it
                hub.cond.lock()
                let stuck = strong?.current === p && p.ready == nil && p.status == nil
                hub.cond.unlock()
                withExtendedLifetime(strong) {}
                if stuck { hub.kill(p, reason: "did not report ready within \(seconds(timeout)) s") }
            }
        } catch {
            hub.cond.lock()
            state = .failed("\(error)")
            hub.cond.unlock()
        }
    }

    private var isFailed: Bool {
        if case .failed = state { return true }
        return false
    }

    // MARK: - Generation

    func generate(_ reqs: [BackendRequest], imageBytes: Int, threads: Int, deadline: ContinuousClock.Instant?,
                  progress: ((Int, Int) -> Bool)?, everyStep: Bool, stillWanted: (() -> Bool)?) -> BackendOutput {
        // Without `everyStep` the worker sends no progress: `stillWanted` (asked whenever the hub
        // says requests were cancelled) and the call's deadline are what stop it (the caller's
        // contract, `BackendInstance.generate`).
        let stepProgress = everyStep ? progress : nil
        enter(exclusive: false)
        let first = attempt(reqs, imageBytes: imageBytes, threads: threads, deadline: deadline, progress: stepProgress,
                            stillWanted: stillWanted)
        leave(exclusive: false)
        guard case .died(let reason) = first else { return first.results(count: reqs.count) }
        // The worker died under this call: try each request again alone, so that only the one that
        // crashes the worker fails.
        hub.logger.warning("retrying requests of a dead worker one at a time", metadata: [
            "model": "\(spec.model)", "requests": "\(reqs.count)", "how": "\(reason)"])
        // The requests that come back are gathered into one buffer again, request after request.
        var out = BackendOutput(pixels: [], results: [])
        for r in reqs {
            if let deadline, ContinuousClock.now >= deadline {
                out.results.append(.failure(.deadlineExceeded("deadline passed while the model's worker restarted")))
                continue
            }
            enter(exclusive: true)
            let again = attempt([r], imageBytes: imageBytes, threads: threads, deadline: deadline, progress: stepProgress,
                                stillWanted: stillWanted)
            leave(exclusive: true)
            if case .died(let why) = again {
                out.results.append(.failure(.internal("\(why) while running this request")))
            } else {
                let alone = again.results(count: 1)
                let start = out.pixels.count
                out.pixels += alone.pixels
                out.results += alone.results.map { $0.map { ($0.lowerBound + start)..<($0.upperBound + start) } }
            }
        }
        return out
    }

    private enum Attempt {
        case done(BackendOutput)
        case died(String)

        func results(count: Int) -> BackendOutput {
            switch self {
            case .done(let r): return r
            case .died(let why): return BackendOutput(failing: count, with: .internal(why))
            }
        }
    }

    private func enter(exclusive ex: Bool) {
        hub.cond.lock()
        defer { hub.cond.unlock() }
        if ex {
            exclusiveWaiting += 1
            while shared > 0 || exclusive { hub.cond.wait() }
            exclusiveWaiting -= 1
            exclusive = true
        } else {
            while exclusive || exclusiveWaiting > 0 { hub.cond.wait() }
            shared += 1
        }
    }

    private func leave(exclusive ex: Bool) {
        hub.cond.lock()
        if ex { exclusive = false } else { shared -= 1 }
        hub.cond.broadcast()
        hub.cond.unlock()
    }

    /// One call on the current worker (waiting for a restart first if needed). Whenever the hub
    /// says requests were cancelled (`WorkerHub.recheckCalls`), the call asks `stillWanted` and,
    /// when nothing in it is, tells the worker to stop now: its backend stops at its next step,
    /// not one step later after the daemon heard that step's progress.
    private func attempt(_ reqs: [BackendRequest], imageBytes: Int, threads: Int, deadline: ContinuousClock.Instant?,
                         progress: ((Int, Int) -> Bool)?, stillWanted: (() -> Bool)?) -> Attempt {
        let cond = hub.cond
        cond.lock()
        let waitUntil = deadline ?? (ContinuousClock.now + hub.configuration.loadTimeout)
        func usable(_ p: WorkerProcess?) -> Bool { p?.ready != nil && p?.status == nil && p?.killReason == nil }
        while !isFailed && !usable(current) && ContinuousClock.now < waitUntil {
            _ = cond.wait(until: Date().addingTimeInterval(0.05))
        }
        if isFailed {
            let why = state.reason
            cond.unlock()
            return .done(BackendOutput(failing: reqs.count, with: .unavailable("model \(quoted(spec.model)) is failed: \(why); load it again")))
        }
        guard let p = current, usable(p) else {
            cond.unlock()
            let e: EngineError = deadline != nil
                ? .deadlineExceeded("deadline passed while the model's worker restarted")
                : .unavailable("model \(quoted(spec.model)): no worker came back within \(seconds(hub.configuration.loadTimeout)) s")
            return .done(BackendOutput(failing: reqs.count, with: e))
        }
        if let deadline, ContinuousClock.now >= deadline {
            // It passed while this call waited (for a restart, or for a retry running alone).
            cond.unlock()
            return .done(BackendOutput(failing: reqs.count, with: .deadlineExceeded("deadline passed before the backend call started")))
        }
        let call = hub.newCallID()
        p.calls[call] = []
        var rechecked = hub.recheckCount  // a cancel from now on is noticed below
        cond.unlock()
        defer {
            cond.lock()
            p.calls.removeValue(forKey: call)
            cond.unlock()
        }
        if let stillWanted, !stillWanted() {  // cancelled while it waited (for a restart, a retry alone)
            return .done(BackendOutput(failing: reqs.count, with: .cancelled("cancelled before the backend call started")))
        }
        hub.send(p, .generate(call: call, requests: reqs, imageBytes: imageBytes, threads: threads, progress: progress != nil))

        let total = reqs.reduce(0) { $0 + Int($1.count) } * imageBytes
        var cancelSent = false
        var deadlineCancel = false
        while true {
            cond.lock()
            var events: [CallEvent] = []
            var recheck = false
            while true {
                events = p.calls[call] ?? []
                if !events.isEmpty { p.calls[call] = []; break }
                if hub.recheckCount != rechecked {
                    rechecked = hub.recheckCount
                    recheck = !cancelSent && stillWanted != nil
                    if recheck { break }
                }
                let now = ContinuousClock.now
                if let deadline, now >= deadline && !cancelSent { break }
                if let deadline, now >= deadline + hub.configuration.hangGrace { break }
                let wake = deadline.map { now < $0 ? $0 : $0 + hub.configuration.hangGrace }
                let interval = wake.map { min(seconds($0 - now), 0.5) } ?? 0.5
                _ = cond.wait(until: Date().addingTimeInterval(max(interval, 0.001)))
            }
            cond.unlock()
            if recheck {
                // Asked outside the hub's lock: the caller's closure takes its own locks.
                if let stillWanted, !stillWanted() {
                    cancelSent = true
                    hub.send(p, .cancel(call: call))
                }
                continue
            }
            if events.isEmpty, deadline != nil {
                if !cancelSent {
                    // The deadline passed without a step from the backend: ask it to stop.
                    cancelSent = true
                    deadlineCancel = true
                    hub.send(p, .cancel(call: call))
                    continue
                }
                let grace = seconds(hub.configuration.hangGrace)
                hub.kill(p, reason: "ran a request \(grace) s past its deadline")
                return .done(BackendOutput(failing: reqs.count, with: .deadlineExceeded(
                    "model \(quoted(spec.model)): the backend did not stop within \(grace) s of the deadline; its worker (pid \(p.pid)) was killed and restarts")))
            }
            for e in events {
                switch e {
                case .progress(let step, let of):
                    if let progress, !progress(step, of), !cancelSent {
                        cancelSent = true
                        hub.send(p, .cancel(call: call))
                    }
                case .pixels(let px):
                    guard px.count == total else {
                        let e = EngineError.internal("model \(quoted(spec.model)): worker returned \(px.count) bytes, expected \(total)")
                        return .done(BackendOutput(failing: reqs.count, with: e))
                    }
                    return .done(BackendOutput(pixels: px, of: reqs, imageBytes: imageBytes))
                case .error(let err):
                    let e = deadlineCancel && err.code == .cancelled
                        ? EngineError.deadlineExceeded("deadline passed; the backend stopped at its next step") : err
                    return .done(BackendOutput(failing: reqs.count, with: e))
                case .died(let why):
                    return .died("model \(quoted(spec.model)): worker \(why)")
                }
            }
        }
    }
}
