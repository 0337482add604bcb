// BrokerLoop: `coalesced broker`'s single-threaded routing loop (protocol: BrokerProtocol); the
// executable parses the flags and runs it.
//
// - Clients (frontend ROUTER) talk to the broker exactly as to one daemon.
// - Daemons (backend ROUTER; they connect with `coalesced serve --connect`) register and stay
//   alive with heartbeats that carry their capacity.
// - Each request goes to the live daemon with the most free capacity (fewest requests in flight
//   for its capacity), not round-robin; when every daemon is full, requests wait in the broker
//   (at most --max-queue, then RESOURCE_EXHAUSTED) and leave in arrival order as replies free room.
// - The broker remembers which daemon holds each (client, request id) until its final reply, so a
//   CancelRequest reaches the daemon running its target (or removes it from the broker's queue).
// - A daemon that misses its heartbeats is dead: every request it held is answered UNAVAILABLE at
//   once, so lazy-pirate clients retry now instead of after their timeout.
import CZMQ
import Engine
import Foundation

public final class BrokerLoop {
    public struct Options {
        /// The endpoint clients connect to.
        public var frontend: String
        /// The endpoint daemons connect to (`coalesced serve --connect`).
        public var backend: String
        /// CURVE on both tcp endpoints (nil: none).
        public var curve: CurveConfiguration?
        /// Most requests waiting in the broker while every daemon is full.
        public var maxQueue: Int
        /// Largest request accepted, in bytes.
        public var maxMessageBytes: Int

        public init(frontend: String, backend: String, curve: CurveConfiguration?, maxQueue: Int, maxMessageBytes: Int) {
            self.frontend = frontend
            self.backend = backend
            self.curve = curve
            self.maxQueue = maxQueue
            self.maxMessageBytes = maxMessageBytes
        }
    }

    /// A registered daemon.
    struct Daemon {
        var capacity: Int
        var inFlight = 0
        var served = 0
        var lastSeen: ContinuousClock.Instant
    }

    /// A client's request: the client's routing frame and its request id.
    struct Key: Hashable {
        var client: [UInt8]
        var id: String
    }

    /// A request sent to a daemon and not yet finally answered.
    struct Held {
        var daemon: [UInt8]
        var envelope: [[UInt8]]
    }

    /// A request waiting in the broker for a daemon with room.
    struct Pending {
        var key: Key
        var envelope: [[UInt8]]
        var payload: [UInt8]
    }

    public let options: Options
    private var daemons: [[UInt8]: Daemon] = [:]
    private var held: [Key: [Held]] = [:]
    private var queue: [Pending] = []
    private var front: ZMQSocket!
    private var back: ZMQSocket!
    private let log: (String) -> Void
    private let stopLock = NSLock()
    private var stopRequested = false

    public init(options: Options, log: @escaping (String) -> Void) {
        self.options = options
        self.log = log
    }

    /// Asks `run()` to return (thread-safe).
    public func stop() { stopLock.withLock { stopRequested = true } }

    /// Binds both sockets and routes until `stop()`. Throws when a socket cannot be set up.
    public func run(onReady: () -> Void) throws {
        guard let ctx = zmq_ctx_new() else { throw ServiceError.system(call: "zmq_ctx_new", errno: zmq_errno()) }
        defer { zmq_ctx_term(ctx) }
        let zap = try options.curve.map { try ZAPHandler(context: ctx, config: $0) }
        defer { zap?.close() }
        front = try socket(ctx, options.frontend, mandatory: false)
        defer { front.close() }
        back = try socket(ctx, options.backend, mandatory: true)
        defer { back.close() }
        onReady()

        var items = [front.pollItem(), back.pollItem()]
        if let zap { items.append(zap.socket.pollItem()) }
        let pollMs = Int(BrokerProtocol.heartbeatInterval.components.attoseconds / 1_000_000_000_000_000) / 2
        while !stopLock.withLock({ stopRequested }) {
            _ = zmq_poll(&items, Int32(items.count), max(10, pollMs))
            if let zap, items[2].revents & Int16(ZMQ_POLLIN) != 0 {
                for peer in zap.handleAll() { log("CURVE peer refused: \(peer)") }
            }
            var n = 0
            while n < 1000, let frames = back.receive(dontWait: true) { onBackend(frames); n += 1 }
            n = 0
            while n < 1000, let frames = front.receive(dontWait: true) { onFrontend(frames); n += 1 }
            expireDaemons(now: .now)
            dispatchQueued()
        }
        // Going away: nobody will answer what the broker still holds.
        for p in queue { reply(p.envelope, p.key.id, .unavailable("the broker is shutting down; retry")) }
        for (key, entries) in held {
            for h in entries { reply(h.envelope, key.id, .unavailable("the broker is shutting down; retry")) }
        }
        log("stopped")
    }

