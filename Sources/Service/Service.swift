// Service: the coalesced daemon's request loop. One I/O thread owns the ZeroMQ ROUTER sockets
// (a public tcp endpoint and an admin ipc endpoint by default); generate requests go to the
// Scheduler's threads, whose replies come back through the Outbox.
import CZMQ
import Engine
import Foundation
import Logging

/// The daemon. Create it, then call `run()`, which returns after a drain: call `requestDrain()`
/// (coalesced does on SIGTERM/SIGINT; a second call stops waiting for running requests).
public final class Service: @unchecked Sendable {
    public static let version = "coalesced 0.1.0 (wire coalesce.v1, backend ABI 1.1)"

    public let engine: Engine
    public let configuration: ServiceConfiguration
    /// The backend worker processes' supervisor (nil: backends run in process).
    public let workers: WorkerHub?
    private let logger: Logger
    private let metrics = Metrics()
    private let outbox: Outbox
    private let scheduler: Scheduler
    private let claims: EndpointClaims?

    private let stateLock = Lock()
    private var drainRequested = false
    private var drainRequests = 0
    private var adminInFlight = 0
    private var boundURLs: [String] = []

    /// `claims`: the ipc endpoints' claims when the caller took them before starting anything
    /// (coalesced does); nil: `run()` takes them.
    public init(engine: Engine, configuration: ServiceConfiguration, workers: WorkerHub? = nil,
                claims: EndpointClaims? = nil, logger: Logger = Logger(label: "coalesce.service")) throws {
        self.workers = workers
        try configuration.validate()
        self.claims = claims
        self.engine = engine
        self.configuration = configuration
        self.logger = logger
        self.outbox = try Outbox()
        let outbox = self.outbox
        self.scheduler = Scheduler(engine: engine, config: configuration, metrics: metrics, logger: logger) { route, id, reply in
            outbox.push(route, Wire.encodeReply(id: id, reply))
        }
    }

    /// Endpoints actually bound (tcp port 0 resolved), available once `run()` has bound them.
    public var boundEndpoints: [String] { stateLock.withLock { boundURLs } }

    /// What /healthz and /readyz report: live while the process serves; ready while at least one
    /// model is loaded and no drain was requested (the health reply's rule).
    public var status: ServiceStatus {
        let draining = stateLock.withLock { drainRequested }
        let loaded = engine.loadedModels().count
        return ServiceStatus(ready: !draining && loaded > 0, draining: draining, modelsLoaded: loaded,
                             queueDepth: scheduler.depth)
    }

    /// The metrics in the Prometheus text exposition format (the counters of the Metrics reply).
    public func prometheusText() -> String {
        let s = status
        return metrics.prometheus.emit(queueDepth: s.queueDepth, queueCapacity: configuration.maxQueue,
                                       inFlight: scheduler.runningCount, modelsLoaded: s.modelsLoaded,
                                       ready: s.ready, draining: s.draining)
    }

    /// Asks `run()` to drain and return. Thread-safe; a second call aborts the wait.
    public func requestDrain() {
        stateLock.withLock {
            drainRequests += 1
            drainRequested = true
        }
        outbox.wake()
    }

