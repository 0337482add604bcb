// WorkerHub: the daemon's side of backend isolation. It starts `coalesced worker` processes,
// owns the private ZeroMQ socket they connect to, answers for their heartbeats, reaps them and
// restarts the ones that die. A `BackendLauncher`: the Engine asks it for model instances.
import CZMQ
import Engine
import Foundation
import Logging

/// Starts and supervises backend worker processes (one per model instance).
///
/// One I/O thread owns the ROUTER socket (ipc, in a private 0700 directory); workers connect
/// with a DEALER named by a random token, and messages from any other name are dropped. Calls
/// (`WorkerInstance.generate`) hand messages to the I/O thread through an outbox and wait for
/// their events under `cond`.
public final class WorkerHub: BackendLauncher, @unchecked Sendable {
    public struct Configuration: Sendable {
        /// The `coalesced` binary to run as `coalesced worker ...` (default: this executable).
        public var executable: String
        /// How often the hub pings each ready worker.
        public var heartbeatInterval: Duration
        /// A ready worker silent this long is killed (SIGKILL) and restarted.
        public var heartbeatTimeout: Duration
        /// Longest a worker may take from start to Ready.
        public var loadTimeout: Duration
        /// A call still running this long after its deadline (it was cancelled at the deadline) is
        /// abandoned and its worker killed and restarted.
        public var hangGrace: Duration
        /// Workers that die before Ready this many times in a row mark the model failed.
        public var maxLoadFailures: Int
        /// Restart delay after a crash: doubles per crash in the last minute, up to the max.
        public var restartBackoff: Duration
        public var restartBackoffMax: Duration
        /// Workers map weights files read-only (`COALESCE_MAP_WEIGHTS=1`, `SafeTensors.map(path:)`), so
        /// that workers loading the same file share its float32 tensors in the page cache.
        public var mapWeights: Bool
        /// Compute threads hint passed with every call (Engine's `threads`); unused here.
        public init(executable: String = WorkerHub.currentExecutable(), heartbeatInterval: Duration = .milliseconds(250),
                    heartbeatTimeout: Duration = .seconds(3), loadTimeout: Duration = .seconds(120),
                    hangGrace: Duration = .seconds(2), maxLoadFailures: Int = 3,
                    restartBackoff: Duration = .milliseconds(100), restartBackoffMax: Duration = .seconds(5),
                    mapWeights: Bool = true) {
            self.mapWeights = mapWeights
            self.executable = executable
            self.heartbeatInterval = heartbeatInterval
            self.heartbeatTimeout = heartbeatTimeout
            self.loadTimeout = loadTimeout
            self.hangGrace = hangGrace
            self.maxLoadFailures = maxLoadFailures
            self.restartBackoff = restartBackoff
            self.restartBackoffMax = restartBackoffMax
        }
    }

    public let configuration: Configuration
    let logger: Logger
    /// Guards every process's and instance's mutable state; waiters wait on it.
    let cond = NSCondition()
    private let outbox: Outbox
    private let directory: String
    let endpoint: String
    private var context: UnsafeMutableRawPointer?
    private var socket: ZMQSocket?
    private var thread: Thread?
    private var stopping = false                    // guarded by cond
    private var processes: [String: WorkerProcess] = [:]  // token -> live process, guarded by cond
    private var restarts: [(at: ContinuousClock.Instant, instance: Weak)] = []  // guarded by cond
    private var nextCall: UInt64 = 0

