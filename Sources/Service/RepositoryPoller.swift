// RepositoryPoller: optional polling of the model repository (Triton's "poll" model control).
// A model whose directory changed (any file's size or modification time) is hot-swapped, a new
// model directory is loaded, and a removed one is unloaded. A model an operator unloaded stays
// unloaded until its files change.
import Engine
import Foundation
import Logging

public final class RepositoryPoller: @unchecked Sendable {
    private let engine: Engine
    private let interval: Duration
    private let logger: Logger
    private let cond = NSCondition()
    private var stopped = false
    private var known: [String: String] = [:]   // model -> fingerprint at the last scan
    private var thread: Thread?

    public init(engine: Engine, interval: Duration, logger: Logger = Logger(label: "coalesce.poller")) {
        self.engine = engine
        self.interval = interval
        self.logger = logger
    }

    /// Records the current state (no loads), then polls every `interval` on its own thread.
    public func start() {
        for name in engine.repository.modelNames() { known[name] = fingerprint(name) }
        let t = Thread { [self] in
            while waitInterval() { scan() }
        }
        t.name = "coalesced-poller"
        t.start()
        thread = t
    }

    public func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    /// One pass over the repository. Public so tests (and a SIGHUP, say) can trigger it.
    public func scan() {
        let names = engine.repository.modelNames()
        for name in names {
            let fp = fingerprint(name)
            guard known[name] != fp else { continue }
            let isNew = known[name] == nil
            known[name] = fp
            do {
                try engine.load(name)
                logger.info(isNew ? "poll: loaded new model" : "poll: reloaded changed model", metadata: ["model": "\(name)"])
            } catch {
                logger.warning("poll: load failed", metadata: ["model": "\(name)", "error": "\(error)"])
            }
        }
        for name in known.keys where !names.contains(name) {
            known[name] = nil
            if engine.isLoaded(name) {
                try? engine.unload(name)
                logger.info("poll: unloaded removed model", metadata: ["model": "\(name)"])
            }
        }
    }

    private func waitInterval() -> Bool {
        cond.lock()
        defer { cond.unlock() }
        let until = Date().addingTimeInterval(seconds(interval))
        while !stopped && Date() < until { _ = cond.wait(until: until) }
        return !stopped
    }

    /// Names, sizes and modification times of the files in the model directory.
    private func fingerprint(_ name: String) -> String {
        guard let dir = try? engine.repository.directory(for: name),
              let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return "" }
        return files.sorted().map { f -> String in
            let a = try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)
            let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(f):\(size):\(mtime)"
        }.joined(separator: "|")
    }
}
