// RepositoryPoller: optional polling of the model repository (Triton's "poll" model control).
// A model whose directory changed (any file's size or modification time, or the directory itself,
// as when models/<name> is a symbolic link switched to another version) is hot-swapped, a new
// model directory is loaded, and a removed one is unloaded. A model an operator unloaded stays
// unloaded until its files change.
//
// What cannot be read is not taken for removed: while the repository directory itself is missing
// or unreadable (a deploy that replaces it, a permission change) the scan changes nothing, and a
// model whose folder still exists but cannot be read keeps serving its loaded instance. Only a
// model folder that is gone from a readable repository (or has no config.json any more) is
// unloaded.
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
    private var rootUnreadable = false
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
        let root = engine.repository.root
        guard (try? FileManager.default.contentsOfDirectory(atPath: root)) != nil else {
            if !rootUnreadable {
                logger.warning("poll: the model repository cannot be read; keeping every loaded model until it can",
                               metadata: ["repository": "\(root)"])
            }
            rootUnreadable = true
            return
        }
        if rootUnreadable { logger.info("poll: the model repository is readable again", metadata: ["repository": "\(root)"]) }
        rootUnreadable = false
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
            if folderExistsButUnreadable(root + "/" + name) {
                logger.warning("poll: a model folder cannot be read; keeping its loaded instance", metadata: ["model": "\(name)"])
                continue
            }
            known[name] = nil
            if engine.isLoaded(name) {
                try? engine.unload(name)
                logger.info("poll: unloaded removed model", metadata: ["model": "\(name)"])
            }
        }
    }

    /// The path is a directory (it exists) but its entries cannot be listed or its config.json
    /// cannot be checked: a permission problem, not a removal.
    private func folderExistsButUnreadable(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return false }
        if (try? FileManager.default.contentsOfDirectory(atPath: path)) == nil { return true }
        var cst = stat()
        return stat(path + "/config.json", &cst) != 0 && errno == EACCES
    }

    private func waitInterval() -> Bool {
        cond.lock()
        defer { cond.unlock() }
        let until = Date().addingTimeInterval(seconds(interval))
        while !stopped && Date() < until { _ = cond.wait(until: until) }
        return !stopped
    }

    /// The identity (device and inode) of the directory the model's name leads to, then the names,
    /// sizes and modification times of its files. The identity makes a symbolic link switched to
    /// another version's directory a change even when both versions' files have the same names,
    /// sizes and times (release artifacts with normalised timestamps).
    private func fingerprint(_ name: String) -> String {
        guard let dir = try? engine.repository.directory(for: name),
              let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return "" }
        var st = stat()
        let identity = stat(dir, &st) == 0 ? "\(st.st_dev):\(st.st_ino)" : "-"
        return identity + "|" + files.sorted().map { f -> String in
            let a = try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)
            let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(f):\(size):\(mtime)"
        }.joined(separator: "|")
    }
}