    /// Binds the sockets and serves until drained. `onReady` runs once the sockets are bound.
    public func run(onReady: (() -> Void)? = nil) throws {
        guard let ctx = zmq_ctx_new() else { throw ServiceError.system(call: "zmq_ctx_new", errno: zmq_errno()) }
        defer { zmq_ctx_term(ctx) }
        var sockets: [ZMQSocket] = []
        defer { for s in sockets { s.close() } }
        // The ZAP handler must be bound before any CURVE socket binds.
        let zap = try configuration.curve.map { try ZAPHandler(context: ctx, config: $0) }
        defer { zap?.close() }
        // One daemon per ipc socket path: claimed (locked) for as long as this daemon serves.
        let claims: EndpointClaims
        if let taken = self.claims {
            claims = taken
        } else {
            claims = try EndpointClaims(configuration: configuration)
            for url in claims.removedStale {
                logger.info("removed the stale socket of a daemon that is gone", metadata: ["endpoint": "\(url)"])
            }
        }
        defer { claims.release() }
        for ep in configuration.endpoints {
            let s = try ZMQSocket(context: ctx, type: ZMQ_ROUTER)
            sockets.append(s)
            try s.setLinger(milliseconds: 2000)
            try s.setSendHighWaterMark(0)   // never drop a reply to a slow reader
            try s.setReceiveHighWaterMark(10000)
            if ep.connect {
                // Behind a broker (BrokerProtocol): name this daemon and the broker so both can address each other.
                try s.setRoutingID(Array("coalesced-\(getpid())-\(UInt32.random(in: 0...UInt32.max))".utf8))
                try s.setConnectRoutingID(BrokerProtocol.brokerRoutingID)
            }
            if let curve = configuration.curve, ep.connect, !ep.url.hasPrefix("ipc://") {
                // The broker is the CURVE server; this daemon a client with its own key pair.
                guard let brokerKey = curve.brokerPublicKey else {  // refused by validate() already
                    throw ServiceError.configuration("--connect \(ep.url) with CurveZMQ needs the broker's public key (--curve-broker-key)")
                }
                let publicKey = try CurveConfiguration.publicKey(ofSecret: curve.serverSecretKey)
                try s.setCurveClient(serverKey: brokerKey, publicKey: publicKey, secretKey: curve.serverSecretKey)
            } else if let curve = configuration.curve, !ep.url.hasPrefix("ipc://") {
                try s.setCurveServer(secretKey: curve.serverSecretKey)
                try s.setZAPDomain(CurveConfiguration.zapDomain)
            }
            try s.setMaxMessageSize(Int64(configuration.maxMessageBytes) * 4)
            if ep.connect {
                try s.connect(ep.url)
            } else {
                try s.bind(ep.url)
            }
            if ep.url.hasPrefix("ipc://") && !ep.connect {
                chmod(String(ep.url.dropFirst("ipc://".count)), 0o600)  // local admin: this user only
            }
            let url = (try? s.lastEndpoint) ?? ep.url
            stateLock.withLock { boundURLs.append(url) }
            logger.info(ep.connect ? "connected to broker" : "listening",
                        metadata: ["endpoint": "\(url)", "admin": "\(ep.admin)"])
        }
        scheduler.start()
        logger.info("serving", metadata: [
            "models": "\(engine.loadedModels().map(\.name).joined(separator: ","))",
            "max_queue": "\(configuration.maxQueue)", "max_batch": "\(configuration.maxBatch)",
            "max_delay_ms": "\(milliseconds(configuration.maxDelay))", "calls_per_model": "\(configuration.callsPerModel)"])
        onReady?()

        var items = sockets.map { $0.pollItem() }
        items.append(zmq_pollitem_t(socket: nil, fd: outbox.fd, events: Int16(ZMQ_POLLIN), revents: 0))
        if let zap { items.append(zap.socket.pollItem()) }
        var draining = false
        var nextHeartbeat = ContinuousClock.now
        var drainDeadline = ContinuousClock.now
        var aborted = false
        var abortDeadline = ContinuousClock.now

        while true {
            let rc = zmq_poll(&items, Int32(items.count), 25)
            if rc < 0 && zmq_errno() != EINTR {
                logger.error("zmq_poll failed", metadata: ["error": "\(String(cString: zmq_strerror(zmq_errno())))"])
            }
            if let zap, (items[items.count - 1].revents & Int16(ZMQ_POLLIN)) != 0 {
                for peer in zap.handleAll() { logger.warning("CURVE client refused", metadata: ["peer": "\(peer)"]) }
            }
            for (i, s) in sockets.enumerated() where (items[i].revents & Int16(ZMQ_POLLIN)) != 0 {
                var n = 0
                while n < 1000, receiveOne(socket: s, endpoint: i, sockets: sockets, draining: draining) { n += 1 }
            }
            flush(sockets)
            for job in scheduler.takeExpired(now: .now) {
                let e = EngineError.deadlineExceeded("deadline passed while queued")
                sendDirect(sockets, job.route, job.id, .error(e.code, e.message))
                scheduler.finish(job, outcome: e.code, images: 0)
            }
            // A running request is answered at its deadline too, not at the backend's next step
            // (which may be a long way off, or never come); its call stops at that step unless
            // other requests batched with it still run.
            let overdue = scheduler.takeExpiredRunning(now: .now)
            if !overdue.isEmpty {
                flush(sockets)  // progress reported before the claim goes out before the final reply
                for job in overdue {
                    let (step, total) = job.lastReported
                    let e = EngineError.deadlineExceeded(step == 0
                        ? "deadline passed while running, before the backend's first step"
                        : "deadline passed while running, after step \(step) of \(total)")
                    sendDirect(sockets, job.route, job.id, .error(e.code, e.message))
                    scheduler.finish(job, outcome: e.code, images: 0)
                }
            }

            if ContinuousClock.now >= nextHeartbeat {
                sendHeartbeats(sockets, draining: draining)
                nextHeartbeat = .now + BrokerProtocol.heartbeatInterval
            }
            let (wantDrain, drainCalls) = stateLock.withLock { (drainRequested, drainRequests) }
            if draining && drainCalls >= 2 && !aborted { drainDeadline = .now }  // second request: stop waiting
            if wantDrain && !draining {
                draining = true
                drainDeadline = .now + configuration.drainTimeout
                scheduler.beginDrain()
                sendHeartbeats(sockets, draining: true)  // capacity 0: a broker sends nothing new
                logger.info("draining", metadata: ["queued": "\(scheduler.depth)", "running": "\(scheduler.runningCount)",
                                                   "timeout_s": "\(seconds(configuration.drainTimeout))"])
            }
            if draining {
                let admins = stateLock.withLock { adminInFlight }
                if scheduler.isIdle && admins == 0 && outbox.isEmpty { break }
                if !aborted && ContinuousClock.now >= drainDeadline {
                    aborted = true
                    abortDeadline = .now + .seconds(2)
                    let rest = scheduler.abort()
                    workers?.recheckCalls()  // worker processes stop at their next step too
                    logger.warning("drain timeout: failing queued requests, cancelling running ones",
                                   metadata: ["queued": "\(rest.count)", "running": "\(scheduler.runningCount)"])
                    for job in rest {
                        let e = EngineError.unavailable("daemon shut down before the request started")
                        sendDirect(sockets, job.route, job.id, .error(e.code, e.message))
                        scheduler.finish(job, outcome: e.code, images: 0)
                    }
                }
                if aborted && ContinuousClock.now >= abortDeadline {
                    logger.error("exiting with requests still running", metadata: ["running": "\(scheduler.runningCount)"])
                    break
                }
            }
        }
        flush(sockets)
        _ = scheduler.join(timeout: .seconds(2))
        flush(sockets)
        let late = answerLateRequests(sockets, &items)
        logger.info("drained; exiting", metadata: ["replies_pending": "\(outbox.isEmpty ? 0 : 1)", "late_requests": "\(late)"])
    }

