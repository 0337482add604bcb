// coalesced: the Coalesce daemon. Serves generation over ZeroMQ + protobuf (proto/coalesce.proto)
// from the models in a repository, through backend plugins loaded by name from a plugin directory.
import ArgumentParser
import Dispatch
import Engine
import Foundation
import Logging
import Service
import StatusHTTP

struct Coalesced: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coalesced",
        abstract: "The Coalesce daemon: serve generation over ZeroMQ, or broker between clients and daemons.",
        subcommands: [Serve.self, Broker.self, Keygen.self, Worker.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve Coalesce image generation over ZeroMQ (ROUTER socket, coalesce.v1 protobuf).",
        discussion: """
        Loads every model in --models (a directory per model with config.json naming its backend) at start. \
        Load/unload (hot swap) are accepted only on the admin ipc endpoint unless --admin-anywhere.

        SIGTERM/SIGINT: stop accepting, finish accepted requests (up to --drain-timeout-s), exit 0.
        """)

    @Option(help: "Model repository: <dir>/<model>/config.json (default: ./models if present, else <exe>/../share/coalesce/models).")
    var models: String?

    @Option(help: "Backend plugin directory (default: <exe>/../lib/coalesce/backends if present, else the executable's directory).")
    var plugins: String?

    @Option(help: "Public endpoint to bind (generate, list, health, metrics); empty for none.")
    var endpoint: String = "tcp://127.0.0.1:5555"

    @Option(help: "Broker backend to connect to as a worker (repeatable), e.g. tcp://127.0.0.1:5556 of `coalesced broker`.")
    var connect: [String] = []

    @Option(help: "Admin endpoint (also load/unload); empty to disable. Default ipc:///tmp/coalesced-<uid>.ipc.")
    var adminEndpoint: String?

    @Flag(help: "Accept load/unload on every endpoint (not only the admin one).")
    var adminAnywhere = false

    @Option(help: "Most generate requests waiting; a full queue answers RESOURCE_EXHAUSTED.")
    var maxQueue: Int = 256

    @Option(help: "Most generate requests waiting for one model (default: half of --max-queue, rounded up); beyond it that model's requests are answered RESOURCE_EXHAUSTED, so a stuck or flooded model leaves room for the others. Equal to --max-queue: no share.")
    var maxQueuePerModel: Int?

    @Option(help: "Most requests batched into one backend call.")
    var maxBatch: Int = 16

    @Option(help: "How long the oldest queued request waits for a batch to fill, in ms (0: take what is queued).")
    var maxDelayMs: Double = 0

    @Option(name: [.customLong("calls-per-model"), .customLong("workers")],
            help: "Backend calls one model runs at once, each on a daemon thread of its own; models never share these threads (--workers is the old name).")
    var callsPerModel: Int = 2

    @Option(help: "Default per-request timeout in ms when a request sets none (0: none).")
    var timeoutMs: Int = 0

    @Option(help: "Seconds to wait for accepted requests on SIGTERM/SIGINT.")
    var drainTimeoutS: Double = 30

    @Option(help: "Most images per request.")
    var maxCount: Int32 = EngineLimits.defaultMaxCount

    @Option(help: "Most steps per request (at most \(EngineLimits.stepLimit), CZ_MAX_STEPS).")
    var maxSteps: Int32 = EngineLimits.stepLimit

    @Option(help: "Longest prompt in UTF-8 bytes.")
    var maxPromptBytes: Int = EngineLimits.promptBytesLimit

    @Option(help: "Largest request message in bytes (bigger ones get an error reply).")
    var maxMessageBytes: Int = 1 << 20

    @Option(help: "Load only these models at start (repeatable); default: every model in --models.")
    var load: [String] = []

    @Option(help: "CurveZMQ: file holding the server's Z85 secret key (enables CURVE on non-ipc endpoints; see `coalesced keygen`).")
    var curveSecretKeyFile: String?

    @Option(help: "CurveZMQ: allow-list file, one \"<client Z85 public key> [admin]\" per line; admin keys may load/unload.")
    var curveClients: String?

    // Unconditional: a Z85 key may begin with "-" (its alphabet has it), which would otherwise read as an option.
    @Option(parsing: .unconditional,
            help: "CurveZMQ with --connect: the broker's Z85 public key (the daemon is then a CURVE client of the broker, with the key pair of --curve-secret-key-file).")
    var curveBrokerKey: String?

    @Option(help: "Poll the model repository every N seconds: reload changed models, load new ones, unload removed ones (0: off).")
    var pollS: Double = 0

    @Option(help: "Where backends run: process (each model instance in its own `coalesced worker` child process) or in-process (dlopen into the daemon).")
    var isolation: Isolation = .process

    @Option(help: "With --isolation process: a worker that answers no heartbeat for this many seconds is killed and restarted.")
    var workerHeartbeatS: Double = 3

    @Option(help: "With --isolation process: a request still running this many seconds after its deadline (it is cancelled at the deadline) is answered DEADLINE_EXCEEDED and its worker killed and restarted.")
    var workerHangGraceS: Double = 2

    @Flag(inversion: .prefixedNo, help: "With --isolation process: workers map weights files read-only and share their float32 tensors through the page cache (one copy per machine for a file several models load) instead of reading a copy each.")
    var mapWeights = true
    @Option(help: "Serve /metrics (Prometheus), /healthz and /readyz over HTTP at HOST:PORT, e.g. 127.0.0.1:9464 (a bare PORT binds 127.0.0.1); off when not given. Read-only.")
    var http: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    enum Isolation: String, ExpressibleByArgument {
        case process
        case inProcess = "in-process"
    }

    func validate() throws {
        guard maxQueue >= 1, maxBatch >= 1, callsPerModel >= 1, maxCount >= 1, maxSteps >= 1, maxPromptBytes >= 0,
              maxMessageBytes >= 64, maxDelayMs >= 0, drainTimeoutS >= 0, timeoutMs >= 0, pollS >= 0,
              workerHeartbeatS > 0, workerHangGraceS >= 0 else {
            throw ValidationError("limits must be positive (max-queue, max-batch, calls-per-model, max-count, max-steps >= 1)")
        }
        guard maxSteps <= EngineLimits.stepLimit else {
            throw ValidationError("--max-steps must be at most \(EngineLimits.stepLimit) (CZ_MAX_STEPS), got \(maxSteps)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard (curveSecretKeyFile == nil) == (curveClients == nil) else {
            throw ValidationError("--curve-secret-key-file and --curve-clients go together")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "coalesced")
        let pluginDir = plugins ?? Self.defaultPluginDirectory()
        let models = self.models ?? Self.defaultModelDirectory()

        // The whole configuration first, and the ipc endpoints claimed: a start that is refused
        // exits before any worker directory, worker process or model exists.
        if curveBrokerKey != nil && curveSecretKeyFile == nil {
            throw ValidationError("--curve-broker-key needs --curve-secret-key-file (the daemon's own key pair for CURVE to the broker)")
        }
        var endpoints: [ServiceEndpoint] = []
        if !endpoint.isEmpty { endpoints.append(ServiceEndpoint(url: endpoint, admin: adminAnywhere)) }
        for url in connect { endpoints.append(ServiceEndpoint(url: url, admin: adminAnywhere, connect: true)) }
        let admin = adminEndpoint ?? ServiceConfiguration.defaultIPCEndpoint
        if !admin.isEmpty { endpoints.append(ServiceEndpoint(url: admin, admin: true)) }
        let config = ServiceConfiguration(
            endpoints: endpoints, maxQueue: maxQueue, maxBatch: maxBatch,
            maxDelay: .microseconds(Int64(maxDelayMs * 1000)), callsPerModel: callsPerModel, maxMessageBytes: maxMessageBytes,
            drainTimeout: .milliseconds(Int64(drainTimeoutS * 1000)),
            defaultTimeout: timeoutMs > 0 ? .milliseconds(Int64(timeoutMs)) : nil,
            curve: try curveSecretKeyFile.map {
                var c = try CurveConfiguration.load(secretKeyFile: $0, clientsFile: curveClients ?? "")
                c.brokerPublicKey = curveBrokerKey
                return c
            }, maxQueuePerModel: maxQueuePerModel)
        try config.validate()
        if let http { try StatusServer.validate(address: http) }
        let claims = try EndpointClaims(configuration: config)
        defer { claims.release() }
        for url in claims.removedStale {
            logger.info("removed the stale socket of a daemon that is gone", metadata: ["endpoint": "\(url)"])
        }

        // SIGTERM/SIGINT start a drain; a second one stops waiting for running requests. One that
        // arrives while the models load ends the start once they are loaded (the workers stopped,
        // their socket directory removed), with status 0.
        let stop = StopRequest()
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                logger.info("signal received; draining", metadata: ["signal": "\(sig)"])
                SystemdNotify.send("STOPPING=1")
                stop.signal()
            }
            src.resume()
            sources.append(src)
        }
        defer { withExtendedLifetime(sources) {} }

        let hub = isolation == .process
            ? try WorkerHub(configuration: .init(heartbeatTimeout: .milliseconds(Int64(workerHeartbeatS * 1000)),
                                                 hangGrace: .milliseconds(Int64(workerHangGraceS * 1000)),
                                                 mapWeights: mapWeights))
            : nil
        defer { hub?.stop() }
        let engine = Engine(configuration: .init(
            pluginDirectory: pluginDir, modelRepository: models,
            limits: EngineLimits(maxCount: maxCount, maxSteps: maxSteps, maxPromptBytes: maxPromptBytes),
            launcher: hub ?? InProcessLauncher()))
        if load.isEmpty {
            for (name, error) in engine.loadAll().sorted(by: { $0.key < $1.key }) {
                logger.error("model not loaded", metadata: ["model": "\(name)", "error": "\(error)"])
            }
        } else {
            for name in load {
                do { try engine.load(name) } catch {
                    logger.error("model not loaded", metadata: ["model": "\(name)", "error": "\(error)"])
                }
            }
        }
        let service = try Service(engine: engine, configuration: config, workers: hub, claims: claims)
        if stop.attach(service) {
            logger.info("stopped before serving")
            return
        }
        let status = try http.map { try StatusServer(address: $0, source: StatusSource(service: service)) }
        defer { status?.close() }
        if let status { logger.info("http status server listening", metadata: ["http": "\(status.boundAddress)"]) }

        let poller = pollS > 0 ? RepositoryPoller(engine: engine, interval: .milliseconds(Int64(pollS * 1000))) : nil
        poller?.start()
        defer { poller?.stop() }
        try service.run {
            logger.info("ready", metadata: ["endpoints": "\(service.boundEndpoints.joined(separator: " "))",
                                            "isolation": "\(isolation.rawValue)",
                                            "plugins": "\(pluginDir)", "models": "\(models)"])
            SystemdNotify.send("READY=1")  // Type=notify units (docs/coalesced.service)
        }
    }

    /// ./models when it exists, else <exe>/../share/coalesce/models (install layout).
    static func defaultModelDirectory() -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: "models", isDirectory: &isDir), isDir.boolValue { return "models" }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        return exe.deletingLastPathComponent().appendingPathComponent("share/coalesce/models").path
    }

    /// <exe>/../lib/coalesce/backends when it exists (install layout), else the executable's directory
    /// (SwiftPM build layout, where the plugin products sit next to coalesced).
    static func defaultPluginDirectory() -> String {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let installed = exe.deletingLastPathComponent().appendingPathComponent("lib/coalesce/backends").path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: installed, isDirectory: &isDir), isDir.boolValue { return installed }
        return exe.path
    }
}