    /// The path of this executable (/proc/self/exe resolved).
    public static func currentExecutable() -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    }

    /// Binds the worker socket and starts the I/O thread. First removes the worker directories
    /// that dead daemons of this user left behind (`removeStaleDirectories`).
    public init(configuration: Configuration = Configuration(), logger: Logger = Logger(label: "coalesced.workers")) throws {
        self.configuration = configuration
        self.logger = logger
        self.outbox = try Outbox()
        for path in WorkerHub.removeStaleDirectories() {
            logger.info("removed the worker directory of a daemon that is gone", metadata: ["directory": "\(path)"])
        }
        var template = Array("\(WorkerHub.directoryParent)/\(WorkerHub.directoryPrefix)\(getpid())-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw ServiceError.system(call: "mkdtemp", errno: errno) }
        directory = String(cString: dir)
        endpoint = "ipc://\(directory)/workers.ipc"
        do {
            guard let ctx = zmq_ctx_new() else { throw ServiceError.system(call: "zmq_ctx_new", errno: zmq_errno()) }
            context = ctx
            let s = try ZMQSocket(context: ctx, type: ZMQ_ROUTER)
            socket = s
            try s.setLinger(milliseconds: 0)
            try s.setSendHighWaterMark(0)
            try s.setReceiveHighWaterMark(0)
            try s.setRouterMandatory(true)
            try s.bind(endpoint)
        } catch {
            socket?.close()
            if let context { zmq_ctx_term(context) }
            WorkerHub.removeDirectory(directory)
            throw error
        }
        let t = Thread { [self] in ioLoop() }
        t.name = "coalesced-workers-io"
        thread = t
        t.start()
    }

    /// Stops every worker (shutdown, then SIGKILL after `grace`) and the I/O thread.
    public func stop(grace: Duration = .seconds(2)) {
        cond.lock()
        let live = Array(processes.values)
        for p in live { retire(p) }
        cond.unlock()
        let until = ContinuousClock.now + grace
        while ContinuousClock.now < until {
            cond.lock()
            let n = processes.count
            cond.unlock()
            if n == 0 { break }
            usleep(10_000)
        }
        cond.lock()
        for p in processes.values { Glibc.kill(p.pid, SIGKILL) }
        stopping = true
        cond.unlock()
        outbox.wake()
        while thread?.isFinished == false { usleep(5_000) }
        for p in live where p.status == nil { var st: Int32 = 0; waitpid(p.pid, &st, 0) }
        socket?.close()
        if let context { zmq_ctx_term(context) }
        socket = nil
        context = nil
        WorkerHub.removeDirectory(directory)
    }

    // MARK: - The socket directory

    /// Where the private socket directories are made: /tmp/coalesced-workers-<daemon pid>-XXXXXX
    /// (mode 0700; /tmp rather than $TMPDIR keeps the ipc path within its 107-byte limit).
    static let directoryParent = "/tmp"
    static let directoryPrefix = "coalesced-workers-"

    /// Removes the socket directories that daemons of this user left behind when they died without
    /// stopping their hub (SIGKILL, a crash): entries of /tmp named coalesced-workers-<pid>-XXXXXX
    /// that are real directories (never a symlink) owned by this user, whose pid is not a live
    /// coalesced of this user (the pid is gone, or now belongs to another user or program).
    /// Only the plain files inside (the socket) are removed, then the directory; one holding
    /// anything else is left alone. - Returns: the removed paths.
    static func removeStaleDirectories(in parent: String = directoryParent) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return [] }
        var removed: [String] = []
        for name in names where name.hasPrefix(directoryPrefix) {
            let rest = name.dropFirst(directoryPrefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard rest.count == 2, rest[1].utf8.count == 6, rest[1].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }),
                  rest[0].allSatisfy({ $0.isASCII && $0.isNumber }), let pid = pid_t(rest[0]), pid > 0,
                  pid != getpid(), !isLiveDaemon(pid) else { continue }
            let path = parent + "/" + name
            if removeDirectory(path, ownedBy: getuid()) { removed.append(path) }
        }
        return removed
    }

    /// True when `pid` is a running coalesced of this user, or when that cannot be told (then its
    /// directory is kept).
    static func isLiveDaemon(_ pid: pid_t) -> Bool {
        if Glibc.kill(pid, 0) != 0 && errno == ESRCH { return false }
        var st = stat()
        guard stat("/proc/\(pid)", &st) == 0 else { return errno != ENOENT }
        if st.st_uid != getuid() { return false }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return exe.split(separator: "/").last?.hasPrefix("coalesced") ?? false
        }
        guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return true }
        return comm.trimmingCharacters(in: .whitespacesAndNewlines) == "coalesced"
    }

    /// Removes a socket directory: the plain files in it (never following a symlink), then the
    /// directory. With `ownedBy`, only a directory owned by that user. - Returns: true if removed.
    @discardableResult
    static func removeDirectory(_ path: String, ownedBy uid: uid_t? = nil) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, uid.map({ st.st_uid == $0 }) ?? true else { return false }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            var entry = stat()
            guard fstatat(fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0, entry.st_mode & S_IFMT != S_IFDIR else { continue }
            unlinkat(fd, name, 0)
        }
        return rmdir(path) == 0
    }

    // MARK: - BackendLauncher

    public func launch(backend: String, model: String, directory: String, pluginDirectory: String) throws -> BackendInstance {
        let spec = WorkerSpec(backend: backend, model: model, directory: directory, pluginDirectory: pluginDirectory,
                              loadedFrom: WorkerSpec.resolve(directory))
        let p = try spawn(spec)
        cond.lock()
        let until = ContinuousClock.now + configuration.loadTimeout
        while p.ready == nil && p.loadError == nil && p.status == nil && ContinuousClock.now < until {
            _ = cond.wait(until: Date().addingTimeInterval(0.05))
        }
        let ready = p.ready, loadError = p.loadError, death = p.deathReason
        cond.unlock()
        guard let ready else {
            Glibc.kill(p.pid, SIGKILL)
            if let loadError { throw loadError }
            throw EngineError.internal("model \(quoted(model)): worker " + (death ?? "(pid \(p.pid)) did not report ready within \(seconds(configuration.loadTimeout)) s"))
        }
        let instance = WorkerInstance(hub: self, spec: spec, process: p, ready: ready)
        cond.lock()
        p.owner = instance
        cond.unlock()
        return instance
    }

    // MARK: - Used by WorkerInstance

    /// A worker's environment: the daemon's, with Swift's crash backtracer told to symbolicate
    /// fast (function names without line numbers) unless the operator set `SWIFT_BACKTRACE`. A
    /// crashing worker must exit quickly for its calls to fail and its model to be restarted;
    /// full symbolication of a plugin crash once took more than 30 s on a busy core.
    static func workerEnvironment() -> [String] {
        var env: [String] = []
        var p = environ
        while let entry = p.pointee { env.append(String(cString: entry)); p += 1 }
        if !env.contains(where: { $0.hasPrefix("SWIFT_BACKTRACE=") }) { env.append("SWIFT_BACKTRACE=symbolicate=fast") }
        return env
    }

    /// Starts a worker process for `spec` (not yet owned).
    func spawn(_ spec: WorkerSpec) throws -> WorkerProcess {
        let token = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let args = [configuration.executable, "worker", "--endpoint", endpoint, "--token", token,
                    "--backend", spec.backend, "--model", spec.model, "--model-dir", spec.directory,
                    "--plugins", spec.pluginDirectory, "--parent", String(getpid()),
                    configuration.mapWeights ? "--map-weights" : "--no-map-weights"]
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = WorkerHub.workerEnvironment().map { strdup($0) } + [nil]
        defer { for a in cArgs + cEnv { free(a) } }
        // The daemon ignores SIGTERM/SIGINT (it handles them with Dispatch); a worker starts with
        // every signal at its default and none blocked.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        // Spawned and recorded under the lock: the I/O thread looks a message's token up under
        // it, so a worker's Ready cannot arrive before its token is known (it was dropped, and
        // the worker gave up after 10 s, when this thread lost the CPU right after the spawn).
        cond.lock()
        let rc = posix_spawn(&pid, configuration.executable, nil, &attr, &cArgs, &cEnv)
        guard rc == 0 else {
            cond.unlock()
            throw EngineError.internal("model \(quoted(spec.model)): cannot start a worker (posix_spawn \(quoted(configuration.executable)): \(String(cString: strerror(rc))))")
        }
        let p = WorkerProcess(pid: pid, token: token, spec: spec)
        processes[token] = p
        cond.unlock()
        logger.info("worker started", metadata: ["model": "\(spec.model)", "pid": "\(pid)"])
        return p
    }

    func send(_ p: WorkerProcess, _ m: ToWorker) {
        outbox.push(ReplyRoute(endpoint: 0, envelope: [Array(p.token.utf8)]), WorkerProtocol.encode(m))
    }

    /// Bumped by `recheckCalls` (under cond).
    private(set) var recheckCount: UInt64 = 0

    /// Requests were cancelled: every running call asks its caller whether it still wants its
    /// requests, and tells its worker to stop at once when not (see `WorkerInstance.attempt`).
    /// Call it without holding any lock the caller's `stillWanted` closures take.
    public func recheckCalls() {
        cond.lock()
        recheckCount &+= 1
        cond.broadcast()
        cond.unlock()
    }

    func newCallID() -> UInt64 {
        // Under cond.
        nextCall &+= 1
        return nextCall
    }

    /// Schedules `instance.respawn()` at `at` (under cond).
    func scheduleRestart(_ instance: WorkerInstance, at: ContinuousClock.Instant) {
        restarts.append((at, Weak(instance)))
        outbox.wake()
    }

    /// Kills a worker (SIGKILL); its death is handled like a crash, with `reason`.
    func kill(_ p: WorkerProcess, reason: String) {
        cond.lock()
        if p.killReason == nil { p.killReason = reason }
        cond.unlock()
        logger.warning("killing worker", metadata: ["model": "\(p.spec.model)", "pid": "\(p.pid)", "reason": "\(reason)"])
        Glibc.kill(p.pid, SIGKILL)
    }

    /// Asks a worker to exit once its calls are done; SIGKILL after 10 s (under cond or not).
    func retire(_ p: WorkerProcess) {
        send(p, .shutdown)
        p.retireDeadline = .now + .seconds(10)
    }

    /// Every live worker process, for Metrics.
    public func stats() -> [WorkerStat] {
        cond.lock()
        let live = Array(processes.values)
        cond.unlock()
        return live.map { p in
            WorkerStat(model: p.spec.model, pid: p.pid, rssBytes: residentBytes(pid: p.pid),
                       state: p.retireDeadline != nil ? "draining" : p.ready == nil ? "starting" : "serving",
                       progressMessages: p.progressHeard)
        }.sorted { ($0.model, $0.pid) < ($1.model, $1.pid) }
    }

    // MARK: - I/O thread

    private func ioLoop() {
        guard let socket else { return }
        var items = [socket.pollItem(), zmq_pollitem_t(socket: nil, fd: outbox.fd, events: Int16(ZMQ_POLLIN), revents: 0)]
        var nextPing = ContinuousClock.now
        while true {
            _ = zmq_poll(&items, 2, 20)
            receiveAll(socket)
            for (route, bytes) in outbox.takeAll() {
                guard let token = route.envelope.first else { continue }
                try? socket.send(parts: [token, bytes], dontWait: true)  // dropped when that worker is not connected
            }
            let now = ContinuousClock.now
            var keep: [WorkerInstance] = []   // released after the lock, never under it
            cond.lock()
            if stopping { cond.unlock(); return }
            if now >= nextPing {
                nextPing = now + configuration.heartbeatInterval
                for p in processes.values where p.ready != nil && p.status == nil {
                    send(p, .ping)
                    if now - p.lastPong > configuration.heartbeatTimeout && p.killReason == nil && p.retireDeadline == nil {
                        p.killReason = "did not answer heartbeats for \(seconds(now - p.lastPong)) s"
                        logger.warning("killing worker", metadata: ["model": "\(p.spec.model)", "pid": "\(p.pid)",
                                                                    "reason": "\(p.killReason ?? "")"])
                        Glibc.kill(p.pid, SIGKILL)
                    }
                }
            }
            for p in Array(processes.values) {
                if let d = p.retireDeadline, now > d, p.status == nil { Glibc.kill(p.pid, SIGKILL) }
                var st: Int32 = 0
                let r = waitpid(p.pid, &st, WNOHANG)
                guard r == p.pid || (r < 0 && errno == ECHILD) else { continue }
                p.status = r == p.pid ? st : 0
                processes.removeValue(forKey: p.token)
                let reason = describeExit(p, status: p.status ?? 0)
                p.deathReason = reason
                for call in p.calls.keys { p.calls[call, default: []].append(.died(reason)) }
                if p.retireDeadline != nil {
                    logger.info("worker exited", metadata: ["model": "\(p.spec.model)", "pid": "\(p.pid)", "how": "\(reason)"])
                } else {
                    logger.error("worker died", metadata: ["model": "\(p.spec.model)", "pid": "\(p.pid)", "how": "\(reason)"])
                    if let owner = p.owner { keep.append(owner); owner.workerDied(p, reason: reason) }
                }
                cond.broadcast()
            }
            var due: [WorkerInstance] = []
            restarts.removeAll { entry in
                guard entry.at <= now else { return false }
                if let i = entry.instance.value { due.append(i) }
                return true
            }
            cond.unlock()
            for i in due { i.respawn() }
            keep.removeAll()
            due.removeAll()
        }
    }

    private func receiveAll(_ socket: ZMQSocket) {
        // [token, message]; longer messages are not a worker's (at most 3 parts are copied to tell).
        while let frames = socket.receiveMessage(dontWait: true, keepParts: 3)?.parts {
            guard frames.count == 2 else { continue }
            let token = String(decoding: frames[0], as: UTF8.self)
            let event = frames[1].withUnsafeBytes { WorkerProtocol.decodeFromWorker($0) }
            // An instance retained here is released after the lock: its deinit takes the lock.
            var owner: WorkerInstance?
            defer { withExtendedLifetime(owner) {} }
            cond.lock()
            defer { cond.unlock() }
            guard let p = processes[token] else { continue }  // not one of ours (or already gone)
            p.lastPong = .now
            switch event {
            case .ready(let json, let backend, let version, _):
                p.ready = WorkerReady(describeJSON: json, backend: backend, version: version)
                owner = p.owner
                owner?.workerReady(p)
            case .loadFailed(let e): p.loadError = e
            case .progress(let call, let step, let total):
                p.progressHeard += 1
                p.calls[call]?.append(.progress(step, total))
            case .pixels(let call, let px): p.calls[call]?.append(.pixels(px))
            case .error(let call, let e): p.calls[call]?.append(.error(e))
            case .pong: break
            case nil:
                logger.error("worker sent an undecodable message; killing it", metadata: ["pid": "\(p.pid)"])
                p.killReason = "sent an undecodable message"
                Glibc.kill(p.pid, SIGKILL)
            }
            cond.broadcast()
        }
    }

    private func describeExit(_ p: WorkerProcess, status st: Int32) -> String {
        let how: String
        if st & 0x7f == 0 {
            how = "exited with status \((st >> 8) & 0xff)"
        } else {
            let sig = st & 0x7f
            how = "was killed by signal \(sig) (\(signalName(sig)))"
        }
        return "(pid \(p.pid)) \(how)" + (p.killReason.map { " after it \($0)" } ?? "")
    }
}