    /// Requests that reached the sockets while the last ones finished get a final reply too
    /// (generate: UNAVAILABLE; health, list and metrics are answered) until the sockets have been
    /// quiet for `lateQuiet`, at most `lateLimit` in all. Returns how many messages were read.
    private func answerLateRequests(_ sockets: [ZMQSocket], _ items: inout [zmq_pollitem_t]) -> Int {
        let start = ContinuousClock.now
        var quietSince = start, count = 0
        while ContinuousClock.now - quietSince < Self.lateQuiet && ContinuousClock.now - start < Self.lateLimit {
            _ = zmq_poll(&items, Int32(sockets.count), 5)  // the sockets are the first items
            var got = false
            for (i, s) in sockets.enumerated() where (items[i].revents & Int16(ZMQ_POLLIN)) != 0 {
                while receiveOne(socket: s, endpoint: i, sockets: sockets, draining: true) { count += 1; got = true }
            }
            flush(sockets)
            if got { quietSince = .now }
        }
        return count
    }

    /// Tells every broker this daemon is connected to that it is alive and how many requests it
    /// wants in flight (calls per model x max batch; 0 while draining).
    private func sendHeartbeats(_ sockets: [ZMQSocket], draining: Bool) {
        let capacity = draining ? 0 : configuration.callsPerModel * configuration.maxBatch
        let frames = BrokerProtocol.heartbeatFrames(capacity: capacity)
        for (i, ep) in configuration.endpoints.enumerated() where ep.connect {
            sendFrames(sockets, ReplyRoute(endpoint: i, envelope: [BrokerProtocol.brokerRoutingID] + frames.dropLast()),
                       frames[frames.count - 1])
        }
    }

    static let lateQuiet: Duration = .milliseconds(50)
    static let lateLimit: Duration = .seconds(1)

    // MARK: - Receiving

