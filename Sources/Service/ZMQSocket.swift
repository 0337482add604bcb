// ZMQSocket: one ZeroMQ socket, owned. Options go through typed setters, messages are sent and
// received whole (every part), and every call that can fail throws a ServiceError naming it.
import CZMQ

/// One ZeroMQ socket of a context (the daemon's, a worker's, the broker's or a client's).
///
/// Like the ZeroMQ socket it owns, not thread-safe: one thread uses it at a time. Close it (or let
/// it go) before terminating its context: `zmq_ctx_term` waits until every socket is closed.
public final class ZMQSocket {
    /// The libzmq socket; nil once closed (calls then fail with ENOTSOCK).
    public private(set) var handle: UnsafeMutableRawPointer?

    /// Creates a socket of `type` (ZMQ_ROUTER, ZMQ_DEALER, ZMQ_REP, ...) in `context`.
    public init(context: UnsafeMutableRawPointer, type: Int32) throws {
        guard let s = zmq_socket(context, type) else {
            throw ServiceError.system(call: "zmq_socket(\(ZMQSocket.typeName(type)))", errno: zmq_errno())
        }
        handle = s
    }

    deinit { close() }

    /// Closes the socket (what is still queued is sent for up to its linger time). A second call
    /// does nothing.
    public func close() {
        guard let s = handle else { return }
        handle = nil
        zmq_close(s)
    }

    // MARK: - Endpoints

    public func bind(_ endpoint: String) throws {
        try zmqCall("zmq_bind(\(endpoint))") { zmq_bind(handle, endpoint) }
    }

    public func connect(_ endpoint: String) throws {
        try zmqCall("zmq_connect(\(endpoint))") { zmq_connect(handle, endpoint) }
    }

    public func unbind(_ endpoint: String) throws {
        try zmqCall("zmq_unbind(\(endpoint))") { zmq_unbind(handle, endpoint) }
    }

    public func disconnect(_ endpoint: String) throws {
        try zmqCall("zmq_disconnect(\(endpoint))") { zmq_disconnect(handle, endpoint) }
    }

    /// The endpoint last bound or connected (ZMQ_LAST_ENDPOINT: a tcp port 0 resolved).
    public var lastEndpoint: String {
        get throws { try stringOption(ZMQ_LAST_ENDPOINT) }
    }

    // MARK: - Messages