    // MARK: - Clients

    private func onFrontend(_ frames: [[UInt8]]) {
        // [client, (""), payload]
        guard frames.count >= 2 else { return }
        let envelope = Array(frames.dropLast()), payload = frames[frames.count - 1]
        guard envelope.count == 1 || (envelope.count == 2 && envelope[1].isEmpty) else {
            return reply([frames[0]], "", .invalidArgument(
                "expected one frame holding a coalesce.v1.Request (after an optional empty delimiter), got \(frames.count - 1) frames"))
        }
        let decoded = payload.withUnsafeBytes { Wire.decodeRequest($0, maxBytes: options.maxMessageBytes) }
        let request: WireRequest
        switch decoded {
        case .failure(let f): return reply(envelope, f.id, f.error)
        case .success(let r): request = r
        }
        let key = Key(client: frames[0], id: request.id)
        if case .cancel(let target) = request.op {
            let targetKey = Key(client: frames[0], id: target)
            if let h = held[targetKey]?.first {
                // The daemon holding the target answers the cancel (ack or NOT_FOUND).
                if !send(back, [h.daemon] + envelope + [payload]) {
                    reply(envelope, request.id, .notFound("the daemon holding \(quotedID(target)) is gone"))
                }
            } else if let i = queue.firstIndex(where: { $0.key == targetKey }) {
                let p = queue.remove(at: i)
                reply(p.envelope, target, .cancelled("cancelled by request \(quotedID(request.id)) before it started"))
                send(front, envelope + [Wire.encodeReply(id: request.id, .ack("cancelled queued request \(quotedID(target))"))])
            } else {
                reply(envelope, request.id, .notFound("no queued or running request \(quotedID(target)) from this client"))
            }
            return
        }
        dispatch(Pending(key: key, envelope: envelope, payload: payload))
    }

    /// Sends `p` to the daemon with the most free room, or queues it.
    private func dispatch(_ p: Pending) {
        while let d = pickDaemon() {
            if send(back, [d] + p.envelope + [p.payload]) {
                held[p.key, default: []].append(Held(daemon: d, envelope: p.envelope))
                daemons[d]?.inFlight += 1
                return
            }
            declareDead(d, reason: "unreachable")
        }
        if daemons.isEmpty {
            return reply(p.envelope, p.key.id, .unavailable("no daemon is connected to the broker; retry later"))
        }
        if queue.count >= options.maxQueue {
            return reply(p.envelope, p.key.id, .resourceExhausted(
                "every daemon is busy and the broker's queue is full (\(options.maxQueue) requests); retry later"))
        }
        queue.append(p)
    }

    private func dispatchQueued() {
        var i = 0
        while i < queue.count, pickDaemon() != nil { i += 1 }
        if i == 0 { return }
        let ready = queue.prefix(i)
        queue.removeFirst(i)
        for p in ready { dispatch(p) }
    }

    /// The live daemon with the lowest in-flight / capacity among those with room (fewer served
    /// first on ties); nil when all are full.
    private func pickDaemon() -> [UInt8]? {
        var best: ([UInt8], Double, Int)?
        for (id, d) in daemons where d.inFlight < d.capacity {
            let load = Double(d.inFlight) / Double(d.capacity)
            if best == nil || load < best!.1 || (load == best!.1 && d.served < best!.2) { best = (id, load, d.served) }
        }
        return best?.0
    }

    // MARK: - Daemons