    /// Reads one multipart message if one is waiting; returns false when none was.
    private func receiveOne(socket: ZMQSocket, endpoint: Int, sockets: [ZMQSocket],
                            draining: Bool) -> Bool {
        // At most 6 parts are kept, and none over the message limit (it is answered, not copied).
        guard let message = socket.receiveMessage(dontWait: true, keepParts: 6, maxPartBytes: configuration.maxMessageBytes,
                                                  property: configuration.curve == nil ? nil : "User-Id") else {
            return false
        }
        let frames = message.parts, frameCount = message.count, oversize = message.oversize
        let userID = message.property ?? ""
        // Envelope: the routing frames (1 for a bound socket: the client's identity; 2 for a socket
        // connected to a broker's DEALER: the broker's and the client's), an optional empty
        // delimiter, then exactly one payload frame.
        let depth = configuration.endpoints[endpoint].connect ? 2 : 1
        guard frames.count > depth else {
            metrics.recordMalformed()
            logger.debug("message without payload dropped", metadata: ["frames": "\(frameCount)"])
            return true
        }
        if configuration.endpoints[endpoint].connect, BrokerProtocol.parseHeartbeat(frames[1...]) != nil {
            return true  // a broker control message: none needs an answer from a daemon
        }
        var envelope = Array(frames[0..<depth])
        var parts = Array(frames[depth...])
        if parts.count >= 2 && parts[0].isEmpty {
            envelope.append([])
            parts.removeFirst()
        }
        let route = ReplyRoute(endpoint: endpoint, envelope: envelope)
        guard frameCount == envelope.count + 1, parts.count == 1 else {
            metrics.recordMalformed()
            let e = EngineError.invalidArgument(
                "expected one frame holding a coalesce.v1.Request (after an optional empty delimiter), got \(frameCount - depth) frames")
            sendDirect(sockets, route, "", .error(e.code, e.message))
            return true
        }
        if oversize > 0 {
            metrics.recordMalformed()
            let e = EngineError.invalidArgument("message is \(oversize) bytes; the limit is \(configuration.maxMessageBytes)")
            sendDirect(sockets, route, "", .error(e.code, e.message))
            return true
        }
        let decoded = parts[0].withUnsafeBytes { Wire.decodeRequest($0, maxBytes: configuration.maxMessageBytes) }
        switch decoded {
        case .failure(let f):
            metrics.recordMalformed()
            logger.debug("bad request", metadata: ["id": "\(f.id)", "error": "\(f.error)"])
            sendDirect(sockets, route, f.id, .error(f.error.code, f.error.message))
        case .success(let req):
            let admin = configuration.endpoints[endpoint].admin || userID == CurveConfiguration.adminUserID
            handle(req, route: route, admin: admin, sockets: sockets, draining: draining)
        }
        return true
    }