    /// Sends one message: `parts` in order, ZMQ_SNDMORE on all but the last. `dontWait`: fail with
    /// EAGAIN instead of blocking. Throws at the first part ZeroMQ refuses; the parts before it
    /// have been queued (on a ROUTER only the first part can be refused: an unknown peer with
    /// ZMQ_ROUTER_MANDATORY).
    public func send(parts: [[UInt8]], dontWait: Bool = false) throws {
        let base = dontWait ? ZMQ_DONTWAIT : 0
        for (i, part) in parts.enumerated() {
            let flags = base | (i + 1 < parts.count ? ZMQ_SNDMORE : 0)
            try zmqCall("zmq_send") { part.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) } }
        }
    }

    /// Every part of the next message, or nil when none could be read (`dontWait` and none is
    /// waiting, a receive timeout, a closed socket).
    public func receive(dontWait: Bool = false) -> [[UInt8]]? {
        receiveMessage(dontWait: dontWait)?.parts
    }

    /// A message as `receiveMessage` read it.
    public struct Message {
        /// The first `keepParts` parts. A part after the first (the first is a ROUTER's routing id)
        /// longer than `maxPartBytes` is kept empty and its size put in `oversize`.
        public var parts: [[UInt8]] = []
        /// How many parts the message had, kept or not.
        public var count = 0
        /// The size of the last kept part over `maxPartBytes`; 0 when none was.
        public var oversize = 0
        /// The last part's metadata `property` ("User-Id": the id a ZAP handler gave a CURVE peer),
        /// when asked for and present.
        public var property: String?
    }

    /// Reads the next message, every part of it, copying at most `keepParts` parts and none longer
    /// than `maxPartBytes` (after the first). Only the first part waits or not (`dontWait`): the
    /// others arrive with it. nil when no first part could be read.
    public func receiveMessage(dontWait: Bool = false, keepParts: Int = .max, maxPartBytes: Int = .max,
                               property: String? = nil) -> Message? {
        var m = Message()
        var more = true
        while more {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            defer { zmq_msg_close(&msg) }
            if zmq_msg_recv(&msg, handle, m.count == 0 && dontWait ? ZMQ_DONTWAIT : 0) < 0 {
                if m.count == 0 { return nil }
                break
            }
            let size = zmq_msg_size(&msg)
            if m.count < keepParts {
                if m.count > 0 && size > maxPartBytes {
                    m.oversize = size
                    m.parts.append([])
                } else if let data = zmq_msg_data(&msg) {
                    m.parts.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
                } else {
                    m.parts.append([])
                }
            }
            m.count += 1
            more = zmq_msg_more(&msg) != 0
            if !more, let property, let value = zmq_msg_gets(&msg, property) { m.property = String(cString: value) }
        }
        return m
    }

    // MARK: - Polling

    /// A zmq_poll item for this socket (fd -1 once closed, which poll ignores).
    public func pollItem(events: Int16 = Int16(ZMQ_POLLIN)) -> zmq_pollitem_t {
        zmq_pollitem_t(socket: handle, fd: handle == nil ? -1 : 0, events: events, revents: 0)
    }

    // MARK: - Options

    public func setOption(_ option: Int32, int value: Int32) throws {
        var v = value
        try zmqCall(setName(option)) { zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) }
    }

    public func setOption(_ option: Int32, int64 value: Int64) throws {
        var v = value
        try zmqCall(setName(option)) { zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        try zmqCall(setName(option)) { bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) } }
    }

    /// A string option, its UTF-8 bytes without a terminating NUL (ZMQ_ZAP_DOMAIN, ...).
    public func setOption(_ option: Int32, string: String) throws {
        try setOption(option, bytes: Array(string.utf8))
    }

    /// A CURVE key option given in Z85: 40 characters and a NUL, the 41-byte form libzmq decodes.
    public func setOption(_ option: Int32, z85Key key: String) throws {
        var text = Array(key.utf8CString.prefix(41))
        text += [CChar](repeating: 0, count: 41 - text.count)
        try zmqCall(setName(option)) { zmq_setsockopt(handle, option, text, 41) }
    }

    public func intOption(_ option: Int32) throws -> Int32 {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCall(getName(option)) { zmq_getsockopt(handle, option, &v, &size) }
        return v
    }

    public func int64Option(_ option: Int32) throws -> Int64 {
        var v: Int64 = 0
        var size = MemoryLayout<Int64>.size
        try zmqCall(getName(option)) { zmq_getsockopt(handle, option, &v, &size) }
        return v
    }

    /// A binary option (ZMQ_ROUTING_ID: at most 255 bytes).
    public func bytesOption(_ option: Int32, capacity: Int = 256) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: capacity)
        var size = capacity
        try zmqCall(getName(option)) { zmq_getsockopt(handle, option, &buf, &size) }
        return Array(buf.prefix(size))
    }

    /// A NUL-terminated string option (ZMQ_LAST_ENDPOINT, ZMQ_ZAP_DOMAIN, ...).
    public func stringOption(_ option: Int32, capacity: Int = 1024) throws -> String {
        var buf = [CChar](repeating: 0, count: capacity)
        var size = capacity
        try zmqCall(getName(option)) { zmq_getsockopt(handle, option, &buf, &size) }
        buf[capacity - 1] = 0
        return String(cString: buf)
    }

    // MARK: - The options this project sets

    /// ZMQ_LINGER: how long `close` keeps sending what is queued, in ms (-1: until sent).
    public func setLinger(milliseconds: Int32) throws { try setOption(ZMQ_LINGER, int: milliseconds) }

    /// ZMQ_SNDHWM: most messages queued per peer before sends block or drop (0: no limit).
    public func setSendHighWaterMark(_ messages: Int32) throws { try setOption(ZMQ_SNDHWM, int: messages) }

    /// ZMQ_RCVHWM: most messages queued per peer on receipt (0: no limit).
    public func setReceiveHighWaterMark(_ messages: Int32) throws { try setOption(ZMQ_RCVHWM, int: messages) }

    /// ZMQ_RCVTIMEO: how long a waiting receive waits, in ms (-1: forever).
    public func setReceiveTimeout(milliseconds: Int32) throws { try setOption(ZMQ_RCVTIMEO, int: milliseconds) }

    /// ZMQ_ROUTING_ID: the name peers' ROUTER sockets see for this socket.
    public func setRoutingID(_ id: [UInt8]) throws { try setOption(ZMQ_ROUTING_ID, bytes: id) }

    /// ZMQ_CONNECT_ROUTING_ID: the name this ROUTER gives the peer of its next connect.
    public func setConnectRoutingID(_ id: [UInt8]) throws { try setOption(ZMQ_CONNECT_ROUTING_ID, bytes: id) }

    /// ZMQ_ROUTER_MANDATORY: a send to an unknown peer fails (EHOSTUNREACH) instead of vanishing.
    public func setRouterMandatory(_ on: Bool) throws { try setOption(ZMQ_ROUTER_MANDATORY, int: on ? 1 : 0) }

    /// ZMQ_MAXMSGSIZE: a peer sending a bigger message is disconnected (-1: no limit).
    public func setMaxMessageSize(_ bytes: Int64) throws { try setOption(ZMQ_MAXMSGSIZE, int64: bytes) }

    /// Makes this socket a CURVE server with its secret key (Z85): ZMQ_CURVE_SERVER, ZMQ_CURVE_SECRETKEY.
    public func setCurveServer(secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVER, int: 1)
        try setOption(ZMQ_CURVE_SECRETKEY, z85Key: secretKey)
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverKey`, with its own
    /// key pair (all Z85): ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_PUBLICKEY, ZMQ_CURVE_SECRETKEY.
    public func setCurveClient(serverKey: String, publicKey: String, secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, z85Key: serverKey)
        try setOption(ZMQ_CURVE_PUBLICKEY, z85Key: publicKey)
        try setOption(ZMQ_CURVE_SECRETKEY, z85Key: secretKey)
    }

    /// ZMQ_ZAP_DOMAIN: the domain named in this socket's ZAP requests.
    public func setZAPDomain(_ domain: String) throws { try setOption(ZMQ_ZAP_DOMAIN, string: domain) }

    // MARK: - Names for error messages

    private func setName(_ option: Int32) -> String { "zmq_setsockopt(\(ZMQSocket.optionName(option)))" }
    private func getName(_ option: Int32) -> String { "zmq_getsockopt(\(ZMQSocket.optionName(option)))" }

    static func optionName(_ option: Int32) -> String {
        let names: [Int32: String] = [
            ZMQ_LINGER: "ZMQ_LINGER", ZMQ_SNDHWM: "ZMQ_SNDHWM", ZMQ_RCVHWM: "ZMQ_RCVHWM",
            ZMQ_RCVTIMEO: "ZMQ_RCVTIMEO", ZMQ_SNDTIMEO: "ZMQ_SNDTIMEO", ZMQ_ROUTING_ID: "ZMQ_ROUTING_ID",
            ZMQ_CONNECT_ROUTING_ID: "ZMQ_CONNECT_ROUTING_ID", ZMQ_ROUTER_MANDATORY: "ZMQ_ROUTER_MANDATORY",
            ZMQ_MAXMSGSIZE: "ZMQ_MAXMSGSIZE", ZMQ_CURVE_SERVER: "ZMQ_CURVE_SERVER",
            ZMQ_CURVE_SECRETKEY: "ZMQ_CURVE_SECRETKEY", ZMQ_CURVE_PUBLICKEY: "ZMQ_CURVE_PUBLICKEY",
            ZMQ_CURVE_SERVERKEY: "ZMQ_CURVE_SERVERKEY", ZMQ_ZAP_DOMAIN: "ZMQ_ZAP_DOMAIN",
            ZMQ_LAST_ENDPOINT: "ZMQ_LAST_ENDPOINT", ZMQ_IMMEDIATE: "ZMQ_IMMEDIATE",
            ZMQ_ROUTER_HANDOVER: "ZMQ_ROUTER_HANDOVER", ZMQ_TYPE: "ZMQ_TYPE",
        ]
        return names[option] ?? "option \(option)"
    }

    static func typeName(_ type: Int32) -> String {
        let names: [Int32: String] = [
            ZMQ_PAIR: "PAIR", ZMQ_PUB: "PUB", ZMQ_SUB: "SUB", ZMQ_REQ: "REQ", ZMQ_REP: "REP",
            ZMQ_DEALER: "DEALER", ZMQ_ROUTER: "ROUTER", ZMQ_PULL: "PULL", ZMQ_PUSH: "PUSH",
            ZMQ_XPUB: "XPUB", ZMQ_XSUB: "XSUB", ZMQ_STREAM: "STREAM",
        ]
        return names[type] ?? "type \(type)"
    }
}