    private func onBackend(_ frames: [[UInt8]]) {
        guard let daemon = frames.first, frames.count >= 2 else { return }
        let now = ContinuousClock.now
        if let control = BrokerProtocol.parseHeartbeat(frames[1...]) {
            guard let capacity = control else { return log("unknown control message from daemon \(hex(daemon))") }
            if daemons[daemon] == nil {
                log("daemon \(hex(daemon)) registered (capacity \(capacity)); \(daemons.count + 1) connected")
                daemons[daemon] = Daemon(capacity: capacity, lastSeen: now)
            } else {
                daemons[daemon]?.capacity = capacity
                daemons[daemon]?.lastSeen = now
            }
            return
        }
        daemons[daemon]?.lastSeen = now
        // [daemon, client, (""), Reply]
        let envelope = Array(frames[1..<(frames.count - 1)]), payload = frames[frames.count - 1]
        guard let client = envelope.first else { return }
        if let info = payload.withUnsafeBytes({ Wire.replyInfo($0) }), info.isFinal {
            let key = Key(client: client, id: info.id)
            if var entries = held[key], let i = entries.firstIndex(where: { $0.daemon == daemon }) {
                entries.remove(at: i)
                held[key] = entries.isEmpty ? nil : entries
                daemons[daemon]?.inFlight -= 1
                daemons[daemon]?.served += 1
            }
        }
        send(front, envelope + [payload])
    }

    private func expireDaemons(now: ContinuousClock.Instant) {
        let limit = BrokerProtocol.heartbeatInterval * BrokerProtocol.heartbeatLiveness
        for (id, d) in daemons where now - d.lastSeen > limit {
            declareDead(id, reason: "no heartbeat for \(limit)")
        }
    }

    /// Forgets daemon `id` and answers UNAVAILABLE for every request it held.
    private func declareDead(_ id: [UInt8], reason: String) {
        guard daemons.removeValue(forKey: id) != nil else { return }
        var lost = 0
        for (key, entries) in held {
            let mine = entries.filter { $0.daemon == id }
            if mine.isEmpty { continue }
            let rest = entries.filter { $0.daemon != id }
            held[key] = rest.isEmpty ? nil : rest
            for h in mine {
                reply(h.envelope, key.id, .unavailable("the daemon serving this request stopped answering (\(reason)); retry"))
                lost += 1
            }
        }
        log("daemon \(hex(id)) is gone (\(reason)); \(lost) request(s) answered UNAVAILABLE; \(daemons.count) connected")
    }

    // MARK: - Sockets

    private func socket(_ ctx: UnsafeMutableRawPointer, _ url: String, mandatory: Bool) throws -> ZMQSocket {
        let s = try ZMQSocket(context: ctx, type: ZMQ_ROUTER)
        try s.setSendHighWaterMark(0)
        try s.setReceiveHighWaterMark(0)
        try s.setLinger(milliseconds: 1000)
        if mandatory { try s.setRouterMandatory(true) }
        try s.setMaxMessageSize(Int64(options.maxMessageBytes) * 4)
        if let curve = options.curve, !url.hasPrefix("ipc://") {
            try s.setOption(ZMQ_CURVE_SERVER, int: 1)
            do {
                try s.setOption(ZMQ_CURVE_SECRETKEY, z85Key: curve.serverSecretKey)
                try s.setZAPDomain(CurveConfiguration.zapDomain)
            } catch ServiceError.system(_, let e) {
                throw ServiceError.system(call: "zmq_setsockopt(CURVE)", errno: e)
            }
        }
        try s.bind(url)
        return s
    }

    /// Sends a multipart message; false when the peer is unknown or gone (backend: ROUTER_MANDATORY).
    @discardableResult
    private func send(_ s: ZMQSocket, _ frames: [[UInt8]]) -> Bool {
        (try? s.send(parts: frames, dontWait: true)) != nil
    }

    private func reply(_ envelope: [[UInt8]], _ id: String, _ error: EngineError) {
        send(front, envelope + [Wire.encodeReply(id: id, .error(error.code, error.message))])
    }
}

private func hex(_ bytes: [UInt8]) -> String {
    let printable = bytes.allSatisfy { $0 >= 0x21 && $0 < 0x7f }
    return printable ? String(decoding: bytes, as: UTF8.self) : bytes.map { String(format: "%02x", $0) }.joined()
}