    private func handle(_ req: WireRequest, route: ReplyRoute, admin: Bool, sockets: [ZMQSocket],
                        draining: Bool) {
        let reply: (WireReply) -> Void = { [self] r in sendDirect(sockets, route, req.id, r) }
        func error(_ e: EngineError) { reply(.error(e.code, e.message)) }
        switch req.op {
        case .generate(let op):
            let now = ContinuousClock.now
            if draining {
                metrics.recordGenerate(model: op.model, outcome: .unavailable, images: 0, latencyMs: 0)
                return error(.unavailable("daemon is draining (shutting down); send to another instance"))
            }
            var deadline: ContinuousClock.Instant? = nil
            if op.timeoutMs > 0 {
                deadline = now + .milliseconds(Int64(op.timeoutMs))
            } else if let t = configuration.defaultTimeout {
                deadline = now + t
            }
            let job = Job(route: route, id: req.id, op: op, arrival: now, deadline: deadline)
            if case .failure(let refusal) = scheduler.submit(job) {
                let e: EngineError
                switch refusal {
                case .queueFull:
                    e = .resourceExhausted("queue full (\(configuration.maxQueue) requests waiting); retry later")
                case .modelShareFull:
                    e = .resourceExhausted("model \(quoted(op.model)) has \(configuration.queueSharePerModel) requests "
                                           + "waiting, its share of the queue (--max-queue-per-model); retry later")
                case .stopping:
                    e = .unavailable("daemon is draining (shutting down); send to another instance")
                }
                metrics.recordGenerate(model: op.model, outcome: e.code, images: 0, latencyMs: 0)
                error(e)
            }
        case .listModels:
            reply(.models(loaded: engine.loadedModels(), available: engine.repository.modelNames()))
        case .health:
            let models = engine.loadedModels()
            let failed = models.compactMap { m -> (String, String)? in
                if case .failed(let why) = m.runtime.state { return (m.name, why) }
                return nil
            }
            reply(.health(HealthPayload(live: true, ready: !draining && models.count > failed.count, draining: draining,
                                        queueDepth: scheduler.depth, modelsLoaded: models.count, version: Service.version,
                                        failed: failed)))
        case .metrics:
            var snapshot = metrics.snapshot(queueDepth: scheduler.depth, queueCapacity: configuration.maxQueue,
                                            inFlight: scheduler.runningCount)
            snapshot.workers = workers?.stats() ?? []
            snapshot.daemonRSSBytes = residentBytes(pid: getpid())
            reply(.metrics(snapshot))
        case .cancel(let target):
            switch scheduler.cancel(envelope: route.envelope, id: target) {
            case .removedFromQueue(let job):
                let e = EngineError.cancelled("cancelled by request \(quotedID(req.id)) before it started")
                sendDirect(sockets, job.route, job.id, .error(e.code, e.message))
                scheduler.finish(job, outcome: .cancelled, images: 0)
                reply(.ack("cancelled queued request \(quotedID(target))"))
            case .stoppedRunning(let job):
                // Answered now, not when the backend reaches its next step; a worker process is told
                // at once to stop there (its call stops unless other requests batched with it still run).
                flush(sockets)  // progress reported before the claim goes out before the final reply
                // A request with neither progress nor a deadline may run in a worker that reports no steps.
                let (step, total) = job.lastReported
                let stepsHeard = job.op.wantProgress || job.deadline != nil
                let e = EngineError.cancelled("cancelled by request \(quotedID(req.id)) while running"
                    + (step > 0 ? ", after step \(step) of \(total)" : stepsHeard ? ", before the backend's first step" : ""))
                sendDirect(sockets, job.route, job.id, .error(e.code, e.message))
                scheduler.finish(job, outcome: .cancelled, images: 0)
                workers?.recheckCalls()
                reply(.ack("cancelled running request \(quotedID(target)); its backend stops at its next step"))
            case .notFound:
                error(.notFound("no queued or running request \(quotedID(target)) from this client"))
            }
        case .loadModel(let name), .unloadModel(let name):
            guard admin else {
                return error(.unavailable("load/unload are admin operations, accepted only on the admin (ipc) endpoint or from an admin CURVE key"))
            }
            if draining { return error(.unavailable("daemon is draining")) }
            let isLoad: Bool
            if case .loadModel = req.op { isLoad = true } else { isLoad = false }
            stateLock.withLock { adminInFlight += 1 }
            let engine = self.engine, outbox = self.outbox, id = req.id
            let t = Thread { [self] in
                let r: WireReply
                do {
                    if isLoad {
                        r = .model(try engine.load(name))
                    } else {
                        try engine.unload(name)
                        r = .ack("unloaded \(quotedID(name))")
                    }
                } catch let e as EngineError {
                    r = .error(e.code, e.message)
                } catch {
                    r = .error(.internal, "\(error)")
                }
                outbox.push(route, Wire.encodeReply(id: id, r))
                stateLock.withLock { adminInFlight -= 1 }
                outbox.wake()
            }
            t.name = "coalesced-admin"
            t.start()
        }
    }

    // MARK: - Sending (I/O thread only)

    private func flush(_ sockets: [ZMQSocket]) {
        for (route, bytes) in outbox.takeAll() { sendFrames(sockets, route, bytes) }
    }

    private func sendDirect(_ sockets: [ZMQSocket], _ route: ReplyRoute, _ id: String, _ reply: WireReply) {
        sendFrames(sockets, route, Wire.encodeReply(id: id, reply))
    }

    private func sendFrames(_ sockets: [ZMQSocket], _ route: ReplyRoute, _ bytes: [UInt8]) {
        do {
            try sockets[route.endpoint].send(parts: route.envelope + [bytes], dontWait: true)
        } catch {
            logger.debug("reply dropped", metadata: ["error": "\((error as? ServiceError)?.reason ?? "\(error)")"])
        }
    }
}

/// A request id (or model name) quoted for a reply's message: at most 128 characters, control
/// characters as "?".
func quotedID(_ s: String) -> String {
    "\"" + String(s.unicodeScalars.prefix(128).map { $0.value < 32 ? "?" : Character($0) }) + "\""
}