/// One live worker process as the hub sees it.
public struct WorkerStat: Sendable, Equatable {
    public var model: String
    public var pid: Int32
    public var rssBytes: UInt64
    /// "starting", "serving" or "draining" (replaced or unloaded; exits when its calls end).
    public var state: String
    /// Progress messages heard from it: one per step of each call that asked for them.
    public var progressMessages: Int
}

/// What a worker was asked to load.
struct WorkerSpec: Sendable {
    var backend: String
    var model: String
    /// The model's directory as the repository names it (a symbolic link, for a link deploy):
    /// the worker loads from this path, so that a backend finds what lies beside it.
    var directory: String
    var pluginDirectory: String
    /// The folder `directory` led to when the instance was launched (nil: it could not be
    /// resolved). A restart loads only while it still leads there: after a deploy switched the
    /// link, a restarted worker would load another version under this instance's name,
    /// revision and sizes.
    var loadedFrom: String?

    /// `path` with every symbolic link resolved (realpath); nil when it does not exist.
    static func resolve(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}

struct WorkerReady: Sendable {
    var describeJSON: String
    var backend: String
    var version: String
}

/// An event for a waiting call.
enum CallEvent {
    case progress(Int, Int)
    case pixels([UInt8])
    case error(EngineError)
    case died(String)
}

/// A worker process. Mutable state is guarded by the hub's `cond`.
final class WorkerProcess: @unchecked Sendable {
    let pid: pid_t
    let token: String
    let spec: WorkerSpec
    weak var owner: WorkerInstance?
    var ready: WorkerReady?
    var loadError: EngineError?
    var status: Int32?            // wait status once reaped
    var deathReason: String?
    var killReason: String?
    var retireDeadline: ContinuousClock.Instant?
    var lastPong = ContinuousClock.now
    var calls: [UInt64: [CallEvent]] = [:]
    var progressHeard = 0

    init(pid: pid_t, token: String, spec: WorkerSpec) {
        self.pid = pid
        self.token = token
        self.spec = spec
    }
}

final class Weak: @unchecked Sendable {
    weak var value: WorkerInstance?
    init(_ v: WorkerInstance) { value = v }
}

/// Resident memory of a process in bytes (/proc/<pid>/statm), 0 when unreadable.
public func residentBytes(pid: Int32) -> UInt64 {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return 0 }
    let fields = s.split(separator: " ")
    guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
    return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
}

func signalName(_ s: Int32) -> String {
    let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGKILL: "SIGKILL", SIGBUS: "SIGBUS",
                                  SIGFPE: "SIGFPE", SIGILL: "SIGILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT",
                                  SIGTRAP: "SIGTRAP", SIGPIPE: "SIGPIPE"]
    return names[s] ?? "signal \(s)"
}