/// SIGTERM/SIGINT before and after the service exists: before, they are remembered (the start
/// ends once the models are loaded); after, each one asks the service to drain.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var service: Service?
    private var early = false

    func signal() {
        lock.lock()
        let s = service
        if s == nil { early = true }
        lock.unlock()
        s?.requestDrain()
    }

    /// Sends later signals to `service`. - Returns: true when one came before (do not serve).
    func attach(_ service: Service) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        self.service = service
        return early
    }
}

/// `coalesced worker`: one backend worker process, started by a serving daemon (not by hand).
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run one model instance's backend for a parent coalesced (started by the daemon).",
        shouldDisplay: false)

    @Option var endpoint: String
    @Option var token: String
    @Option var backend: String
    @Option var model: String
    @Option var modelDir: String
    @Option var plugins: String
    @Option var parent: Int32
    @Flag(inversion: .prefixedNo) var mapWeights = true

    func run() throws {
        let status = BackendWorker.run(.init(endpoint: endpoint, token: token, backend: backend, model: model,
                                             modelDirectory: modelDir, pluginDirectory: plugins, parent: parent,
                                             mapWeights: mapWeights))
        if status != 0 { throw ExitCode(status) }
    }
}

/// `coalesced keygen`: prints a new CurveZMQ key pair.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Print a new CurveZMQ key pair (Z85): public key, then secret key.")

    func run() throws {
        let (pub, sec) = try CurveConfiguration.keyPair()
        print("public \(pub)")
        print("secret \(sec)")
    }
}

Coalesced.main()
