// BackendWorker: the body of `coalesced worker`, a child process the daemon starts for one model
// instance. It dlopens the plugin, creates the model, reports Ready, then runs the Generate calls
// the daemon sends (each on a thread of its own, kept for later calls) and answers heartbeats
// from its I/O thread.
import CZMQ
import Engine
import Foundation

/// One worker process: connects to the daemon's worker socket, loads, serves, exits.
public enum BackendWorker {
    public struct Options: Sendable {
        public var endpoint: String
        public var token: String
        public var backend: String
        public var model: String
        public var modelDirectory: String
        public var pluginDirectory: String
        /// The daemon's pid: the worker exits when its parent changes (the daemon died).
        public var parent: Int32
        /// Map weights files instead of reading them (sets `COALESCE_MAP_WEIGHTS` for the plugin,
        /// whose safetensors reader decides by it; see `SafeTensors.map(path:)`).
        public var mapWeights: Bool

        public init(endpoint: String, token: String, backend: String, model: String, modelDirectory: String,
                    pluginDirectory: String, parent: Int32, mapWeights: Bool = true) {
            self.mapWeights = mapWeights
            self.endpoint = endpoint
            self.token = token
            self.backend = backend
            self.model = model
            self.modelDirectory = modelDirectory
            self.pluginDirectory = pluginDirectory
            self.parent = parent
        }
    }

    /// A worker that hears nothing from the daemon for this long exits.
    static let silenceLimit: Duration = .seconds(10)

    /// Runs the worker. - Returns: the process exit status (0 after a shutdown, 1 on load failure
    /// or a lost daemon).
    public static func run(_ o: Options) -> Int32 {
        // Before any thread starts and before the plugin is loaded: each plugin carries its own
        // copy of the tensor library, which reads the variable when it first reads a file.
        setenv("COALESCE_MAP_WEIGHTS", o.mapWeights ? "1" : "0", 1)
        guard let ctx = zmq_ctx_new() else { return 1 }
        defer { zmq_ctx_term(ctx) }
        guard let socket = try? ZMQSocket(context: ctx, type: ZMQ_DEALER) else { return 1 }
        defer { socket.close() }
        do {
            try socket.setLinger(milliseconds: 2000)
            try socket.setSendHighWaterMark(0)
            try socket.setReceiveHighWaterMark(0)
            try socket.setRoutingID(Array(o.token.utf8))
            try socket.connect(o.endpoint)
        } catch {
            return 1
        }
        func send(_ m: FromWorker) { try? socket.send(parts: [WorkerProtocol.encode(m)]) }

        let instance: InProcessInstance
        let info: ModelInfo
        do {
            let launched = try InProcessLauncher().launch(backend: o.backend, model: o.model, directory: o.modelDirectory,
                                                          pluginDirectory: o.pluginDirectory)
            guard let i = launched as? InProcessInstance else { throw EngineError.internal("unexpected instance kind") }
            instance = i
            info = try JSONDecoder().decode(ModelInfo.self, from: Data(instance.describeJSON.utf8))
        } catch let e as EngineError {
            send(.loadFailed(e))
            return 1
        } catch {
            send(.loadFailed(.internal("backend \(quoted(o.backend)) returned an invalid describe() JSON: \(error)")))
            return 1
        }
        send(.ready(describeJSON: instance.describeJSON, backend: instance.backendName,
                    version: instance.backendVersion, pid: getpid()))

        // Calls run on threads kept for the next call; their messages reach the socket through the outbox.
        let outbox: Outbox
        do { outbox = try Outbox() } catch { return 1 }
        let state = CallState()
        let callThreads = CallThreads()
        var items = [socket.pollItem(), zmq_pollitem_t(socket: nil, fd: outbox.fd, events: Int16(ZMQ_POLLIN), revents: 0)]
        var lastHeard = ContinuousClock.now
        var shuttingDown = false
        let route = ReplyRoute(endpoint: 0, envelope: [])
        while true {
            _ = zmq_poll(&items, 2, 100)
            // The daemon sends one part per message (its ROUTER takes the token off).
            while let parts = socket.receive(dontWait: true) {
                lastHeard = .now
                for bytes in parts {
                    switch WorkerProtocol.decodeToWorker(bytes) {
                    case .generate(let call, let requests, let imageBytes, let threads, let sendsProgress):
                        state.begin(call)
                        callThreads.run {
                            if state.isCancelled(call) {  // cancelled (its deadline passed) before it began
                                let e = EngineError.cancelled("cancelled before the backend call started")
                                outbox.push(route, WorkerProtocol.encode(.error(call: call, e)))
                                state.end(call)
                                return
                            }
                            // The call's one buffer goes back as it is: the daemon knows each request's range.
                            let reply: FromWorker
                            do {
                                let pixels = try instance.run(requests, imageBytes: imageBytes > 0 ? imageBytes : info.imageBytes,
                                                              threads: threads) { step, total in
                                    if sendsProgress {
                                        outbox.push(route, WorkerProtocol.encode(.progress(call: call, step: step, total: total)))
                                    }
                                    return !state.isCancelled(call)
                                }
                                reply = .pixels(call: call, pixels)
                            } catch let e as EngineError {
                                reply = .error(call: call, e)
                            } catch {
                                reply = .error(call: call, .internal("\(error)"))
                            }
                            outbox.push(route, WorkerProtocol.encode(reply))
                            state.end(call)
                        }
                    case .cancel(let call): state.cancel(call)
                    case .ping: send(.pong)
                    case .shutdown: shuttingDown = true
                    case nil: break  // not from our daemon's code: ignore
                    }
                }
            }
            for (_, bytes) in outbox.takeAll() { try? socket.send(parts: [bytes]) }
            if shuttingDown && state.running == 0 && outbox.isEmpty { return 0 }
            if getppid() != o.parent || ContinuousClock.now - lastHeard > silenceLimit { return 1 }
        }
    }
}

/// Running calls and their cancel flags, shared by the I/O thread and the call threads.
private final class CallState: @unchecked Sendable {
    private let lock = Lock()
    private var calls: [UInt64: Bool] = [:]   // call -> cancelled

    func begin(_ call: UInt64) { lock.withLock { calls[call] = false } }
    func end(_ call: UInt64) { lock.withLock { _ = calls.removeValue(forKey: call) } }
    func cancel(_ call: UInt64) { lock.withLock { if calls[call] != nil { calls[call] = true } } }
    func isCancelled(_ call: UInt64) -> Bool { lock.withLock { calls[call] ?? true } }
    var running: Int { lock.withLock { calls.count } }
}

/// The threads that run a worker's calls, each kept for a later call when its call returns instead
/// of a new thread per call. A call that does not return (a stuck plugin) keeps its thread, so a
/// call that finds no idle thread starts another: calls never wait for each other here.
final class CallThreads: @unchecked Sendable {
    private let cond = NSCondition()
    private var jobs: [() -> Void] = []
    private var idle = 0   // threads waiting for a job, guarded by cond

    func run(_ job: @escaping () -> Void) {
        cond.lock()
        jobs.append(job)
        if jobs.count > idle {
            let t = Thread { [self] in serve() }
            t.name = "coalesced-worker-call"
            t.start()
        }
        cond.signal()
        cond.unlock()
    }

    private func serve() {
        cond.lock()
        while true {
            idle += 1
            while jobs.isEmpty { cond.wait() }
            idle -= 1
            let job = jobs.removeFirst()
            cond.unlock()
            job()
            cond.lock()
        }
    }
}
